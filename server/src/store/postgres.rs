//! The PostgreSQL backend, for several sidecar replicas sharing one
//! database. Tables live in the schema `session_timeout` (so the database
//! may be the ERP's own). Each replica opens three kinds of connection: one
//! for its writer thread, up to `READERS` for reads, and one that `LISTEN`s
//! for what other replicas stored (endings and settings, sent with `NOTIFY`
//! in the transaction that stores them, so they arrive only once durable).
//!
//! The synchronous `postgres` client runs its own small runtime, so every
//! connection lives on a plain thread of its own, never on an async worker.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Config, NoTls};

use super::backend::{Backend, Changes, Expiries, Reads, SettingChange};
use super::{wall_ms, AuditEvent, Entry, Remote, SessionKey, StoreError};
use crate::policy::{EndReason, Millis};

/// The channel every replica listens on.
const CHANNEL: &str = "session_timeout";
/// Reader connections per replica (settings, audit, sessions met first here).
const READERS: usize = 2;
/// Endings stored while the listener was away are read again from this long
/// before it last heard from the database (a transaction may start before
/// and commit after the connection was lost).
const CATCH_UP_MARGIN_MS: i64 = 60_000;

const SCHEMA_VERSION: i32 = 1;
const MIGRATIONS: &[&str] = &[
    // version 1
    "CREATE TABLE session_timeout.sessions (
        key bytea PRIMARY KEY,
        created_ms bigint NOT NULL,
        last_activity_ms bigint NOT NULL,
        uid integer NOT NULL DEFAULT 0,
        class smallint NOT NULL,
        verified boolean NOT NULL,
        ended_ms bigint,
        end_reason text,
        -- when the ending was stored, by the database's clock (catch-up)
        ended_db timestamptz
     );
     CREATE INDEX sessions_ended ON session_timeout.sessions (ended_ms) WHERE ended_ms IS NOT NULL;
     CREATE INDEX sessions_ended_db ON session_timeout.sessions (ended_db) WHERE ended_db IS NOT NULL;
     CREATE TABLE session_timeout.audit (
        id bigserial PRIMARY KEY,
        at_ms bigint NOT NULL,
        event text NOT NULL,
        key_prefix text,
        uid bigint,
        detail text
     );
     CREATE TABLE session_timeout.settings (name text PRIMARY KEY, value text NOT NULL);
     CREATE TABLE session_timeout.replicas (name text PRIMARY KEY, seen_at timestamptz NOT NULL);",
];

const COLUMNS: &str =
    "key, created_ms, last_activity_ms, uid, class, verified, ended_ms, end_reason";

/// The URL with its password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// How to (re)connect, shared by every connection of this replica.
#[derive(Clone)]
pub struct Connect {
    config: Config,
    url: String,
}

impl Connect {
    fn new(url: &str) -> Result<Connect, StoreError> {
        let redacted = redact_url(url);
        let mut config = Config::from_str(url).map_err(|e| StoreError::Postgres {
            url: redacted.clone(),
            detail: format!("not a PostgreSQL URL such as postgres://user@host/db: {e}"),
        })?;
        // A connection whose peer vanished (a partition, a dead host) must
        // fail within seconds, not after the kernel's 15 minutes: the
        // listener then reconnects and catches up as soon as it can.
        config
            .connect_timeout(Duration::from_secs(3))
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(2))
            .keepalives_retries(3)
            .tcp_user_timeout(Duration::from_secs(10));
        Ok(Connect {
            config,
            url: redacted,
        })
    }

    /// A connection named for `pg_stat_activity`: `session-timeout <role> <pid>`.
    fn connect(&self, role: &str) -> Result<Client, StoreError> {
        let mut config = self.config.clone();
        config.application_name(&format!("session-timeout {role} {}", std::process::id()));
        let mut client = config.connect(NoTls).map_err(|e| self.error(e))?;
        // A statement stuck behind a lock must fail, not hold the writer.
        client
            .batch_execute("SET statement_timeout = 10000; SET lock_timeout = 5000")
            .map_err(|e| self.error(e))?;
        Ok(client)
    }

    fn error(&self, e: postgres::Error) -> StoreError {
        StoreError::Postgres {
            url: self.url.clone(),
            detail: e.to_string(),
        }
    }
}

