//! The link between the tabs of one browser: a `BroadcastChannel`, or
//! localStorage `storage` events where that is missing; and the browser-wide
//! heartbeat claim in localStorage. Messages are the core's `PeerMsg`,
//! written as short text that only this module reads back.

use std::rc::{Rc, Weak};

use gloo_events::EventListener;
use wasm_bindgen::JsCast;
use web_sys::{BroadcastChannel, MessageEvent, StorageEvent};

use super::{number_of, text_of, window, with, Client};
use crate::core::{Millis, PeerMsg};

const CHANNEL: &str = "session-timeout";
const MESSAGE_KEY: &str = "session-timeout.msg";
const CLAIM_KEY: &str = "session-timeout.heartbeat";

/// An open link; dropping it closes the channel and removes its listener.
pub(super) struct Tabs {
    channel: Option<BroadcastChannel>,
    _listener: EventListener,
}

impl Drop for Tabs {
    fn drop(&mut self) {
        if let Some(c) = &self.channel {
            c.close();
        }
    }
}

impl Tabs {
    /// Opens the link; each message another tab posts reaches the core.
    pub(super) fn open(client: Weak<Client>) -> Option<Tabs> {
        let deliver = move |text: Option<String>| {
            let Some(msg) = text.as_deref().and_then(decode) else {
                return;
            };
            with(&client, |c: &Rc<Client>| {
                c.run(|core, now| core.handle_peer_message(now, msg))
            });
        };
        match BroadcastChannel::new(CHANNEL) {
            Ok(channel) => {
                let listener = EventListener::new(&channel, "message", move |e| {
                    let data = e
                        .dyn_ref::<MessageEvent>()
                        .and_then(|m| m.data().as_string());
                    deliver(data);
                });
                Some(Tabs {
                    channel: Some(channel),
                    _listener: listener,
                })
            }
            Err(_) => {
                let listener = EventListener::new(&window(), "storage", move |e| {
                    let Some(e) = e.dyn_ref::<StorageEvent>() else {
                        return;
                    };
                    if e.key().as_deref() == Some(MESSAGE_KEY) {
                        // The nonce after the last space only makes each write new.
                        let text = e.new_value().map(|v| match v.rsplit_once(' ') {
                            Some((msg, _)) => String::from(msg),
                            None => v,
                        });
                        deliver(text);
                    }
                });
                Some(Tabs {
                    channel: None,
                    _listener: listener,
                })
            }
        }
    }

    pub(super) fn post(&self, msg: PeerMsg) {
        let text = encode(msg);
        match &self.channel {
            Some(c) => {
                let _ = c.post_message(&text.into());
            }
            None => {
                // Storage events fire on change only: the nonce makes it one.
                let mut text = text;
                text.push(' ');
                text.push_str(&text_of((js_sys::Math::random() * 1e9).floor()));
                if let Some(s) = storage() {
                    let _ = s.set_item(MESSAGE_KEY, &text);
                }
            }
        }
    }
}

/// The browser-wide heartbeat claim, if any (and if storage works).
pub(super) fn claim() -> Option<Millis> {
    let raw = storage()?.get_item(CLAIM_KEY).ok()??;
    number_of(&raw).map(Millis)
}

pub(super) fn store_claim(at: Millis) {
    if let Some(s) = storage() {
        let _ = s.set_item(CLAIM_KEY, &text_of(at.0 as f64));
    }
}

fn storage() -> Option<web_sys::Storage> {
    window().local_storage().ok().flatten()
}

fn encode(msg: PeerMsg) -> String {
    let (kind, times): (&str, [Option<Millis>; 2]) = match msg {
        PeerMsg::Activity { at } => ("activity", [Some(at), None]),
        PeerMsg::HeartbeatSent { at, activity_at } => ("heartbeat", [Some(at), Some(activity_at)]),
        PeerMsg::Alive { expiry_at } => ("alive", [Some(expiry_at), None]),
        PeerMsg::Checking { at } => ("checking", [Some(at), None]),
        PeerMsg::LoggedOut => ("logged-out", [None, None]),
    };
    let mut text = String::from(kind);
    for t in times.into_iter().flatten() {
        text.push(' ');
        text.push_str(&text_of(t.0 as f64));
    }
    text
}

fn decode(text: &str) -> Option<PeerMsg> {
    let mut parts = text.split(' ');
    let kind = parts.next()?;
    let mut time = || parts.next().and_then(number_of).map(Millis);
    Some(match kind {
        "activity" => PeerMsg::Activity { at: time()? },
        "heartbeat" => PeerMsg::HeartbeatSent {
            at: time()?,
            activity_at: time()?,
        },
        "alive" => PeerMsg::Alive { expiry_at: time()? },
        "checking" => PeerMsg::Checking { at: time()? },
        "logged-out" => PeerMsg::LoggedOut,
        _ => return None,
    })
}
