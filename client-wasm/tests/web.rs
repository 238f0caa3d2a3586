//! The web layer in a real browser (headless Chromium, `scripts/test-wasm.sh`):
//! listeners and the timer are attached by `start` and all removed by `stop`,
//! input and visibility reach the core, and the core's actions reach the host.
//!
//! The host here is a fake (`tests/web_host.js`) that records what the client
//! asks of it and, like the real one, attaches the listeners and arms the
//! timer it is told to; server replies are fed through `dispatch` as the
//! real host does. `EventTarget.prototype.addEventListener`/
//! `removeEventListener` and `setTimeout`/`clearTimeout` are wrapped to count
//! what is really attached, independently of the client's own bookkeeping.
#![cfg(target_arch = "wasm32")]

use session_timeout_client::{debug, dispatch, start, stop, Host};
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen(module = "/tests/web_host.js")]
extern "C" {
    /// A fresh fake host whose listeners and timer call `dispatch`; the
    /// browser wrappers are installed once.
    fn fake_host(dispatch: &JsValue) -> Host;
    /// The latest fake host, if any.
    fn last_host() -> Option<Host>;
    /// Listeners made by the fake host that are attached right now.
    fn live_listeners() -> u32;
    /// Timers with the fake host's callback that are pending right now.
    fn live_timers() -> u32;
    /// Passive flags of the attached listeners, all true expected.
    fn all_passive() -> bool;
    /// Requests the client made: "kind:idle" joined by spaces.
    fn requests(host: &Host) -> String;
    fn posts(host: &Host) -> String;
    fn navigations(host: &Host) -> u32;
    fn set_hidden(hidden: bool);
    /// Dispatches a DOM event of `kind` on window ("w") or document ("d").
    fn fire(on: &str, kind: &str);
    /// Clicks a fresh `<a href>` added to the body.
    fn click_link(href: &str);
}

const CONFIG: u32 = 5;
const ACTIVE: u32 = 1;

/// Stops the client a failed test may have left running (there is one per
/// page) and returns how many listeners are attached without it.
fn quiet_page() -> u32 {
    if let Some(host) = last_host() {
        stop(&host);
    }
    live_listeners()
}

/// A fake host for a new client, on a quiet page.
fn new_host() -> Host {
    quiet_page();
    set_hidden(false);
    another_host()
}

/// A fake host, whatever runs.
fn another_host() -> Host {
    // The client's export, as the JS side sees it.
    let dispatch = Closure::<dyn Fn(Host, u32, f64, f64)>::new(|host: Host, code, a, b| {
        dispatch(&host, code, a, b)
    });
    fake_host(&dispatch.into_js_value())
}

/// A started client, configured (timeout 300 s, interval 60 s) and told
/// the session is active, with the request log cleared of the start-up.
fn running() -> Host {
    let host = new_host();
    assert!(start(&host));
    assert_eq!(
        requests(&host),
        "0:0",
        "the first thing is fetching the config"
    );
    dispatch(&host, CONFIG, 300.0, 60_000.0);
    assert_eq!(requests(&host), "0:0 1:0", "then a check");
    dispatch(&host, ACTIVE, 300_000.0, 0.0);
    host
}

#[wasm_bindgen_test]
fn start_attaches_passive_listeners_and_stop_removes_every_one() {
    let before = quiet_page();
    let host = running();
    // 7 input events, visibilitychange, pageshow, focus, click.
    assert_eq!(live_listeners() - before, 11);
    assert_eq!(debug(1), 11.0);
    assert!(all_passive());
    assert_eq!(live_timers(), 1, "the expiry timer");
    assert!(debug(2) > 0.0);

    stop(&host);
    assert_eq!(live_listeners(), before, "stop() leaves no listener behind");
    assert_eq!(live_timers(), 0, "stop() clears the timer");
    assert_eq!(debug(0), -1.0);
    assert_eq!(debug(1), 0.0);

    // Nothing reacts any more: no heartbeat for input, no check on focus.
    fire("w", "mousedown");
    fire("w", "focus");
    dispatch(&host, ACTIVE, 1.0, 0.0); // a late reply is ignored
    assert_eq!(requests(&host), "0:0 1:0");
    stop(&host); // idempotent
}

