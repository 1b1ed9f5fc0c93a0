//! Which agent a command goes to: the one running its connector, else the
//! least loaded online agent of its region. Pure: the dispatcher reads
//! the pending commands and the region's agents, asks here, and hands
//! over what this replica can.

use super::fleet::Session;

/// A command waiting for delivery, with the agent that runs its connector
/// (empty if none): the one holding an unanswered command this one
/// superseded (it may be carrying that out), else the connector's runner.
#[derive(Clone, Debug)]
pub struct Deliverable {
    pub command_id: String,
    pub runner: String,
}

/// An online agent of a region and how busy it is.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub agent_id: String,
    /// Its current session epoch.
    pub epoch: i64,
    /// Connectors it runs plus commands it has not answered yet.
    pub load: i64,
}

/// Chooses the agent for each command of one region: the online agent that
/// runs its connector, else the least loaded online agent (ties by id),
/// counting each assignment as load so that a batch spreads out. Commands
/// with no online agent stay unassigned.
pub fn assign(commands: &[Deliverable], agents: &[Candidate]) -> Vec<(String, String)> {
    let mut load: Vec<(i64, &str)> = agents
        .iter()
        .map(|a| (a.load, a.agent_id.as_str()))
        .collect();
    let mut assigned = Vec::new();
    for command in commands {
        let target = if let Some(i) = load.iter().position(|(_, id)| *id == command.runner) {
            i
        } else {
            match load
                .iter()
                .enumerate()
                .min_by(|(_, a), (_, b)| a.cmp(b))
                .map(|(i, _)| i)
            {
                Some(i) => i,
                None => continue,
            }
        };
        load[target].0 += 1;
        assigned.push((command.command_id.clone(), load[target].1.to_owned()));
    }
    assigned
}

/// `assign`, keeping what this replica can hand over now: commands whose
/// agent is one of `sessions` (current epoch, with free queue slots, as
/// given), up to those slots. The rest stay pending.
pub fn assign_local(
    commands: &[Deliverable],
    agents: &[Candidate],
    sessions: &[(Session, usize)],
) -> Vec<(String, Session)> {
    let mut room: std::collections::HashMap<&str, (usize, &Session)> = sessions
        .iter()
        .filter(|(session, _)| {
            agents
                .iter()
                .any(|a| a.agent_id == session.agent_id && a.epoch == session.epoch)
        })
        .map(|(session, room)| (session.agent_id.as_str(), (*room, session)))
        .collect();
    let mut local = Vec::new();
    for (command_id, agent_id) in assign(commands, agents) {
        if let Some((left, session)) = room.get_mut(agent_id.as_str())
            && *left > 0
        {
            *left -= 1;
            local.push((command_id, (*session).clone()));
        }
    }
    local
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::sample::session;

    #[test]
    fn commands_go_to_their_runner_else_to_the_least_loaded_agent() {
        let commands = |runners: &[&str]| -> Vec<Deliverable> {
            runners
                .iter()
                .enumerate()
                .map(|(i, r)| Deliverable {
                    command_id: format!("k{i}"),
                    runner: (*r).to_owned(),
                })
                .collect()
        };
        let agents = vec![
            Candidate {
                agent_id: "a".into(),
                epoch: 1,
                load: 2,
            },
            Candidate {
                agent_id: "b".into(),
                epoch: 1,
                load: 0,
            },
        ];
        let assigned = assign(&commands(&["a", "", "", "", "gone"]), &agents);
        let targets: Vec<&str> = assigned.iter().map(|(_, a)| a.as_str()).collect();
        // k0 to its runner (a: 3); the rest by load: b (1), b (2), b (3),
        // then the 3/3 tie goes to a.
        assert_eq!(targets, ["a", "b", "b", "b", "a"]);
        assert!(assign(&commands(&[""]), &[]).is_empty());

        // Only local, current sessions with room take commands.
        let local_b = Session {
            agent_id: "b".into(),
            epoch: 1,
            ..session()
        };
        let stale_a = Session {
            agent_id: "a".into(),
            epoch: 0,
            ..session()
        };
        let local = assign_local(
            &commands(&["a", "", "", "", "gone"]),
            &agents,
            &[(local_b, 2), (stale_a, 9)],
        );
        let ids: Vec<&str> = local.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["k1", "k2"]);
    }
}
