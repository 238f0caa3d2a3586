//! Host tests of the core with a fake clock, a fake server that enforces the
//! timeout from reported activity (as the real sidecar does), and a fake
//! browser that routes messages between tabs and keeps the shared claim.

use super::*;

const T0: Millis = Millis(1_700_000_000_000);
const TIMEOUT: u64 = 300_000;
const INTERVAL: u64 = 60_000;
fn config(timeout_ms: u64, interval: Option<u64>) -> Reply {
    Reply::Config {
        timeout_ms,
        heartbeat_interval_ms: interval,
    }
}

fn drain(core: &mut Core) -> Vec<Action> {
    core::iter::from_fn(|| core.poll_action()).collect()
}

/// A core that has its configuration and a first "active" answer at T0.
fn started(visibility: Visibility) -> Core {
    let mut core = Core::new(T0, visibility, 0);
    assert_eq!(drain(&mut core), [Action::FetchConfig]);
    core.handle_server_reply(T0, config(TIMEOUT, Some(INTERVAL)));
    assert_eq!(drain(&mut core), [Action::CheckNow]);
    core.handle_server_reply(
        T0,
        Reply::Active {
            remaining_ms: TIMEOUT,
        },
    );
    assert_eq!(
        drain(&mut core),
        [Action::Broadcast(PeerMsg::Alive {
            expiry_at: T0.plus(TIMEOUT)
        })]
    );
    core
}

fn at(ms: u64) -> Millis {
    T0.plus(ms)
}

/// Input at `t` in a tab whose heartbeat slot is free: the heartbeat goes
/// out and the server answers at once.
fn report_input(core: &mut Core, t: Millis) {
    core.handle_activity(t);
    assert_eq!(drain(core), [Action::ClaimHeartbeat]);
    core.handle_claim(t, None);
    assert_eq!(
        drain(core),
        [
            Action::StoreClaim(t),
            Action::SendHeartbeat { idle_ms: 0 },
            Action::Broadcast(PeerMsg::HeartbeatSent {
                at: t,
                activity_at: t
            }),
        ]
    );
    core.handle_server_reply(
        t,
        Reply::Active {
            remaining_ms: TIMEOUT,
        },
    );
    assert_eq!(
        drain(core),
        [Action::Broadcast(PeerMsg::Alive {
            expiry_at: t.plus(TIMEOUT)
        })]
    );
}

// ------------------------------------------------------------ startup and config

#[test]
fn starts_by_fetching_config_then_checks_and_arms_the_expiry_timer() {
    let core = started(Visibility::Visible);
    assert_eq!(core.phase(), Phase::Running);
    assert_eq!(core.poll_deadline(), Some(at(TIMEOUT + EXPIRY_SLACK_MS)));
}

#[test]
fn default_interval_is_a_quarter_of_the_timeout_capped_at_a_minute() {
    for (timeout, expected) in [
        (300_000, 60_000),
        (120_000, 30_000),
        (3_600_000, 60_000),
        (2_000, 1_000),
    ] {
        let mut core = Core::new(T0, Visibility::Visible, 0);
        core.handle_server_reply(T0, config(timeout, None));
        assert_eq!(
            core.heartbeat_interval_ms(),
            Some(expected),
            "timeout {timeout}"
        );
    }
    let mut core = Core::new(T0, Visibility::Visible, 0);
    core.handle_server_reply(T0, config(300_000, Some(45_000)));
    assert_eq!(
        core.heartbeat_interval_ms(),
        Some(45_000),
        "the server's interval wins"
    );
}

#[test]
fn a_timeout_changed_on_the_server_changes_the_heartbeat_interval() {
    // An administrator lowers the timeout from 300 s to 10 s while the page is
    // open: with the old 60 s interval, an active user's heartbeats would come
    // after the session had ended under them.
    let mut core = started(Visibility::Visible);
    assert_eq!(core.heartbeat_interval_ms(), Some(INTERVAL));
    core.handle_timeout(10_000);
    assert_eq!(core.heartbeat_interval_ms(), Some(2_500));
    report_input(&mut core, at(1_000));
    core.handle_activity(at(2_000));
    assert_eq!(drain(&mut core), []);
    assert_eq!(
        core.poll_deadline(),
        Some(at(3_500)),
        "the next heartbeat slot is 2.5 s after the last"
    );
    // The same timeout again, or none named, changes nothing.
    core.handle_timeout(10_000);
    core.handle_timeout(0);
    assert_eq!(core.heartbeat_interval_ms(), Some(2_500));
    // Raised again: the interval grows back, capped at a minute.
    core.handle_timeout(3_600_000);
    assert_eq!(core.heartbeat_interval_ms(), Some(60_000));
}

#[test]
fn config_failure_is_retried_with_backoff() {
    let mut core = Core::new(T0, Visibility::Visible, 0);
    drain(&mut core);
    let mut now = T0;
    for delay in [1_000, 2_000, 4_000] {
        core.handle_network_error(now);
        assert_eq!(drain(&mut core), []);
        assert_eq!(core.poll_deadline(), Some(now.plus(delay)));
        now = now.plus(delay);
        core.handle_timer(now);
        assert_eq!(drain(&mut core), [Action::FetchConfig]);
    }
    core.handle_server_reply(now, config(TIMEOUT, None));
    assert_eq!(drain(&mut core), [Action::CheckNow]);
}

// ------------------------------------------------------------ a fake browser and server