#[wasm_bindgen_test]
fn one_client_per_page_and_a_stopped_one_can_start_again() {
    let before = quiet_page();
    let host = running();
    let other = another_host();
    assert!(!start(&other), "a second start is refused");
    assert_eq!(requests(&other), "", "and does nothing");
    assert_eq!(live_listeners() - before, 11);
    assert_eq!(live_timers(), 1);

    stop(&host);
    assert!(start(&other), "free again after stop");
    assert_eq!(requests(&other), "0:0", "a fresh start");
    assert_eq!(live_listeners() - before, 11);
    assert_eq!(debug(0), 0.0, "starting");
    stop(&other);
    assert_eq!(live_listeners(), before);
    assert_eq!(live_timers(), 0);
}

#[wasm_bindgen_test]
fn input_on_a_visible_page_sends_one_heartbeat_then_waits_for_the_interval() {
    let host = running();
    fire("w", "mousemove");
    assert_eq!(requests(&host), "0:0 1:0 2:0", "heartbeat at once, idle 0");
    assert!(
        posts(&host).contains("11,"),
        "other tabs are told: {}",
        posts(&host)
    );
    dispatch(&host, ACTIVE, 300_000.0, 0.0);
    fire("w", "keydown");
    fire("w", "wheel");
    assert_eq!(
        requests(&host),
        "0:0 1:0 2:0",
        "the next one waits for the interval"
    );
    assert_eq!(live_timers(), 1, "armed for the heartbeat slot");
    stop(&host);
}

#[wasm_bindgen_test]
fn a_hidden_page_sends_no_heartbeat_and_checks_when_shown_again() {
    let host = running();
    set_hidden(true);
    fire("d", "visibilitychange");
    fire("w", "mousemove");
    fire("w", "scroll");
    assert_eq!(requests(&host), "0:0 1:0", "hidden: input is only stamped");
    set_hidden(false);
    fire("d", "visibilitychange");
    // Hidden, even briefly: the session may have ended elsewhere, so showing
    // checks although the last answer is recent (the core's rule); once the
    // session is known alive, the input made while hidden is reported.
    assert_eq!(requests(&host), "0:0 1:0 1:0");
    dispatch(&host, ACTIVE, 300_000.0, 0.0);
    assert_eq!(requests(&host), "0:0 1:0 1:0 2:0");
    stop(&host);
}

#[wasm_bindgen_test]
fn the_logout_link_tells_the_server_and_the_other_tabs() {
    let host = running();
    click_link("/somewhere/else");
    assert_eq!(requests(&host), "0:0 1:0");
    click_link("/web/session/logout");
    assert_eq!(requests(&host), "0:0 1:0 3:0");
    assert!(
        posts(&host).contains("13,"),
        "LoggedOut broadcast: {}",
        posts(&host)
    );
    assert_eq!(debug(0), 4.0, "ended");
    stop(&host);
}

#[wasm_bindgen_test]
fn expiry_or_a_logout_in_another_tab_navigates_to_the_logout_url() {
    let host = running();
    dispatch(&host, 13, 0.0, 0.0); // another tab: logged out
    assert_eq!(navigations(&host), 1);
    assert_eq!(live_timers(), 0, "nothing left to wait for");
    stop(&host);

    let host = running();
    dispatch(&host, 22, 0.0, 0.0); // wake (fresh answer: no check yet)
    fire("w", "pageshow");
    assert_eq!(requests(&host), "0:0 1:0");
    dispatch(&host, 3, 0.0, 0.0); // the server says expired
    assert_eq!(navigations(&host), 1);
    assert!(posts(&host).contains("13,"));
    stop(&host);
}

#[wasm_bindgen_test]
fn another_tabs_check_is_a_peer_message_not_a_failed_request() {
    let host = running();
    let deadline = debug(2);
    // Code 14: another tab checks at the deadline (its time is clamped to
    // now). Mapped wrongly it would fall through to "request failed" and arm
    // a retry about a second away.
    dispatch(&host, 14, 1e15, 0.0);
    assert_eq!(requests(&host), "0:0 1:0", "no request of its own");
    assert_eq!(
        debug(2),
        deadline,
        "the expiry timer stands; no retry armed"
    );
    stop(&host);
}

#[wasm_bindgen_test]
fn an_exempt_user_gets_no_timer_and_no_heartbeat() {
    let host = new_host();
    assert!(start(&host));
    dispatch(&host, CONFIG, 300.0, -1.0);
    dispatch(&host, 2, 0.0, 0.0);
    fire("w", "mousemove");
    assert_eq!(requests(&host), "0:0 1:0");
    assert_eq!(live_timers(), 0);
    assert_eq!(debug(0), 2.0);
    stop(&host);
}
