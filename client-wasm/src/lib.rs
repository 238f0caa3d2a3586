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
//! - `web` (wasm32 only): event listeners, the one timer, and the exports
//!   `start(host)`, `SessionTimeout.stop()`, `.dispatch()`, `.debug()`.
//!   Requests and JSON, the channel between tabs, the heartbeat claim and
//!   the logout URL belong to the `Host` object that
//!   `www/session_timeout_service.js` passes in.
//! - `tiny` (wasm32 with the `tiny` feature, used by release builds): no_std
//!   runtime pieces (allocator, panic handler) that keep `core::fmt` and
//!   dlmalloc out of the wasm.
//!
//! Tests: `core`'s unit tests run on the host (`cargo test -p
//! session-timeout-client`); `tests/web.rs` runs the web layer in headless
//! Chromium (`scripts/test-wasm.sh`).

#![cfg_attr(all(target_arch = "wasm32", feature = "tiny"), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod core;

#[cfg(target_arch = "wasm32")]
mod web;

#[cfg(target_arch = "wasm32")]
pub use web::{start, Host, SessionTimeout};

#[cfg(all(target_arch = "wasm32", feature = "tiny"))]
mod tiny;
