//! The web layer: wires the browser into the core and carries out its
//! actions. It decides nothing.
//!
//! `SessionTimeout` owns the listener functions, their registrations and
//! the timer; `stop()` (or dropping it) unregisters all of them, so a stopped
//! client leaves nothing behind. The listener functions are made by the host
//! (`Host::listener`): each calls `SessionTimeout::dispatch` with a code, and
//! server replies and tab messages arrive the same way. One exported method
//! instead of Rust closures keeps wasm-bindgen's closure machinery, and the
//! reference counting it would need, out of the bundle.
//!
//! Input events are the hot path: a listener only stamps the time into a
//! `Cell` and calls the core when that time reaches `input_interest` (no
//! report pending yet, or a deadline was missed). Everything else (requests,
//! replies, timers, tab messages) is rare.
//!
//! What is plain plumbing with strings or JSON (fetch and its JSON, the tab
//! channel and its localStorage fallback, the heartbeat claim, the logout
//! URL and `location.replace`) is done by the `Host` object of
//! `www/session_timeout_service.js`, through typed imports, so that no string
//! crosses into the wasm: every browser API used from Rust costs an import
//! and JS glue, and the wasm with its glue must stay under 10 KB gzip.

use ::core::cell::{Cell, RefCell};

use js_sys::{Date, Function, Math};
use wasm_bindgen::prelude::*;
use web_sys::{AddEventListenerOptions, Document, EventTarget, Window};

use crate::core::{Action, Core, Millis, PeerMsg, Reply, Visibility};

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

/// Codes of `SessionTimeout::dispatch`: server replies (see
/// `Host::request`), tab messages (`Host::open`), browser events
/// (`Host::listener`).
const FAILED: u32 = 0;
const ACTIVE: u32 = 1;
const EXEMPT: u32 = 2;
const EXPIRED: u32 = 3;
const NO_SESSION: u32 = 4;
const CONFIG: u32 = 5;
const PEER_ACTIVITY: u32 = 10;
const PEER_HEARTBEAT: u32 = 11;
const PEER_ALIVE: u32 = 12;
const PEER_LOGGED_OUT: u32 = 13;
const INPUT: u32 = 20;
const VISIBILITY: u32 = 21;
const WAKE: u32 = 22;
const TIMER: u32 = 23;
const LOGOUT_LINK: u32 = 24;

#[wasm_bindgen]
extern "C" {
    /// Server access, tab channel, claim and navigation, provided by
    /// `www/session_timeout_service.js` (or by a test).
    pub type Host;

    /// The page's `window`. Asked of the host rather than found through
    /// `web_sys::window()`, whose search of the global object costs four
    /// imports, and so that tests may pass their own.
    #[wasm_bindgen(method, getter)]
    fn window(this: &Host) -> Window;

    #[wasm_bindgen(method, getter)]
    fn document(this: &Host) -> Document;

    /// A function that calls `dispatch(code)` on this client when invoked
    /// as a listener or timer callback; for `LOGOUT_LINK`, only for a click
    /// that follows a link to the ERP's logout URL.
    #[wasm_bindgen(method)]
    fn listener(this: &Host, code: u32) -> Function;

    /// Starts request `kind` (0 config, 1 check, 2 heartbeat with
    /// `idle_ms`, 3 logout) and later calls `dispatch(code, a, b)` once:
    /// 0 retryable failure, 1 active (a = remaining_ms), 2 exempt,
    /// 3 expired, 4 no session, 5 config (a = timeout_s,
    /// b = heartbeat_interval_ms or -1). A logout is never answered.
    #[wasm_bindgen(method)]
    fn request(this: &Host, kind: u32, idle_ms: f64);

    /// Opens the channel to the other tabs of this browser; each message
    /// `(code, a, b)` (codes 10..13) another tab posts goes to
    /// `dispatch(code, a, b)`.
    #[wasm_bindgen(method)]
    fn open(this: &Host);

    /// Sends `(code, a, b)` to the other tabs.
    #[wasm_bindgen(method)]
    fn post(this: &Host, code: u32, a: f64, b: f64);

    /// Closes the channel opened by `open`.
    #[wasm_bindgen(method)]
    fn close(this: &Host);

    /// The browser-wide heartbeat claim (localStorage), or -1.
    #[wasm_bindgen(method)]
    fn claim(this: &Host) -> f64;

    /// Writes the browser-wide heartbeat claim.
    #[wasm_bindgen(method, js_name = storeClaim)]
    fn store_claim(this: &Host, at: f64);

    /// `location.replace(logout_url)`.
    #[wasm_bindgen(method)]
    fn navigate(this: &Host);
}

// The running client, returned by `start`. Plain comments rather than doc
// comments on exported items: wasm-bindgen copies those into the JS glue.
#[wasm_bindgen]
pub struct SessionTimeout {
    shared: Option<Shared>,
}

#[wasm_bindgen]
impl SessionTimeout {
    // Removes every listener and the timer and closes the tab channel.
    // Idempotent.
    pub fn stop(&mut self) {
        if let Some(shared) = self.shared.take() {
            shared.teardown();
        }
    }

