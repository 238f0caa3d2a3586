//! `Store`: every session's state in memory, mirrored to one SQLite file.
//!
//! Hot paths (`auth`, `check`, `heartbeat`) read and update the in-memory
//! shards only. All SQLite work happens on one writer thread, never on the
//! async workers: heartbeats are group-committed (at most one commit per
//! window), while endings (expiry, logout, revocation) and settings are
//! committed at once and acknowledged only after the commit is durable
//! (WAL with `synchronous=FULL`).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OpenFlags};
use tokio::sync::oneshot;

use crate::policy::{EndReason, Millis, Policy, UserClass};

/// A session's identity: the first 128 bits of HMAC-SHA-256 of its cookie
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
            end_reason: None,
            heartbeat_at: Millis(0),
            queued: false,
        }
    }
    pub fn is_ended(&self) -> bool {
        self.end_reason.is_some()
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

type Ack = oneshot::Sender<Result<(), StoreError>>;

enum Write {
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
    path: PathBuf,
    /// The effective policy, read lock-free on every request.
    timeout_ms: AtomicI64,
    lifetime_ms: AtomicI64,
    pub stats: Arc<WriterStats>,
    /// `<db>.lock`, locked (flock) for as long as this store is open: one
    /// server per database. The OS releases it when the process dies.
    lock: Mutex<Option<std::fs::File>>,
}

/// Takes `<db>.lock` for this process, or names the process that holds it.
fn lock_database(path: &Path) -> Result<std::fs::File, StoreError> {
    use std::io::{Read as _, Seek as _, Write as _};
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let lock_err = |source| StoreError::Lock {
        path: path.to_path_buf(),
        lock: lock_path.clone(),
        source,
    };
    let mut file = private_file(&lock_path)
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .truncate(false)
                .open(&lock_path)
        })
        .map_err(lock_err)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim().to_string();
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .trim()
                        .to_string()
                })
                .unwrap_or_default();
            let holder = match (pid.is_empty(), cmd.is_empty()) {
                (true, _) => format!("it holds {}", lock_path.display()),
                (false, true) => format!("pid {pid}"),
                (false, false) => format!("pid {pid}: {cmd}"),
            };
            return Err(StoreError::InUse {
                path: path.to_path_buf(),
                holder,
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(lock_err(e)),
    }
    file.set_len(0).map_err(lock_err)?;
    file.rewind().map_err(lock_err)?;
    write!(file, "{}", std::process::id()).map_err(lock_err)?;
    Ok(file)
}

/// Creates `path` readable by its owner only if it does not exist, and makes
/// an existing one so: the database holds who was logged in when.
fn private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

const SCHEMA_VERSION: i64 = 1;
const MIGRATIONS: &[&str] = &[
    // version 1
    "CREATE TABLE sessions (
        key BLOB PRIMARY KEY NOT NULL,
        created_ms INTEGER NOT NULL,
        last_activity_ms INTEGER NOT NULL,
        uid INTEGER NOT NULL DEFAULT 0,
        class INTEGER NOT NULL,
        verified INTEGER NOT NULL,
        ended_ms INTEGER,
        end_reason TEXT
     ) WITHOUT ROWID;
     CREATE INDEX sessions_ended ON sessions(ended_ms) WHERE ended_ms IS NOT NULL;
     CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms INTEGER NOT NULL,
        event TEXT NOT NULL,
        key_prefix TEXT,
        uid INTEGER,
        detail TEXT
     );
     CREATE TABLE settings (name TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);",
];

fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // A panic while holding a shard cannot leave an Entry half-written (it is
    // Copy and replaced whole), so a poisoned lock is still safe to use.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Opens a connection with the pragmas every connection needs.
fn connect(path: &Path, flags: OpenFlags) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

