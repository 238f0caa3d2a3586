//! The writer thread: the only code that writes storage (through a
//! `Backend`). It commits endings and settings at once (acknowledged once
//! durable), group-commits the heartbeats marked dirty in the shards once per
//! commit window, retries a failed commit, and purges old rows.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::backend::{Backend, Changes, SettingChange};
use super::ExpiryAck;
use super::{lock, Entry, SessionKey, Shard, StoreError, StoreOptions, WriterStats};
use crate::policy::Millis;

pub(super) type Ack = oneshot::Sender<Result<(), StoreError>>;

pub(super) enum Write {
    /// The session ended; committed at once, then acknowledged.
    End(SessionKey, Entry, Option<Ack>),
    Setting {
        name: String,
        value: String,
        detail: String,
        if_absent: bool,
        ack: Ack,
    },
    /// An idle expiry one of several replicas decided: stored only if no
    /// activity after the cutoff is stored; never retried (the next request
    /// decides again).
    Expire(SessionKey, Entry, Millis, ExpiryAck),
    /// An audit event of its own, committed at once.
    Note {
        event: String,
        detail: String,
        ack: Ack,
    },
    Flush(Ack),
    /// Delete rows of sessions that ended before this time.
    Purge(Millis),
}

/// Starts the writer thread on `backend`; changes reach it through the sender.
pub(super) fn spawn(
    backend: Box<dyn Backend>,
    opts: StoreOptions,
    stats: Arc<WriterStats>,
    shards: Arc<[Mutex<Shard>]>,
) -> Result<(mpsc::Sender<Write>, thread::JoinHandle<()>), StoreError> {
    let (tx, rx) = mpsc::channel();
    let writer = thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || {
            Writer {
                backend,
                rx,
                opts,
                stats,
                shards,
            }
            .run()
        })
        .map_err(|e| StoreError::Write(e.to_string()))?;
    Ok((tx, writer))
}

struct Writer {
    backend: Box<dyn Backend>,
    rx: mpsc::Receiver<Write>,
    opts: StoreOptions,
    stats: Arc<WriterStats>,
    shards: Arc<[Mutex<Shard>]>,
}

/// Work waiting for the next commit.
#[derive(Default)]
struct Batch {
    upserts: HashMap<SessionKey, Entry>,
    ends: Vec<(SessionKey, Entry, Option<Ack>)>,
    settings: Vec<(String, String, String, bool, Ack)>,
    expiries: Vec<(SessionKey, Entry, Millis, ExpiryAck)>,
    notes: Vec<(String, String, Ack)>,
    flushes: Vec<Ack>,
    purge_before: Option<Millis>,
    /// When the oldest waiting heartbeat arrived.
    since: Option<Instant>,
}

impl Batch {
    fn urgent(&self) -> bool {
        !self.ends.is_empty()
            || !self.settings.is_empty()
            || !self.flushes.is_empty()
            || !self.expiries.is_empty()
            || !self.notes.is_empty()
    }
    fn is_empty(&self) -> bool {
        self.upserts.is_empty() && !self.urgent()
    }
    fn add(&mut self, w: Write) {
        match w {
            Write::End(k, e, ack) => {
                self.upserts.remove(&k);
                self.ends.push((k, e, ack));
            }
            Write::Setting {
                name,
                value,
                detail,
                if_absent,
                ack,
            } => self.settings.push((name, value, detail, if_absent, ack)),
            Write::Expire(k, e, cutoff, ack) => self.expiries.push((k, e, cutoff, ack)),
            Write::Note { event, detail, ack } => self.notes.push((event, detail, ack)),
            Write::Flush(ack) => self.flushes.push(ack),
            Write::Purge(t) => self.purge_before = Some(t),
        }
    }
}