fn write_err(e: postgres::Error) -> StoreError {
    StoreError::Write(e.to_string())
}

fn read_err(e: postgres::Error) -> StoreError {
    StoreError::Read(e.to_string())
}

/// Connects, migrates and returns the writer's backend, the readers and how
/// the listener connects.
pub(super) fn open(url: &str) -> Result<(Pg, PgReads, Connect), StoreError> {
    let connect = Connect::new(url)?;
    let mut client = connect.connect("writer")?;
    migrate(&mut client, &connect)?;
    let reads = PgReads::spawn(connect.clone())?;
    let name = format!(
        "{}:{}",
        std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default(),
        std::process::id()
    );
    let mut pg = Pg {
        client: Some(client),
        connect: connect.clone(),
        name,
    };
    pg.probe()?;
    Ok((pg, reads, connect))
}

/// Applies the migrations this database lacks, in one transaction under an
/// advisory lock: replicas starting together apply each exactly once.
fn migrate(client: &mut Client, c: &Connect) -> Result<(), StoreError> {
    let fail = |e: postgres::Error| StoreError::Postgres {
        url: c.url.clone(),
        detail: format!("migrating the schema session_timeout failed: {e}"),
    };
    let mut tx = client.transaction().map_err(fail)?;
    // Any constant will do, as long as it is ours: "sessiont" in ASCII.
    tx.execute("SELECT pg_advisory_xact_lock(7310575197254037108)", &[])
        .map_err(fail)?;
    tx.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS session_timeout;
         CREATE TABLE IF NOT EXISTS session_timeout.schema_version (
            version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .map_err(fail)?;
    let found: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM session_timeout.schema_version",
            &[],
        )
        .map_err(fail)?
        .get(0);
    if found > SCHEMA_VERSION {
        return Err(StoreError::Postgres {
            url: c.url.clone(),
            detail: format!(
                "its schema session_timeout has version {found}, newer than this program's \
                 {SCHEMA_VERSION}: upgrade this replica"
            ),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(sql).map_err(fail)?;
        tx.execute(
            "INSERT INTO session_timeout.schema_version (version) VALUES ($1)",
            &[&(i as i32 + 1)],
        )
        .map_err(fail)?;
        log::info!(
            "database {}: schema session_timeout migrated to version {}",
            c.url,
            i + 1
        );
    }
    tx.commit().map_err(fail)
}

fn entry(row: &postgres::Row, now: Millis) -> Entry {
    let class: i16 = row.get(4);
    let uid: i32 = row.get(3);
    Entry::from_row(
        [row.get(1), row.get(2), uid as i64, class as i64],
        row.get(6),
        row.get::<_, Option<&str>>(7),
        row.get(5),
        now,
    )
}

fn key_of(row: &postgres::Row) -> Option<SessionKey> {
    <[u8; 16]>::try_from(row.get::<_, &[u8]>(0))
        .ok()
        .map(SessionKey)
}

/// The writer thread's connection.
pub(super) struct Pg {
    client: Option<Client>,
    connect: Connect,
    /// This replica in `session_timeout.replicas`: host and pid.
    name: String,
}

impl Pg {
    /// The connection, made again if it was lost.
    fn client(&mut self) -> Result<&mut Client, StoreError> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.client = None;
            let c = self
                .connect
                .connect("writer")
                .map_err(|e| StoreError::Write(e.to_string()))?;
            self.client = Some(c);
        }
        Ok(self.client.as_mut().expect("just connected"))
    }

    /// The database's clock, in ms since the epoch.
    pub(super) fn db_now_ms(&mut self) -> Result<i64, StoreError> {
        let row = self
            .client()?
            .query_one(
                "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::int8",
                &[],
            )
            .map_err(read_err)?;
        Ok(row.get(0))
    }

    fn write(&mut self, changes: &Changes<'_>) -> Result<Expiries, StoreError> {
        let client = self.client()?;
        let mut tx = client.transaction().map_err(write_err)?;
        if !changes.activity.is_empty() {
            let n = changes.activity.len();
            let (mut keys, mut created, mut last, mut uid, mut class, mut verified) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            for (k, e) in changes.activity {
                keys.push(&k.0[..]);
                created.push(e.created.0);
                last.push(e.last_activity.0);
                uid.push(e.uid);
                class.push(e.class_column() as i16);
                verified.push(e.recheck_at == 0);
            }
            // One statement for the whole window, in key order (replicas
            // writing overlapping sessions take their row locks in the same
            // order). A settled owner is never replaced by an unsettled one.
            tx.execute(
                "INSERT INTO session_timeout.sessions AS s
                    (key, created_ms, last_activity_ms, uid, class, verified)
                 SELECT * FROM unnest($1::bytea[], $2::int8[], $3::int8[], $4::int4[], $5::int2[], $6::bool[])
                 ON CONFLICT (key) DO UPDATE SET
                    last_activity_ms = greatest(s.last_activity_ms, excluded.last_activity_ms),
                    created_ms = least(s.created_ms, excluded.created_ms),
                    uid = CASE WHEN excluded.verified OR NOT s.verified THEN excluded.uid ELSE s.uid END,
                    class = CASE WHEN excluded.verified OR NOT s.verified THEN excluded.class ELSE s.class END,
                    verified = s.verified OR excluded.verified
                 WHERE s.ended_ms IS NULL",
                &[&keys, &created, &last, &uid, &class, &verified],
            )
            .map_err(write_err)?;
        }
        let end = tx
            .prepare(
                "INSERT INTO session_timeout.sessions AS s
                    (key, created_ms, last_activity_ms, uid, class, verified, ended_ms, end_reason, ended_db)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())
                 ON CONFLICT (key) DO UPDATE SET
                    last_activity_ms = greatest(s.last_activity_ms, excluded.last_activity_ms),
                    ended_ms = excluded.ended_ms, end_reason = excluded.end_reason, ended_db = now()
                 WHERE s.ended_ms IS NULL
                 RETURNING s.uid",
            )
            .map_err(write_err)?;
        // The one conditional statement that lets a replica end an idle
        // session: only if no replica stored activity after the cutoff.
        let expire = tx
            .prepare(
                "INSERT INTO session_timeout.sessions AS s
                    (key, created_ms, last_activity_ms, uid, class, verified, ended_ms, end_reason, ended_db)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())
                 ON CONFLICT (key) DO UPDATE SET
                    ended_ms = excluded.ended_ms, end_reason = excluded.end_reason, ended_db = now()
                 WHERE s.ended_ms IS NULL AND s.last_activity_ms <= $9
                 RETURNING s.uid",
            )
            .map_err(write_err)?;
        let mut outcomes = Vec::with_capacity(changes.expiries.len());
        let endings = changes.endings.iter().map(|(k, e)| (k, e, None));
        let expiries = changes.expiries.iter().map(|(k, e, c)| (k, e, Some(*c)));
        for (k, e, cutoff) in endings.chain(expiries) {
            let reason = e.end_reason.unwrap_or(EndReason::Revoked);
            let class = e.class_column() as i16;
            let verified = e.recheck_at == 0;
            let params: [&(dyn postgres::types::ToSql + Sync); 8] = [
                &&k.0[..],
                &e.created.0,
                &e.last_activity.0,
                &e.uid,
                &class,
                &verified,
                &e.ended_at.0,
                &reason.as_str(),
            ];
            let stored = match cutoff {
                None => tx.query_opt(&end, &params),
                Some(c) => {
                    let mut with_cutoff = params.to_vec();
                    with_cutoff.push(&c.0);
                    tx.query_opt(&expire, &with_cutoff)
                }
            }
            .map_err(write_err)?;
            if stored.is_some() {
                let event = reason.audit_event();
                let uid = (e.uid != 0).then_some(e.uid as i64);
                tx.execute(
                    "INSERT INTO session_timeout.audit (at_ms, event, key_prefix, uid, detail)
                     VALUES ($1, $2, $3, $4, $5)",
                    &[&e.ended_at.0, &event, &k.prefix(), &uid, &reason.as_str()],
                )
                .map_err(write_err)?;
                let payload = format!(
                    "e {} {} {}",
                    hex::encode(k.0),
                    e.ended_at.0,
                    reason.as_str()
                );
                tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
                    .map_err(write_err)?;
            }
            if cutoff.is_some() {
                outcomes.push(match stored {
                    Some(_) => None,
                    None => tx
                        .query_opt(
                            &format!(
                                "SELECT {COLUMNS} FROM session_timeout.sessions WHERE key = $1"
                            ),
                            &[&&k.0[..]],
                        )
                        .map_err(write_err)?
                        .map(|row| entry(&row, e.ended_at)),
                });
            }
        }
        let mut settings_changed = false;
        for SettingChange {
            name,
            value,
            detail,
            if_absent,
        } in changes.settings
        {
            // Only a real change is audited: replicas reading the same value
            // from the ERP store it once.
            let sql = if *if_absent {
                "INSERT INTO session_timeout.settings (name, value) VALUES ($1, $2)
                 ON CONFLICT (name) DO NOTHING"
            } else {
                "INSERT INTO session_timeout.settings AS s (name, value) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value
                 WHERE s.value IS DISTINCT FROM excluded.value"
            };
            if tx.execute(sql, &[name, value]).map_err(write_err)? == 0 {
                continue;
            }
            settings_changed = true;
            tx.execute(
                "INSERT INTO session_timeout.audit (at_ms, event, detail) VALUES ($1, 'setting_changed', $2)",
                &[&wall_ms(), detail],
            )
            .map_err(write_err)?;
        }
        if settings_changed {
            tx.execute("SELECT pg_notify($1, 's')", &[&CHANNEL])
                .map_err(write_err)?;
        }
        for (event, detail) in changes.notes {
            tx.execute(
                "INSERT INTO session_timeout.audit (at_ms, event, detail) VALUES ($1, $2, $3)",
                &[&wall_ms(), event, detail],
            )
            .map_err(write_err)?;
        }
        tx.commit().map_err(write_err)?;
        Ok(outcomes)
    }

    fn failed<T>(&mut self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        if r.is_err() && self.client.as_ref().is_some_and(|c| c.is_closed()) {
            self.client = None;
        }
        r
    }
}

