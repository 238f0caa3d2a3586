//! The Auto Session Timeout sidecar: it keeps every ERP session's last real
//! activity, decides when an internal user's session has expired, and
//! answers the page (heartbeat, check, logout), the reverse proxy (forward
//! auth) and administrators (admin API, CLI, metrics).
//!
//! # Layout
//! - `policy`: the pure timeout rules (no I/O); `clock`: time, injected.
//! - `rules`: policy per group and per user (strictest wins), presets and
//!   the compliance report (pure).
//! - `store`: sessions in memory, mirrored to SQLite by one writer thread.
//! - `sessions`: the engine tying policy, store and ERP lookup together.
//! - `secret`: the server secret that keys sessions.
//! - `settings`: the settings in force; `erp_settings`: the timeout read
//!   from the ERP when it owns it.
//! - `cookie`: reads the session id exactly as the ERP does (werkzeug).
//! - `lookup`: asks the ERP who owns a session (Odoo JSON-RPC).
//! - `http`: the HTTP API (page, proxy, admin), the only code knowing HTTP.
//! - `config`: flags, environment and config file into typed `Settings`.
//! - `startup`: wiring, used by `main` and the tests.
//! - `metrics`: Prometheus counters.
//! - `cli`: the `settings` and `sessions` subcommands (admin API client).
//! - `demo`: the stand-in ERP for `session-timeout demo`.

pub mod cli;
pub mod clock;
pub mod config;
pub mod cookie;
pub mod demo;
pub mod erp_settings;
pub mod http;
pub mod lookup;
pub mod metrics;
pub mod policy;
pub mod rules;
pub mod secret;
pub mod sessions;
pub mod settings;
pub mod startup;
pub mod store;
