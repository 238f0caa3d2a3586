//! The web layer: wires the browser into the core and carries out its
//! actions. It decides nothing.
//!
//! One client per page (per wasm instance): `start(host)` attaches the
//! listeners and begins, `stop(host)` removes every listener and the timer,
//! so a stopped client leaves nothing behind. Which events are listened to
//! where, and when the timer fires, is decided here; the host only carries
//! it out (`Host::listen`, `Host::set_timer`) with listener functions it
//! makes and keeps, each of which calls `dispatch(host, code, ..)`. Server
//! replies and tab messages arrive the same way. Exported functions rather
//! than an exported struct or Rust closures keep wasm-bindgen's boxing,
//! closure machinery and reference counting out of the bundle.
//!
//! Nothing here allocates, so the release wasm has no allocator in it
//! (see `tiny.rs`). The client's state is plain data in a `static` behind a
//! lock (`CLIENT`). The JS objects (the host, `window`, `document`, the
//! listener functions, the timer's callback) stay on the JS side: the glue
//! passes the host, borrowed, to every export, and the host's methods take
//! and return numbers, booleans and static strings only. An owned JS value
//! never enters the wasm, so wasm-bindgen needs no slot allocator for it
//! (with `reference-types`, its externref table is managed by a `Vec`).
//! The lock is never held while the host is called, so a host call that
//! feeds the client again (the heartbeat claim does) finds it free; an
//! unexpected re-entrant call is dropped (`try_lock`) rather than waiting
//! forever or panicking.
//!
//! Input events are the hot path: a listener only stamps the time and calls
//! the core when that time reaches `input_interest` (no report pending yet,
//! or a deadline was missed). Everything else (requests, replies, timers,
//! tab messages) is rare.
//!
//! What is plain plumbing with strings or JSON (fetch and its JSON, the tab
//! channel and its localStorage fallback, the heartbeat claim, the logout
//! URL and `location.replace`) is done by the `Host` object of
//! `www/session_timeout_service.js`, through typed imports, so that no string
//! crosses into the wasm: every browser API used from Rust costs an import
//! and JS glue, and the wasm with its glue must stay under 10 KB gzip.

use spin::Mutex;
use wasm_bindgen::prelude::*;

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

/// Codes of `dispatch`: server replies (see `Host::request`), tab messages
/// (`Host::open`), browser events (`Host::listener`).
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
const PEER_CHECKING: u32 = 14;
const INPUT: u32 = 20;
const VISIBILITY: u32 = 21;
const WAKE: u32 = 22;
const TIMER: u32 = 23;
const LOGOUT_LINK: u32 = 24;

#[wasm_bindgen]
extern "C" {
    /// The page (listeners, timer, visibility), server access, tab
    /// channel, claim and navigation, provided by
    /// `www/session_timeout_service.js` (or by a test). The glue passes it
    /// to every exported function.
    pub type Host;

    /// `document.hidden`.
    #[wasm_bindgen(method, getter)]
    fn hidden(this: &Host) -> bool;

    /// `addEventListener(kind, f, { passive: true, capture })` (`add`) or
    /// `removeEventListener(kind, f, capture)` on `document` (`on_document`)
    /// or `window`, where `f` calls `dispatch(host, code, 0, 0)`; for
    /// `LOGOUT_LINK`, only for a click that follows a link to the ERP's
    /// logout URL. The same `f` for the same code every time, so that a
    /// removal finds what was added. Passive: the browser never waits for
    /// these listeners before scrolling.
    #[wasm_bindgen(method)]
    fn listen(this: &Host, add: bool, on_document: bool, kind: &str, code: u32, capture: bool);

    /// `setTimeout` calling `dispatch(host, TIMER, 0, 0)` after `delay_ms`;
    /// returns its handle.
    #[wasm_bindgen(method, js_name = setTimer)]
    fn set_timer(this: &Host, delay_ms: i32) -> i32;

    /// `clearTimeout(handle)`.
    #[wasm_bindgen(method, js_name = clearTimer)]
    fn clear_timer(this: &Host, handle: i32);

    /// Starts request `kind` (0 config, 1 check, 2 heartbeat with
    /// `idle_ms`, 3 logout) and later calls `dispatch(host, code, a, b)`
    /// once: 0 retryable failure, 1 active (a = remaining_ms), 2 exempt,
    /// 3 expired, 4 no session, 5 config (a = timeout_s,
    /// b = heartbeat_interval_ms or -1). A logout is never answered.
    #[wasm_bindgen(method)]
    fn request(this: &Host, kind: u32, idle_ms: f64);

    /// Opens the channel to the other tabs of this browser; each message
    /// `(code, a, b)` (codes 10..13) another tab posts goes to
    /// `dispatch(host, code, a, b)`.
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

    /// `Date.now()`. Declared here rather than taken from js-sys, whose
    /// other bindings would only lengthen the build.
    #[wasm_bindgen(js_namespace = Date)]
    fn now() -> f64;

    /// `Math.random()`.
    #[wasm_bindgen(js_namespace = Math)]
    fn random() -> f64;
}