impl Backend for Pg {
    fn load(
        &mut self,
        now: Millis,
        insert: &mut dyn FnMut(SessionKey, Entry),
    ) -> Result<(), StoreError> {
        let url = self.connect.url.clone();
        let fail = |e: postgres::Error| StoreError::Postgres {
            url: url.clone(),
            detail: format!("loading the sessions failed: {e}"),
        };
        let client = self.client()?;
        let mut rows = client
            .query_raw(
                &format!("SELECT {COLUMNS} FROM session_timeout.sessions"),
                std::iter::empty::<i32>(),
            )
            .map_err(fail)?;
        while let Some(row) = rows.next().map_err(fail)? {
            if let Some(key) = key_of(&row) {
                insert(key, entry(&row, now));
            }
        }
        Ok(())
    }

    fn commit(&mut self, changes: &Changes<'_>) -> Result<Expiries, StoreError> {
        let r = self.write(changes);
        if r.is_err() && self.client.as_ref().is_some_and(|c| c.is_closed()) {
            // The connection was lost (a restart, a terminated backend): once
            // more on a new one. Safe even if the first COMMIT was applied:
            // every statement is idempotent (endings only apply to open
            // sessions, settings only when they differ).
            self.client = None;
            let again = self.write(changes);
            return self.failed(again);
        }
        self.failed(r)
    }