impl Writer {
    fn run(mut self) {
        let mut batch = Batch::default();
        let retry_pause = Duration::from_millis(500);
        let mut retry_at: Option<Instant> = None;
        loop {
            let wait = match (batch.since, retry_at) {
                (_, Some(t)) => t.saturating_duration_since(Instant::now()),
                (Some(t), None) => self.opts.commit_window.saturating_sub(t.elapsed()),
                // Heartbeats do not wake the writer: it looks for them once per window.
                (None, None) => self.opts.commit_window,
            };
            let received = self.rx.recv_timeout(wait);
            // Whatever heartbeats are waiting join this batch.
            self.collect_dirty(&mut batch);
            let disconnected = match received {
                Ok(w) => {
                    batch.add(w);
                    // Take whatever else is already queued into the same commit.
                    while let Ok(w) = self.rx.try_recv() {
                        batch.add(w);
                    }
                    false
                }
                Err(mpsc::RecvTimeoutError::Timeout) => false,
                Err(mpsc::RecvTimeoutError::Disconnected) => true,
            };
            if let Some(before) = batch.purge_before.take() {
                // Before the commit below, so a flush that follows sees it done.
                match self.backend.purge(before) {
                    Ok(0) => {}
                    Ok(n) => {
                        log::info!("purged {n} sessions that ended before the retention period")
                    }
                    Err(e) => log::warn!("purging old sessions failed: {e}"),
                }
            }
            let window_over = batch
                .since
                .is_some_and(|t| t.elapsed() >= self.opts.commit_window);
            let may_retry = retry_at.is_none_or(|t| Instant::now() >= t);
            if !batch.is_empty() && may_retry && (batch.urgent() || window_over || disconnected) {
                match self.commit(&mut batch) {
                    Ok(()) => retry_at = None,
                    Err(e) => {
                        log::error!("database commit failed, will retry: {e}");
                        retry_at = Some(Instant::now() + retry_pause);
                    }
                }
            } else if batch.is_empty() && may_retry && !self.stats.healthy.load(Ordering::Relaxed) {
                // Nothing left to write after a failure (refused settings are
                // dropped): probe with a real write, so health comes back
                // once the disk does.
                match self.backend.probe() {
                    Ok(()) => {
                        log::info!("database writable again");
                        self.stats.healthy.store(true, Ordering::Relaxed);
                        retry_at = None;
                    }
                    Err(_) => retry_at = Some(Instant::now() + retry_pause),
                }
            }
            if disconnected {
                if !batch.is_empty() {
                    // One last try, so a clean shutdown loses nothing.
                    let _ = self.commit(&mut batch);
                }
                return;
            }
        }
    }

    /// Moves the changes queued in the shards into the batch.
    fn collect_dirty(&self, batch: &mut Batch) {
        for s in self.shards.iter() {
            let mut guard = lock(s);
            let shard = &mut *guard;
            if shard.dirty.is_empty() {
                continue;
            }
            if let Some(t) = shard.dirty_since.take() {
                batch.since = Some(batch.since.map_or(t, |b| b.min(t)));
            }
            for key in shard.dirty.drain(..) {
                if let Some(e) = shard.map.get_mut(&key) {
                    e.queued = false;
                    // An ended session is written by its End message.
                    if !e.is_ended() {
                        batch.upserts.insert(key, *e);
                    }
                }
            }
        }
    }

