//! The database file: its lock (one server per database), its mode, the
//! connection pragmas, the schema and its migrations, and loading the
//! sessions at start.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::{Entry, SessionKey, StoreError};
use crate::policy::Millis;

/// Takes `<db>.lock` for this process, or names the process that holds it.
pub(super) fn lock_database(path: &Path) -> Result<std::fs::File, StoreError> {
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

pub(super) const SCHEMA_VERSION: i64 = 1;
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

/// Opens a connection with the pragmas every connection needs.
pub(super) fn connect(path: &Path, flags: OpenFlags) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
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

/// Opens (creating if needed) the database file, readable by its owner only,
/// in WAL mode with `synchronous=FULL`, migrated to this program's schema.
pub(super) fn open(path: &Path) -> Result<Connection, StoreError> {
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
    Ok(conn)
}

const COLUMNS: &str =
    "key, created_ms, last_activity_ms, uid, class, verified, ended_ms, end_reason";

/// Reads every session row, handing each to `insert`.
pub(super) fn load(
    conn: &Connection,
    path: &Path,
    now: Millis,
    mut insert: impl FnMut(SessionKey, Entry),
) -> Result<(), StoreError> {
    let corrupt = |e: rusqlite::Error| StoreError::Corrupt {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    let mut stmt = conn
        .prepare(&format!("SELECT {COLUMNS} FROM sessions"))
        .map_err(corrupt)?;
    let mut rows = stmt.query([]).map_err(corrupt)?;
    while let Some(row) = rows.next().map_err(corrupt)? {
        let key: Vec<u8> = row.get(0).map_err(corrupt)?;
        let Ok(key) = <[u8; 16]>::try_from(key.as_slice()) else {
            continue;
        };
        insert(SessionKey(key), entry(row, now).map_err(corrupt)?);
    }
    Ok(())
}

/// One session's row, if stored; `now` is when an unverified one is due
/// for another lookup.
pub(super) fn read_session(
    conn: &Connection,
    key: &SessionKey,
    now: Millis,
) -> Result<Option<Entry>, rusqlite::Error> {
    use rusqlite::OptionalExtension as _;
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM sessions WHERE key = ?1"),
        [&key.0[..]],
        |row| entry(row, now),
    )
    .optional()
}

fn entry(row: &rusqlite::Row<'_>, now: Millis) -> Result<Entry, rusqlite::Error> {
    let ended: Option<i64> = row.get(6)?;
    let reason: Option<String> = row.get(7)?;
    let verified: i64 = row.get(5)?;
    Ok(Entry::from_row(
        [row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?],
        ended,
        reason.as_deref(),
        verified != 0,
        now,
    ))
}
