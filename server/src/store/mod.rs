//! `Store`: every session's state in memory, mirrored to one SQLite file.
//!
//! Hot paths (`auth`, `check`, `heartbeat`) read and update the in-memory
//! shards only. All SQLite work happens on one writer thread, never on the
//! async workers: heartbeats are group-committed (at most one commit per
//! window), while endings (expiry, logout, revocation) and settings are
//! committed at once and acknowledged only after the commit is durable
//! (WAL with `synchronous=FULL`).
//!
//! # Layout
//! - this module: `SessionKey`, `Entry`, the sharded table and `update()`,
//!   the one way to change a session; `Store`, the handle the engine uses.
//! - `backend`: the storage interface (`Backend` writes, `Reads` reads) a
//!   second backend implements.
//! - `writer`: the writer thread (batching, commit windows, retry).
//! - `sqlite`: the embedded backend; `schema`: its file (lock, mode,
//!   pragmas), migrations, loading at start.

mod backend;
mod postgres;
mod schema;
mod sqlite;
mod writer;

pub use backend::{Backend, Changes, Expiries, Reads, SettingChange};
pub use postgres::redact_url;

use writer::Write;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use crate::policy::{EndReason, Millis, UserClass};

/// A session's key: the first 128 bits of HMAC-SHA-256 of its cookie
/// value under the server secret (enough against collisions and guessing,
/// and half the memory of the full 256). The raw cookie never reaches the
/// store.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionKey(pub [u8; 16]);

impl SessionKey {
    /// The short form shown to administrators and written to the audit log.
    pub fn prefix(&self) -> String {
        hex::encode(&self.0[..8])
    }
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionKey({})", self.prefix())
    }
}

/// Keys are HMAC outputs nobody can choose without the secret, so their first
/// bytes are already a good hash; SipHash over 32 bytes would be wasted work.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 16]` hashes as its bytes, possibly after a length prefix.
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(b);
        }
    }
}

type Map = HashMap<SessionKey, Entry, BuildHasherDefault<KeyHasher>>;
const SHARDS: usize = 16;

/// A part of the session table with its own lock. Changes waiting for the
/// next group commit are listed in `dirty`, under the same lock the change
/// already holds, so a heartbeat costs no extra lock, message or wake-up.
#[derive(Default)]
struct Shard {
    map: Map,
    dirty: Vec<SessionKey>,
    /// When the oldest entry of `dirty` was queued.
    dirty_since: Option<Instant>,
}

/// One session as kept in memory: 48 bytes plus its 16-byte key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub created: Millis,
    pub last_activity: Millis,
    /// When it ended; meaningful only when `end_reason` is set.
    pub ended_at: Millis,
    /// When to ask the ERP again who owns it; 0 when that is settled.
    pub recheck_at: i64,
    /// The ERP user id, 0 when unknown.
    pub uid: i32,
    pub class: UserClass,
    /// The ERP's `is_admin` and `is_system` for the owner (`rules::Facts`),
    /// stored with the class (in its bits 4 and 5).
    pub roles: u8,
    pub end_reason: Option<EndReason>,
    /// When the last heartbeat was accepted (memory only), for the rate limit.
    pub heartbeat_at: Millis,
    /// Whether the key waits in its shard's `dirty` list (store only; it
    /// fits in what would otherwise be padding).
    pub(crate) queued: bool,
}

// Memory per session is a promise (BENCHMARKS.md): keep the entry small.
const _: () =
    assert!(std::mem::size_of::<Entry>() <= 48 && std::mem::size_of::<SessionKey>() == 16);

impl Entry {
    pub fn new(now: Millis, class: UserClass, uid: i32, recheck_at: i64) -> Entry {
        Entry {
            created: now,
            last_activity: now,
            ended_at: Millis(0),
            recheck_at,
            uid,
            class,
            roles: 0,
            end_reason: None,
            heartbeat_at: Millis(0),
            queued: false,
        }
    }

