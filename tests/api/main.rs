//! End-to-end tests: the real server on a port-0 listener, the generated
//! tonic client, and a fresh PostgreSQL database per test.

mod agents;
mod batch;
mod cli;
mod console;
mod contract;
mod create;
mod demo;
mod dry_run;
mod failover;
mod helpers;
mod history;
mod hostile;
mod list;
mod observability;
mod patroni;
mod pgbouncer;
mod process;
mod reference_agent;
mod replica_processes;
mod replicas;
mod restart;
mod security;
mod start_pause;
mod state_machine;
mod tls;
mod watch;
