//! The pure decision core of the client: a state machine with no clock, no
//! timers and no browser APIs.
//!
//! The web layer feeds it events (`handle_*`, each with the current wall-clock
//! time) and then drains what it must do (`poll_action`) and when it must be
//! woken next (`poll_deadline`). Everything the product promises about
//! heartbeats, expiry, sleeping laptops, several tabs and network failures is
//! decided here, so the host unit tests (`core/tests.rs`) cover it with a fake
//! clock, a fake server and a fake browser of several tabs.
//!
//! Vocabulary: "pending input" is user input newer than the activity the
//! server already knows about (`reported`); a heartbeat exists only to report
//! pending input, so an idle tab sends nothing.

/// Wall-clock milliseconds since the Unix epoch (`Date.now()` in the
/// browser). Wall clock rather than `performance.now()` because tabs share
/// timestamps with each other and because a jump of the wall clock is how a
/// sleeping laptop is noticed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Millis(pub u64);

impl Millis {
    /// The time `ms` milliseconds later, saturating instead of overflowing.
    pub fn plus(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// Whether the page is shown to the user (`document.hidden`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visibility {
    Visible,
    Hidden,
}

/// A server answer, already decoded from JSON by the glue. URLs stay in the
/// glue too: the core decides *that* the page goes to the logout URL, the
/// glue knows *which* one (the configured one, or the one an "expired"
/// answer names), so no string crosses into the wasm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `GET /api/v1/config`.
    Config {
        timeout_ms: u64,
        /// `None` when the server leaves the interval to the client.
        heartbeat_interval_ms: Option<u64>,
    },
    /// The session is alive and expires in `remaining_ms` unless used.
    Active { remaining_ms: u64 },
    /// Portal or public user: this product does not apply.
    Exempt,
    /// The session is over.
    Expired,
    /// 401 `missing_cookie`: there is no session to keep or end.
    NoSession,
}

/// A message between tabs of the same browser (BroadcastChannel, or
/// localStorage events where that is missing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerMsg {
    /// A tab hands over its unreported input, so that whichever tab reports
    /// next reports it too: when it goes hidden, and when the browser's next
    /// heartbeat slot opens (`HANDOVER_LEAD_MS` before any tab may claim it).
    Activity { at: Millis },
    /// A tab sent a heartbeat at `at` reporting input at `activity_at`: the
    /// browser's heartbeat slot for this interval is used.
    HeartbeatSent { at: Millis, activity_at: Millis },
    /// The server said the session lives until `expiry_at`.
    Alive { expiry_at: Millis },
    /// A tab asked the server at `at` whether the session outlived its
    /// deadline: the others wait `PEER_CHECK_WAIT_MS` for the answer (which
    /// comes as `Alive` or `LoggedOut`) instead of asking too. Ending a
    /// session is written to disk before the server answers, so the answer
    /// can take longer than the spread between the tabs' own checks.
    Checking { at: Millis },
    /// The session ended (expired or the user logged out): every tab leaves.
    LoggedOut,
}

/// What the web layer must do, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `GET {base}/api/v1/config`, answered by `handle_server_reply` or
    /// `handle_network_error`.
    FetchConfig,
    /// `GET {base}/api/v1/check` (read-only), answered likewise.
    CheckNow,
    /// Read the browser-wide heartbeat claim (localStorage) and hand it to
    /// `handle_claim` straight away.
    ClaimHeartbeat,
    /// Write `at` as the browser-wide heartbeat claim.
    StoreClaim(Millis),
    /// `POST {base}/api/v1/heartbeat` with `{"idle_ms": idle_ms}`.
    SendHeartbeat { idle_ms: u64 },
    /// `POST {base}/api/v1/logout` with keepalive; no answer expected.
    NotifyLogout,
    /// Tell the other tabs.
    Broadcast(PeerMsg),
    /// `location.replace(logout_url)`: the session is over.
    GoToLogout,
    /// Show the opt-in notice (non-modal, with a "Stay signed in" button
    /// that the web layer feeds back as `handle_activity`): the session ends
    /// at `expiry_at` unless the user does something.
    ShowNotice { expiry_at: Millis },
    /// Take the notice down: input, another tab's report, hidden, or over.
    HideNotice,
}