    /// The stored `class` column: the class, and the roles in bits 4 and 5
    /// (older rows have none: 0).
    pub(crate) fn class_column(&self) -> i64 {
        self.class.to_i64() | i64::from(self.roles & 3) << 4
    }
    pub fn is_ended(&self) -> bool {
        self.end_reason.is_some()
    }

    /// A stored row as kept in memory: `[created, last activity, uid,
    /// class]`, when and why it ended, whether its owner is settled (if
    /// not, it is due for a lookup at `now`).
    pub(crate) fn from_row(
        [created, last, uid, class]: [i64; 4],
        ended: Option<i64>,
        reason: Option<&str>,
        verified: bool,
        now: Millis,
    ) -> Entry {
        Entry {
            created: Millis(created),
            last_activity: Millis(last),
            uid: uid as i32,
            // Bits other than the class's and the roles': internal, as any
            // unknown class (never exempt by accident).
            class: UserClass::from_i64(if class & !0x3f == 0 {
                class & 0xf
            } else {
                class
            }),
            roles: ((class >> 4) & 3) as u8,
            ended_at: Millis(ended.unwrap_or(0)),
            // An ended row with an unreadable reason stays ended.
            end_reason: ended.map(|_| {
                reason
                    .and_then(EndReason::parse)
                    .unwrap_or(EndReason::Revoked)
            }),
            recheck_at: if verified { 0 } else { now.0 },
            heartbeat_at: Millis(0),
            queued: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "database {path} is not a usable session-timeout database: {detail}. Restore it from a \
         backup; starting on an empty one instead would let sessions that ended here be used \
         again for as long as the ERP keeps them"
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error("database {path} has schema version {found}, newer than this program's {supported}")]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error(
        "database {path} is in use by another session-timeout server ({holder}): one server per \
         database, or a logout through one would not be seen by the other. Stop that server, or \
         give this one another --db"
    )]
    InUse { path: PathBuf, holder: String },
    #[error("cannot lock database {path} ({lock}): {source}")]
    Lock {
        path: PathBuf,
        lock: PathBuf,
        source: std::io::Error,
    },
    #[error("the database could not store the change: {0}")]
    Write(String),
    #[error("the database writer has stopped")]
    WriterGone,
    #[error("database read failed: {0}")]
    Read(String),
    #[error("cannot use PostgreSQL database {url}: {detail}")]
    Postgres { url: String, detail: String },
}

/// The answer to an idle expiry asked of a store shared by replicas: `None`
/// when stored, else the stored row that refused it.
pub(crate) type ExpiryAck = oneshot::Sender<Result<Option<Entry>, StoreError>>;

/// A change another replica stored, delivered to this one's memory.
pub(crate) enum Remote {
    Ended {
        key: SessionKey,
        at: Millis,
        reason: EndReason,
    },
    /// Settings changed: read them again.
    Settings,
}

/// An event in the audit log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditEvent {
    pub id: i64,
    pub at_ms: i64,
    pub event: String,
    pub key_prefix: Option<String>,
    pub uid: Option<i64>,
    pub detail: Option<String>,
}

/// Tuning of the writer.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How long heartbeats may wait to be committed together.
    pub commit_window: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            commit_window: Duration::from_millis(250),
        }
    }
}

/// Counters the writer keeps for `/metrics` and the benchmarks.
#[derive(Default)]
pub struct WriterStats {
    pub commits: AtomicU64,
    pub heartbeat_rows: AtomicU64,
    pub failed_commits: AtomicU64,
    /// Longest time a group-committed change waited, in microseconds, since start.
    pub max_wait_us: AtomicU64,
    /// Whether the last commit succeeded.
    pub healthy: AtomicBool,
}

