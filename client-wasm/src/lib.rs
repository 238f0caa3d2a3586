//! Browser client of Auto Session Timeout: keeps an ERP back-office session
//! alive while the user really works, and takes every tab to the logout URL
//! once the server-side sidecar says the session expired.
//!
//! The decisions live in a pure state machine; the browser is only wired to
//! it. That split is why the rules (heartbeat rate, hidden tabs, wake after
//! sleep, several tabs, backoff) are unit-tested on the host with a fake
//! clock, and why the wasm stays small: the web layer imports few browser
//! functions and formats nothing.
//!
//! # Layout
//! - [`core`]: the state machine (`handle_*` in, `poll_action` /
//!   `poll_deadline` out). No web-sys, no timers, no clock.
//! - `web` (wasm32 only): which events are listened to, the one timer, and
//!   the exports `start(host)`, `stop(host)`, `dispatch(host, code, a, b)`
//!   and `debug(what)`, for one client per page whose state is a `static`:
//!   the client allocates nothing. The `Host` object that
//!   `www/session_timeout_service.js` passes in carries out the browser
//!   calls (listeners, timer) and owns requests and JSON, the channel
//!   between tabs, the heartbeat claim and the logout URL.
//! - `tiny` (wasm32 with the `tiny` feature, used by release builds): the
//!   no_std runtime pieces: a panic handler that keeps `core::fmt` out, and
//!   dlmalloc as the global allocator, which the release wasm ends up
//!   without because nothing allocates (`scripts/build-wasm.sh` checks).
//!
//! Tests: `core`'s unit tests run on the host (`cargo test -p
//! session-timeout-client`); `tests/web.rs` runs the web layer in headless
//! Chromium (`scripts/test-wasm.sh`).

#![cfg_attr(all(target_arch = "wasm32", feature = "tiny"), no_std)]
#![forbid(unsafe_code)]

// Only the host unit tests allocate.
#[cfg(test)]
extern crate alloc;

pub mod core;

#[cfg(target_arch = "wasm32")]
mod web;

#[cfg(target_arch = "wasm32")]
pub use web::{debug, dispatch, start, stop, Host};

#[cfg(all(target_arch = "wasm32", feature = "tiny"))]
mod tiny;