    // Entry point of every listener, reply and tab message (codes above).
    pub fn dispatch(&self, code: u32, a: f64, b: f64) {
        if let Some(shared) = &self.shared {
            shared.dispatch(code, a, b);
        }
    }

    // Debug and test handle: 0 phase (-1 when stopped), 1 listeners
    // attached, 2 timer deadline (0 if none). Numbers only: a string would
    // cost its glue.
    pub fn debug(&self, what: u32) -> f64 {
        match (&self.shared, what) {
            (None, 0) => -1.0,
            (None, _) => 0.0,
            (Some(s), 0) => s
                .core
                .try_borrow()
                .map_or(-1.0, |c| c.phase() as u32 as f64),
            (Some(s), 1) => s.listeners.get() as f64,
            (Some(s), _) => s.timer.get().map_or(0.0, |(_, at)| at as f64),
        }
    }
}

impl Drop for SessionTimeout {
    fn drop(&mut self) {
        self.stop();
    }
}

// Starts the client in this page: fetches the configuration through `host`
// and begins watching input.
#[wasm_bindgen]
pub fn start(host: Host) -> SessionTimeout {
    let document = host.document();
    let shared = Shared {
        // The seed only spreads tabs apart in time; it need not be secret.
        core: RefCell::new(Core::new(
            clock(),
            visibility(&document),
            (Math::random() * 1e15) as u64 | 1,
        )),
        stamp: Cell::new(0.0),
        delivered: Cell::new(0.0),
        interest: Cell::new(0.0),
        timer: Cell::new(None),
        listeners: Cell::new(0),
        on_input: host.listener(INPUT),
        on_visibility: host.listener(VISIBILITY),
        on_wake: host.listener(WAKE),
        on_timer: host.listener(TIMER),
        on_logout_link: host.listener(LOGOUT_LINK),
        window: host.window(),
        document,
        host,
    };
    shared.wire(true);
    shared.host.open();
    shared.pump();
    SessionTimeout {
        shared: Some(shared),
    }
}

fn clock() -> Millis {
    Millis(Date::now() as u64)
}

fn visibility(document: &Document) -> Visibility {
    if document.hidden() {
        Visibility::Hidden
    } else {
        Visibility::Visible
    }
}

struct Shared {
    core: RefCell<Core>,
    /// Time of the latest input event, written by the input listener.
    stamp: Cell<f64>,
    /// The latest stamp already handed to the core.
    delivered: Cell<f64>,
    /// `Core::input_interest`, cached for the input listener.
    interest: Cell<f64>,
    /// The armed timer: (handle, deadline).
    timer: Cell<Option<(i32, u64)>>,
    /// Listeners currently attached, for `debug` and the tests.
    listeners: Cell<u32>,
    on_input: Function,
    on_visibility: Function,
    on_wake: Function,
    on_timer: Function,
    on_logout_link: Function,
    window: Window,
    document: Document,
    host: Host,
}

impl Shared {
    /// Attaches (`add`) or detaches every listener. One table for both, so
    /// that `stop()` removes exactly what `start()` added.
    fn wire(&self, add: bool) {
        let window: &EventTarget = self.window.as_ref();
        let document: &EventTarget = self.document.as_ref();
        for kind in INPUT_EVENTS {
            self.listen(add, window, kind, &self.on_input, true);
        }
        self.listen(
            add,
            document,
            "visibilitychange",
            &self.on_visibility,
            false,
        );
        // pageshow: restored from the back/forward cache; focus: back from
        // another window. Either may follow a long absence.
        self.listen(add, window, "pageshow", &self.on_wake, false);
        self.listen(add, window, "focus", &self.on_wake, false);
        self.listen(add, document, "click", &self.on_logout_link, true);
    }

    /// Passive listeners: the browser never waits for them before scrolling.
    fn listen(&self, add: bool, target: &EventTarget, kind: &str, f: &Function, capture: bool) {
        let done = if add {
            let options = AddEventListenerOptions::new();
            options.set_passive(true);
            options.set_capture(capture);
            target
                .add_event_listener_with_callback_and_add_event_listener_options(kind, f, &options)
        } else {
            target.remove_event_listener_with_callback_and_bool(kind, f, capture)
        };
        if done.is_ok() {
            let n = self.listeners.get();
            self.listeners
                .set(if add { n + 1 } else { n.saturating_sub(1) });
        }
    }

    fn teardown(&self) {
        self.wire(false);
        if let Some((handle, _)) = self.timer.take() {
            self.window.clear_timeout_with_handle(handle);
        }
        // A reply still in flight finds the client stopped: `dispatch`
        // ignores it.
        self.host.close();
    }

