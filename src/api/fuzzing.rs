//! Entry points for the fuzz targets in `fuzz/` (cargo fuzz): arbitrary
//! bytes through request validation and through the agent message
//! handler's validation and state rules. Each must return, never panic,
//! whatever it is given. Not an API.

use super::{agent_convert, convert};
use crate::domain::reports::{result_effect, status_effect};
use crate::domain::{
    Command, CommandKind, CommandStatus, Connector, ConnectorState, PageTokenCodec, SearchFilter,
    sample,
};
use crate::proto::v1::{self, agent_message};
use chrono::Utc;
use prost::Message;

/// Decodes `data` as each operator request and validates it; also as a
/// page token.
pub fn requests(data: &[u8]) {
    if let Ok(request) = v1::CreateConnectorRequest::decode(data) {
        let _ = convert::new_connector(request);
    }
    if let Ok(request) = v1::StartConnectorRequest::decode(data) {
        let _ = convert::start_request(&request);
    }
    if let Ok(request) = v1::PauseConnectorRequest::decode(data) {
        let _ = convert::pause_request(&request);
    }
    if let Ok(request) = v1::ListConnectorsRequest::decode(data) {
        let _ = convert::list_query(request, std::time::Duration::from_secs(60));
    }
    if let Ok(token) = std::str::from_utf8(data) {
        let _ = PageTokenCodec::new(vec![7; 32]).decode(token, &SearchFilter::default());
    }
}

fn connector(state: ConnectorState, agent_id: &str) -> Connector {
    Connector {
        agent_id: agent_id.to_owned(),
        ..sample::connector_in_eu_1(3, state)
    }
}

/// Decodes `data` as an agent message, validates it as the session handler
/// does, and applies the state rules to whatever passes.
pub fn agent_message(data: &[u8]) {
    let Ok(message) = v1::AgentMessage::decode(data) else {
        return;
    };
    let session = sample::session();
    let states = [
        ConnectorState::Stopped,
        ConnectorState::Starting,
        ConnectorState::Running,
        ConnectorState::Pausing,
        ConnectorState::Failed,
        ConnectorState::Unknown,
    ];
    match message.message {
        Some(agent_message::Message::Hello(hello)) => {
            if let Ok(hello) = agent_convert::hello(hello) {
                for status in &hello.connectors {
                    for state in states {
                        let _ = status_effect(&connector(state, ""), status, &session);
                    }
                }
            }
        }
        Some(agent_message::Message::Heartbeat(heartbeat)) => {
            if let Ok(statuses) = agent_convert::statuses(heartbeat.connectors, "connectors") {
                for status in &statuses {
                    for state in states {
                        let _ = status_effect(&connector(state, "a1"), status, &session);
                    }
                }
            }
        }
        Some(agent_message::Message::Result(result)) => {
            if let Ok(report) = agent_convert::report(result) {
                for kind in [CommandKind::Start, CommandKind::Pause] {
                    for generation in [2, 3] {
                        let command = Command {
                            id: report.command_id.clone(),
                            connector_id: "c1".to_owned(),
                            kind,
                            pull_back_time: None,
                            region: "eu-1".to_owned(),
                            generation,
                            request_id: None,
                            reason: String::new(),
                            status: CommandStatus::Delivered,
                            agent_id: "a1".to_owned(),
                            error_reason: String::new(),
                            error_message: String::new(),
                            create_time: Utc::now(),
                            complete_time: None,
                            trace_context: Default::default(),
                            skip_to_earliest: false,
                            late_result: None,
                            principal: String::new(),
                        };
                        for state in states {
                            let _ =
                                result_effect(&connector(state, "a1"), &command, &report, &session);
                        }
                    }
                }
            }
        }
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fuzz entry points on a few seeds, so that every test run
    /// exercises them (cargo fuzz explores from these).
    #[test]
    fn fuzz_entry_points_take_valid_and_broken_input() {
        let start = v1::StartConnectorRequest {
            id: "c1".to_owned(),
            pull_back_time: Some(prost_types::Timestamp {
                seconds: i64::MAX,
                nanos: -1,
            }),
            ..Default::default()
        }
        .encode_to_vec();
        let heartbeat = v1::AgentMessage {
            message: Some(agent_message::Message::Heartbeat(v1::Heartbeat {
                sequence: 1,
                connectors: vec![v1::ConnectorStatus {
                    connector_id: "c1".to_owned(),
                    state: 99,
                    generation: i64::MIN,
                    latency: Some(prost_types::Duration {
                        seconds: -5,
                        nanos: 0,
                    }),
                    ..Default::default()
                }],
            })),
        }
        .encode_to_vec();
        for seed in [
            &start[..],
            &heartbeat[..],
            &[0xff; 64][..],
            b"",
            b"\x0a\x02c1",
        ] {
            requests(seed);
            agent_message(seed);
        }
    }
}
