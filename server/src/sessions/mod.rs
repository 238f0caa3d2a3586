//! The session engine: turns a cookie and an operation into an answer,
//! using the policy, the store and the ERP lookup. No HTTP here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::Notify;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::clock::Clock;
use crate::lookup::{self, Lookup};
use crate::metrics::Metrics;
use crate::policy::{self, EndReason, Millis, Policy, SessionStatus, UserClass};
use crate::rules::{Compiled, Effective, Facts};
use crate::secret::cut;
use crate::store::{Entry, SessionKey, Store, StoreError};

mod expiry;

/// How soon a portal session is looked up again (its user may be made
/// internal while the session lives).
pub const EXEMPT_RECHECK: Duration = Duration::from_secs(300);

/// How the engine asks the ERP who owns a session.
#[derive(Debug, Clone)]
pub struct LookupConfig {
    /// The ERP's session-info URL; `None` treats every session as internal.
    pub session_info_url: Option<String>,
    pub cookie_name: String,
    pub lookup_timeout: Duration,
    /// How soon a public session is looked up again (a visitor may log in).
    pub public_recheck: Duration,
    /// How soon to retry when the ERP could not answer.
    pub unknown_retry: Duration,
}

/// What a page, a proxy or an administrator is told about a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Active {
        timeout_s: u64,
        remaining_ms: i64,
    },
    Exempt,
    Ended(EndReason),
    /// A replica meeting a session for the first time cannot read what the
    /// others stored about it (the database is down): neither let through
    /// nor ended.
    Unavailable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// The page saw real input `idle_ms` ago.
    Heartbeat { idle_ms: u64 },
    /// Read-only, answered for the page; an expiry found here is made durable.
    Check,
    /// Read-only, for the reverse proxy on every request; never waits for disk.
    Auth,
}

pub struct Sessions {
    pub store: Arc<Store>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub erp: LookupConfig,
    pub retention: Duration,
    /// HMAC keyed with the server secret once; cloned for each cookie.
    mac: Hmac<Sha256>,
    /// The policy in force, read lock-free on every request.
    timeout_ms: AtomicI64,
    lifetime_ms: AtomicI64,
    /// The rules per group and per user in force (settings set them);
    /// `None` when there are none, which every request sees without a lock.
    rules: RwLock<Option<Arc<Compiled>>>,
    has_rules: std::sync::atomic::AtomicBool,
    lookups: tokio::sync::Semaphore,
    /// Lookups under way, so that concurrent first requests of one session
    /// ask the ERP once and the others wait for that answer.
    inflight: Mutex<HashMap<SessionKey, Arc<Notify>>>,
}

