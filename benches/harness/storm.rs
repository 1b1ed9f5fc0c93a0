//! A reconnect storm from a draining replica.

use crate::prelude::*;

/// An agent that reconnects at once, to the next address, whenever its
/// stream ends; `welcomed` counts its sessions; commands are answered.
pub(crate) fn storm_agent(
    channels: Arc<Vec<Channel>>,
    id: String,
    welcomed: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut attempt = 0;
        loop {
            let channel = channels[attempt % channels.len()].clone();
            attempt += 1;
            let (outbound, rx) = mpsc::channel(16);
            let hello = v1::Hello {
                agent_id: id.clone(),
                instance_id: uuid::Uuid::new_v4().to_string(),
                region: "eu-1".to_owned(),
                server_ip: "10.9.0.1".to_owned(),
                version: "bench".to_owned(),
                connectors: Vec::new(),
                capabilities: None,
            };
            if outbound
                .send(common::message(agent_message::Message::Hello(hello)))
                .await
                .is_err()
            {
                return;
            }
            let Ok(response) = AgentServiceClient::new(channel)
                .connect(ReceiverStream::new(rx))
                .await
            else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let mut inbound = response.into_inner();
            loop {
                match inbound.message().await {
                    Ok(Some(v1::ControlMessage {
                        message: Some(control_message::Message::Welcome(_)),
                    })) => {
                        welcomed.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Some(v1::ControlMessage {
                        message: Some(control_message::Message::Command(command)),
                    })) => {
                        let result = v1::CommandResult {
                            command_id: command.id,
                            success: true,
                            status: Some(v1::ConnectorStatus {
                                connector_id: command.connector_id,
                                state: v1::ConnectorState::Running as i32,
                                generation: command.generation,
                                ..Default::default()
                            }),
                            ..Default::default()
                        };
                        let _ = outbound
                            .send(common::message(agent_message::Message::Result(result)))
                            .await;
                    }
                    Ok(Some(_)) => {}
                    // Ended (reconnect, drain, broken): at once, elsewhere.
                    _ => break,
                }
            }
        }
    })
}

/// `storm_agents` agents on replica A; A drains and they all reconnect to
/// B at once, while starts are accepted on B. All back, nothing lost?
pub(crate) async fn storm(plan: &Plan, url: String) -> anyhow::Result<Vec<Line>> {
    let a = server(Some(&url), None, &["--drain-timeout", "5s"])?;
    let b = server(Some(&url), None, &[])?;
    let count = plan.storm_agents;
    let mut channels_a = Vec::new();
    let mut channels_b = Vec::new();
    for _ in 0..count.div_ceil(10) {
        channels_a.push(common::channel(&a.addr).await?);
        // Connected at first use: the storm includes TCP and HTTP/2 set-up.
        channels_b.push(Channel::from_shared(format!("http://{}", b.addr))?.connect_lazy());
    }
    let welcomed = Arc::new(AtomicUsize::new(0));
    let mut agents = Vec::new();
    for i in 0..count {
        let channels = Arc::new(vec![channels_a[i / 10].clone(), channels_b[i / 10].clone()]);
        agents.push(storm_agent(
            channels,
            format!("storm-{i}"),
            welcomed.clone(),
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while welcomed.load(Ordering::Relaxed) < count {
        anyhow::ensure!(Instant::now() < deadline, "agents did not all connect to A");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Starts accepted during the storm, on B.
    let commands = 200;
    let mut client = connectors_client(&b.addr).await?;
    for i in 0..commands {
        client
            .create_connector(v1::CreateConnectorRequest {
                connector: Some(v1::Connector {
                    id: format!("storm-c{i}"),
                    name: format!("storm {i}"),
                    project_id: "bench".to_owned(),
                    project_name: "Bench".to_owned(),
                    kind: v1::ConnectorKind::IncrementalSync as i32,
                    source: Some(common::endpoint("eu-1")),
                    destination: Some(common::endpoint("eu-1")),
                    ..Default::default()
                }),
            })
            .await?;
    }
    // Half the starts go through A just before it drains: some are in
    // flight on the streams the drain cuts. The other half go through B
    // during the storm.
    let mut via_a = connectors_client(&a.addr).await?;
    for i in 0..commands / 2 {
        via_a
            .start_connector(v1::StartConnectorRequest {
                id: format!("storm-c{i}"),
                ..Default::default()
            })
            .await?;
    }
    let storm_started = Instant::now();
    let term = Command::new("kill")
        .args(["-TERM", &a.pid().to_string()])
        .status()?;
    anyhow::ensure!(term.success(), "kill -TERM failed");
    for i in commands / 2..commands {
        client
            .start_connector(v1::StartConnectorRequest {
                id: format!("storm-c{i}"),
                ..Default::default()
            })
            .await?;
    }
    let db = sql(&url).await?;
    let online = db
        .prepare("SELECT count(*) FROM agents WHERE disconnect_time IS NULL AND replica_id = $1")
        .await?;
    let b_id: String = db
        .query_one("SELECT id FROM replicas WHERE address = $1", &[&b.addr])
        .await?
        .get(0);
    let limit = Duration::from_secs(60);
    let back = loop {
        let n: i64 = db.query_one(&online, &[&b_id]).await?.get(0);
        if n as usize >= count {
            break Some(storm_started.elapsed());
        }
        if storm_started.elapsed() > limit {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let succeeded = loop {
        let n: i64 = db
            .query_one(
                "SELECT count(*) FROM commands WHERE status = 'SUCCEEDED' AND connector_id LIKE 'storm-c%'",
                &[],
            )
            .await?
            .get(0);
        if n as usize >= commands || storm_started.elapsed() > limit {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let all_done = storm_started.elapsed();
    // Every agent was welcomed twice: by A, then by B.
    let sessions = welcomed.load(Ordering::Relaxed);
    for agent in agents {
        agent.abort();
    }
    let line = Line {
        scenario: format!("Reconnect storm: {count} agents move from a draining replica"),
        ours: match back {
            Some(t) => format!(
                "all back in {:.1} s; {succeeded}/{commands} starts succeeded in {:.1} s",
                t.as_secs_f64(),
                all_done.as_secs_f64()
            ),
            None => format!("not all back in {limit:?}; {succeeded}/{commands} starts succeeded"),
        },
        baseline: "-".to_owned(),
        ratio: "-".to_owned(),
        target: "all back within 30 s, no command lost".to_owned(),
        met: back.is_some_and(|t| t <= Duration::from_secs(30))
            && succeeded as usize == commands
            && sessions >= 2 * count,
    };
    report(&line);
    Ok(vec![line])
}
