//! The web layer in a real browser (headless Chromium, `scripts/test-wasm.sh`):
//! listeners and the timer are attached by `start` and all removed by `stop`,
//! input and visibility reach the core, the core's requests reach `fetch`
//! and the answers come back, the notice goes through the notification
//! service.
//!
//! The page around the client (`tests/web_page.js`) wraps
//! `EventTarget.prototype.addEventListener`/`removeEventListener` and
//! `setTimeout`/`clearTimeout` to count what is really attached, independently
//! of the client's own bookkeeping, and replaces `fetch` with one that records
//! each request and leaves it pending until the test answers it.
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::rc::Rc;

use session_timeout_client::SessionTimeout;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen(module = "/tests/web_page.js")]
extern "C" {
    fn fake_notifications() -> JsValue;
    fn live_listeners() -> u32;
    fn all_passive() -> bool;
    fn live_timers() -> u32;
    /// Requests made so far: "route" or "route:idle_s", joined by spaces.
    fn requests_made() -> String;
    fn forget_requests();
    fn unanswered() -> u32;
    fn answer(status: u16, body: &str);
    fn drop_pending();
    fn set_hidden(hidden: bool);
    /// Dispatches a DOM event of `kind` on window ("w") or document ("d").
    fn fire(on: &str, kind: &str);
    fn click_link(href: &str);
    fn open_notices() -> u32;
    fn last_notice() -> String;
    fn press_stay();
    fn tick() -> js_sys::Promise;
    fn field(obj: &JsValue, name: &str) -> JsValue;
    fn clear_storage();
    fn post_from_other_tab(text: &str);
}

const CONFIG: &str =
    r#"{"timeout_s":300,"heartbeat_interval_ms":60000,"logout_url":"/web/session/logout"}"#;
const ACTIVE: &str = r#"{"state":"active","timeout_s":300,"remaining_ms":300000}"#;

/// Lets the client handle what fetch answered.
async fn settle() {
    for _ in 0..3 {
        let _ = JsFuture::from(tick()).await;
    }
}

async fn reply(status: u16, body: &str) {
    answer(status, body);
    settle().await;
}

fn phase(c: &SessionTimeout) -> String {
    field(&c.state(), "phase").as_string().unwrap_or_default()
}

fn state_number(c: &SessionTimeout, name: &str) -> f64 {
    field(&c.state(), name).as_f64().unwrap_or(-1.0)
}

thread_local! {
    /// The latest client: a failed test cannot unwind to stop it, so the
    /// next test stops it first (there is one client per page).
    static LAST: RefCell<Option<Rc<SessionTimeout>>> = const { RefCell::new(None) };
}

/// A new client on a quiet page.
fn fresh(notifications: JsValue) -> Rc<SessionTimeout> {
    if let Some(old) = LAST.with(|l| l.borrow_mut().take()) {
        old.stop();
    }
    drop_pending();
    forget_requests();
    set_hidden(false);
    clear_storage();
    let c = Rc::new(SessionTimeout::new("/st".into(), notifications));
    LAST.with(|l| *l.borrow_mut() = Some(c.clone()));
    c
}

/// A started client, configured (timeout 300 s, interval 60 s) and told the
/// session is active, with the request log cleared of the start-up.
async fn running(config: &str) -> Rc<SessionTimeout> {
    let c = fresh(fake_notifications());
    assert!(c.start());
    assert_eq!(
        requests_made(),
        "config",
        "the first thing is fetching the config"
    );
    reply(200, config).await;
    assert_eq!(requests_made(), "config check", "then a check");
    reply(200, ACTIVE).await;
    forget_requests();
    c
}

#[wasm_bindgen_test]
async fn start_attaches_passive_listeners_and_stop_removes_every_one() {
    drop(fresh(JsValue::UNDEFINED));
    let before = live_listeners();
    let timers = live_timers();
    let c = running(CONFIG).await;
    // 7 input events, visibilitychange, pageshow, focus, click, the tab channel.
    assert_eq!(live_listeners() - before, 12);
    assert_eq!(state_number(&c, "listeners"), 11.0);
    assert!(all_passive());
    assert_eq!(live_timers() - timers, 1, "the expiry timer");
    assert!(state_number(&c, "deadline") > 0.0);

    c.stop();
    assert_eq!(live_listeners(), before, "stop() leaves no listener behind");
    assert_eq!(live_timers(), timers, "stop() clears the timer");
    assert_eq!(phase(&c), "stopped");
    assert_eq!(state_number(&c, "listeners"), 0.0);

    // Nothing reacts any more: no heartbeat for input, no check on focus.
    fire("w", "mousedown");
    fire("w", "focus");
    settle().await;
    assert_eq!(requests_made(), "");
    c.stop(); // idempotent
}

#[wasm_bindgen_test]
async fn one_client_per_page_and_a_stopped_one_can_start_again() {
    drop(fresh(JsValue::UNDEFINED));
    let before = live_listeners();
    let c = running(CONFIG).await;
    let other = SessionTimeout::new("/st".into(), JsValue::UNDEFINED);
    assert!(!other.start(), "a second start is refused");
    assert_eq!(requests_made(), "", "and does nothing");
    assert_eq!(live_listeners() - before, 12);

    c.stop();
    drop_pending();
    assert!(other.start(), "free again after stop");
    assert_eq!(requests_made(), "config", "a fresh start");
    assert_eq!(phase(&other), "starting");
    other.stop();
    assert_eq!(live_listeners(), before);
}