    fn commit(&mut self, batch: &mut Batch) -> Result<(), StoreError> {
        // In key order: neighbouring rows share B-tree pages, so a large
        // batch writes each page once (with 1M rows and 20k changes a SQLite
        // commit costs about a third less than in hash order).
        let mut activity: Vec<(SessionKey, Entry)> =
            batch.upserts.iter().map(|(k, e)| (*k, *e)).collect();
        activity.sort_unstable_by_key(|(k, _)| k.0);
        let endings: Vec<(SessionKey, Entry)> =
            batch.ends.iter().map(|(k, e, _)| (*k, *e)).collect();
        let settings: Vec<SettingChange<'_>> = batch
            .settings
            .iter()
            .map(|(name, value, detail, if_absent, _)| SettingChange {
                name,
                value,
                detail,
                if_absent: *if_absent,
            })
            .collect();
        let expiries: Vec<(SessionKey, Entry, Millis)> = batch
            .expiries
            .iter()
            .map(|(k, e, cutoff, _)| (*k, *e, *cutoff))
            .collect();
        let notes: Vec<(&str, &str)> = batch
            .notes
            .iter()
            .map(|(event, detail, _)| (event.as_str(), detail.as_str()))
            .collect();
        let result = self.backend.commit(&Changes {
            activity: &activity,
            endings: &endings,
            settings: &settings,
            expiries: &expiries,
            notes: &notes,
        });
        let ok = result.is_ok();
        self.stats.healthy.store(ok, Ordering::Relaxed);
        if ok {
            self.stats.commits.fetch_add(1, Ordering::Relaxed);
            self.stats
                .heartbeat_rows
                .fetch_add(batch.upserts.len() as u64, Ordering::Relaxed);
            if let Some(t) = batch.since {
                self.stats
                    .max_wait_us
                    .fetch_max(t.elapsed().as_micros() as u64, Ordering::Relaxed);
            }
            for (_, _, ack) in batch.ends.drain(..) {
                if let Some(ack) = ack {
                    let _ = ack.send(Ok(()));
                }
            }
            for (_, _, _, _, ack) in batch.settings.drain(..) {
                let _ = ack.send(Ok(()));
            }
            for (_, _, ack) in batch.notes.drain(..) {
                let _ = ack.send(Ok(()));
            }
            let outcomes = result.as_ref().map(Vec::as_slice).unwrap_or_default();
            for ((_, _, _, ack), outcome) in batch.expiries.drain(..).zip(outcomes) {
                let _ = ack.send(Ok(*outcome));
            }
            for ack in batch.flushes.drain(..) {
                let _ = ack.send(Ok(()));
            }
            batch.upserts.clear();
            batch.since = None;
        } else {
            self.stats.failed_commits.fetch_add(1, Ordering::Relaxed);
            let msg = result
                .as_ref()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            // Callers waiting for durability learn at once that it failed;
            // the changes stay queued and are retried.
            for (_, _, ack) in batch.ends.iter_mut() {
                if let Some(ack) = ack.take() {
                    let _ = ack.send(Err(StoreError::Write(msg.clone())));
                }
            }
            for (_, _, _, _, ack) in batch.settings.drain(..) {
                let _ = ack.send(Err(StoreError::Write(msg.clone())));
            }
            for (_, _, ack) in batch.notes.drain(..) {
                let _ = ack.send(Err(StoreError::Write(msg.clone())));
            }
            for (_, _, _, ack) in batch.expiries.drain(..) {
                let _ = ack.send(Err(StoreError::Write(msg.clone())));
            }
            for ack in batch.flushes.drain(..) {
                let _ = ack.send(Err(StoreError::Write(msg.clone())));
            }
        }
        result.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{EndReason, UserClass};

    fn entry() -> Entry {
        Entry::new(Millis(1), UserClass::Internal, 2, 0)
    }

    #[test]
    fn heartbeats_wait_for_the_window_endings_and_settings_do_not() {
        let mut b = Batch::default();
        assert!(b.is_empty());
        b.upserts.insert(SessionKey([1; 16]), entry());
        assert!(
            !b.is_empty() && !b.urgent(),
            "heartbeats alone wait for the window"
        );
        let (ack, _rx) = oneshot::channel();
        b.add(Write::Setting {
            name: "x".into(),
            value: "1".into(),
            detail: "x: 1".into(),
            if_absent: false,
            ack,
        });
        assert!(b.urgent(), "a setting is committed at once");
        let mut b = Batch::default();
        let (ack, _rx) = oneshot::channel();
        b.add(Write::Flush(ack));
        assert!(b.urgent());
    }

    #[test]
    fn an_ending_replaces_the_pending_heartbeat_of_its_session() {
        let mut b = Batch::default();
        let (k, other) = (SessionKey([1; 16]), SessionKey([2; 16]));
        b.upserts.insert(k, entry());
        b.upserts.insert(other, entry());
        let mut ended = entry();
        ended.end_reason = Some(EndReason::Logout);
        b.add(Write::End(k, ended, None));
        assert!(b.urgent());
        assert!(
            !b.upserts.contains_key(&k),
            "the ending is written, not the older activity"
        );
        assert!(b.upserts.contains_key(&other));
        assert_eq!(b.ends.len(), 1);
        b.add(Write::Purge(Millis(5)));
        b.add(Write::Purge(Millis(7)));
        assert_eq!(b.purge_before, Some(Millis(7)), "the latest purge wins");
    }
}