    fn purge(&mut self, before: Millis) -> Result<usize, StoreError> {
        let r = self.client().and_then(|c| {
            c.execute(
                "DELETE FROM session_timeout.sessions WHERE ended_ms IS NOT NULL AND ended_ms < $1",
                &[&before.0],
            )
            .map(|n| n as usize)
            .map_err(write_err)
        });
        self.failed(r)
    }

    /// A real write: this replica's row in `session_timeout.replicas`.
    fn probe(&mut self) -> Result<(), StoreError> {
        let name = self.name.clone();
        let r = self.client().and_then(|c| {
            c.execute(
                "INSERT INTO session_timeout.replicas (name, seen_at) VALUES ($1, now())
                 ON CONFLICT (name) DO UPDATE SET seen_at = now()",
                &[&name],
            )
            .map(|_| ())
            .map_err(write_err)
        });
        self.failed(r)
    }
}

type Reply<T> = mpsc::Sender<Result<T, StoreError>>;

enum Job {
    Settings(Reply<HashMap<String, String>>),
    Audit(i64, u32, Reply<Vec<AuditEvent>>),
    Session(SessionKey, Millis, Reply<Option<Entry>>),
    Sessions(Millis, Reply<Vec<(SessionKey, Entry)>>),
    Prefix(String, Reply<Vec<SessionKey>>),
}

