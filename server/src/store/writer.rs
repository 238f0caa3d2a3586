//! The writer thread: the only code that writes SQLite. It commits endings
//! and settings at once (acknowledged once durable), group-commits the
//! heartbeats marked dirty in the shards once per commit window, retries a
//! failed commit, purges old rows, and restores a database file deleted or
//! replaced under the running server.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OpenFlags};
use tokio::sync::oneshot;

use super::schema::{connect, SCHEMA_VERSION};
use super::{lock, Entry, SessionKey, Shard, StoreError, StoreOptions, WriterStats};
use crate::policy::{EndReason, Millis};

pub(super) type Ack = oneshot::Sender<Result<(), StoreError>>;

pub(super) enum Write {
    /// The session ended; committed at once, then acknowledged.
    End(SessionKey, Entry, Option<Ack>),
    Setting {
        name: String,
        value: String,
        detail: String,
        ack: Ack,
    },
    Flush(Ack),
    /// Delete rows of sessions that ended before this time.
    Purge(Millis),
}

/// Starts the writer thread on `conn`; changes reach it through the sender.
pub(super) fn spawn(
    conn: Connection,
    opts: StoreOptions,
    stats: Arc<WriterStats>,
    shards: Arc<[Mutex<Shard>]>,
    path: &Path,
) -> Result<(mpsc::Sender<Write>, thread::JoinHandle<()>), StoreError> {
    let (tx, rx) = mpsc::channel();
    let path = path.to_path_buf();
    let file_id = file_id(&path);
    let writer = thread::Builder::new()
        .name("sqlite-writer".into())
        .spawn(move || {
            Writer {
                conn,
                rx,
                opts,
                stats,
                shards,
                path,
                file_id,
            }
            .run()
        })
        .map_err(|e| StoreError::Write(e.to_string()))?;
    Ok((tx, writer))
}

struct Writer {
    conn: Connection,
    rx: mpsc::Receiver<Write>,
    opts: StoreOptions,
    stats: Arc<WriterStats>,
    shards: Arc<[Mutex<Shard>]>,
    path: PathBuf,
    /// Device and inode of the file `conn` writes to, to notice when the
    /// file at `path` was deleted or replaced under us.
    file_id: Option<(u64, u64)>,
}

fn file_id(path: &Path) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        std::fs::metadata(path).ok().map(|_| (0, 0))
    }
}

/// Work waiting for the next commit.
#[derive(Default)]
struct Batch {
    upserts: HashMap<SessionKey, Entry>,
    ends: Vec<(SessionKey, Entry, Option<Ack>)>,
    settings: Vec<(String, String, String, Ack)>,
    flushes: Vec<Ack>,
    purge_before: Option<Millis>,
    /// When the oldest waiting heartbeat arrived.
    since: Option<Instant>,
}