/// The sidecar as the tests need it: it moves the session's last activity to
/// `now - idle_ms` on a heartbeat (never backwards) and enforces the timeout.
struct FakeServer {
    last_activity: Millis,
    timeout_ms: u64,
    heartbeats: Vec<(Millis, u64)>,
    checks: Vec<Millis>,
    logouts: usize,
    down: bool,
}

impl FakeServer {
    fn answer(&self, now: Millis) -> Reply {
        let expires = self.last_activity.plus(self.timeout_ms);
        if now >= expires || self.logouts > 0 {
            Reply::Expired
        } else {
            Reply::Active {
                remaining_ms: expires.since(now),
            }
        }
    }
}

/// Several tabs of one browser: routes broadcasts, keeps the localStorage
/// claim, fires timers at their deadline and answers requests at once.
struct Browser {
    now: Millis,
    tabs: Vec<Core>,
    /// Claims written to localStorage: (visible to other tabs from, writer, value).
    claims: Vec<(Millis, usize, Millis)>,
    /// How late messages and claims reach the other tabs (separate browser
    /// processes do not see each other's writes at once).
    lag_ms: u64,
    /// Messages on their way: (delivery time, receiving tab, message).
    in_transit: Vec<(Millis, usize, PeerMsg)>,
    /// How long the server takes to answer a check (0: at once). Ending a
    /// session is written to disk before the answer, which takes a while.
    check_lag_ms: u64,
    /// Check answers on their way: (delivery time, tab, answer; `None`: a
    /// network error).
    replies: Vec<(Millis, usize, Option<Reply>)>,
    /// Tabs closed by the user: they do nothing more, answers to them are lost.
    closed: Vec<usize>,
    server: FakeServer,
    /// The tab of every `GoToLogout`.
    navigations: Vec<usize>,
}

impl Browser {
    fn new(tabs: usize) -> Browser {
        Browser::with_seeds(&vec![0; tabs], 0)
    }

    fn with_seeds(seeds: &[u64], lag_ms: u64) -> Browser {
        let mut browser = Browser {
            now: T0,
            tabs: Vec::new(),
            claims: Vec::new(),
            lag_ms,
            in_transit: Vec::new(),
            check_lag_ms: 0,
            replies: Vec::new(),
            closed: Vec::new(),
            server: FakeServer {
                last_activity: T0,
                timeout_ms: TIMEOUT,
                heartbeats: Vec::new(),
                checks: Vec::new(),
                logouts: 0,
                down: false,
            },
            navigations: Vec::new(),
        };
        for &seed in seeds {
            browser.tabs.push(Core::new(T0, Visibility::Visible, seed));
        }
        browser.pump();
        browser
    }

    /// Carries out every action of every tab until none is left.
    fn pump(&mut self) {
        let now = self.now;
        loop {
            let mut progressed = false;
            for i in 0..self.tabs.len() {
                while let Some(action) = self.tabs[i].poll_action() {
                    progressed = true;
                    if !self.closed.contains(&i) {
                        self.carry_out(i, now, action);
                    }
                }
            }
            if !progressed {
                break;
            }
        }
    }

    fn carry_out(&mut self, i: usize, now: Millis, action: Action) {
        let server_answer = |server: &FakeServer| {
            if server.down {
                None
            } else {
                Some(server.answer(now))
            }
        };
        match action {
            Action::FetchConfig => {
                self.tabs[i].handle_server_reply(now, config(TIMEOUT, Some(INTERVAL)));
            }
            Action::CheckNow => {
                self.server.checks.push(now);
                let answer = server_answer(&self.server);
                if self.check_lag_ms > 0 {
                    self.replies.push((now.plus(self.check_lag_ms), i, answer));
                    return;
                }
                match answer {
                    Some(reply) => self.tabs[i].handle_server_reply(now, reply),
                    None => self.tabs[i].handle_network_error(now),
                }
            }
            Action::ClaimHeartbeat => {
                let claim = self
                    .claims
                    .iter()
                    .filter(|c| c.1 == i || c.0 <= now)
                    .map(|c| c.2)
                    .max();
                self.tabs[i].handle_claim(now, claim);
            }
            Action::StoreClaim(t) => self.claims.push((now.plus(self.lag_ms), i, t)),
            Action::SendHeartbeat { idle_ms } => {
                self.server.heartbeats.push((now, idle_ms));
                if self.server.down {
                    self.tabs[i].handle_network_error(now);
                    return;
                }
                let reported = Millis(now.0 - idle_ms);
                if self.server.answer(now) != Reply::Expired {
                    self.server.last_activity = self.server.last_activity.max(reported);
                }
                let reply = self.server.answer(now);
                self.tabs[i].handle_server_reply(now, reply);
            }
            Action::NotifyLogout => self.server.logouts += 1,
            Action::Broadcast(msg) => {
                for j in 0..self.tabs.len() {
                    if j == i {
                        continue;
                    }
                    if self.lag_ms == 0 {
                        self.tabs[j].handle_peer_message(now, msg);
                    } else {
                        self.in_transit.push((now.plus(self.lag_ms), j, msg));
                    }
                }
            }
            Action::GoToLogout => self.navigations.push(i),
            // The notice is off in these browsers (see the notice tests).
            Action::ShowNotice { .. } | Action::HideNotice => {}
        }
    }