/// Where the core is in its life. The discriminants are what the web
/// layer's debug handle reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the server's configuration.
    Starting = 0,
    Running,
    /// Portal/public user: inert until the page is reloaded. Nothing can turn
    /// such a session into an internal one without a new login, which loads a
    /// new page, so re-checking would only cost requests.
    Exempt,
    /// No session cookie: inert, for the same reason.
    NoSession,
    /// Logged out or expired: the page is leaving; nothing more to do.
    Ended,
}

/// First retry delay after a network error; doubles up to `MAX_BACKOFF_MS`.
pub const MIN_BACKOFF_MS: u64 = 1_000;
pub const MAX_BACKOFF_MS: u64 = 60_000;
/// Each retry waits up to this fraction (1/n) of the backoff longer, drawn
/// per tab, so that clients cut off by one outage do not all come back in
/// the same millisecond.
pub const BACKOFF_JITTER_DIV: u64 = 2;
/// When the browser's heartbeat slot opens, every visible tab with input
/// not yet reported hands it to the others; no tab claims the slot before
/// this much later. So the one heartbeat of the slot reports the input of
/// every tab, and input spread over several windows needs one heartbeat,
/// not one per window, once the user stops.
pub const HANDOVER_LEAD_MS: u64 = 100;
/// Cap of the default heartbeat interval (a quarter of the timeout).
pub const MAX_DEFAULT_INTERVAL_MS: u64 = 60_000;
/// The check after the expiry deadline waits this long so that the server,
/// whose clock may be a little behind, already sees the session as expired.
pub const EXPIRY_SLACK_MS: u64 = 500;
/// Each tab waits a fixed random part of this longer before its check at
/// the deadline, so that with several tabs one checks first and tells the
/// others (which then go to the logout without a request of their own).
pub const CHECK_SPREAD_MS: u64 = 400;
/// How long a tab waits for the answer to another tab's check at the
/// deadline before it checks itself (the other tab may have been closed).
pub const PEER_CHECK_WAIT_MS: u64 = 2_000;
/// A server answer younger than this is fresh enough: a wake-up (focus,
/// visibility, pageshow, all of which often fire together) does not check
/// again, so that flipping between tabs cannot hammer the server.
pub const MIN_CHECK_GAP_MS: u64 = 2_000;
/// A timer that fires this much later than asked means the page was asleep
/// (laptop suspended, background tab throttled): check before anything else.
pub const WAKE_LATENESS_MS: u64 = 3_000;

/// A FIFO of actions with a fixed capacity: the web layer drains it after
/// every call, and one call queues at most four actions, so it never fills.
/// A fixed array rather than a `VecDeque` keeps growth code out of the wasm.
#[derive(Debug, Default)]
struct Actions {
    slots: [Option<Action>; 8],
    head: usize,
    len: usize,
}

impl Actions {
    fn push_back(&mut self, action: Action) {
        // Full cannot happen (see above); dropping beats panicking there.
        if self.len < self.slots.len() {
            self.slots[(self.head + self.len) % 8] = Some(action);
            self.len += 1;
        }
    }

    fn pop_front(&mut self) -> Option<Action> {
        if self.len == 0 {
            return None;
        }
        let action = self.slots[self.head % 8].take();
        self.head = (self.head + 1) % 8;
        self.len -= 1;
        action
    }
}

/// Which request is waiting for an answer. One at a time, so a slow server
/// never sees a pile-up from one tab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Request {
    Config,
    Check,
    Heartbeat { activity_at: Millis },
}

