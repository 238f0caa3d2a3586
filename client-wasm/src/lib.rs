//! Browser client of Auto Session Timeout: keeps an ERP back-office session
//! alive while the user really works, and takes every tab to the logout URL
//! once the server-side sidecar says the session expired.
//!
//! The decisions live in a pure state machine; the browser is only wired to
//! it. That split is why the rules (heartbeat rate, hidden tabs, wake after
//! sleep, several tabs, backoff, the notice) are unit-tested on the host with
//! a fake clock.
//!
//! # Layout
//! - [`core`]: the state machine (`handle_*` in, `poll_action` /
//!   `poll_deadline` out). No web-sys, no timers, no clock.
//! - `web` (wasm32 only): `SessionTimeout`, the client of one page, on
//!   `web-sys` (listeners, `fetch`, `BroadcastChannel`/`Storage`, `Location`),
//!   `js-sys` (`Date`, JSON values, `Promise`) and `gloo-timers` (the one
//!   deadline timer); listeners (`gloo-events`) and the timer are values that
//!   `stop()` drops. `net`: requests and their answers; `tabs`: the link
//!   between tabs and the heartbeat claim; `notice`: the opt-in notice through
//!   the web client's notification service.
//!
//! Tests: `core`'s unit tests run on the host (`cargo test -p
//! session-timeout-client`); `tests/web.rs` runs the web layer in headless
//! Chromium (`scripts/test-wasm.sh`).

#![forbid(unsafe_code)]

pub mod core;

#[cfg(target_arch = "wasm32")]
mod web;

#[cfg(target_arch = "wasm32")]
pub use web::SessionTimeout;