    /// Lets time pass until `until`, firing each tab's timer at its
    /// deadline (a browser that is awake and not throttled).
    fn run_until(&mut self, until: Millis) {
        loop {
            if let Some(k) = (0..self.replies.len()).min_by_key(|&k| self.replies[k].0) {
                let (at, i, answer) = self.replies[k];
                let first = self.in_transit.iter().all(|m| m.0 >= at)
                    && self
                        .tabs
                        .iter()
                        .filter_map(|t| t.poll_deadline())
                        .all(|d| d >= at);
                if at <= until && first {
                    self.replies.remove(k);
                    self.now = self.now.max(at);
                    let now = self.now;
                    if !self.closed.contains(&i) {
                        match answer {
                            Some(reply) => self.tabs[i].handle_server_reply(now, reply),
                            None => self.tabs[i].handle_network_error(now),
                        }
                        self.pump();
                    }
                    continue;
                }
            }
            if let Some(k) = (0..self.in_transit.len()).min_by_key(|&k| self.in_transit[k].0) {
                let (at, j, msg) = self.in_transit[k];
                let timer_first = self
                    .tabs
                    .iter()
                    .filter_map(|t| t.poll_deadline())
                    .any(|d| d < at);
                if at <= until && !timer_first {
                    self.in_transit.remove(k);
                    self.now = self.now.max(at);
                    let now = self.now;
                    if !self.closed.contains(&j) {
                        self.tabs[j].handle_peer_message(now, msg);
                        self.pump();
                    }
                    continue;
                }
            }
            let next = self
                .tabs
                .iter()
                .enumerate()
                .filter(|(i, _)| !self.closed.contains(i))
                .filter_map(|(i, t)| t.poll_deadline().map(|d| (d, i)))
                .min();
            match next {
                Some((deadline, i)) if deadline <= until => {
                    self.now = self.now.max(deadline);
                    let now = self.now;
                    self.tabs[i].handle_timer(now);
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = until;
    }

    /// The user does something in tab `i` at `t`.
    fn input(&mut self, i: usize, t: Millis) {
        self.run_until(t);
        self.tabs[i].handle_activity(t);
        self.pump();
    }

    fn set_visibility(&mut self, i: usize, t: Millis, v: Visibility) {
        self.run_until(t);
        self.tabs[i].handle_visibility(t, v);
        self.pump();
    }

    fn heartbeat_times(&self) -> Vec<u64> {
        self.server
            .heartbeats
            .iter()
            .map(|(t, _)| t.since(T0))
            .collect()
    }
}

// ------------------------------------------------------------ heartbeats

#[test]
fn an_idle_visible_tab_sends_no_heartbeat_and_is_logged_out_at_the_timeout() {
    let mut b = Browser::new(1);
    b.run_until(at(TIMEOUT - 1));
    assert!(b.server.heartbeats.is_empty());
    assert_eq!(
        b.server.checks,
        [T0],
        "only the start-up check before the deadline"
    );
    assert!(b.navigations.is_empty());
    b.run_until(at(TIMEOUT + 1_000));
    assert_eq!(
        b.server.checks.len(),
        2,
        "one check when the deadline passed, no polling"
    );
    assert_eq!(b.navigations, [0]);
    assert_eq!(b.tabs[0].phase(), Phase::Ended);
    assert_eq!(b.tabs[0].poll_deadline(), None);
}

#[test]
fn first_input_sends_a_heartbeat_at_once_carrying_the_idle_time() {
    let mut b = Browser::new(1);
    b.input(0, at(10_000));
    assert_eq!(b.server.heartbeats, [(at(10_000), 0)]);
    // Input 5 s later waits for the next slot (plus the hand-over lead) and
    // reports its age then.
    b.input(0, at(15_000));
    b.run_until(at(70_099));
    assert_eq!(b.server.heartbeats.len(), 1);
    b.run_until(at(70_100));
    assert_eq!(b.server.heartbeats, [(at(10_000), 0), (at(70_100), 55_100)]);
}

#[test]
fn continuous_input_sends_at_most_one_heartbeat_per_interval_and_never_expires() {
    let mut b = Browser::new(1);
    // A user working for 20 minutes, an input every 700 ms.
    let mut t = 1_000;
    while t < 1_200_000 {
        b.input(0, at(t));
        t += 700;
    }
    let times = b.heartbeat_times();
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= INTERVAL,
            "heartbeats too close: {pair:?}"
        );
    }
    assert!(
        times.len() >= 19 && times.len() <= 21,
        "about one per minute: {}",
        times.len()
    );
    assert!(b.server.heartbeats.iter().all(|&(_, idle)| idle < 1_000));
    assert!(b.navigations.is_empty());
    assert_eq!(b.server.checks, [T0], "activity needs no checks");
}

#[test]
fn the_session_expires_one_timeout_after_the_last_reported_input() {
    let mut b = Browser::new(1);
    b.input(0, at(10_000));
    b.input(0, at(40_000)); // reported by the heartbeat at 70 s with idle 30 s
    b.run_until(at(40_000 + TIMEOUT - 1));
    assert!(
        b.navigations.is_empty(),
        "must not log out before the timeout"
    );
    b.run_until(at(40_000 + TIMEOUT + 1_000));
    assert_eq!(
        b.navigations.len(),
        1,
        "logged out within a second after the timeout"
    );
}

#[test]
fn a_hidden_tab_sends_no_heartbeat_and_checks_when_visible_again() {
    let mut b = Browser::new(1);
    b.set_visibility(0, at(1_000), Visibility::Hidden);
    b.input(0, at(2_000)); // e.g. a scroll event delivered while hidden
    b.run_until(at(200_000));
    assert!(b.server.heartbeats.is_empty());
    let checks = b.server.checks.len();
    b.set_visibility(0, at(200_000), Visibility::Visible);
    assert_eq!(
        b.server.checks.len(),
        checks + 1,
        "check at once when visible"
    );
    assert_eq!(*b.server.checks.last().unwrap(), at(200_000));
    // The pending input is reported now that the tab is visible.
    assert_eq!(b.server.heartbeats, [(at(200_000), 198_000)]);
}

#[test]
fn hiding_a_tab_hands_its_unreported_input_to_the_others() {
    let mut core = started(Visibility::Visible);
    report_input(&mut core, at(1_000));
    core.handle_activity(at(20_000));
    assert_eq!(
        drain(&mut core),
        [],
        "slot used: waits for the next interval"
    );
    core.handle_visibility(at(30_000), Visibility::Hidden);
    assert_eq!(
        drain(&mut core),
        [Action::Broadcast(PeerMsg::Activity { at: at(20_000) })]
    );
    assert_eq!(
        core.poll_deadline(),
        Some(at(1_000 + TIMEOUT + EXPIRY_SLACK_MS)),
        "only the expiry timer"
    );
}

// ------------------------------------------------------------ expiry timer

#[test]
fn when_another_tab_or_device_kept_the_session_alive_the_timer_is_re_armed() {
    let mut core = started(Visibility::Visible);
    let deadline = core.poll_deadline().unwrap();
    core.handle_timer(deadline);
    assert_eq!(
        drain(&mut core),
        [
            Action::Broadcast(PeerMsg::Checking { at: deadline }),
            Action::CheckNow
        ]
    );
    assert_eq!(
        core.poll_deadline(),
        None,
        "no timer while the check is in flight"
    );
    core.handle_server_reply(
        deadline,
        Reply::Active {
            remaining_ms: 120_000,
        },
    );
    assert_eq!(
        drain(&mut core),
        [Action::Broadcast(PeerMsg::Alive {
            expiry_at: deadline.plus(120_000)
        })]
    );
    assert_eq!(
        core.poll_deadline(),
        Some(deadline.plus(120_000 + EXPIRY_SLACK_MS))
    );
    assert_eq!(core.phase(), Phase::Running);
}

#[test]
fn a_server_answering_active_with_nothing_left_is_not_hammered() {
    let mut core = started(Visibility::Visible);
    let mut now = core.poll_deadline().unwrap();
    for _ in 0..5 {
        core.handle_timer(now);
        assert_eq!(
            drain(&mut core),
            [
                Action::Broadcast(PeerMsg::Checking { at: now }),
                Action::CheckNow
            ]
        );
        core.handle_server_reply(now, Reply::Active { remaining_ms: 0 });
        drain(&mut core);
        let next = core.poll_deadline().unwrap();
        assert!(next.since(now) >= MIN_CHECK_GAP_MS, "re-check too soon");
        now = next;
    }
}

#[test]
fn expiry_found_by_one_tab_takes_every_tab_to_the_logout_url() {
    let mut b = Browser::new(3);
    b.tabs[2].handle_visibility(at(0), Visibility::Hidden);
    b.pump();
    // Tab 0 finds the session expired first (its timer fires first).
    let deadline = b.tabs[0].poll_deadline().unwrap();
    b.now = deadline;
    b.tabs[0].handle_timer(deadline);
    b.pump();
    let mut tabs = b.navigations.clone();
    tabs.sort();
    assert_eq!(
        tabs,
        [0, 1, 2],
        "every tab, hidden ones too, at the same instant"
    );
}

#[test]
fn several_idle_tabs_make_one_check_at_the_deadline_not_one_each() {
    // Distinct seeds, as real tabs have: each waits its own part of
    // CHECK_SPREAD_MS, the first to check tells the others (messages between
    // tabs take 20 ms here).
    let mut b = Browser::with_seeds(&[7, 123, 250, 391, 55], 20);
    b.run_until(at(TIMEOUT - 1));
    let before = b.server.checks.len();
    b.run_until(at(TIMEOUT + EXPIRY_SLACK_MS + CHECK_SPREAD_MS + 1_000));
    assert_eq!(
        b.server.checks.len() - before,
        1,
        "one check for the whole browser"
    );
    let mut tabs = b.navigations.clone();
    tabs.sort();
    assert_eq!(
        tabs,
        [0, 1, 2, 3, 4],
        "and every tab went to the logout URL"
    );
}

#[test]
fn several_idle_tabs_make_one_check_even_when_the_server_answers_slowly() {
    // The server writes the ending to disk before it answers: 150 ms here,
    // longer than the spread between the tabs' own checks. The first tab to
    // check says so, and the others wait for its answer.
    let mut b = Browser::with_seeds(&[7, 123, 250, 391, 55], 5);
    b.check_lag_ms = 150;
    b.run_until(at(TIMEOUT - 1));
    let before = b.server.checks.len();
    b.run_until(at(TIMEOUT + EXPIRY_SLACK_MS + CHECK_SPREAD_MS + 1_000));
    assert_eq!(
        b.server.checks.len() - before,
        1,
        "one check for the whole browser"
    );
    assert_eq!(b.navigations.len(), 5, "every tab went to the logout URL");
}

#[test]
fn a_tab_closed_while_checking_does_not_leave_the_others_waiting() {
    let mut b = Browser::with_seeds(&[7, 123, 250], 5);
    b.check_lag_ms = 150;
    b.run_until(at(TIMEOUT - 1));
    let before = b.server.checks.len();
    // Run until the first tab's check is out, then close that tab.
    while b.server.checks.len() == before {
        let t = b.now.plus(10);
        b.run_until(t);
    }
    let first_check = *b.server.checks.last().unwrap();
    let (_, checker, _) = b.replies[0];
    b.closed.push(checker);
    b.run_until(first_check.plus(PEER_CHECK_WAIT_MS + CHECK_SPREAD_MS + 1_000));
    assert_eq!(
        b.server.checks.len() - before,
        2,
        "one more check, not one each"
    );
    assert!(
        b.server.checks[before + 1].since(first_check) >= PEER_CHECK_WAIT_MS,
        "the others waited for the answer first"
    );
    assert_eq!(
        b.navigations.len(),
        2,
        "the open tabs went to the logout URL"
    );
}

// ------------------------------------------------------------ wake after sleep

#[test]
fn a_timer_firing_late_checks_before_sending_a_heartbeat() {
    let mut core = started(Visibility::Visible);
    report_input(&mut core, at(1_000));
    core.handle_activity(at(2_000)); // pending; heartbeat due at 61 s
    assert_eq!(core.poll_deadline(), Some(at(61_000)));
    // The laptop slept: the timer fires two hours late.
    let woke = at(61_000 + 7_200_000);
    core.handle_timer(woke);
    assert_eq!(
        drain(&mut core),
        [Action::CheckNow],
        "check first, not a heartbeat"
    );
    core.handle_server_reply(woke, Reply::Expired);
    assert_eq!(
        drain(&mut core),
        [Action::Broadcast(PeerMsg::LoggedOut), Action::GoToLogout]
    );
}

#[test]
fn input_after_a_missed_deadline_checks_at_once() {
    let mut core = started(Visibility::Visible);
    let deadline = core.poll_deadline().unwrap();
    // No timer fired (suspended); the first thing after waking is a mouse move.
    assert_eq!(core.input_interest(), Millis(0));
    core.handle_activity(deadline.plus(3_600_000));
    assert_eq!(drain(&mut core), [Action::CheckNow]);
}

#[test]
fn input_with_a_report_pending_is_only_stamped_until_the_deadline() {
    let mut core = started(Visibility::Visible);
    report_input(&mut core, at(1_000));
    core.handle_activity(at(2_000));
    // The web layer may skip calling the core for input before this time.
    assert_eq!(core.input_interest(), at(61_000));
}

#[test]
fn focus_pageshow_and_visibility_check_at_once_but_not_twice_in_a_row() {
    let mut core = started(Visibility::Visible);
    core.handle_wake(at(100_000)); // focus
    assert_eq!(drain(&mut core), [Action::CheckNow]);
    core.handle_server_reply(
        at(100_050),
        Reply::Active {
            remaining_ms: 200_000,
        },
    );
    drain(&mut core);
    core.handle_visibility(at(100_060), Visibility::Visible); // already visible: nothing
    core.handle_wake(at(100_070)); // pageshow, answer 20 ms old: fresh
    assert_eq!(drain(&mut core), []);
    // Hidden, even briefly: the session may have ended elsewhere meanwhile,
    // so becoming visible checks although the last answer is recent.
    core.handle_visibility(at(100_080), Visibility::Hidden);
    core.handle_visibility(at(100_090), Visibility::Visible);
    assert_eq!(drain(&mut core), [Action::CheckNow]);
    core.handle_server_reply(
        at(100_100),
        Reply::Active {
            remaining_ms: 200_000,
        },
    );
    drain(&mut core);
    core.handle_wake(at(100_110)); // focus right after: fresh
    assert_eq!(drain(&mut core), []);
    core.handle_wake(at(100_100 + MIN_CHECK_GAP_MS));
    assert_eq!(drain(&mut core), [Action::CheckNow]);
}

#[test]
fn becoming_visible_checks_even_after_an_answer_received_while_hidden() {
    // The session can end elsewhere after that answer: found by the
    // end-to-end test that logs the session out while the tab is hidden.
    let mut core = started(Visibility::Visible);
    core.handle_visibility(at(1_000), Visibility::Hidden);
    core.handle_wake(at(5_000)); // e.g. a late timer: check
    assert_eq!(drain(&mut core), [Action::CheckNow]);
    core.handle_server_reply(
        at(5_010),
        Reply::Active {
            remaining_ms: 290_000,
        },
    );
    drain(&mut core);
    core.handle_visibility(at(5_500), Visibility::Visible);
    assert_eq!(drain(&mut core), [Action::CheckNow]);
}

// ------------------------------------------------------------ several tabs

#[test]
fn several_tabs_send_one_heartbeat_per_interval_for_the_whole_browser() {
    let mut b = Browser::new(3);
    let mut t = 1_000;
    while t < 600_000 {
        // Two visible windows, the user alternating between them.
        b.input((t / 10_000 % 2) as usize, at(t));
        t += 500;
    }
    let times = b.heartbeat_times();
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= INTERVAL,
            "two heartbeats in one interval: {pair:?}"
        );
    }
    assert!(times.len() >= 9, "activity was reported: {times:?}");
    assert!(b.navigations.is_empty());
}