/// The heartbeat interval for a timeout when the server names none: a
/// quarter of it, 1 s to `MAX_DEFAULT_INTERVAL_MS` (the server's own rule).
/// min/max rather than clamp: clamp's "min > max" panic would link
/// core::fmt into the wasm.
#[allow(clippy::manual_clamp)]
fn default_interval_ms(timeout_ms: u64) -> u64 {
    (timeout_ms / 4).min(MAX_DEFAULT_INTERVAL_MS).max(1_000)
}

/// The client state machine. See the module documentation.
#[derive(Debug)]
pub struct Core {
    phase: Phase,
    /// The heartbeat interval; `None` until the configuration arrives.
    interval_ms: Option<u64>,
    /// The idle timeout the server last named.
    timeout_ms: u64,
    visible: bool,
    /// Latest input seen in this tab.
    own_input: Millis,
    /// Latest input of this tab handed to the other tabs.
    handed_over: Millis,
    /// Latest input seen in this tab or handed over by another one.
    last_input: Millis,
    /// Latest input the server has been told about (by any tab).
    reported: Millis,
    /// When the browser's last heartbeat was sent (by any tab).
    last_heartbeat: Option<Millis>,
    /// This tab's extra wait after `last_heartbeat + interval`, drawn anew
    /// for each slot from `rng`. Busy tabs would otherwise all find the slot
    /// free at the same millisecond, and the localStorage claim is not
    /// synchronous between browser processes; with different waits, the
    /// first tab's "heartbeat sent" message reaches the others in time.
    slot_jitter_ms: u64,
    /// xorshift64 state, seeded by the web layer (0: no jitter, for tests).
    rng: u64,
    /// This tab's part of `CHECK_SPREAD_MS` (0 with seed 0, as in tests).
    check_jitter_ms: u64,
    /// When the server says the session expires unless used.
    expiry_at: Option<Millis>,
    /// When this tab last had a successful answer.
    last_reply: Option<Millis>,
    /// When another tab last started a check at the deadline.
    peer_check_at: Option<Millis>,
    in_flight: Option<Request>,
    /// A check is wanted as soon as allowed (wake-up, start, failed check).
    check_wanted: bool,
    /// The last heartbeat failed: resend it at the retry time without
    /// claiming a new slot (it is the same report).
    heartbeat_failed: bool,
    retry_at: Option<Millis>,
    backoff_ms: u64,
    /// The latest time the core was called with: a deadline already past
    /// then was due at that moment, which is when its timer should fire.
    seen: Millis,
    /// How long before the expiry the notice is shown; 0: never (default).
    warn_before_ms: u64,
    /// The notice is up in this tab.
    notice: bool,
    actions: Actions,
}

