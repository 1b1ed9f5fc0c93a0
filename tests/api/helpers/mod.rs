//! Test harness: a fresh PostgreSQL database per test, migrated, and the real
//! server on a port-0 listener reached through the generated tonic client.
//! `database.rs` (a database per test), `app.rs` (the server in-process),
//! `agent.rs` (a hand-driven agent), `process.rs` (the server or agent as a
//! child process), `calls.rs` (requests and assertions on statuses); `../support/logical.rs` (a
//! PostgreSQL server of a test's own, and logical replication on it).

mod agent;
mod app;
mod calls;
mod database;
mod process;

pub use crate::logical::*;
pub use agent::*;
pub use app::*;
pub use calls::*;
pub use database::*;
pub use process::*;