/// Two busy windows whose writes reach each other 20 ms late: with the
/// same wait, both find the slot free at the same moment and both send.
fn busy_windows_heartbeats(seeds: [u64; 2]) -> Vec<u64> {
    let mut b = Browser::with_seeds(&seeds, 20);
    let mut t = 1_000;
    while t < 900_000 {
        b.input(0, at(t));
        b.input(1, at(t + 50));
        t += 100;
    }
    assert!(b.navigations.is_empty());
    b.heartbeat_times()
}

#[test]
fn tabs_draw_different_waits_so_that_a_lagging_claim_still_yields_one_heartbeat() {
    let times = busy_windows_heartbeats([0x9e37_79b9, 0x7f4a_7c15]);
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= INTERVAL,
            "two heartbeats in one interval: {pair:?}"
        );
    }
    assert!(times.len() >= 10, "activity was reported: {times:?}");
    // The same without the waits (seed 0) does send twice per slot: the
    // lag model is what makes the waits necessary.
    let control = busy_windows_heartbeats([0, 0]);
    assert!(
        control.windows(2).any(|p| p[1] - p[0] < 1_000),
        "control: {control:?}"
    );
}

#[test]
fn input_spread_over_several_windows_needs_one_heartbeat_once_the_user_stops() {
    // Five visible windows (side by side: none is hidden), the user working
    // in one after another, 20 s in each; messages take 20 ms between tabs.
    let mut b = Browser::with_seeds(&[7, 123, 250, 391, 55], 20);
    let mut t = 1_000;
    while t < 241_000 {
        b.input((t / 20_000 % 5) as usize, at(t));
        t += 250;
    }
    let last = at(t - 250);
    b.run_until(last.plus(TIMEOUT - 1));
    let after: Vec<u64> = b
        .server
        .heartbeats
        .iter()
        .filter(|(at, _)| *at > last)
        .map(|(at, _)| at.since(T0))
        .collect();
    assert_eq!(
        after.len(),
        1,
        "one report of the last input, not one per window: {after:?}"
    );
    assert_eq!(
        b.server.last_activity, last,
        "the newest input of any window was reported"
    );
    let times = b.heartbeat_times();
    assert!(
        times.windows(2).all(|p| p[1] - p[0] >= INTERVAL),
        "one heartbeat per interval: {times:?}"
    );
    assert!(b.navigations.is_empty(), "nobody logged out early");
    b.run_until(last.plus(TIMEOUT + EXPIRY_SLACK_MS + CHECK_SPREAD_MS + 1_000));
    assert_eq!(
        b.navigations.len(),
        5,
        "every window at the timeout after the last input"
    );
}