    fn dispatch(&self, code: u32, a: f64, b: f64) {
        // The hot path: stamp, and involve the core only when it cares.
        if code == INPUT {
            let now = Date::now();
            self.stamp.set(now);
            if now >= self.interest.get() {
                self.with_core(|_, _| {});
            }
            return;
        }
        if code == TIMER {
            self.timer.set(None);
        }
        let ms = |x: f64| Millis(if x >= 0.0 { x as u64 } else { 0 });
        let document = &self.document;
        self.with_core(|core, now| match code {
            ACTIVE => core.handle_server_reply(
                now,
                Reply::Active {
                    remaining_ms: ms(a).0,
                },
            ),
            EXEMPT => core.handle_server_reply(now, Reply::Exempt),
            EXPIRED => core.handle_server_reply(now, Reply::Expired),
            NO_SESSION => core.handle_server_reply(now, Reply::NoSession),
            CONFIG => core.handle_server_reply(
                now,
                Reply::Config {
                    timeout_ms: ms(a * 1000.0).0,
                    heartbeat_interval_ms: if b >= 0.0 { Some(b as u64) } else { None },
                },
            ),
            PEER_ACTIVITY => core.handle_peer_message(now, PeerMsg::Activity { at: ms(a) }),
            PEER_HEARTBEAT => core.handle_peer_message(
                now,
                PeerMsg::HeartbeatSent {
                    at: ms(a),
                    activity_at: ms(b),
                },
            ),
            PEER_ALIVE => core.handle_peer_message(now, PeerMsg::Alive { expiry_at: ms(a) }),
            PEER_LOGGED_OUT => core.handle_peer_message(now, PeerMsg::LoggedOut),
            VISIBILITY => core.handle_visibility(now, visibility(document)),
            WAKE => core.handle_wake(now),
            TIMER => core.handle_timer(now),
            LOGOUT_LINK => core.handle_logout_link(now),
            FAILED | _ => core.handle_network_error(now),
        });
    }

    /// Hands pending input to the core, runs `f`, then carries out what the
    /// core asks for. The core is never borrowed while an action runs, so
    /// `try_borrow_mut` cannot fail; it is used because it has no panic path
    /// (which would link `core::fmt`).
    fn with_core(&self, f: impl FnOnce(&mut Core, Millis)) {
        if let Ok(mut core) = self.core.try_borrow_mut() {
            let stamp = self.stamp.get();
            if stamp > self.delivered.get() {
                self.delivered.set(stamp);
                core.handle_activity(Millis(stamp as u64));
            }
            f(&mut core, clock());
        }
        self.pump();
    }

    /// Carries out the core's actions, then re-arms the timer. No borrow of
    /// the core is held while an action runs, so an action may feed the
    /// core again (the heartbeat claim does).
    fn pump(&self) {
        while let Some(action) = self
            .core
            .try_borrow_mut()
            .ok()
            .and_then(|mut core| core.poll_action())
        {
            self.carry_out(action);
        }
        let Ok(core) = self.core.try_borrow() else {
            return;
        };
        self.interest.set(core.input_interest().0 as f64);
        let deadline = core.poll_deadline();
        drop(core);
        self.arm(deadline);
    }

    fn carry_out(&self, action: Action) {
        let host = &self.host;
        match action {
            Action::FetchConfig => host.request(0, 0.0),
            Action::CheckNow => host.request(1, 0.0),
            Action::SendHeartbeat { idle_ms } => host.request(2, idle_ms as f64),
            Action::NotifyLogout => host.request(3, 0.0),
            Action::ClaimHeartbeat => {
                let stored = host.claim();
                let stored = if stored >= 0.0 {
                    Some(Millis(stored as u64))
                } else {
                    None
                };
                if let Ok(mut core) = self.core.try_borrow_mut() {
                    core.handle_claim(clock(), stored);
                }
            }
            Action::StoreClaim(at) => host.store_claim(at.0 as f64),
            Action::Broadcast(msg) => {
                let (code, a, b) = match msg {
                    PeerMsg::Activity { at } => (PEER_ACTIVITY, at, Millis(0)),
                    PeerMsg::HeartbeatSent { at, activity_at } => (PEER_HEARTBEAT, at, activity_at),
                    PeerMsg::Alive { expiry_at } => (PEER_ALIVE, expiry_at, Millis(0)),
                    PeerMsg::LoggedOut => (PEER_LOGGED_OUT, Millis(0), Millis(0)),
                };
                host.post(code, a.0 as f64, b.0 as f64);
            }
            Action::GoToLogout => host.navigate(),
        }
    }

    /// Keeps exactly one timer, set for the core's deadline.
    fn arm(&self, deadline: Option<Millis>) {
        let current = self.timer.get();
        if current.map(|(_, at)| at) == deadline.map(|d| d.0) {
            return;
        }
        if let Some((handle, _)) = current {
            self.window.clear_timeout_with_handle(handle);
        }
        self.timer.set(None);
        if let Some(deadline) = deadline {
            // setTimeout takes a signed 32-bit delay; a longer one fires
            // early, which the core treats as "nothing due yet".
            let delay = deadline.since(clock()).min(i32::MAX as u64) as i32;
            if let Ok(handle) = self
                .window
                .set_timeout_with_callback_and_timeout_and_arguments_0(&self.on_timer, delay)
            {
                self.timer.set(Some((handle, deadline.0)));
            }
        }
    }
}