/// The running client: plain data only, so that it can live in a `static`.
struct Client {
    core: Core,
    /// Time of the latest input event, written by the input listener.
    stamp: f64,
    /// The latest stamp already handed to the core.
    delivered: f64,
    /// `Core::input_interest`, cached for the input listener.
    interest: f64,
    /// The armed timer: (handle, deadline).
    timer: Option<(i32, u64)>,
    /// Listeners currently attached, for `debug` and the tests.
    listeners: u32,
}

/// `None` while no client runs. A spin lock is fine on the single thread of
/// a page: it is only ever tried (`try_lock`), never waited for.
static CLIENT: Mutex<Option<Client>> = Mutex::new(None);

/// Runs `f` on the running client; `None` if there is none (or it is in
/// use, which only an unexpected re-entrant call can meet).
fn with_client<R>(f: impl FnOnce(&mut Client) -> R) -> Option<R> {
    CLIENT.try_lock()?.as_mut().map(f)
}

// Plain comments rather than doc comments on exported items: wasm-bindgen
// copies those into the JS glue.

// Starts the client in this page: fetches the configuration through `host`
// and begins watching input. False (and nothing done) if a client already
// runs in this wasm instance: there is one per page.
#[wasm_bindgen]
pub fn start(host: &Host) -> bool {
    let client = Client {
        // The seed only spreads tabs apart in time; it need not be secret.
        core: Core::new(clock(), visibility(host), (random() * 1e15) as u64 | 1),
        stamp: 0.0,
        delivered: 0.0,
        interest: 0.0,
        timer: None,
        listeners: 0,
    };
    match CLIENT.try_lock() {
        Some(mut slot) if slot.is_none() => *slot = Some(client),
        _ => return false,
    }
    let attached = wire(host, true);
    with_client(|c| c.listeners = attached);
    host.open();
    pump(host);
    true
}

// Removes every listener and the timer and closes the tab channel. `host`
// is the one `start` was given. Idempotent.
#[wasm_bindgen]
pub fn stop(host: &Host) {
    let Some(client) = CLIENT.try_lock().and_then(|mut slot| slot.take()) else {
        return;
    };
    wire(host, false);
    if let Some((handle, _)) = client.timer {
        host.clear_timer(handle);
    }
    // A reply still in flight finds the client stopped: `dispatch` ignores
    // it.
    host.close();
}

// Entry point of every listener, reply and tab message (codes above).
#[wasm_bindgen]
pub fn dispatch(host: &Host, code: u32, a: f64, b: f64) {
    // The hot path: stamp, and involve the core only when it cares.
    if code == INPUT {
        let at = now();
        if with_client(|c| {
            c.stamp = at;
            at >= c.interest
        }) == Some(true)
        {
            run(host, |_, _| {});
        }
        return;
    }
    if code == TIMER {
        with_client(|c| c.timer = None);
    }
    // Asked before the core is taken: the lock is never held across a call.
    let shown = if code == VISIBILITY {
        visibility(host)
    } else {
        Visibility::Visible
    };
    let ms = |x: f64| Millis(if x >= 0.0 { x as u64 } else { 0 });
    run(host, |core, now| match code {
        ACTIVE => {
            // `b`: the timeout in force, in seconds (0 when not sent).
            core.handle_timeout(ms(b * 1000.0).0);
            core.handle_server_reply(
                now,
                Reply::Active {
                    remaining_ms: ms(a).0,
                },
            )
        }
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
        PEER_CHECKING => core.handle_peer_message(now, PeerMsg::Checking { at: ms(a) }),
        VISIBILITY => core.handle_visibility(now, shown),
        WAKE => core.handle_wake(now),
        TIMER => core.handle_timer(now),
        LOGOUT_LINK => core.handle_logout_link(now),
        FAILED | _ => core.handle_network_error(now),
    });
}