#[test]
fn retries_after_an_outage_are_spread_between_tabs() {
    let retries = |seed: u64| {
        let mut b = Browser::with_seeds(&[seed], 0);
        b.server.down = true;
        b.input(0, at(1_000));
        b.run_until(at(1_000 + 10 * 60_000));
        let mut attempts: Vec<u64> = b.heartbeat_times();
        attempts.extend(b.server.checks.iter().skip(1).map(|t| t.since(T0)));
        attempts.sort();
        attempts
    };
    let (a, b) = (retries(0x9e37_79b9), retries(0x7f4a_7c15));
    assert_ne!(a[1..], b[1..], "two tabs do not retry in step");
    for attempts in [a, b] {
        let gaps: Vec<u64> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
        let mut backoff = MIN_BACKOFF_MS;
        for &gap in &gaps {
            assert!(
                (backoff..=backoff + backoff / BACKOFF_JITTER_DIV).contains(&gap),
                "gap {gap} for a backoff of {backoff}: {gaps:?}"
            );
            backoff = (backoff * 2).min(MAX_BACKOFF_MS);
        }
        assert!(gaps.len() >= 10, "kept retrying: {gaps:?}");
    }
}

#[test]
fn the_extra_wait_stays_within_a_quarter_interval() {
    let mut core = Core::new(T0, Visibility::Visible, 12345);
    core.handle_server_reply(T0, config(TIMEOUT, Some(INTERVAL)));
    drain(&mut core);
    core.handle_server_reply(
        T0,
        Reply::Active {
            remaining_ms: TIMEOUT,
        },
    );
    let mut waits = Vec::new();
    let mut t = T0.plus(1_000);
    for _ in 0..20 {
        core.handle_activity(t);
        while let Some(action) = core.poll_action() {
            if action == Action::ClaimHeartbeat {
                core.handle_claim(t, None);
            }
        }
        core.handle_server_reply(
            t,
            Reply::Active {
                remaining_ms: TIMEOUT,
            },
        );
        drain(&mut core);
        // Input pending: at the slot the tab hands it over, then it waits.
        core.handle_activity(t.plus(1));
        let slot = core.poll_deadline().unwrap();
        assert_eq!(slot, t.plus(INTERVAL));
        core.handle_timer(slot);
        assert_eq!(
            drain(&mut core),
            [Action::Broadcast(PeerMsg::Activity { at: t.plus(1) })]
        );
        let due = core.poll_deadline().unwrap();
        waits.push(due.since(slot));
        t = due;
    }
    assert!(
        waits
            .iter()
            .all(|&w| (HANDOVER_LEAD_MS..=HANDOVER_LEAD_MS + INTERVAL / 4).contains(&w)),
        "{waits:?}"
    );
    waits.sort();
    waits.dedup();
    assert!(waits.len() > 15, "drawn anew for each slot: {waits:?}");
}