#[wasm_bindgen_test]
async fn input_on_a_visible_page_sends_one_heartbeat_then_waits_for_the_interval() {
    let c = running(CONFIG).await;
    fire("w", "mousemove");
    assert_eq!(requests_made(), "heartbeat:0", "heartbeat at once, idle 0");
    reply(200, ACTIVE).await;
    fire("w", "keydown");
    fire("w", "wheel");
    settle().await;
    assert_eq!(
        requests_made(),
        "heartbeat:0",
        "the next one waits for the interval"
    );
    assert!(
        state_number(&c, "deadline") > 0.0,
        "armed for the heartbeat slot"
    );
    c.stop();
}

#[wasm_bindgen_test]
async fn a_hidden_page_sends_no_heartbeat_and_checks_when_shown_again() {
    let c = running(CONFIG).await;
    set_hidden(true);
    fire("d", "visibilitychange");
    fire("w", "mousemove");
    fire("w", "scroll");
    assert_eq!(requests_made(), "", "hidden: input is only stamped");
    set_hidden(false);
    fire("d", "visibilitychange");
    // Hidden, even briefly: the session may have ended elsewhere, so showing
    // checks although the last answer is recent (the core's rule); once the
    // session is known alive, the input made while hidden is reported.
    assert_eq!(requests_made(), "check");
    reply(200, ACTIVE).await;
    assert_eq!(requests_made(), "check heartbeat:0");
    c.stop();
}

#[wasm_bindgen_test]
async fn the_logout_link_tells_the_server() {
    let c = running(CONFIG).await;
    click_link("/somewhere/else");
    assert_eq!(requests_made(), "");
    click_link("/web/session/logout");
    assert_eq!(requests_made(), "logout");
    assert_eq!(phase(&c), "ended");
    c.stop();
}

#[wasm_bindgen_test]
async fn failures_429_and_5xx_are_retried_not_taken_for_answers() {
    let c = running(CONFIG).await;
    fire("w", "mousemove");
    assert_eq!(requests_made(), "heartbeat:0");
    let deadline = state_number(&c, "deadline");
    reply(429, r#"{"error":"rate_limited"}"#).await;
    assert_eq!(phase(&c), "running", "a 429 ends nothing");
    let retry = state_number(&c, "deadline");
    assert!(retry > 0.0 && retry != deadline, "a retry is armed");
    c.stop();
    let c = running(CONFIG).await;
    fire("w", "focus"); // fresh answer: no check
    assert_eq!(requests_made(), "");
    c.stop();
    let c = running(CONFIG).await;
    set_hidden(true);
    fire("d", "visibilitychange");
    set_hidden(false);
    fire("d", "visibilitychange");
    reply(503, "{}").await;
    assert_eq!(phase(&c), "running", "a 503 ends nothing");
    c.stop();
}

#[wasm_bindgen_test]
async fn an_exempt_user_gets_no_timer_and_no_heartbeat() {
    let c = fresh(JsValue::UNDEFINED);
    let timers = live_timers();
    assert!(c.start());
    reply(200, CONFIG).await;
    reply(200, r#"{"state":"exempt"}"#).await;
    fire("w", "mousemove");
    assert_eq!(requests_made(), "config check");
    assert_eq!(live_timers(), timers);
    assert_eq!(phase(&c), "exempt");
    c.stop();
}

#[wasm_bindgen_test]
async fn the_notice_goes_through_the_notification_service_and_its_button_keeps_the_session() {
    // A 2 s notice before a 4 s timeout: the answer says 2.5 s are left.
    let config = r#"{"timeout_s":4,"heartbeat_interval_ms":1000,"warn_before_s":2,"logout_url":"/web/session/logout"}"#;
    let c = running(config).await;
    // `running` answered "300 s left"; this answer puts the notice due now.
    set_hidden(true);
    fire("d", "visibilitychange");
    set_hidden(false);
    fire("d", "visibilitychange");
    reply(
        200,
        r#"{"state":"active","timeout_s":4,"remaining_ms":1500}"#,
    )
    .await;
    assert_eq!(open_notices(), 1, "one notice");
    assert!(
        last_notice().contains("signed out in 2 seconds"),
        "{}",
        last_notice()
    );
    assert_eq!(field(&c.state(), "notice"), JsValue::TRUE);
    forget_requests();
    press_stay();
    assert_eq!(open_notices(), 0, "the button takes it down");
    assert_eq!(requests_made(), "heartbeat:0", "and counts as activity");
    reply(
        200,
        r#"{"state":"active","timeout_s":4,"remaining_ms":4000}"#,
    )
    .await;
    assert_eq!(open_notices(), 0);
    c.stop();
    assert_eq!(open_notices(), 0);
}

#[wasm_bindgen_test]
async fn other_tabs_messages_reach_the_core_and_are_not_failed_requests() {
    let c = running(CONFIG).await;
    let deadline = state_number(&c, "deadline");
    // Another tab checks at the deadline (its time is clamped to now): no
    // request of this tab's own, and no retry armed.
    post_from_other_tab("checking 1000000000000000");
    settle().await;
    assert_eq!(requests_made(), "");
    assert_eq!(
        state_number(&c, "deadline"),
        deadline,
        "the expiry timer stands"
    );
    // Another tab heard the session lives longer: this tab's timer moves.
    let later = js_sys::Date::now() + 600_000.0;
    post_from_other_tab(&format!("alive {}", later as u64));
    settle().await;
    assert!(
        state_number(&c, "deadline") > deadline,
        "the deadline follows"
    );
    // Another tab's heartbeat: this tab's input is reported, no heartbeat here.
    let now = js_sys::Date::now() as u64;
    post_from_other_tab(&format!("heartbeat {now} {now}"));
    settle().await;
    fire("w", "mousemove");
    assert_eq!(requests_made(), "", "the slot is taken by the other tab");
    // Garbage is ignored.
    post_from_other_tab("nonsense 1 2");
    settle().await;
    assert_eq!(phase(&c), "running");
    c.stop();
}