// Debug and test handle: 0 phase (-1 when stopped), 1 listeners attached,
// 2 timer deadline (0 if none). Numbers only: a string would cost its glue.
#[wasm_bindgen]
pub fn debug(what: u32) -> f64 {
    let client = CLIENT.try_lock();
    match (client.as_ref().and_then(|c| c.as_ref()), what) {
        (None, 0) => -1.0,
        (None, _) => 0.0,
        (Some(c), 0) => c.core.phase() as u32 as f64,
        (Some(c), 1) => c.listeners as f64,
        (Some(c), _) => c.timer.map_or(0.0, |(_, at)| at as f64),
    }
}

fn clock() -> Millis {
    Millis(now() as u64)
}

fn visibility(host: &Host) -> Visibility {
    if host.hidden() {
        Visibility::Hidden
    } else {
        Visibility::Visible
    }
}

/// Attaches (`add`) or detaches every listener; returns how many. One
/// table for both, so that `stop` removes exactly what `start` added.
fn wire(host: &Host, add: bool) -> u32 {
    const WINDOW: bool = false;
    const DOCUMENT: bool = true;
    let listen = |on, kind, code, capture| host.listen(add, on, kind, code, capture);
    for kind in INPUT_EVENTS {
        listen(WINDOW, kind, INPUT, true);
    }
    listen(DOCUMENT, "visibilitychange", VISIBILITY, false);
    // pageshow: restored from the back/forward cache; focus: back from
    // another window. Either may follow a long absence.
    listen(WINDOW, "pageshow", WAKE, false);
    listen(WINDOW, "focus", WAKE, false);
    listen(DOCUMENT, "click", LOGOUT_LINK, true);
    INPUT_EVENTS.len() as u32 + 4
}

/// Hands pending input to the core, runs `f`, then carries out what the
/// core asks for.
fn run(host: &Host, f: impl FnOnce(&mut Core, Millis)) {
    let now = clock();
    with_client(|c| {
        if c.stamp > c.delivered {
            c.delivered = c.stamp;
            c.core.handle_activity(Millis(c.stamp as u64));
        }
        f(&mut c.core, now);
    });
    pump(host);
}

/// Carries out the core's actions, then re-arms the timer. The client is
/// not locked while an action runs, so an action may feed the core again
/// (the heartbeat claim does).
fn pump(host: &Host) {
    while let Some(action) = with_client(|c| c.core.poll_action()).flatten() {
        carry_out(host, action);
    }
    let Some((deadline, current)) = with_client(|c| {
        c.interest = c.core.input_interest().0 as f64;
        (c.core.poll_deadline(), c.timer)
    }) else {
        return;
    };
    arm(host, deadline, current);
}

fn carry_out(host: &Host, action: Action) {
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
            let now = clock();
            with_client(|c| c.core.handle_claim(now, stored));
        }
        Action::StoreClaim(at) => host.store_claim(at.0 as f64),
        Action::Broadcast(msg) => {
            let (code, a, b) = match msg {
                PeerMsg::Activity { at } => (PEER_ACTIVITY, at, Millis(0)),
                PeerMsg::HeartbeatSent { at, activity_at } => (PEER_HEARTBEAT, at, activity_at),
                PeerMsg::Alive { expiry_at } => (PEER_ALIVE, expiry_at, Millis(0)),
                PeerMsg::LoggedOut => (PEER_LOGGED_OUT, Millis(0), Millis(0)),
                PeerMsg::Checking { at } => (PEER_CHECKING, at, Millis(0)),
            };
            host.post(code, a.0 as f64, b.0 as f64);
        }
        Action::GoToLogout => host.navigate(),
        // Not shown by this host (the notice needs the web-sys client).
        Action::ShowNotice { .. } | Action::HideNotice => {}
    }
}

/// Keeps exactly one timer, set for the core's deadline; `current` is the
/// one armed now.
fn arm(host: &Host, deadline: Option<Millis>, current: Option<(i32, u64)>) {
    if current.map(|(_, at)| at) == deadline.map(|d| d.0) {
        return;
    }
    if let Some((handle, _)) = current {
        host.clear_timer(handle);
    }
    // setTimeout takes a signed 32-bit delay; a longer one fires early,
    // which the core treats as "nothing due yet".
    let timer = deadline.map(|deadline| {
        let delay = deadline.since(clock()).min(i32::MAX as u64) as i32;
        (host.set_timer(delay), deadline.0)
    });
    // Stopped meanwhile (by an action): nothing may be left armed.
    if with_client(|c| c.timer = timer).is_none() {
        if let Some((handle, _)) = timer {
            host.clear_timer(handle);
        }
    }
}