#[test]
fn activity_in_one_tab_keeps_every_tab_alive_without_checks() {
    let mut b = Browser::new(2);
    let mut t = 1_000;
    while t < 1_000_000 {
        b.input(0, at(t));
        t += 5_000;
    }
    assert!(b.navigations.is_empty());
    assert_eq!(
        b.server.checks.len(),
        2,
        "only the two start-up checks: Alive moved tab 1's timer"
    );
    let tab1_deadline = b.tabs[1].poll_deadline().unwrap();
    assert!(
        tab1_deadline > at(1_000_000),
        "tab 1's timer follows tab 0's heartbeats"
    );
}

#[test]
fn a_claim_taken_by_another_tab_defers_the_heartbeat() {
    let mut core = started(Visibility::Visible);
    core.handle_activity(at(10_000));
    assert_eq!(drain(&mut core), [Action::ClaimHeartbeat]);
    core.handle_claim(at(10_000), Some(at(9_000)));
    assert_eq!(drain(&mut core), [], "another tab sent 1 s ago");
    // The slot opens at 69 s: the input is handed over, and claimed after
    // the lead.
    assert_eq!(core.poll_deadline(), Some(at(69_000)));
    core.handle_timer(at(69_000));
    assert_eq!(
        drain(&mut core),
        [Action::Broadcast(PeerMsg::Activity { at: at(10_000) })]
    );
    assert_eq!(core.poll_deadline(), Some(at(69_100)));
    core.handle_timer(at(69_100));
    assert_eq!(drain(&mut core), [Action::ClaimHeartbeat]);
    core.handle_claim(at(69_100), Some(at(9_000)));
    assert_eq!(
        drain(&mut core),
        [
            Action::StoreClaim(at(69_100)),
            Action::SendHeartbeat { idle_ms: 59_100 },
            Action::Broadcast(PeerMsg::HeartbeatSent {
                at: at(69_100),
                activity_at: at(10_000)
            }),
        ]
    );
}

