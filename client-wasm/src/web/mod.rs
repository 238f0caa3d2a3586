//! The web layer: wires the browser into the core and carries out its
//! actions. It decides nothing.
//!
//! `SessionTimeout` is the client of one page: `start()` attaches the
//! listeners (passive, as `gloo_events::EventListener` values), opens the
//! link to the other tabs and fetches the configuration; `stop()` drops
//! them all with the timer (`gloo_timers::callback::Timeout`) and the
//! notice, so a stopped client leaves nothing behind. Everything the
//! browser does for the client (`fetch`, the tab link, the heartbeat claim in
//! localStorage, the logout URL, `location.replace`, the notification) is
//! done here with `web-sys` and `js-sys`; the JS that loads the wasm
//! (`www/session_timeout_service.js`) only passes in the base URL and the web
//! client's notification service.
//!
//! Input events are the hot path: a listener only stamps the time and
//! involves the core when that time reaches `input_interest` (no report
//! pending yet, or a deadline was missed). Everything else (requests,
//! replies, the timer, tab messages) is rare.
//!
//! The state is behind a `RefCell` that is never borrowed across a call out
//! of this module's own code: actions are carried out after the borrow ends,
//! so an action that feeds the core again (the heartbeat claim does) finds
//! it free.

mod net;
mod notice;
mod tabs;

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use gloo_events::{EventListener, EventListenerOptions, EventListenerPhase};
use gloo_timers::callback::Timeout;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::core::{Action, Core, Millis, Phase, Visibility};

/// Events that mean a person is at the keyboard. Listened to on `window` in
/// the capture phase, so that a page calling `stopPropagation` cannot hide
/// them and non-bubbling `scroll` events of inner elements are seen too.
const INPUT_EVENTS: [&str; 7] = [
    "mousemove",
    "mousedown",
    "keydown",
    "wheel",
    "scroll",
    "touchstart",
    "pointerdown",
];

thread_local! {
    /// One client per page: a second `start` while one runs is refused.
    static RUNNING: Cell<bool> = const { Cell::new(false) };
}

/// The session-timeout client of this page.
#[wasm_bindgen]
pub struct SessionTimeout {
    client: Rc<Client>,
}

struct Client {
    /// Where the sidecar's routes are, e.g. `/session-timeout`.
    base: String,
    /// The web client's notification service (Odoo's `notification`), or
    /// `undefined`: then no notice is ever shown.
    notifications: JsValue,
    state: RefCell<State>,
}

struct State {
    core: Core,
    running: bool,
    /// Time of the latest input event, written by the input listeners.
    stamp: f64,
    /// The latest stamp already handed to the core.
    delivered: f64,
    /// `Core::input_interest`, cached for the input listeners.
    interest: f64,
    /// The one timer, with the deadline it was armed for.
    timer: Option<(Timeout, u64)>,
    listeners: Vec<EventListener>,
    tabs: Option<tabs::Tabs>,
    /// The ERP's logout URL (from the configuration) and the one an
    /// "expired" answer named, which wins.
    logout_url: String,
    expired_url: Option<String>,
    /// A warning was logged for the current outage of the sidecar.
    warned: bool,
    notice: Option<notice::Notice>,
}

#[wasm_bindgen]
impl SessionTimeout {
    /// A client for the sidecar at `base` (e.g. `/session-timeout`), with
    /// the web client's notification service for the opt-in notice (or
    /// `undefined`).
    #[wasm_bindgen(constructor)]
    pub fn new(base: String, notifications: JsValue) -> SessionTimeout {
        let now = clock();
        let seed = (js_sys::Math::random() * 1e15) as u64 | 1;
        SessionTimeout {
            client: Rc::new(Client {
                base: String::from(base.trim_end_matches('/')),
                notifications,
                state: RefCell::new(State {
                    // The seed only spreads tabs apart in time; it need not be secret.
                    core: Core::new(now, visibility(), seed),
                    running: false,
                    stamp: 0.0,
                    delivered: 0.0,
                    interest: 0.0,
                    timer: None,
                    listeners: Vec::new(),
                    tabs: None,
                    logout_url: "/web/session/logout".into(),
                    expired_url: None,
                    warned: false,
                    notice: None,
                }),
            }),
        }
    }

    /// Attaches the listeners and begins (fetching the configuration).
    /// False, and nothing done, if a client already runs in this page.
    pub fn start(&self) -> bool {
        if RUNNING.with(|r| r.replace(true)) || self.client.state.borrow().running {
            return false;
        }
        let listeners = self.client.listeners();
        let tabs = tabs::Tabs::open(Rc::downgrade(&self.client));
        {
            let mut s = self.client.state.borrow_mut();
            s.running = true;
            s.listeners = listeners;
            s.tabs = tabs;
        }
        self.client.pump();
        true
    }