/// Reads, served by `READERS` threads with a connection each.
pub(super) struct PgReads {
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl PgReads {
    fn spawn(connect: Connect) -> Result<PgReads, StoreError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..READERS {
            let (rx, connect) = (rx.clone(), connect.clone());
            thread::Builder::new()
                .name(format!("pg-reader-{i}"))
                .spawn(move || {
                    let mut client: Option<Client> = None;
                    loop {
                        let job = match rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
                            Ok(job) => job,
                            Err(_) => return,
                        };
                        if client.as_ref().is_none_or(|c| c.is_closed()) {
                            client = connect.connect("reader").ok();
                        }
                        // A connection found closed while serving is made
                        // again and the job served once more.
                        if let Some(job) = serve(client.as_mut(), job) {
                            client = connect.connect("reader").ok();
                            let _ = serve(client.as_mut(), job);
                        }
                    }
                })
                .map_err(|e| StoreError::Read(e.to_string()))?;
        }
        Ok(PgReads {
            jobs: Mutex::new(tx),
        })
    }

    fn ask<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<T, StoreError> {
        let (tx, rx) = mpsc::channel();
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(job(tx))
            .map_err(|_| StoreError::Read("the database readers have stopped".into()))?;
        rx.recv_timeout(Duration::from_secs(15))
            .map_err(|_| StoreError::Read("no answer from the database".into()))?
    }
}