impl Batch {
    fn urgent(&self) -> bool {
        !self.ends.is_empty() || !self.settings.is_empty() || !self.flushes.is_empty()
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
                ack,
            } => self.settings.push((name, value, detail, ack)),
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
                if let Err(e) = self.purge(before) {
                    log::warn!("purging old sessions failed: {e}");
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
                let probe = self.ensure_file().and_then(|()| {
                    self.conn
                        .execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
                        .map_err(|e| StoreError::Write(e.to_string()))
                });
                match probe {
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
        let result = self.write(batch);
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
            for (_, _, _, ack) in batch.settings.drain(..) {
                let _ = ack.send(Ok(()));
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
            for (_, _, _, ack) in batch.settings.drain(..) {
                let _ = ack.send(Err(StoreError::Write(msg.clone())));
            }
            for ack in batch.flushes.drain(..) {
                let _ = ack.send(Err(StoreError::Write(msg.clone())));
            }
        }
        result
    }

    /// If the database file was deleted or replaced under the running
    /// server, writing on would go to a file nobody will read again. Our
    /// connection still sees everything committed so far: copy it to the path
    /// (`VACUUM INTO`) and go on there.
    fn ensure_file(&mut self) -> Result<(), StoreError> {
        let now = file_id(&self.path);
        if now.is_some() && now == self.file_id {
            return Ok(());
        }
        let err = |what: &str, e: rusqlite::Error| StoreError::Write(format!("{what}: {e}"));
        log::error!("database file {} was deleted or replaced while in use; restoring it from the open copy", self.path.display());
        if now.is_some() {
            // Something else is at the path now: keep it aside, never overwrite it.
            let aside = self
                .path
                .with_extension(format!("replaced-{}", std::process::id()));
            std::fs::rename(&self.path, &aside).map_err(|e| {
                StoreError::Write(format!("cannot move the replaced file aside: {e}"))
            })?;
        }
        for ext in ["-wal", "-shm"] {
            let mut p = self.path.clone().into_os_string();
            p.push(ext);
            let _ = std::fs::remove_file(PathBuf::from(p));
        }
        let target = self.path.to_string_lossy().to_string();
        self.conn
            .execute("VACUUM INTO ?1", params![target])
            .map_err(|e| err("cannot restore the database file", e))?;
        let conn = connect(&self.path, OpenFlags::SQLITE_OPEN_READ_WRITE)
            .map_err(|e| err("cannot reopen the restored database", e))?;
        conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0))
            .map_err(|e| err("cannot reopen the restored database", e))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| err("cannot reopen the restored database", e))?;
        self.conn = conn;
        self.file_id = file_id(&self.path);
        log::warn!("database file {} restored; going on", self.path.display());
        Ok(())
    }

    fn write(&mut self, batch: &Batch) -> Result<(), StoreError> {
        self.ensure_file()?;
        let err = |e: rusqlite::Error| StoreError::Write(e.to_string());
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO sessions (key, created_ms, last_activity_ms, uid, class, verified)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT(key) DO UPDATE SET
                        last_activity_ms = max(last_activity_ms, excluded.last_activity_ms),
                        created_ms = excluded.created_ms,
                        uid = excluded.uid, class = excluded.class, verified = excluded.verified
                     WHERE ended_ms IS NULL",
                )
                .map_err(err)?;
            // In key order: neighbouring rows share B-tree pages, so a large
            // batch writes each page once; with 1M rows and 20k changes a
            // commit this costs about a third less than hash order.
            let mut rows: Vec<_> = batch.upserts.iter().collect();
            rows.sort_unstable_by_key(|(k, _)| k.0);
            for (k, e) in rows {
                upsert
                    .execute(params![
                        &k.0[..],
                        e.created.0,
                        e.last_activity.0,
                        e.uid,
                        e.class.to_i64(),
                        (e.recheck_at == 0) as i64
                    ])
                    .map_err(err)?;
            }
            let mut end = tx
                .prepare_cached(
                    "INSERT INTO sessions (key, created_ms, last_activity_ms, uid, class, verified, ended_ms, end_reason)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT(key) DO UPDATE SET
                        last_activity_ms = max(last_activity_ms, excluded.last_activity_ms),
                        ended_ms = excluded.ended_ms, end_reason = excluded.end_reason
                     WHERE ended_ms IS NULL",
                )
                .map_err(err)?;
            let mut audit = tx
                .prepare_cached("INSERT INTO audit (at_ms, event, key_prefix, uid, detail) VALUES (?1, ?2, ?3, ?4, ?5)")
                .map_err(err)?;
            for (k, e, _) in &batch.ends {
                let reason = e.end_reason.unwrap_or(EndReason::Revoked);
                let changed = end
                    .execute(params![
                        &k.0[..],
                        e.created.0,
                        e.last_activity.0,
                        e.uid,
                        e.class.to_i64(),
                        (e.recheck_at == 0) as i64,
                        e.ended_at.0,
                        reason.as_str()
                    ])
                    .map_err(err)?;
                if changed > 0 {
                    let event = match reason {
                        EndReason::IdleTimeout | EndReason::AbsoluteLifetime => "expired",
                        EndReason::Logout => "logout",
                        EndReason::Revoked => "revoked",
                    };
                    let uid = (e.uid != 0).then_some(e.uid as i64);
                    audit
                        .execute(params![
                            e.ended_at.0,
                            event,
                            k.prefix(),
                            uid,
                            reason.as_str()
                        ])
                        .map_err(err)?;
                }
            }
            let mut set = tx
                .prepare_cached("INSERT INTO settings (name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET value = excluded.value")
                .map_err(err)?;
            for (name, value, detail, _) in &batch.settings {
                set.execute(params![name, value]).map_err(err)?;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(0);
                audit
                    .execute(params![
                        now,
                        "setting_changed",
                        None::<String>,
                        None::<i64>,
                        detail
                    ])
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    fn purge(&mut self, before: Millis) -> rusqlite::Result<()> {
        let n = self.conn.execute(
            "DELETE FROM sessions WHERE ended_ms IS NOT NULL AND ended_ms < ?1",
            params![before.0],
        )?;
        if n > 0 {
            log::info!("purged {n} sessions that ended before the retention period");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::UserClass;

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
