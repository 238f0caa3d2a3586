//! Expiries: the sweep that ends overdue sessions nobody asks about, and,
//! when several replicas share the database, the confirmation of an idle
//! expiry against the activity every replica stored.

use std::sync::Arc;

use futures_util::future::join_all;

use super::{judge, Answer, Op, Policies, Sessions};
use crate::policy::{EndReason, Millis, Policy};
use crate::rules::Effective;
use crate::store::{Entry, SessionKey, Store};

/// An idle expiry one replica proposes: the session as it would be stored.
pub(super) struct Proposed {
    pub ended: Entry,
    /// When it was judged (the cutoff is taken from here).
    pub now: Millis,
    /// The idle timeout it was judged by (its own, by the rules).
    pub timeout_ms: i64,
}

/// Brings what storage holds into memory: an ending, newer activity, an
/// earlier creation. What memory knew of the owner stays.
pub(super) fn merge(e: &mut Entry, row: &Entry) {
    if let (None, Some(reason)) = (e.end_reason, row.end_reason) {
        e.end_reason = Some(reason);
        e.ended_at = row.ended_at;
    }
    e.last_activity = e.last_activity.max(row.last_activity);
    e.created = e.created.min(row.created);
}

impl Sessions {
    /// Ends an idle session only if no replica stored activity after the
    /// timeout plus the grace before `p.now` (one conditional statement);
    /// otherwise takes the stored activity into memory and judges again.
    /// When the database cannot say, this request is refused and nothing is
    /// recorded: the next one asks again.
    pub(super) async fn confirm_idle(
        self: &Arc<Self>,
        key: &SessionKey,
        p: Proposed,
        policy: &Policies,
        op: Op,
        too_soon: &mut Option<i64>,
    ) -> Answer {
        let grace = self.store.shared_grace().unwrap_or_default();
        let cutoff = Millis(p.now.0 - p.timeout_ms - grace.0);
        let refused = Answer::Ended(EndReason::IdleTimeout);
        match self.store.expire_if_idle(key, p.ended, cutoff).await {
            Ok(Ok(None)) => {
                self.store.settle(key, |slot| {
                    if let Some(e) = slot.as_mut().filter(|e| !e.is_ended()) {
                        e.end_reason = p.ended.end_reason;
                        e.ended_at = p.ended.ended_at;
                    }
                });
                self.metrics.count_expiry(EndReason::IdleTimeout);
                log::info!("session {} expired (idle_timeout)", key.prefix());
                refused
            }
            Ok(Ok(Some(row))) => {
                self.store.settle(key, |slot| {
                    if let Some(e) = slot.as_mut() {
                        merge(e, &row);
                    }
                });
                let now = self.clock.now();
                let mut again = None;
                let (answer, durable) = self.store.update(key, |slot| {
                    judge(slot, now, policy, grace, op, too_soon, &mut again)
                });
                if let Some(rx) = durable {
                    let _ = rx.await;
                }
                // Still idle here after taking the stored activity: refused
                // now, decided by the next request.
                if again.is_some() {
                    return refused;
                }
                answer
            }
            Ok(Err(e)) => {
                log::warn!(
                    "cannot confirm the expiry of session {} with the other replicas: {e}",
                    key.prefix()
                );
                refused
            }
            Err(_) => refused,
        }
    }

    /// Ends sessions whose deadline passed (so the audit log shows expiries
    /// even when nobody asks; each is recorded at its deadline, not when it
    /// was found), and forgets old ended or public sessions. All shards.
    pub async fn sweep(self: &Arc<Self>) {
        for shard in 0..Store::SHARDS {
            self.sweep_shard(shard).await;
        }
        self.purge();
    }

    /// Asks the writer to delete rows of sessions that ended longer ago than
    /// the retention period; memory forgets them in `sweep_shard`.
    pub fn purge(&self) {
        let before = Millis(self.clock.now().0 - self.retention.as_millis() as i64);
        self.store.purge_before(before);
    }

    /// `sweep` for one shard: one pass under its lock, then the endings,
    /// all sent before any is waited for (one commit for the lot).
    pub async fn sweep_shard(self: &Arc<Self>, shard: usize) {
        let now = self.clock.now();
        let policy = self.policies();
        let grace = self.store.shared_grace().unwrap_or_default();
        let forget_before = now.0 - self.retention.as_millis() as i64;
        let stale_public = now.0 - 600_000;
        let mut due = Vec::new();
        self.store.retain_in(shard, |k, e| {
            if e.is_ended() {
                return e.ended_at.0 >= forget_before;
            }
            if e.class == crate::policy::UserClass::Public {
                return e.recheck_at >= stale_public;
            }
            if e.class.is_exempt() {
                return true;
            }
            if let Effective::Timed(p) = policy.for_entry(e) {
                let limits = Policy {
                    timeout_ms: p.timeout_ms + grace.0,
                    ..p
                };
                if crate::policy::status(e.created, e.last_activity, now, &limits).is_expired() {
                    due.push(*k);
                }
            }
            true
        });
        let mut durable = Vec::new();
        let mut confirm = Vec::new();
        for key in due {
            let mut proposed = None;
            let (answer, rx) = self.store.update(&key, |slot| {
                if slot.is_none() {
                    return None;
                }
                Some(judge(
                    slot,
                    now,
                    &policy,
                    grace,
                    Op::Check,
                    &mut None,
                    &mut proposed,
                ))
            });
            if let Some(p) = proposed {
                confirm.push((key, p));
            } else if let (Some(Answer::Ended(reason)), Some(rx)) = (answer, rx) {
                self.metrics.count_expiry(reason);
                log::info!("session {} expired ({reason})", key.prefix());
                durable.push(rx);
            }
        }
        join_all(durable).await;
        let policy = &policy;
        join_all(confirm.into_iter().map(|(key, p)| async move {
            self.confirm_idle(&key, p, policy, Op::Check, &mut None)
                .await
        }))
        .await;
    }
}