    /// Removes every listener, the timer and the notice, and closes the tab
    /// link. Idempotent; a reply still in flight finds the client stopped.
    pub fn stop(&self) {
        let dropped = {
            let mut s = self.client.state.borrow_mut();
            if !s.running {
                return;
            }
            s.running = false;
            (
                std::mem::take(&mut s.listeners),
                s.timer.take(),
                s.tabs.take(),
                s.notice.take(),
            )
        };
        // Dropped outside the borrow: each drop calls into the browser.
        drop(dropped);
        RUNNING.with(|r| r.set(false));
    }

    /// For the tests and the curious: `{ phase, listeners, deadline, notice }`
    /// (`deadline`: when the timer fires, ms since the epoch, 0 if none).
    pub fn state(&self) -> JsValue {
        let s = self.client.state.borrow();
        let phase = match (s.running, s.core.phase()) {
            (false, _) => "stopped",
            (true, Phase::Starting) => "starting",
            (true, Phase::Running) => "running",
            (true, Phase::Exempt) => "exempt",
            (true, Phase::NoSession) => "no_session",
            (true, Phase::Ended) => "ended",
        };
        let out = js_sys::Object::new();
        let set = |k: &str, v: JsValue| {
            let _ = js_sys::Reflect::set(&out, &k.into(), &v);
        };
        set("phase", phase.into());
        set("listeners", (s.listeners.len() as u32).into());
        set(
            "deadline",
            s.timer.as_ref().map_or(0.0, |(_, at)| *at as f64).into(),
        );
        set(
            "notice",
            s.notice.as_ref().is_some_and(|n| n.is_open()).into(),
        );
        out.into()
    }
}

impl Client {
    /// Every listener of a running client, made once; dropping them removes
    /// them.
    fn listeners(self: &Rc<Self>) -> Vec<EventListener> {
        let window = window();
        let document = document();
        let passive = |phase| EventListenerOptions {
            phase,
            passive: true,
        };
        let mut out = Vec::with_capacity(INPUT_EVENTS.len() + 4);
        for kind in INPUT_EVENTS {
            let me = Rc::downgrade(self);
            out.push(EventListener::new_with_options(
                &window,
                kind,
                passive(EventListenerPhase::Capture),
                move |_| with(&me, |c| c.input()),
            ));
        }
        let me = Rc::downgrade(self);
        out.push(EventListener::new_with_options(
            &document,
            "visibilitychange",
            passive(EventListenerPhase::Bubble),
            move |_| {
                let shown = visibility();
                with(&me, |c| {
                    c.run(|core, now| core.handle_visibility(now, shown))
                })
            },
        ));
        // pageshow: restored from the back/forward cache; focus: back from
        // another window. Either may follow a long absence.
        for kind in ["pageshow", "focus"] {
            let me = Rc::downgrade(self);
            out.push(EventListener::new_with_options(
                &window,
                kind,
                passive(EventListenerPhase::Bubble),
                move |_| with(&me, |c| c.run(|core, now| core.handle_wake(now))),
            ));
        }
        let me = Rc::downgrade(self);
        out.push(EventListener::new_with_options(
            &document,
            "click",
            passive(EventListenerPhase::Capture),
            move |e| {
                with(&me, |c| {
                    if c.is_logout_link(e) {
                        c.run(|core, now| core.handle_logout_link(now))
                    }
                })
            },
        ));
        out
    }

    /// An input event: stamp it; involve the core only when it cares.
    fn input(self: &Rc<Self>) {
        let at = js_sys::Date::now();
        let wanted = {
            let mut s = self.state.borrow_mut();
            s.stamp = at;
            s.running && at >= s.interest
        };
        if wanted {
            self.run(|_, _| {});
        }
    }

    /// Whether a click followed a link to the ERP's logout URL.
    fn is_logout_link(&self, e: &web_sys::Event) -> bool {
        let Some(link) = e
            .target()
            .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
            .and_then(|el| el.closest("a[href]").ok().flatten())
            .and_then(|a| a.dyn_into::<web_sys::HtmlAnchorElement>().ok())
        else {
            return false;
        };
        let logout = self.state.borrow().logout_url.clone();
        let here = window().location().href().unwrap_or_default();
        web_sys::Url::new_with_base(&logout, &here)
            .is_ok_and(|url| url.pathname() == link.pathname())
    }