impl Core {
    /// A core for a page loaded at `now`; its first action fetches the
    /// configuration. `seed` feeds the per-tab heartbeat jitter (see
    /// `slot_jitter_ms`); any value but 0 will do, 0 turns the jitter off.
    pub fn new(now: Millis, visibility: Visibility, seed: u64) -> Core {
        let mut core = Core {
            phase: Phase::Starting,
            interval_ms: None,
            timeout_ms: 0,
            visible: visibility == Visibility::Visible,
            own_input: Millis(0),
            handed_over: Millis(0),
            last_input: Millis(0),
            reported: Millis(0),
            last_heartbeat: None,
            slot_jitter_ms: 0,
            rng: seed,
            check_jitter_ms: seed % CHECK_SPREAD_MS,
            expiry_at: None,
            last_reply: None,
            peer_check_at: None,
            in_flight: None,
            check_wanted: true,
            heartbeat_failed: false,
            retry_at: None,
            backoff_ms: MIN_BACKOFF_MS,
            seen: now,
            warn_before_ms: 0,
            notice: false,
            actions: Actions::default(),
        };
        core.step(now);
        core
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The latest input known to this tab (its own or a peer's).
    pub fn last_input(&self) -> Millis {
        self.last_input
    }

    /// The idle timeout an "active" answer named. An administrator can
    /// change it while pages are open; the heartbeat interval follows a
    /// change, or an active user's heartbeats would come too rarely for a
    /// shorter timeout and the server would end the session under them.
    pub fn handle_timeout(&mut self, timeout_ms: u64) {
        if self.interval_ms.is_none() || timeout_ms == 0 || timeout_ms == self.timeout_ms {
            return;
        }
        self.timeout_ms = timeout_ms;
        self.interval_ms = Some(default_interval_ms(timeout_ms));
    }

    /// The opt-in notice: shown `warn_before_ms` before the expiry in the
    /// visible tab while nothing is waiting to be reported (0: off). Set
    /// from the configuration, and again when an administrator changes it.
    pub fn handle_warn_before(&mut self, now: Millis, warn_before_ms: u64) {
        self.warn_before_ms = warn_before_ms;
        self.step(now);
    }

    /// Whether the notice is up in this tab.
    pub fn notice_shown(&self) -> bool {
        self.notice
    }

    /// The heartbeat interval in force (`None` before the configuration).
    pub fn heartbeat_interval_ms(&self) -> Option<u64> {
        self.interval_ms
    }

    /// User input in this tab at `now`.
    pub fn handle_activity(&mut self, now: Millis) {
        // Input after a deadline that was missed means the page slept. Judged
        // before the input is counted: the input itself may make a long-due
        // heartbeat wanted, which is not lateness.
        self.note_lateness(now);
        self.own_input = self.own_input.max(now);
        self.last_input = self.last_input.max(now);
        self.step(now);
    }

    pub fn handle_visibility(&mut self, now: Millis, visibility: Visibility) {
        if !self.is_live() {
            return;
        }
        let was_visible = self.visible;
        self.visible = visibility == Visibility::Visible;
        if self.visible && !was_visible {
            // The session may have ended elsewhere (another browser, an
            // administrator, another tab's logout that this one missed)
            // while the tab was hidden, even just after the last answer:
            // always check. Tab switches come at human speed, and a check
            // already in flight is not doubled.
            self.check_wanted = true;
        } else if !self.visible && was_visible && self.own_input > self.reported {
            // This tab can no longer send heartbeats: let a visible one
            // report what the user did here.
            self.hand_over();
        }
        self.step(now);
    }

    /// The page may have been asleep or out of sight (`pageshow`, `focus`, a
    /// late timer): check with the server at once.
    pub fn handle_wake(&mut self, now: Millis) {
        self.wake(now);
        self.step(now);
    }

    /// The timer armed from `poll_deadline` fired (possibly late).
    pub fn handle_timer(&mut self, now: Millis) {
        self.note_lateness(now);
        self.step(now);
    }

    /// The answer to the request in flight.
    pub fn handle_server_reply(&mut self, now: Millis, reply: Reply) {
        let request = self.in_flight.take();
        if !self.is_live() {
            return;
        }
        self.retry_at = None;
        self.backoff_ms = MIN_BACKOFF_MS;
        match reply {
            Reply::Config {
                timeout_ms,
                heartbeat_interval_ms,
            } => {
                // A server-chosen interval is trusted, within sane bounds
                // (min/max: see `default_interval_ms`).
                #[allow(clippy::manual_clamp)]
                let interval_ms = match heartbeat_interval_ms {
                    Some(ms) => ms.min(timeout_ms).max(1_000),
                    None => default_interval_ms(timeout_ms),
                };
                self.interval_ms = Some(interval_ms);
                self.timeout_ms = timeout_ms;
                if self.phase == Phase::Starting {
                    self.phase = Phase::Running;
                }
            }
            Reply::Active { remaining_ms } => {
                self.last_reply = Some(now);
                self.check_wanted = false;
                if let Some(Request::Heartbeat { activity_at }) = request {
                    self.heartbeat_failed = false;
                    self.reported = self.reported.max(activity_at);
                }
                let expiry_at = now.plus(remaining_ms);
                self.expiry_at = Some(expiry_at);
                self.push_peer(PeerMsg::Alive { expiry_at });
            }
            Reply::Exempt => self.phase = Phase::Exempt,
            Reply::NoSession => self.phase = Phase::NoSession,
            Reply::Expired => {
                self.push_peer(PeerMsg::LoggedOut);
                self.end();
            }
        }
        self.step(now);
    }

    /// The request in flight failed (network error, timeout, 5xx). Retry
    /// later with exponential backoff; never log out for this alone.
    pub fn handle_network_error(&mut self, now: Millis) {
        let request = self.in_flight.take();
        if !self.is_live() {
            return;
        }
        match request {
            Some(Request::Check) => self.check_wanted = true,
            Some(Request::Heartbeat { .. }) => self.heartbeat_failed = true,
            Some(Request::Config) | None => {}
        }
        let jitter = self.draw() % (self.backoff_ms / BACKOFF_JITTER_DIV + 1);
        self.retry_at = Some(now.plus(self.backoff_ms + jitter));
        self.backoff_ms = (self.backoff_ms * 2).min(MAX_BACKOFF_MS);
        self.step(now);
    }

    /// The answer to `Action::ClaimHeartbeat`: the browser-wide claim read
    /// from storage (`None` if absent or storage is unavailable).
    pub fn handle_claim(&mut self, now: Millis, stored: Option<Millis>) {
        if self.in_flight.is_some() || self.phase != Phase::Running {
            return;
        }
        let interval = self.interval_ms();
        if let Some(at) = stored {
            // A claim from this interval that this tab did not make: another
            // tab is reporting (this tab only claims once its own last
            // heartbeat is an interval old). A claim "from the future" means the clock went
            // back; ignoring it keeps heartbeats from stalling.
            if at <= now && now.since(at) < interval {
                self.set_last_heartbeat(at);
                self.step(now);
                return;
            }
        }
        self.actions.push_back(Action::StoreClaim(now));
        self.send_heartbeat(now);
    }

    pub fn handle_peer_message(&mut self, now: Millis, msg: PeerMsg) {
        if !self.is_live() {
            return;
        }
        match msg {
            PeerMsg::Activity { at } => self.last_input = self.last_input.max(at),
            PeerMsg::HeartbeatSent { at, activity_at } => {
                self.set_last_heartbeat(at);
                self.reported = self.reported.max(activity_at);
            }
            PeerMsg::Alive { expiry_at } => {
                self.expiry_at = Some(self.expiry_at.map_or(expiry_at, |t| t.max(expiry_at)));
            }
            PeerMsg::Checking { at } => {
                // Never from the future: a clock set back must not stall checks.
                self.peer_check_at = self.peer_check_at.max(Some(at.min(now)));
            }
            PeerMsg::LoggedOut => {
                self.end();
                return;
            }
        }
        self.step(now);
    }

    /// The user followed the ERP's own logout link (the glue compares a
    /// clicked link's path with the configured logout URL's). That ends the
    /// session for every tab and tells the server; the link itself
    /// navigates this tab.
    pub fn handle_logout_link(&mut self, now: Millis) {
        if !self.is_live() {
            return;
        }
        self.actions.push_back(Action::NotifyLogout);
        self.push_peer(PeerMsg::LoggedOut);
        self.phase = Phase::Ended;
        self.in_flight = None;
        self.update_notice(now);
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When `handle_timer` must be called next; `None`: no timer.
    pub fn poll_deadline(&self) -> Option<Millis> {
        if !self.is_live() || self.in_flight.is_some() {
            return None;
        }
        if let Some(at) = self.retry_at {
            return Some(at);
        }
        self.interval_ms?;
        let mut deadline = self.check_deadline();
        for due in [self.heartbeat_due(), self.handover_due(), self.notice_due()]
            .into_iter()
            .flatten()
        {
            deadline = Some(deadline.map_or(due, |d| d.min(due)));
        }
        deadline
    }

    /// From when on an input event must be handed to the core; until then
    /// the web layer only stamps its time. Zero when there is no pending
    /// input (the first one may start a heartbeat); otherwise the deadline,
    /// because input after a missed deadline means the page slept.
    pub fn input_interest(&self) -> Millis {
        match self.phase {
            Phase::Starting | Phase::Running if self.last_input <= self.reported => Millis(0),
            Phase::Running => self.poll_deadline().unwrap_or(Millis(u64::MAX)),
            _ => Millis(u64::MAX),
        }
    }

    fn is_live(&self) -> bool {
        matches!(self.phase, Phase::Starting | Phase::Running)
    }

    fn interval_ms(&self) -> u64 {
        self.interval_ms.unwrap_or(MAX_DEFAULT_INTERVAL_MS)
    }

    fn push_peer(&mut self, msg: PeerMsg) {
        self.actions.push_back(Action::Broadcast(msg));
    }

    fn wake(&mut self, now: Millis) {
        let fresh = self
            .last_reply
            .is_some_and(|t| now.since(t) < MIN_CHECK_GAP_MS && t <= now);
        if !fresh {
            self.check_wanted = true;
        }
    }

    /// A call at `now` well past the deadline the core asked for means the
    /// page did not run in between (sleep, throttling, clock jump).
    fn note_lateness(&mut self, now: Millis) {
        if let Some(deadline) = self.poll_deadline() {
            if now.since(deadline.max(self.seen)) > WAKE_LATENESS_MS {
                self.check_wanted = true;
            }
        }
    }

    /// When the session must be checked next: at once if a check is wanted
    /// (`wake` already skipped those a fresh answer makes useless), else
    /// just after the expiry the server announced, but never sooner than
    /// `MIN_CHECK_GAP_MS` after the last answer, so that a server saying
    /// "active, 0 ms left" cannot cause a loop, and not while another tab's
    /// check of the same deadline is being answered.
    fn check_deadline(&self) -> Option<Millis> {
        if self.check_wanted {
            return Some(Millis(0));
        }
        let expiry = self.expiry_at?.plus(EXPIRY_SLACK_MS + self.check_jitter_ms);
        let earliest = self
            .last_reply
            .map_or(Millis(0), |t| t.plus(MIN_CHECK_GAP_MS));
        let peer = self.peer_check_at.map_or(Millis(0), |t| {
            t.plus(PEER_CHECK_WAIT_MS + self.check_jitter_ms)
        });
        Some(expiry.max(earliest).max(peer))
    }

    /// When a heartbeat becomes due, if one is wanted: the tab is visible,
    /// has input the server does not know yet, and the browser's slot for
    /// this interval is free.
    fn heartbeat_due(&self) -> Option<Millis> {
        if !self.visible || self.last_input <= self.reported {
            return None;
        }
        if self.heartbeat_failed {
            return Some(Millis(0));
        }
        Some(self.last_heartbeat.map_or(Millis(0), |t| {
            t.plus(self.interval_ms() + self.slot_jitter_ms)
        }))
    }

    /// When this tab must hand its pending input to the others: when the
    /// browser's next heartbeat slot opens, if the input predates that (input
    /// after it is reported by this tab's own claim at once).
    fn handover_due(&self) -> Option<Millis> {
        let slot = self.last_heartbeat?.plus(self.interval_ms());
        let pending = self.own_input > self.reported.max(self.handed_over);
        (self.visible && pending && self.own_input < slot).then_some(slot)
    }

    /// When the notice must go up, if it is wanted and not up yet: the
    /// visible tab of a running session with no input waiting to be
    /// reported (that report will move the expiry), `warn_before_ms` before
    /// the expiry.
    fn notice_due(&self) -> Option<Millis> {
        if self.notice || !self.notice_allowed() {
            return None;
        }
        let expiry = self.expiry_at?;
        Some(Millis(expiry.0.saturating_sub(self.warn_before_ms)))
    }

    fn notice_allowed(&self) -> bool {
        self.warn_before_ms > 0
            && self.phase == Phase::Running
            && self.visible
            && self.last_input <= self.reported
    }

    /// Puts the notice up or takes it down as `now` wants.
    fn update_notice(&mut self, now: Millis) {
        let wanted = self.notice_allowed()
            && self.expiry_at.is_some_and(|expiry| {
                now < expiry && now.0 >= expiry.0.saturating_sub(self.warn_before_ms)
            });
        if wanted == self.notice {
            return;
        }
        self.notice = wanted;
        self.actions.push_back(match (wanted, self.expiry_at) {
            (true, Some(expiry_at)) => Action::ShowNotice { expiry_at },
            _ => Action::HideNotice,
        });
    }

    fn hand_over(&mut self) {
        self.handed_over = self.own_input;
        self.push_peer(PeerMsg::Activity { at: self.own_input });
    }

    /// Start whatever is due at `now`. Every handler ends here.
    fn step(&mut self, now: Millis) {
        self.seen = self.seen.max(now);
        self.update_notice(now);
        if !self.is_live() || self.in_flight.is_some() {
            return;
        }
        if self.retry_at.is_some_and(|at| now < at) {
            return;
        }
        self.retry_at = None;
        if self.interval_ms.is_none() {
            self.in_flight = Some(Request::Config);
            self.actions.push_back(Action::FetchConfig);
            return;
        }
        if self.check_deadline().is_some_and(|at| at <= now) {
            if !self.check_wanted {
                // The deadline's check: the other tabs wait for its answer.
                self.push_peer(PeerMsg::Checking { at: now });
            }
            self.in_flight = Some(Request::Check);
            self.actions.push_back(Action::CheckNow);
            return;
        }
        if self.handover_due().is_some_and(|at| at <= now) {
            self.hand_over();
        }
        if self.heartbeat_due().is_some_and(|at| at <= now) {
            if self.heartbeat_failed {
                // Resending the report that failed: the slot is already ours.
                self.send_heartbeat(now);
            } else {
                // Answered synchronously by `handle_claim`.
                self.actions.push_back(Action::ClaimHeartbeat);
            }
        }
    }

    fn send_heartbeat(&mut self, now: Millis) {
        let activity_at = self.last_input;
        self.set_last_heartbeat(now);
        self.in_flight = Some(Request::Heartbeat { activity_at });
        self.actions.push_back(Action::SendHeartbeat {
            idle_ms: now.since(activity_at),
        });
        self.push_peer(PeerMsg::HeartbeatSent {
            at: now,
            activity_at,
        });
    }

    /// Records a heartbeat sent at `at` by any tab (later ones win) and
    /// draws this tab's wait for the next slot: the hand-over lead plus up
    /// to a quarter interval.
    fn set_last_heartbeat(&mut self, at: Millis) {
        if self.last_heartbeat.is_some_and(|t| t >= at) {
            return;
        }
        self.last_heartbeat = Some(at);
        self.slot_jitter_ms = HANDOVER_LEAD_MS + self.draw() % (self.interval_ms() / 4 + 1);
    }

    /// The next number of this tab's xorshift64 sequence (always 0 with
    /// seed 0, which the tests use for exact timings).
    fn draw(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn end(&mut self) {
        self.phase = Phase::Ended;
        self.in_flight = None;
        if self.notice {
            self.notice = false;
            self.actions.push_back(Action::HideNotice);
        }
        self.actions.push_back(Action::GoToLogout);
    }
}

#[cfg(test)]
mod tests;
