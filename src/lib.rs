//! connector-control: a gRPC control plane to list, start and pause the
//! connectors of a data-replication system.
//!
//! Module map. Dependencies point one way, each module using only those
//! above it: `domain` <- `proto`, `store` <- `telemetry`, `auth`,
//! `connections` and `fleet` <- `api` <- `console` <- `server` <- `cli` (and
//! `agent`, `demo`); no two files import each other, directly or in a
//! circle (`scripts/house.py` checks it in CI).
//! - [`domain`]: connector and command types, validation, the start/pause
//!   state machine (`domain::rules`: where a pause is decided), page
//!   tokens, session and audit rules. Pure; no I/O.
//! - [`proto`]: code generated from `proto/` by `build.rs`, its codec, and
//!   domain -> proto conversions that the API and the fleet both send.
//! - [`store`]: the `Store` and `FleetStore` traits and their PostgreSQL and
//!   embedded SQLite backends with their migrations (where a command is
//!   written), and the aggregation of refused calls for the audit trail.
//! - [`telemetry`]: logs, traces, metrics.
//! - [`connections`]: the one accept loop of the gRPC and console listeners:
//!   a cap on open connections, handshake and idle timeouts, TLS.
//! - [`auth`]: principals, roles, permissions, tokens; it decides who may
//!   do what and says why not (`AuthError`). [`tls`]: certificates.
//! - [`fleet`]: this replica's agent sessions: the registry, command
//!   dispatch, coalesced heartbeats, wake-ups, the leader's work.
//! - [`api`]: the tonic services (including the agents' stream, which it
//!   hands to `fleet`), request validation, the interceptor, and the one
//!   mapping of errors to gRPC statuses.
//! - [`console`]: the web console (Connector, Agents and Audit tabs): HTTP
//!   handlers that call the `api` services with the signed-in principal,
//!   server-rendered pages, and a live table fed by WatchConnectors.
//! - [`server`]: assembles the gRPC server (API, health, reflection) and
//!   the console, limits message sizes, and shuts down gracefully.
//! - [`agent`]: the reference agent, a real client of AgentService: the
//!   session written once, and the `Driver` a connector runtime implements
//!   (simulated connectors by default, or supervised processes).
//!   [`conformance`]: `agent-conformance`, a scripted control plane that
//!   checks any agent against the protocol. [`demo`]: `serve --demo`. [`cli`]: the
//!   `connector-control` command line.

pub mod agent;
pub mod api;
pub mod auth;
pub mod cli;
pub mod conformance;
pub mod connections;
pub mod console;
pub mod defaults;
pub mod demo;
pub mod domain;
pub mod fleet;
pub mod proto;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tls;