impl Sessions {
    pub fn new(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        erp: LookupConfig,
        secret: [u8; 32],
        retention: Duration,
    ) -> Sessions {
        // Bounds how many ERP lookups run at once, so a flood of new cookies
        // cannot turn the sidecar into a load generator against the ERP.
        let lookups = tokio::sync::Semaphore::new(32);
        let mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&secret).expect("HMAC takes any key length");
        Sessions {
            store,
            clock,
            metrics,
            erp,
            retention,
            mac,
            timeout_ms: AtomicI64::new(Policy::default().timeout_ms),
            lifetime_ms: AtomicI64::new(0),
            rules: RwLock::default(),
            has_rules: Default::default(),
            lookups,
            inflight: Mutex::default(),
        }
    }

    /// The policy in force (settings apply it with `set_policy`).
    pub fn policy(&self) -> Policy {
        let life = self.lifetime_ms.load(Ordering::Relaxed);
        Policy {
            timeout_ms: self.timeout_ms.load(Ordering::Relaxed),
            absolute_lifetime_ms: (life > 0).then_some(life),
        }
    }

    pub fn set_policy(&self, p: Policy) {
        self.timeout_ms.store(p.timeout_ms, Ordering::Relaxed);
        self.lifetime_ms
            .store(p.absolute_lifetime_ms.unwrap_or(0), Ordering::Relaxed);
    }

    /// Puts rules per group and per user in force: the next request and the
    /// next sweep judge every open session by them.
    pub fn set_rules(&self, rules: Compiled) {
        let rules = (!rules.is_empty()).then(|| Arc::new(rules));
        self.has_rules.store(rules.is_some(), Ordering::Release);
        *self.rules.write().unwrap_or_else(|e| e.into_inner()) = rules;
    }

    /// The global policy and the rules in force, read once per request.
    pub fn policies(&self) -> Policies {
        Policies {
            default: self.policy(),
            rules: if self.has_rules.load(Ordering::Acquire) {
                self.rules.read().unwrap_or_else(|e| e.into_inner()).clone()
            } else {
                None
            },
        }
    }

    /// The keyed hash that stands for a cookie value everywhere we store.
    pub fn key(&self, cookie_value: &str) -> SessionKey {
        cut(self.mac.clone().chain_update(cookie_value.as_bytes()))
    }

    /// Answers a heartbeat, check or auth for the session behind `cookie_value`.
    ///
    /// A storage failure while recording an expiry does not change the answer:
    /// the session is ended in memory either way, which is the safe side.
    pub async fn answer(self: &Arc<Self>, cookie_value: &str, op: Op) -> Answer {
        self.answer_limited(cookie_value, op).await.0
    }

    /// Like `answer`, and also says when a heartbeat came too soon after the
    /// previous one: its activity is recorded all the same (the newest input
    /// is never lost), but the page is told to slow down.
    pub async fn answer_limited(
        self: &Arc<Self>,
        cookie_value: &str,
        op: Op,
    ) -> (Answer, Option<i64>) {
        let key = self.key(cookie_value);
        let mut too_soon = None;
        let policy = self.policies();
        // The common case takes the shard lock once: a known session whose
        // owner is settled is judged at once; otherwise ask the ERP first.
        // The proxy's check never waits for the ERP about a known session:
        // it is judged on what is known, and the ERP is asked again in the
        // background (a slow ERP must not hold every ERP request).
        let now = self.clock.now();
        let grace = self.store.shared_grace().unwrap_or_default();
        let mut recheck_later = false;
        let mut proposed = None;
        let (known, durable) = self.store.update(&key, |slot| {
            let due = slot
                .as_ref()
                .is_none_or(|e| !e.is_ended() && e.recheck_at != 0 && e.recheck_at <= now.0);
            recheck_later = due && slot.is_some() && op == Op::Auth;
            (!due || recheck_later)
                .then(|| judge(slot, now, &policy, grace, op, &mut too_soon, &mut proposed))
        });
        // One background lookup per session: while one is out, later checks
        // are answered from memory without starting (and waiting on) another.
        let in_flight = || {
            self.inflight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(&key)
        };
        if recheck_later && !in_flight() {
            let (me, value) = (self.clone(), cookie_value.to_string());
            actix_rt::spawn(async move { me.identify(&key, &value).await });
        }
        let (mut answer, durable) = match known {
            Some(answer) => (answer, durable),
            None => {
                self.identify(&key, cookie_value).await;
                if grace.0 > 0 && self.store.get(&key).is_none() {
                    // What other replicas stored about it could not be read.
                    return (Answer::Unavailable, None);
                }
                let now = self.clock.now();
                self.store.update(&key, |slot| {
                    judge(slot, now, &policy, grace, op, &mut too_soon, &mut proposed)
                })
            }
        };
        if let Some(p) = proposed {
            answer = self.confirm_idle(&key, p, &policy, op, &mut too_soon).await;
        }
        if let Op::Heartbeat { .. } = op {
            self.metrics
                .count_heartbeat(matches!(answer, Answer::Active { .. }));
        }
        if let Some(rx) = durable {
            if let Answer::Ended(reason) = answer {
                self.metrics.count_expiry(reason);
                log::info!("session {} expired ({reason})", key.prefix());
            }
            // Auth never waits for the disk; the writer commits the expiry at once anyway.
            if op != Op::Auth {
                match rx.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        log::error!("expiry of session {} not stored yet: {e}", key.prefix())
                    }
                    Err(_) => log::error!(
                        "expiry of session {} not stored: writer stopped",
                        key.prefix()
                    ),
                }
            }
        }
        (answer, too_soon)
    }

    /// Ends a session for `reason` and returns once that is durable.
    /// Returns `Ok(false)` when it had already ended.
    pub async fn end(&self, key: &SessionKey, reason: EndReason) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let (newly, durable) = self.store.update(key, |slot| {
            let e = slot.get_or_insert_with(|| Entry::new(now, UserClass::Internal, 0, 0));
            if e.is_ended() {
                return false;
            }
            e.end_reason = Some(reason);
            e.ended_at = now;
            true
        });
        if let Some(rx) = durable {
            rx.await.unwrap_or(Err(StoreError::WriterGone))?;
            log::info!("session {} ended ({reason})", key.prefix());
            if reason == EndReason::Revoked {
                self.metrics.count_expiry(reason);
            }
        }
        Ok(newly)
    }

    /// Ends every open session of the ERP user `uid` (a stolen laptop), each
    /// recorded as revoked, and records who asked; returns how many ended.
    /// With replicas, sessions only another replica met are ended too (read
    /// from the shared database), and every replica refuses them within a
    /// second like any ending.
    pub async fn end_user(&self, uid: i32, asked_by: &str) -> Result<usize, StoreError> {
        self.end_user_before(uid, asked_by, None).await
    }

    /// `end_user` for the sessions that began at or before `before` (an
    /// ERP's request, read again after a restart, spares later logins).
    pub async fn end_user_before(
        &self,
        uid: i32,
        asked_by: &str,
        before: Option<Millis>,
    ) -> Result<usize, StoreError> {
        let wanted =
            |e: &Entry| e.uid == uid && !e.is_ended() && before.is_none_or(|b| e.created <= b);
        let mut keys = Vec::new();
        self.store.for_each(|k, e| {
            if wanted(e) {
                keys.push(*k);
            }
        });
        if self.store.shared_grace().is_some() {
            let (store, now) = (self.store.clone(), self.clock.now());
            let stored = tokio::task::spawn_blocking(move || store.read_sessions(now))
                .await
                .map_err(|e| StoreError::Read(e.to_string()))??;
            for (k, e) in stored {
                if wanted(&e) && !keys.contains(&k) {
                    self.store.settle(&k, |slot| {
                        slot.get_or_insert(e);
                    });
                    keys.push(k);
                }
            }
        }
        // Sent together, so the writer commits them together.
        let ended =
            futures_util::future::join_all(keys.iter().map(|k| self.end(k, EndReason::Revoked)))
                .await;
        let mut count = 0;
        for r in ended {
            count += usize::from(r?);
        }
        if count == 0 && before.is_some() {
            // The ERP's request read again (a restart, another replica that
            // carried it out first): nothing to record.
            return Ok(0);
        }
        let detail = format!("uid {uid}: {count} sessions ended (asked by {asked_by})");
        self.store.note("user_sessions_ended", &detail).await?;
        log::info!("every session of user {uid} ended: {count} (asked by {asked_by})");
        Ok(count)
    }

    /// Makes sure the store knows who owns the session, asking the ERP on
    /// first sight and when an earlier answer is due for another look.
    // The inflight lock is dropped (explicitly) before the only await in
    // its scope; clippy cannot see that through the match.
    #[allow(clippy::await_holding_lock)]
    async fn identify(&self, key: &SessionKey, cookie_value: &str) {
        let first_seen = self.clock.now();
        let due = match self.store.get(key) {
            None => true,
            Some(e) => !e.is_ended() && e.recheck_at != 0 && e.recheck_at <= first_seen.0,
        };
        if !due {
            return;
        }
        // One lookup per session at a time: a later request waits for it.
        {
            let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            match inflight.get(key) {
                Some(n) => {
                    let n = n.clone();
                    let waiting = n.notified();
                    tokio::pin!(waiting);
                    // Registered before the lock is released, so the leader's
                    // wake-up (taken under the same lock) cannot be missed.
                    waiting.as_mut().enable();
                    drop(inflight);
                    let limit = self.erp.lookup_timeout + Duration::from_secs(1);
                    let _ = tokio::time::timeout(limit, waiting).await;
                    return;
                }
                None => {
                    inflight.insert(*key, Arc::new(Notify::new()));
                }
            }
        };
        // Removes the entry and wakes the waiters even if this request is
        // dropped halfway (the client went away).
        let _done = InflightGuard {
            map: &self.inflight,
            key: *key,
        };
        if self.store.shared_grace().is_some() && self.store.get(key).is_none() {
            // Another replica may have met it: start from what it stored.
            match self.store.fetch(key, first_seen).await {
                Ok(Some(row)) => {
                    self.store.settle(key, |slot| {
                        slot.get_or_insert(row);
                    });
                    if row.is_ended() || row.recheck_at == 0 {
                        return;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    log::warn!(
                        "cannot read session {} from the database: {e}",
                        key.prefix()
                    );
                    return;
                }
            }
        }
        self.lookup_and_record(key, cookie_value, first_seen).await;
    }

    async fn lookup_and_record(&self, key: &SessionKey, cookie_value: &str, first_seen: Millis) {
        let lookup = match &self.erp.session_info_url {
            None => Lookup::Internal {
                uid: 0,
                is_admin: false,
                is_system: false,
            },
            // Waiting for a free slot and the lookup share one deadline, so a
            // flood of new cookies against a slow ERP delays a new session by
            // at most the lookup timeout (then it is timed as internal).
            Some(url) => tokio::time::timeout(self.erp.lookup_timeout, async {
                let _permit = self.lookups.acquire().await;
                lookup::lookup(
                    url,
                    &self.erp.cookie_name,
                    cookie_value,
                    self.erp.lookup_timeout,
                )
                .await
            })
            .await
            .unwrap_or_else(|_| {
                Lookup::Unknown("no answer within the lookup timeout (the ERP is slow or every lookup slot is busy)".into())
            }),
        };
        self.metrics.count_lookup(&lookup);
        let now = self.clock.now();
        let (class, uid, recheck_at) = match &lookup {
            Lookup::Internal { uid, .. } => (UserClass::Internal, *uid, 0),
            // Looked up again now and then: a portal user made internal is
            // timed from then on.
            Lookup::Portal { uid } => (
                UserClass::Portal,
                *uid,
                now.0 + EXEMPT_RECHECK.as_millis() as i64,
            ),
            Lookup::Public => (
                UserClass::Public,
                0,
                now.0 + self.erp.public_recheck.as_millis() as i64,
            ),
            Lookup::Unknown(why) => {
                log::warn!("cannot tell who owns session {} ({why}); timing it as internal and asking again later", key.prefix());
                (
                    UserClass::Internal,
                    0,
                    now.0 + self.erp.unknown_retry.as_millis() as i64,
                )
            }
        };
        let unknown = matches!(lookup, Lookup::Unknown(_));
        let roles = match lookup {
            Lookup::Internal {
                uid,
                is_admin,
                is_system,
            } => Facts {
                uid,
                is_admin,
                is_system,
            }
            .roles(),
            _ => 0,
        };
        self.store.update(key, |slot| match slot {
            None => {
                let mut e = Entry::new(first_seen, class, uid, recheck_at);
                e.roles = roles;
                *slot = Some(e);
            }
            Some(e) if e.is_ended() => {}
            Some(e) => {
                if unknown {
                    // Keep what we knew; only schedule the next attempt.
                    e.recheck_at = recheck_at;
                    return;
                }
                if e.class.is_exempt() && !class.is_exempt() {
                    // A visitor logged in on the same cookie, or a portal user
                    // was made internal: timed from now, like a login.
                    e.created = now;
                    e.last_activity = now;
                }
                e.class = class;
                e.uid = uid;
                e.roles = roles;
                e.recheck_at = recheck_at;
            }
        });
    }

    /// Finds the one session whose key starts with `prefix` (hex).
    pub fn find_by_prefix(&self, prefix: &str) -> Result<SessionKey, PrefixError> {
        let prefix = prefix.to_ascii_lowercase();
        if prefix.len() < 8 || prefix.len() > 32 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PrefixError::Malformed);
        }
        // Compared digit by digit: no string made per session scanned.
        let matches = |k: &SessionKey| {
            prefix.bytes().enumerate().all(|(i, c)| {
                let b = k.0[i / 2];
                let nibble = if i % 2 == 0 { b >> 4 } else { b & 0xf };
                char::from_digit(nibble as u32, 16) == Some(c as char)
            })
        };
        let mut found = None;
        let mut many = false;
        self.store.for_each(|k, _| {
            if matches(k) {
                many |= found.is_some();
                found = Some(*k);
            }
        });
        match (found, many) {
            (_, true) => Err(PrefixError::Ambiguous),
            (Some(k), false) => Ok(k),
            (None, _) => Err(PrefixError::NotFound),
        }
    }
}

