//! connector-control: a gRPC control plane to list, start and pause the
//! connectors of a data-replication system.
//!
//! Module map (dependencies point inward, towards `domain`):
//! - [`domain`]: connector and command types, validation, the start/pause
//!   state machine, page tokens. Pure; no I/O.
//! - [`store`]: the `Store` trait and its PostgreSQL backend with embedded
//!   migrations.
//! - [`api`]: the tonic services, proto <-> domain conversion, and the one
//!   mapping of errors to gRPC statuses.
//! - [`fleet`]: agent sessions on this replica: command dispatch, coalesced
//!   heartbeats, the liveness sweep.
//! - [`server`]: assembles the gRPC server (API, health, reflection),
//!   accepts connections within bounds, limits message sizes, and shuts
//!   down gracefully.
//! - [`agent`]: the reference agent, a real client of AgentService running
//!   simulated connectors.
//! - [`demo`]: `serve --demo`, a seeded fleet with in-process agents.
//! - [`cli`]: the `connector-control` command line; [`telemetry`]: logs and
//!   traces.
//! - [`proto`]: code generated from `proto/` by `build.rs`, and its codec.
//! - [`auth`]: principals, roles, tokens; [`tls`]: certificates.

pub mod agent;
pub mod api;
pub mod auth;
pub mod cli;
pub mod demo;
pub mod domain;
pub mod fleet;
pub mod proto;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tls;