#[test]
fn a_claim_from_the_future_does_not_stall_heartbeats() {
    let mut core = started(Visibility::Visible);
    core.handle_activity(at(10_000));
    drain(&mut core);
    core.handle_claim(at(10_000), Some(at(10_000_000)));
    assert!(drain(&mut core).contains(&Action::SendHeartbeat { idle_ms: 0 }));
}

#[test]
fn input_in_a_tab_that_then_hides_is_reported_by_a_visible_tab() {
    let mut b = Browser::new(2);
    b.input(1, at(1_000)); // reported at once by tab 1
    b.input(1, at(30_000)); // waits for the slot at 61 s
    b.set_visibility(1, at(31_000), Visibility::Hidden);
    b.run_until(at(70_000));
    assert_eq!(
        b.server.heartbeats,
        [(at(1_000), 0), (at(61_100), 31_100)],
        "tab 0 reported tab 1's input"
    );
    assert_eq!(b.server.last_activity, at(30_000));
}

#[test]
fn the_users_own_logout_tells_the_server_and_every_tab() {
    let mut b = Browser::new(3);
    b.now = at(5_000);
    b.tabs[1].handle_logout_link(at(5_000));
    b.pump();
    assert_eq!(b.server.logouts, 1);
    // The clicked tab follows its link; the others are sent away.
    let mut tabs = b.navigations.clone();
    tabs.sort();
    assert_eq!(tabs, [0, 2]);
    assert!(b.tabs.iter().all(|t| t.phase() == Phase::Ended));
}

// ------------------------------------------------------------ network errors

#[test]
fn network_errors_back_off_exponentially_and_never_log_out() {
    let mut b = Browser::new(1);
    b.server.down = true;
    b.input(0, at(1_000));
    b.run_until(at(1_000 + 30 * 60_000)); // half an hour down, user idle
    assert!(
        b.navigations.is_empty(),
        "a network error alone never logs out"
    );
    let mut attempts: Vec<u64> = b.heartbeat_times();
    attempts.extend(b.server.checks.iter().skip(1).map(|t| t.since(T0)));
    attempts.sort();
    let gaps: Vec<u64> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(
        &gaps[..7],
        [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000]
    );
    assert!(
        gaps[7..].iter().all(|&g| g == 60_000),
        "capped at a minute: {gaps:?}"
    );
    // The server is back: the failed report goes out, the session survives.
    b.server.down = false;
    b.server.last_activity = at(1_000 + 30 * 60_000);
    b.run_until(at(1_000 + 31 * 60_000));
    assert!(b.navigations.is_empty());
    assert!(b.server.heartbeats.len() > 1);
}

#[test]
fn a_failed_heartbeat_is_resent_with_its_idle_time_at_the_retry() {
    let mut core = started(Visibility::Visible);
    core.handle_activity(at(10_000));
    core.handle_claim(at(10_000), None);
    drain(&mut core);
    core.handle_network_error(at(10_100));
    assert_eq!(core.poll_deadline(), Some(at(11_100)));
    core.handle_timer(at(11_100));
    assert_eq!(
        drain(&mut core),
        [
            Action::SendHeartbeat { idle_ms: 1_100 },
            Action::Broadcast(PeerMsg::HeartbeatSent {
                at: at(11_100),
                activity_at: at(10_000)
            }),
        ]
    );
    core.handle_server_reply(
        at(11_200),
        Reply::Active {
            remaining_ms: TIMEOUT,
        },
    );
    drain(&mut core);
    // Success resets the backoff.
    core.handle_wake(at(20_000));
    drain(&mut core);
    core.handle_network_error(at(20_000));
    assert_eq!(core.poll_deadline(), Some(at(21_000)));
}

// ------------------------------------------------------------ exempt and no session