    /// Hands pending input to the core, runs `f`, then carries out what the
    /// core asks for.
    fn run(self: &Rc<Self>, f: impl FnOnce(&mut Core, Millis)) {
        let now = clock();
        {
            let mut s = self.state.borrow_mut();
            if !s.running {
                return;
            }
            if s.stamp > s.delivered {
                s.delivered = s.stamp;
                let at = Millis(s.stamp as u64);
                s.core.handle_activity(at);
            }
            f(&mut s.core, now);
        }
        self.pump();
    }

    /// Carries out the core's actions, then re-arms the timer.
    fn pump(self: &Rc<Self>) {
        loop {
            let action = {
                let mut s = self.state.borrow_mut();
                if !s.running {
                    return;
                }
                s.core.poll_action()
            };
            match action {
                Some(action) => self.carry_out(action),
                None => break,
            }
        }
        self.arm();
    }

    fn carry_out(self: &Rc<Self>, action: Action) {
        match action {
            Action::FetchConfig => net::send(self, net::Request::Config),
            Action::CheckNow => net::send(self, net::Request::Check),
            Action::SendHeartbeat { idle_ms } => {
                net::send(self, net::Request::Heartbeat { idle_ms })
            }
            Action::NotifyLogout => net::send(self, net::Request::Logout),
            Action::ClaimHeartbeat => {
                let stored = tabs::claim();
                let now = clock();
                self.state.borrow_mut().core.handle_claim(now, stored);
            }
            Action::StoreClaim(at) => tabs::store_claim(at),
            Action::Broadcast(msg) => {
                if let Some(tabs) = self.state.borrow().tabs.as_ref() {
                    tabs.post(msg);
                }
            }
            Action::GoToLogout => {
                let url = {
                    let s = self.state.borrow();
                    s.expired_url
                        .clone()
                        .unwrap_or_else(|| s.logout_url.clone())
                };
                let _ = window().location().replace(&url);
            }
            Action::ShowNotice { expiry_at } => {
                let notice = notice::Notice::show(self, expiry_at.since(clock()));
                let old = std::mem::replace(&mut self.state.borrow_mut().notice, notice);
                drop(old);
            }
            Action::HideNotice => {
                // Hidden, not dropped: this may run inside the button's callback.
                let notice = self.state.borrow_mut().notice.take();
                if let Some(mut notice) = notice {
                    notice.hide();
                    self.state.borrow_mut().notice = Some(notice);
                }
            }
        }
    }

    /// Keeps exactly one timer, set for the core's deadline.
    fn arm(self: &Rc<Self>) {
        let (deadline, current) = {
            let mut s = self.state.borrow_mut();
            s.interest = s.core.input_interest().0 as f64;
            (s.core.poll_deadline(), s.timer.as_ref().map(|(_, at)| *at))
        };
        if current == deadline.map(|d| d.0) {
            return;
        }
        // setTimeout takes a signed 32-bit delay; a longer one would fire at
        // once, so it is capped (the core treats an early call as "nothing
        // due yet").
        let timer = deadline.map(|deadline| {
            let delay = deadline.since(clock()).min(i32::MAX as u64) as u32;
            let me = Rc::downgrade(self);
            let timeout = Timeout::new(delay, move || {
                with(&me, |c| {
                    c.state.borrow_mut().timer = None;
                    c.run(|core, now| core.handle_timer(now));
                })
            });
            (timeout, deadline.0)
        });
        let old = std::mem::replace(&mut self.state.borrow_mut().timer, timer);
        drop(old);
    }
}

/// Runs `f` on the client if it still exists.
fn with(client: &Weak<Client>, f: impl FnOnce(&Rc<Client>)) {
    if let Some(c) = client.upgrade() {
        f(&c);
    }
}

fn clock() -> Millis {
    Millis(js_sys::Date::now() as u64)
}

fn visibility() -> Visibility {
    if document().hidden() {
        Visibility::Hidden
    } else {
        Visibility::Visible
    }
}

fn window() -> web_sys::Window {
    web_sys::window().expect_throw("the client runs in a page, which has a window")
}

fn document() -> web_sys::Document {
    window()
        .document()
        .expect_throw("the client runs in a page, which has a document")
}

/// A number as text, written by JS (`Number.prototype.toString`): no
/// formatting code of Rust's in the wasm.
fn text_of(x: f64) -> String {
    js_sys::Number::from(x)
        .to_string_with_radix(10)
        .map(String::from)
        .unwrap_or_default()
}

/// A whole number read from text by JS (`Number`), if it is one.
fn number_of(text: &str) -> Option<u64> {
    let n = js_sys::Number::from(JsValue::from_str(text)).value_of();
    (n.is_finite() && n >= 0.0).then_some(n as u64)
}