/// Serves `job`; gives it back, unanswered, when the connection turned out
/// to be closed.
fn serve(client: Option<&mut Client>, job: Job) -> Option<Job> {
    let Some(c) = client else {
        let down = || StoreError::Read("the database is unreachable".into());
        match job {
            Job::Settings(r) => drop(r.send(Err(down()))),
            Job::Audit(_, _, r) => drop(r.send(Err(down()))),
            Job::Session(_, _, r) => drop(r.send(Err(down()))),
            Job::Sessions(_, r) => drop(r.send(Err(down()))),
            Job::Prefix(_, r) => drop(r.send(Err(down()))),
        }
        return None;
    };
    // An error on a connection that turned out closed: given back, to be
    // served again on a new one.
    let lost = |failed: bool, c: &Client| failed && c.is_closed();
    match job {
        Job::Settings(reply) => {
            let r = c
                .query("SELECT name, value FROM session_timeout.settings", &[])
                .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect())
                .map_err(read_err);
            if lost(r.is_err(), c) {
                return Some(Job::Settings(reply));
            }
            let _ = reply.send(r);
        }
        Job::Audit(after, limit, reply) => {
            let r = c
                .query(
                    "SELECT id, at_ms, event, key_prefix, uid, detail FROM session_timeout.audit
                     WHERE id > $1 ORDER BY id LIMIT $2",
                    &[&after, &(limit as i64)],
                )
                .map(|rows| {
                    rows.iter()
                        .map(|r| AuditEvent {
                            id: r.get(0),
                            at_ms: r.get(1),
                            event: r.get(2),
                            key_prefix: r.get(3),
                            uid: r.get(4),
                            detail: r.get(5),
                        })
                        .collect()
                })
                .map_err(read_err);
            if lost(r.is_err(), c) {
                return Some(Job::Audit(after, limit, reply));
            }
            let _ = reply.send(r);
        }
        Job::Session(key, now, reply) => {
            let r = c
                .query_opt(
                    &format!("SELECT {COLUMNS} FROM session_timeout.sessions WHERE key = $1"),
                    &[&&key.0[..]],
                )
                .map(|row| row.map(|row| entry(&row, now)))
                .map_err(read_err);
            if lost(r.is_err(), c) {
                return Some(Job::Session(key, now, reply));
            }
            let _ = reply.send(r);
        }
        Job::Sessions(now, reply) => {
            let r = c
                .query(
                    &format!("SELECT {COLUMNS} FROM session_timeout.sessions"),
                    &[],
                )
                .map(|rows| {
                    rows.iter()
                        .filter_map(|row| Some((key_of(row)?, entry(row, now))))
                        .collect()
                })
                .map_err(read_err);
            if lost(r.is_err(), c) {
                return Some(Job::Sessions(now, reply));
            }
            let _ = reply.send(r);
        }
        Job::Prefix(prefix, reply) => {
            let r = c
                .query(
                    "SELECT key FROM session_timeout.sessions
                     WHERE encode(key, 'hex') LIKE $1 || '%' LIMIT 2",
                    &[&prefix],
                )
                .map(|rows| rows.iter().filter_map(key_of).collect())
                .map_err(read_err);
            if lost(r.is_err(), c) {
                return Some(Job::Prefix(prefix, reply));
            }
            let _ = reply.send(r);
        }
    }
    None
}

impl Reads for PgReads {
    fn settings(&self) -> Result<HashMap<String, String>, StoreError> {
        self.ask(Job::Settings)
    }
    fn audit(&self, after: i64, limit: u32) -> Result<Vec<AuditEvent>, StoreError> {
        self.ask(|r| Job::Audit(after, limit, r))
    }
    fn session(&self, key: &SessionKey, now: Millis) -> Result<Option<Entry>, StoreError> {
        self.ask(|r| Job::Session(*key, now, r))
    }
    fn sessions(&self, now: Millis) -> Result<Vec<(SessionKey, Entry)>, StoreError> {
        self.ask(|r| Job::Sessions(now, r))
    }
    fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<SessionKey>, StoreError> {
        let prefix = prefix.to_string();
        self.ask(|r| Job::Prefix(prefix, r))
    }
}

/// The thread that brings what other replicas stored into this one's
/// memory; stopped when dropped.
pub(super) struct Listener {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

type Apply = Box<dyn Fn(Remote) + Send>;

impl Listener {
    /// Listens from now on; endings stored since `since_ms` (the database's
    /// clock, taken before this replica loaded its sessions) are read first.
    pub(super) fn spawn(
        connect: Connect,
        since_ms: i64,
        apply: Apply,
    ) -> Result<Listener, StoreError> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::Builder::new()
            .name("pg-listener".into())
            .spawn(move || listen(connect, since_ms, apply, flag))
            .map_err(|e| StoreError::Read(e.to_string()))?;
        Ok(Listener {
            stop,
            thread: Some(thread),
        })
    }
}