#[test]
fn an_exempt_user_gets_no_heartbeats_and_no_timers() {
    for reply in [Reply::Exempt, Reply::NoSession] {
        let mut core = Core::new(T0, Visibility::Visible, 0);
        core.handle_server_reply(T0, config(TIMEOUT, None));
        drain(&mut core);
        core.handle_server_reply(T0, reply);
        assert_eq!(drain(&mut core), [], "{reply:?}");
        assert_eq!(core.poll_deadline(), None);
        assert_eq!(
            core.input_interest(),
            Millis(u64::MAX),
            "input is not even handed over"
        );
        core.handle_activity(at(1_000));
        core.handle_visibility(at(2_000), Visibility::Hidden);
        core.handle_visibility(at(3_000), Visibility::Visible);
        core.handle_wake(at(4_000));
        core.handle_timer(at(400_000));
        assert_eq!(drain(&mut core), [], "{reply:?}");
    }
}

// ------------------------------------------------------------ the opt-in notice

const WARN: u64 = 60_000;

/// A started core with the notice on, 60 s before the expiry.
fn warned() -> Core {
    let mut core = started(Visibility::Visible);
    core.handle_warn_before(T0, WARN);
    assert_eq!(drain(&mut core), [], "nothing to show yet");
    core
}

#[test]
fn the_notice_is_off_unless_configured() {
    let mut core = started(Visibility::Visible);
    assert_eq!(core.poll_deadline(), Some(at(TIMEOUT + EXPIRY_SLACK_MS)));
    core.handle_timer(at(TIMEOUT - WARN));
    assert_eq!(drain(&mut core), [], "no notice without warn_before");
    assert!(!core.notice_shown());
}

#[test]
fn the_notice_goes_up_warn_before_the_expiry_and_the_deadline_check_follows() {
    let mut core = warned();
    assert_eq!(
        core.poll_deadline(),
        Some(at(TIMEOUT - WARN)),
        "the timer wakes the page for the notice first"
    );
    core.handle_timer(at(TIMEOUT - WARN));
    assert_eq!(
        drain(&mut core),
        [Action::ShowNotice {
            expiry_at: at(TIMEOUT)
        }]
    );
    assert!(core.notice_shown());
    assert_eq!(core.poll_deadline(), Some(at(TIMEOUT + EXPIRY_SLACK_MS)));
    // Ignored: the deadline's check, the server says expired, the notice
    // comes down as the page leaves.
    core.handle_timer(at(TIMEOUT + EXPIRY_SLACK_MS));
    assert_eq!(
        drain(&mut core),
        [
            Action::HideNotice,
            Action::Broadcast(PeerMsg::Checking {
                at: at(TIMEOUT + EXPIRY_SLACK_MS)
            }),
            Action::CheckNow
        ]
    );
    core.handle_server_reply(at(TIMEOUT + EXPIRY_SLACK_MS), Reply::Expired);
    assert_eq!(
        drain(&mut core),
        [Action::Broadcast(PeerMsg::LoggedOut), Action::GoToLogout]
    );
}

#[test]
fn input_or_the_stay_button_takes_the_notice_down_and_reports_at_once() {
    let mut core = warned();
    core.handle_timer(at(TIMEOUT - WARN));
    drain(&mut core);
    // The button counts as activity (the web layer calls handle_activity).
    let t = at(TIMEOUT - WARN + 5_000);
    core.handle_activity(t);
    assert_eq!(
        drain(&mut core),
        [Action::HideNotice, Action::ClaimHeartbeat],
        "down, and the heartbeat slot (long free) is claimed at once"
    );
    core.handle_claim(t, None);
    drain(&mut core);
    core.handle_server_reply(
        t,
        Reply::Active {
            remaining_ms: TIMEOUT,
        },
    );
    drain(&mut core);
    assert!(!core.notice_shown());
    assert_eq!(
        core.poll_deadline(),
        Some(t.plus(TIMEOUT - WARN)),
        "the next notice is due before the new expiry"
    );
}

#[test]
fn no_notice_while_hidden_and_it_comes_down_when_the_tab_is_hidden() {
    let mut core = warned();
    core.handle_timer(at(TIMEOUT - WARN));
    drain(&mut core);
    core.handle_visibility(at(TIMEOUT - WARN + 1_000), Visibility::Hidden);
    assert_eq!(drain(&mut core), [Action::HideNotice]);
    let mut hidden = started(Visibility::Hidden);
    hidden.handle_warn_before(T0, WARN);
    hidden.handle_timer(at(TIMEOUT - WARN));
    assert_eq!(drain(&mut hidden), [], "a hidden tab shows nothing");
}

#[test]
fn another_tabs_report_takes_this_tabs_notice_down() {
    let mut core = warned();
    core.handle_timer(at(TIMEOUT - WARN));
    drain(&mut core);
    // The user answered the notice in another tab: its heartbeat is
    // announced, then the server's new expiry.
    let t = at(TIMEOUT - WARN + 2_000);
    core.handle_peer_message(
        t,
        PeerMsg::HeartbeatSent {
            at: t,
            activity_at: t,
        },
    );
    core.handle_peer_message(
        t,
        PeerMsg::Alive {
            expiry_at: t.plus(TIMEOUT),
        },
    );
    assert_eq!(drain(&mut core), [Action::HideNotice]);
    assert!(!core.notice_shown());
}

#[test]
fn pending_input_means_no_notice_the_report_will_move_the_expiry() {
    let mut core = warned();
    // Input the server does not know yet, in a slot that is not free.
    report_input(&mut core, at(1_000));
    core.handle_activity(at(2_000));
    drain(&mut core);
    core.handle_timer(at(TIMEOUT - WARN + 1_000));
    assert!(
        !drain(&mut core).contains(&Action::ShowNotice {
            expiry_at: at(1_000 + TIMEOUT)
        }),
        "no notice while a report is waiting"
    );
    assert!(!core.notice_shown());
}