pub struct Store {
    shards: Arc<[Mutex<Shard>]>,
    tx: Mutex<Option<mpsc::Sender<Write>>>,
    writer: Mutex<Option<thread::JoinHandle<()>>>,
    reads: Arc<dyn Reads>,
    pub stats: Arc<WriterStats>,
    /// `<db>.lock`, locked (flock) for as long as this store is open: one
    /// server per database. The OS releases it when the process dies.
    lock: Mutex<Option<std::fs::File>>,
    /// When several replicas share the database (PostgreSQL): the thread
    /// that brings their endings and settings into memory, how long past its
    /// timeout an idle session is kept (another replica may still hold newer
    /// activity in its commit window), and the settings changes it saw.
    listener: Mutex<Option<postgres::Listener>>,
    grace: Option<Millis>,
    settings_rx: Option<watch::Receiver<u64>>,
}

fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // A panic while holding a shard cannot leave an Entry half-written (it is
    // Copy and replaced whole), so a poisoned lock is still safe to use.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Store {
    /// Opens (creating if needed) the database, migrates it, loads every
    /// session into memory and starts the writer thread.
    pub fn open(path: &Path, opts: StoreOptions, now: Millis) -> Result<Store, StoreError> {
        let db_lock = schema::lock_database(path)?;
        let (backend, reads) = sqlite::Sqlite::open(path)?;
        let mut store = Store::with_backend(Box::new(backend), Arc::new(reads), opts, now)?;
        store.lock = Mutex::new(Some(db_lock));
        Ok(store)
    }

    /// Opens a PostgreSQL database shared by several replicas: migrates it
    /// (once, whichever replica starts first), loads every session, starts
    /// the writer and the listener that brings other replicas' endings and
    /// settings into memory.
    pub fn open_postgres(url: &str, opts: StoreOptions, now: Millis) -> Result<Store, StoreError> {
        let grace = Millis(opts.commit_window.as_millis() as i64 + 250);
        let (mut backend, reads, connect) = postgres::open(url)?;
        let since = backend.db_now_ms()?;
        let mut store = Store::with_backend(Box::new(backend), Arc::new(reads), opts, now)?;
        let (settings, rx) = watch::channel(0u64);
        let shards = store.shards.clone();
        let apply = move |change: Remote| match change {
            Remote::Ended { key, at, reason } => settle_in(&shards, &key, |slot| {
                let e = slot.get_or_insert_with(|| Entry::new(at, UserClass::Internal, 0, 0));
                if !e.is_ended() {
                    e.end_reason = Some(reason);
                    e.ended_at = at;
                }
            }),
            Remote::Settings => settings.send_modify(|n| *n += 1),
        };
        let listener = postgres::Listener::spawn(connect, since, Box::new(apply))?;
        store.grace = Some(grace);
        store.settings_rx = Some(rx);
        store.listener = Mutex::new(Some(listener));
        Ok(store)
    }

    /// When several replicas share the store: how long past its timeout an
    /// idle session is kept (another replica's commit window), and the
    /// expiry must be confirmed with `expire_if_idle`.
    pub fn shared_grace(&self) -> Option<Millis> {
        self.grace
    }

    /// Changes to settings made through other replicas (shared stores only).
    pub fn settings_changes(&self) -> Option<watch::Receiver<u64>> {
        self.settings_rx.clone()
    }

    /// Changes a session in memory only: for what storage already holds.
    pub fn settle(&self, key: &SessionKey, f: impl FnOnce(&mut Option<Entry>)) {
        settle_in(&self.shards, key, f)
    }

    /// Ends an idle session only if no replica stored activity after
    /// `cutoff`; resolves to `None` once ended and stored, else to the stored
    /// row that refused it. Memory is not changed: the caller settles it.
    pub fn expire_if_idle(
        &self,
        key: &SessionKey,
        ended: Entry,
        cutoff: Millis,
    ) -> oneshot::Receiver<Result<Option<Entry>, StoreError>> {
        let (ack, rx) = oneshot::channel();
        self.send(Write::Expire(*key, ended, cutoff, ack));
        rx
    }

    /// The stored row of a session (blocking read, run off the async workers).
    pub async fn fetch(&self, key: &SessionKey, now: Millis) -> Result<Option<Entry>, StoreError> {
        let (reads, key) = (self.reads.clone(), *key);
        tokio::task::spawn_blocking(move || reads.session(&key, now))
            .await
            .unwrap_or_else(|e| Err(StoreError::Read(e.to_string())))
    }

    /// A store on any backend: loads every session into memory, then starts
    /// the writer thread on it.
    pub fn with_backend(
        mut backend: Box<dyn Backend>,
        reads: Arc<dyn Reads>,
        opts: StoreOptions,
        now: Millis,
    ) -> Result<Store, StoreError> {
        let shards: Arc<[Mutex<Shard>]> =
            (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect();
        backend.load(now, &mut |key, entry| {
            lock(&shards[shard_of(&key)]).map.insert(key, entry);
        })?;
        let stats = Arc::new(WriterStats::default());
        stats.healthy.store(true, Ordering::Relaxed);
        let (tx, writer) = writer::spawn(backend, opts, stats.clone(), shards.clone())?;
        Ok(Store {
            shards,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            reads,
            stats,
            lock: Mutex::new(None),
            listener: Mutex::new(None),
            grace: None,
            settings_rx: None,
        })
    }

    pub fn get(&self, key: &SessionKey) -> Option<Entry> {
        lock(&self.shards[shard_of(key)]).map.get(key).copied()
    }

    /// Runs `f` on the session's entry under its shard lock and returns what
    /// `f` returns. `f` gets `None` for an unknown session and may create it.
    /// Whatever `f` changed is queued for the writer: an ending is returned as
    /// a receiver that resolves once it is durable.
    pub fn update<R>(
        &self,
        key: &SessionKey,
        f: impl FnOnce(&mut Option<Entry>) -> R,
    ) -> (R, Option<oneshot::Receiver<Result<(), StoreError>>>) {
        let mut guard = lock(&self.shards[shard_of(key)]);
        let shard = &mut *guard;
        let before = shard.map.get(key).copied();
        let mut slot = before;
        let r = f(&mut slot);
        let mut durable = None;
        match (slot, before) {
            (Some(after), Some(b)) if after == b => {}
            (Some(after), _) => {
                let was_ended = before.is_some_and(|b| b.is_ended());
                let mut queued = before.is_some_and(|b| b.queued);
                if after.is_ended() && !was_ended {
                    // Sent while still holding the lock, so the writer sees
                    // the ending after every earlier change of this session.
                    let (ack, rx) = oneshot::channel();
                    self.send(Write::End(*key, after, Some(ack)));
                    durable = Some(rx);
                } else if !queued && !after.is_ended() && after.class != UserClass::Public {
                    // Public sessions are not timed: nothing worth a row.
                    queued = true;
                    shard.dirty.push(*key);
                    shard.dirty_since.get_or_insert_with(Instant::now);
                }
                shard.map.insert(*key, Entry { queued, ..after });
            }
            (None, Some(_)) => {
                shard.map.remove(key);
            }
            (None, None) => {}
        }
        (r, durable)
    }

    fn send(&self, w: Write) {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let failed = match tx.as_ref() {
            Some(tx) => tx.send(w).err().map(|e| e.0),
            None => Some(w),
        };
        if let Some(w) = failed {
            let ack = match w {
                Write::End(_, _, ack) => ack,
                Write::Setting { ack, .. } | Write::Note { ack, .. } | Write::Flush(ack) => {
                    Some(ack)
                }
                Write::Expire(.., ack) => {
                    let _ = ack.send(Err(StoreError::WriterGone));
                    None
                }
                Write::Purge(_) => None,
            };
            if let Some(ack) = ack {
                let _ = ack.send(Err(StoreError::WriterGone));
            }
        }
    }

    /// Stores a setting durably and records it in the audit log.
    pub async fn set_setting(
        &self,
        name: &str,
        value: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        self.write_setting(name, value, detail, false).await
    }

    /// Stores a setting only if it has no value yet (the first replica's
    /// secret fingerprint); the caller reads back what is stored.
    pub async fn add_setting(
        &self,
        name: &str,
        value: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        self.write_setting(name, value, detail, true).await
    }

    async fn write_setting(
        &self,
        name: &str,
        value: &str,
        detail: &str,
        if_absent: bool,
    ) -> Result<(), StoreError> {
        let (ack, rx) = oneshot::channel();
        self.send(Write::Setting {
            name: name.into(),
            value: value.into(),
            detail: detail.into(),
            if_absent,
            ack,
        });
        rx.await.unwrap_or(Err(StoreError::WriterGone))
    }

    /// Records an audit event of its own, durably.
    pub async fn note(&self, event: &str, detail: &str) -> Result<(), StoreError> {
        let (ack, rx) = oneshot::channel();
        self.send(Write::Note {
            event: event.into(),
            detail: detail.into(),
            ack,
        });
        rx.await.unwrap_or(Err(StoreError::WriterGone))
    }

    /// Deletes the rows of sessions that ended before `before` (the audit
    /// log keeps their events). Done by the writer, soon.
    pub fn purge_before(&self, before: Millis) {
        self.send(Write::Purge(before));
    }

    /// Waits until every change queued so far is committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (ack, rx) = oneshot::channel();
        self.send(Write::Flush(ack));
        rx.await.unwrap_or(Err(StoreError::WriterGone))
    }

    /// Stops the writer after it committed everything queued.
    pub fn close(&self) {
        self.listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = h.join();
        }
        // Nothing writes any more: another server may have the database.
        self.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Visits every session, one shard lock at a time.
    pub fn for_each(&self, mut f: impl FnMut(&SessionKey, &Entry)) {
        for s in self.shards.iter() {
            for (k, e) in lock(s).map.iter() {
                f(k, e);
            }
        }
    }

    /// How many shards (separately locked parts) the table has.
    pub const SHARDS: usize = SHARDS;

    /// Keeps the sessions of one shard for which `f` says so, in one pass
    /// under that shard's lock.
    pub fn retain_in(&self, shard: usize, mut f: impl FnMut(&SessionKey, &Entry) -> bool) {
        lock(&self.shards[shard % SHARDS])
            .map
            .retain(|k, e| f(k, e));
    }

    /// Every stored session (blocking; call off the async workers).
    pub fn read_sessions(&self, now: Millis) -> Result<Vec<(SessionKey, Entry)>, StoreError> {
        self.reads.sessions(now)
    }

    /// Up to two stored keys starting with a hex prefix (blocking).
    pub fn read_keys_with_prefix(&self, prefix: &str) -> Result<Vec<SessionKey>, StoreError> {
        self.reads.keys_with_prefix(prefix)
    }

    /// Reads the stored settings (blocking; call off the async workers).
    pub fn read_settings(&self) -> Result<HashMap<String, String>, StoreError> {
        self.reads.settings()
    }

    /// Reads audit events with id greater than `after`, oldest first
    /// (blocking; call off the async workers).
    pub fn read_audit(&self, after: i64, limit: u32) -> Result<Vec<AuditEvent>, StoreError> {
        self.reads.audit(after, limit)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

/// The wall clock for audit events the backends write themselves.
fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn settle_in(shards: &[Mutex<Shard>], key: &SessionKey, f: impl FnOnce(&mut Option<Entry>)) {
    let mut guard = lock(&shards[shard_of(key)]);
    let before = guard.map.get(key).copied();
    let mut slot = before;
    f(&mut slot);
    match slot {
        Some(e) => {
            let queued = before.is_some_and(|b| b.queued);
            guard.map.insert(*key, Entry { queued, ..e });
        }
        None => {
            guard.map.remove(key);
        }
    }
}

fn shard_of(key: &SessionKey) -> usize {
    key.0[15] as usize % SHARDS
}

#[cfg(test)]
mod tests;