impl Store {
    /// Opens (creating if needed) the database, migrates it, loads every
    /// session into memory and starts the writer thread.
    pub fn open(path: &Path, opts: StoreOptions, now: Millis) -> Result<Store, StoreError> {
        let db_lock = lock_database(path)?;
        // SQLite gives the -wal and -shm files the database file's mode.
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            let p = PathBuf::from(p);
            if suffix.is_empty() || p.exists() {
                private_file(&p).map_err(|e| StoreError::Lock {
                    path: path.to_path_buf(),
                    lock: p.clone(),
                    source: e,
                })?;
            }
        }
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let corrupt = |e: rusqlite::Error| StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: e.to_string(),
        };
        let mut conn = connect(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )
        .map_err(open_err)?;
        // A file that is not SQLite fails here, on its first read.
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(corrupt)?;
        if !mode.eq_ignore_ascii_case("wal") {
            log::warn!(
                "database {} could not switch to WAL (journal_mode={mode})",
                path.display()
            );
        }
        // FULL: a commit is on disk (WAL fsynced) before we acknowledge it.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(corrupt)?;
        migrate(&mut conn, path)?;

        let shards: Arc<[Mutex<Shard>]> =
            (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect();
        {
            let mut stmt = conn
                .prepare("SELECT key, created_ms, last_activity_ms, uid, class, verified, ended_ms, end_reason FROM sessions")
                .map_err(corrupt)?;
            let mut rows = stmt.query([]).map_err(corrupt)?;
            while let Some(row) = rows.next().map_err(corrupt)? {
                let key: Vec<u8> = row.get(0).map_err(corrupt)?;
                let Ok(key) = <[u8; 16]>::try_from(key.as_slice()) else {
                    continue;
                };
                let ended: Option<i64> = row.get(6).map_err(corrupt)?;
                let reason: Option<String> = row.get(7).map_err(corrupt)?;
                let verified: i64 = row.get(5).map_err(corrupt)?;
                let entry = Entry {
                    created: Millis(row.get(1).map_err(corrupt)?),
                    last_activity: Millis(row.get(2).map_err(corrupt)?),
                    uid: row.get::<_, i64>(3).map_err(corrupt)? as i32,
                    class: UserClass::from_i64(row.get(4).map_err(corrupt)?),
                    ended_at: Millis(ended.unwrap_or(0)),
                    // An ended row with an unreadable reason stays ended.
                    end_reason: ended.map(|_| {
                        reason
                            .as_deref()
                            .and_then(EndReason::parse)
                            .unwrap_or(EndReason::Revoked)
                    }),
                    recheck_at: if verified == 0 { now.0 } else { 0 },
                    heartbeat_at: Millis(0),
                    queued: false,
                };
                let key = SessionKey(key);
                lock(&shards[shard_of(&key)]).map.insert(key, entry);
            }
        }

        let stats = Arc::new(WriterStats::default());
        stats.healthy.store(true, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        let writer_stats = stats.clone();
        let writer_shards = shards.clone();
        let writer = thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn({
                let path = path.to_path_buf();
                let identity = file_identity(&path);
                move || {
                    Writer {
                        conn,
                        rx,
                        opts,
                        stats: writer_stats,
                        shards: writer_shards,
                        path,
                        identity,
                    }
                    .run()
                }
            })
            .map_err(|e| StoreError::Write(e.to_string()))?;

        let policy = Policy::default();
        Ok(Store {
            shards,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            path: path.to_path_buf(),
            timeout_ms: AtomicI64::new(policy.timeout_ms),
            lifetime_ms: AtomicI64::new(0),
            stats,
            lock: Mutex::new(Some(db_lock)),
        })
    }

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
                Write::Setting { ack, .. } | Write::Flush(ack) => Some(ack),
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
        let (ack, rx) = oneshot::channel();
        self.send(Write::Setting {
            name: name.into(),
            value: value.into(),
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

    /// Reads the stored settings (blocking; call off the async workers).
    pub fn read_settings(&self) -> Result<HashMap<String, String>, StoreError> {
        let conn = self.reader()?;
        let mut stmt = conn
            .prepare("SELECT name, value FROM settings")
            .map_err(|e| StoreError::Read(e.to_string()))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect::<Result<HashMap<_, _>, _>>())
            .map_err(|e| StoreError::Read(e.to_string()))?;
        Ok(rows)
    }

    /// Reads audit events with id greater than `after`, oldest first
    /// (blocking; call off the async workers).
    pub fn read_audit(&self, after: i64, limit: u32) -> Result<Vec<AuditEvent>, StoreError> {
        let conn = self.reader()?;
        let read = |e: rusqlite::Error| StoreError::Read(e.to_string());
        let mut stmt = conn
            .prepare("SELECT id, at_ms, event, key_prefix, uid, detail FROM audit WHERE id > ?1 ORDER BY id LIMIT ?2")
            .map_err(read)?;
        let rows = stmt
            .query_map(params![after, limit], |r| {
                Ok(AuditEvent {
                    id: r.get(0)?,
                    at_ms: r.get(1)?,
                    event: r.get(2)?,
                    key_prefix: r.get(3)?,
                    uid: r.get(4)?,
                    detail: r.get(5)?,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(read)?;
        Ok(rows)
    }

    fn reader(&self) -> Result<Connection, StoreError> {
        connect(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| StoreError::Read(e.to_string()))
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

fn shard_of(key: &SessionKey) -> usize {
    key.0[15] as usize % SHARDS
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let corrupt = |e: rusqlite::Error| StoreError::Corrupt {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(corrupt)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version == 0 {
        // A version-0 file with tables in it belongs to something else.
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(corrupt)?;
        if tables > 0 {
            return Err(StoreError::Corrupt {
                path: path.to_path_buf(),
                detail: "it holds tables but no schema version".into(),
            });
        }
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction().map_err(corrupt)?;
        tx.execute_batch(sql).map_err(corrupt)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(corrupt)?;
        tx.commit().map_err(corrupt)?;
    }
    Ok(())
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
    identity: Option<(u64, u64)>,
}

fn file_identity(path: &Path) -> Option<(u64, u64)> {
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
        let now = file_identity(&self.path);
        if now.is_some() && now == self.identity {
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
        self.identity = file_identity(&self.path);
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
