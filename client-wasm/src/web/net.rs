//! Requests to the sidecar (`fetch`) and what their answers mean to the
//! core. The protocol is the sidecar's JSON (`docs/api.md`), read here by
//! field name; nothing is translated into numbers on the way.

use std::rc::Rc;

use js_sys::Reflect;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{RequestCache, RequestCredentials, RequestInit, Response};

use super::{text_of, window, Client};
use crate::core::Reply;

/// How long a request may take before it counts as failed (and is retried
/// with backoff): a hung sidecar must not stall the client.
const REQUEST_TIMEOUT_MS: u32 = 20_000;

#[derive(Clone, Copy, Debug)]
pub(super) enum Request {
    Config,
    Check,
    Heartbeat {
        idle_ms: u64,
    },
    /// Sent with `keepalive` as the page leaves; never answered.
    Logout,
}

impl Request {
    fn route(self) -> &'static str {
        match self {
            Request::Config => "config",
            Request::Check => "check",
            Request::Heartbeat { .. } => "heartbeat",
            Request::Logout => "logout",
        }
    }
}

/// What an answer means for the client.
enum Outcome {
    Reply(Reply),
    /// The configuration, with what the core does not keep: the logout URL
    /// and the notice setting.
    Config {
        reply: Reply,
        logout_url: Option<String>,
        warn_before_ms: u64,
    },
    /// An "active" answer naming the timeout in force.
    Active {
        reply: Reply,
        timeout_ms: u64,
    },
    /// An "expired" answer naming where to go.
    Expired {
        logout_url: Option<String>,
    },
    /// No answer, a 5xx, a 429 (too soon: recorded, but the page must slow
    /// down) or one that is not what the sidecar sends: retried with backoff.
    Failed,
}

/// Sends `request` and feeds its answer to the client when it comes.
pub(super) fn send(client: &Rc<Client>, request: Request) {
    let mut url = String::with_capacity(client.base.len() + 20);
    url.push_str(&client.base);
    url.push_str("/api/v1/");
    url.push_str(request.route());
    let init = RequestInit::new();
    init.set_credentials(RequestCredentials::SameOrigin);
    init.set_cache(RequestCache::NoStore);
    init.set_signal(Some(&web_sys::AbortSignal::timeout_with_u32(
        REQUEST_TIMEOUT_MS,
    )));
    if !matches!(request, Request::Config | Request::Check) {
        init.set_method("POST");
        let headers = web_sys::Headers::new().expect_throw("Headers can be made");
        let _ = headers.set("Content-Type", "application/json");
        init.set_headers(&headers);
        let mut body = String::from("{");
        if let Request::Heartbeat { idle_ms } = request {
            body.push_str("\"idle_ms\":");
            body.push_str(&text_of(idle_ms as f64));
        }
        body.push('}');
        init.set_body(&JsValue::from_str(&body));
    }
    if let Request::Logout = request {
        // The page is leaving: keepalive lets the request outlive it.
        // (`RequestInit::set_keepalive` is behind web-sys's unstable APIs.)
        let _ = Reflect::set(&init, &"keepalive".into(), &JsValue::TRUE);
        let _ = window().fetch_with_str_and_init(&url, &init);
        return;
    }
    let sent = window().fetch_with_str_and_init(&url, &init);
    let me = Rc::downgrade(client);
    wasm_bindgen_futures::spawn_local(async move {
        let outcome = answer(request, JsFuture::from(sent).await).await;
        if let Some(client) = me.upgrade() {
            deliver(&client, outcome);
        }
    });
}

/// Reads an answer the way the sidecar writes it.
async fn answer(request: Request, sent: Result<JsValue, JsValue>) -> Outcome {
    let Ok(response) = sent.and_then(|r| r.dyn_into::<Response>()) else {
        return Outcome::Failed;
    };
    if response.status() == 401 {
        return Outcome::Reply(Reply::NoSession);
    }
    if !response.ok() {
        return Outcome::Failed;
    }
    let Ok(json) = response.json() else {
        return Outcome::Failed;
    };
    let Ok(body) = JsFuture::from(json).await else {
        return Outcome::Failed;
    };
    let number = |k: &str| Reflect::get(&body, &k.into()).ok().and_then(|v| v.as_f64());
    let text = |k: &str| {
        Reflect::get(&body, &k.into())
            .ok()
            .and_then(|v| v.as_string())
    };
    let ms = |x: f64| if x > 0.0 { x as u64 } else { 0 };
    if let Request::Config = request {
        return match number("timeout_s") {
            Some(timeout_s) => Outcome::Config {
                reply: Reply::Config {
                    timeout_ms: ms(timeout_s * 1000.0),
                    heartbeat_interval_ms: number("heartbeat_interval_ms").map(ms),
                },
                logout_url: text("logout_url"),
                warn_before_ms: number("warn_before_s").map_or(0, |s| ms(s * 1000.0)),
            },
            None => Outcome::Failed,
        };
    }
    match text("state").as_deref() {
        Some("active") => Outcome::Active {
            reply: Reply::Active {
                remaining_ms: number("remaining_ms").map_or(0, ms),
            },
            timeout_ms: number("timeout_s").map_or(0, |s| ms(s * 1000.0)),
        },
        Some("exempt") => Outcome::Reply(Reply::Exempt),
        Some("expired") => Outcome::Expired {
            logout_url: text("logout_url"),
        },
        _ => Outcome::Failed,
    }
}

fn deliver(client: &Rc<Client>, outcome: Outcome) {
    let failed = matches!(outcome, Outcome::Failed);
    {
        let mut s = client.state.borrow_mut();
        if !s.running {
            return;
        }
        // One warning per outage: the client retries with backoff, and the
        // sidecar enforces the timeout whatever the page does.
        if failed && !s.warned {
            s.warned = true;
            let mut message = String::from("session timeout: no answer from ");
            message.push_str(&client.base);
            message.push_str("; retrying");
            web_sys::console::warn_1(&message.into());
        } else if !failed {
            s.warned = false;
        }
        match &outcome {
            Outcome::Config {
                logout_url: Some(url),
                ..
            } => s.logout_url = url.clone(),
            Outcome::Expired {
                logout_url: Some(url),
            } => s.expired_url = Some(url.clone()),
            _ => {}
        }
    }
    client.run(|core, now| match outcome {
        Outcome::Reply(reply) => core.handle_server_reply(now, reply),
        Outcome::Config {
            reply,
            warn_before_ms,
            ..
        } => {
            core.handle_server_reply(now, reply);
            core.handle_warn_before(now, warn_before_ms);
        }
        Outcome::Active { reply, timeout_ms } => {
            core.handle_timeout(timeout_ms);
            core.handle_server_reply(now, reply);
        }
        Outcome::Expired { .. } => core.handle_server_reply(now, Reply::Expired),
        Outcome::Failed => core.handle_network_error(now),
    });
}