/// The policy applied to one session under its shard lock: ends it if its
/// deadline passed, records a heartbeat's activity. An unknown session is
/// created as internal (first sight counts as the login).
///
/// When replicas share the store (`grace` > 0), an idle session is given the
/// grace past its timeout, and its expiry is only proposed: memory is left
/// as it is and the caller confirms it with the other replicas.
fn judge(
    slot: &mut Option<Entry>,
    now: Millis,
    policies: &Policies,
    grace: Millis,
    op: Op,
    too_soon: &mut Option<i64>,
    proposed: &mut Option<expiry::Proposed>,
) -> Answer {
    let e = slot.get_or_insert_with(|| Entry::new(now, UserClass::Internal, 0, 0));
    if let Some(reason) = e.end_reason {
        return Answer::Ended(reason);
    }
    if e.class.is_exempt() {
        return Answer::Exempt;
    }
    let policy = match policies.for_entry(e) {
        Effective::Exempt => return Answer::Exempt,
        Effective::Timed(p) => p,
    };
    let limits = policy::Policy {
        timeout_ms: policy.timeout_ms + grace.0,
        ..policy
    };
    match policy::status(e.created, e.last_activity, now, &limits) {
        SessionStatus::Expired {
            reason: EndReason::IdleTimeout,
            ..
        } if grace.0 > 0 => {
            let mut ended = *e;
            ended.end_reason = Some(EndReason::IdleTimeout);
            ended.ended_at = Millis(e.last_activity.0 + policy.timeout_ms);
            *proposed = Some(expiry::Proposed {
                ended,
                now,
                timeout_ms: policy.timeout_ms,
            });
            Answer::Ended(EndReason::IdleTimeout)
        }
        SessionStatus::Expired { reason, at } => {
            e.end_reason = Some(reason);
            e.ended_at = match reason {
                EndReason::IdleTimeout => Millis(e.last_activity.0 + policy.timeout_ms),
                _ => at,
            };
            Answer::Ended(reason)
        }
        SessionStatus::Active { .. } => {
            if let Op::Heartbeat { idle_ms } = op {
                e.last_activity = policy::touched(e.last_activity, now, idle_ms);
                let gap = now.saturating_sub(e.heartbeat_at);
                if (0..policy::MIN_HEARTBEAT_GAP_MS).contains(&gap) {
                    *too_soon = Some(policy::MIN_HEARTBEAT_GAP_MS - gap);
                } else {
                    e.heartbeat_at = now;
                }
            }
            match policy::status(e.created, e.last_activity, now, &limits) {
                SessionStatus::Active { remaining_ms } => Answer::Active {
                    timeout_s: policy.timeout_s(),
                    remaining_ms,
                },
                // Cannot happen: touching only moves last activity forward.
                SessionStatus::Expired { reason, .. } => Answer::Ended(reason),
            }
        }
    }
}

/// The global policy and the rules, as one request or sweep reads them.
pub struct Policies {
    pub default: Policy,
    pub rules: Option<Arc<Compiled>>,
}

impl Policies {
    /// What applies to a session, by its owner as the ERP named them.
    pub fn for_entry(&self, e: &Entry) -> Effective {
        match &self.rules {
            None => Effective::Timed(self.default),
            Some(r) => r.effective(self.default, Facts::with_roles(e.uid, e.roles)),
        }
    }

    /// The shortest idle timeout any session can have now.
    pub fn strictest_idle_ms(&self) -> i64 {
        self.rules.as_ref().map_or(self.default.timeout_ms, |r| {
            r.strictest_idle_ms(self.default)
        })
    }

    /// The policy of a timed session (the default for an exempt one).
    pub fn timed(&self, e: &Entry) -> Policy {
        match self.for_entry(e) {
            Effective::Timed(p) => p,
            Effective::Exempt => self.default,
        }
    }
}

struct InflightGuard<'a> {
    map: &'a Mutex<HashMap<SessionKey, Arc<Notify>>>,
    key: SessionKey,
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        if let Some(n) = self
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key)
        {
            n.notify_waiters();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixError {
    Malformed,
    NotFound,
    Ambiguous,
}