fn listen(connect: Connect, mut since_ms: i64, apply: Apply, stop: Arc<AtomicBool>) {
    let mut down_since: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        match listen_once(&connect, &mut since_ms, &apply, &stop) {
            Ok(()) => return,
            Err(e) => {
                if down_since.is_none() {
                    log::error!(
                        "lost the database's notifications ({e}); reconnecting, then catching up"
                    );
                }
                down_since.get_or_insert_with(Instant::now);
            }
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// One connection's life: `LISTEN`, catch up, then apply notifications until
/// the connection fails (`Err`) or the store closes (`Ok`).
fn listen_once(
    connect: &Connect,
    since_ms: &mut i64,
    apply: &Apply,
    stop: &AtomicBool,
) -> Result<(), StoreError> {
    let mut client = connect.connect("listener")?;
    let err = |e: postgres::Error| StoreError::Read(e.to_string());
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .map_err(err)?;
    // Listening first, then reading: an ending is either read here or
    // notified after (or both; applying one twice changes nothing).
    let now_sql = "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::int8";
    let db_now: i64 = client.query_one(now_sql, &[]).map_err(err)?.get(0);
    let rows = client
        .query(
            "SELECT key, ended_ms, end_reason FROM session_timeout.sessions
             WHERE ended_db >= to_timestamp($1::float8 / 1000)",
            &[&((*since_ms - CATCH_UP_MARGIN_MS) as f64)],
        )
        .map_err(err)?;
    for row in &rows {
        if let (Some(key), Some(at)) = (key_of(row), row.get::<_, Option<i64>>(1)) {
            let reason = row
                .get::<_, Option<&str>>(2)
                .and_then(EndReason::parse)
                .unwrap_or(EndReason::Revoked);
            apply(Remote::Ended {
                key,
                at: Millis(at),
                reason,
            });
        }
    }
    apply(Remote::Settings);
    *since_ms = db_now;
    log::info!(
        "listening for other replicas' endings and settings ({} endings caught up)",
        rows.len()
    );
    let mut pinged = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut batch = client.notifications();
        let mut it = batch.timeout_iter(Duration::from_millis(250));
        while let Some(n) = it.next().map_err(err)? {
            if let Some(change) = parse(n.payload()) {
                apply(change);
            }
        }
        drop(it);
        drop(batch);
        // Every second, a round trip: a connection that died silently is
        // noticed, and the catch-up after it starts from the last good one.
        if pinged.elapsed() >= Duration::from_secs(1) {
            *since_ms = client.query_one(now_sql, &[]).map_err(err)?.get(0);
            pinged = Instant::now();
        }
    }
}

/// A notification's payload: `e <key hex> <ended ms> <reason>` or `s`.
fn parse(payload: &str) -> Option<Remote> {
    let mut parts = payload.split(' ');
    match parts.next()? {
        "s" => Some(Remote::Settings),
        "e" => {
            let key = <[u8; 16]>::try_from(hex::decode(parts.next()?).ok()?).ok()?;
            let at = parts.next()?.parse().ok()?;
            let reason = EndReason::parse(parts.next()?)?;
            Some(Remote::Ended {
                key: SessionKey(key),
                at: Millis(at),
                reason,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password_in_messages() {
        assert_eq!(
            redact_url("postgres://st:s3cret@db.example/st"),
            "postgres://st:***@db.example/st"
        );
        assert_eq!(redact_url("postgres://st@db/st"), "postgres://st@db/st");
        assert_eq!(
            redact_url("host=/run/pg dbname=st"),
            "host=/run/pg dbname=st"
        );
    }

    #[test]
    fn notifications_are_read_back_as_sent() {
        let k = SessionKey([7; 16]);
        let payload = format!("e {} 1234 logout", hex::encode(k.0));
        match parse(&payload) {
            Some(Remote::Ended { key, at, reason }) => {
                assert_eq!((key, at, reason), (k, Millis(1234), EndReason::Logout))
            }
            _ => panic!("not an ending"),
        }
        assert!(matches!(parse("s"), Some(Remote::Settings)));
        assert!(parse("e zz 1 logout").is_none());
        assert!(parse("x").is_none());
    }
}
