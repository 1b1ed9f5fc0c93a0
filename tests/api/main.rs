//! End-to-end tests: the real server on a port-0 listener, the generated
//! tonic client, and a fresh PostgreSQL database per test.

mod agent_reports;
mod agents;
mod batch;
#[path = "../support/pgbouncer.rs"]
mod bouncer;
mod cli;
#[path = "../support/patroni.rs"]
mod cluster;
mod conformance;
mod console;
mod contract;
mod create;
mod demo;
mod drivers;
mod dry_run;
mod failover;
#[path = "../support/failover_load.rs"]
mod failover_load;
mod feed_order;
mod helpers;
mod history;
mod hostile;
mod list;
#[path = "../support/logical.rs"]
mod logical;
mod observability;
mod patroni;
mod pgbouncer;
mod postgres_driver;
mod process;
mod process_driver;
mod reference_agent;
mod replica_processes;
mod replicas;
mod restart;
mod security;
mod start_pause;
mod state_machine;
mod tls;
mod watch;
