//! The embedded backend: one SQLite file in WAL mode with `synchronous=FULL`
//! (a commit is on disk before it is acknowledged), written by one
//! connection on the writer thread, read by short-lived read-only ones.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags};

use super::backend::{Backend, Changes, Expiries, Reads, SettingChange};
use super::schema::{self, connect, SCHEMA_VERSION};
use super::{wall_ms, AuditEvent, Entry, SessionKey, StoreError};
use crate::policy::{EndReason, Millis};

pub struct Sqlite {
    conn: Connection,
    path: PathBuf,
    /// Device and inode of the file `conn` writes to, to notice when the
    /// file at `path` was deleted or replaced under us.
    file_id: Option<(u64, u64)>,
}

/// Read-only access to the same file.
pub struct SqliteReads {
    path: PathBuf,
}

impl Sqlite {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<(Sqlite, SqliteReads), StoreError> {
        let conn = schema::open(path)?;
        Ok((
            Sqlite {
                conn,
                path: path.to_path_buf(),
                file_id: file_id(path),
            },
            SqliteReads {
                path: path.to_path_buf(),
            },
        ))
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

    fn write(&mut self, changes: &Changes<'_>) -> Result<Expiries, StoreError> {
        self.ensure_file()?;
        let err = |e: rusqlite::Error| StoreError::Write(e.to_string());
        let tx = self.conn.transaction().map_err(err)?;
        let mut outcomes = Vec::with_capacity(changes.expiries.len());
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
            for (k, e) in changes.activity {
                upsert
                    .execute(params![
                        &k.0[..],
                        e.created.0,
                        e.last_activity.0,
                        e.uid,
                        e.class_column(),
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
            let mut expire = tx
                .prepare_cached(
                    "INSERT INTO sessions (key, created_ms, last_activity_ms, uid, class, verified, ended_ms, end_reason)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT(key) DO UPDATE SET
                        ended_ms = excluded.ended_ms, end_reason = excluded.end_reason
                     WHERE ended_ms IS NULL AND last_activity_ms <= ?9",
                )
                .map_err(err)?;
            let endings = changes.endings.iter().map(|(k, e)| (k, e, None));
            let expiries = changes.expiries.iter().map(|(k, e, c)| (k, e, Some(*c)));
            for (k, e, cutoff) in endings.chain(expiries) {
                let reason = e.end_reason.unwrap_or(EndReason::Revoked);
                let values = params![
                    &k.0[..],
                    e.created.0,
                    e.last_activity.0,
                    e.uid,
                    e.class_column(),
                    (e.recheck_at == 0) as i64,
                    e.ended_at.0,
                    reason.as_str()
                ];
                let changed = match cutoff {
                    None => end.execute(values),
                    Some(c) => {
                        let mut v = values.to_vec();
                        v.push(&c.0);
                        expire.execute(v.as_slice())
                    }
                }
                .map_err(err)?;
                if cutoff.is_some() {
                    outcomes.push(if changed > 0 {
                        None
                    } else {
                        schema::read_session(&tx, k, e.ended_at).map_err(err)?
                    });
                }
                if changed > 0 {
                    let event = reason.audit_event();
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
            let mut add = tx
                .prepare_cached("INSERT INTO settings (name, value) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING")
                .map_err(err)?;
            for SettingChange {
                name,
                value,
                detail,
                if_absent,
            } in changes.settings
            {
                let stmt = if *if_absent { &mut add } else { &mut set };
                if stmt.execute(params![name, value]).map_err(err)? == 0 {
                    continue;
                }
                audit
                    .execute(params![
                        wall_ms(),
                        "setting_changed",
                        None::<String>,
                        None::<i64>,
                        detail
                    ])
                    .map_err(err)?;
            }
        }
        {
            let mut audit = tx
                .prepare_cached("INSERT INTO audit (at_ms, event, detail) VALUES (?1, ?2, ?3)")
                .map_err(err)?;
            for (event, detail) in changes.notes {
                audit
                    .execute(params![wall_ms(), event, detail])
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        Ok(outcomes)
    }
}

impl Backend for Sqlite {
    fn load(
        &mut self,
        now: Millis,
        insert: &mut dyn FnMut(SessionKey, Entry),
    ) -> Result<(), StoreError> {
        schema::load(&self.conn, &self.path, now, insert)
    }

    fn commit(&mut self, changes: &Changes<'_>) -> Result<Expiries, StoreError> {
        self.write(changes)
    }

    fn purge(&mut self, before: Millis) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "DELETE FROM sessions WHERE ended_ms IS NOT NULL AND ended_ms < ?1",
                params![before.0],
            )
            .map_err(|e| StoreError::Write(e.to_string()))
    }

    fn probe(&mut self) -> Result<(), StoreError> {
        self.ensure_file()?;
        self.conn
            .execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
            .map_err(|e| StoreError::Write(e.to_string()))
    }
}

impl Reads for SqliteReads {
    fn settings(&self) -> Result<HashMap<String, String>, StoreError> {
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

    fn audit(&self, after: i64, limit: u32) -> Result<Vec<AuditEvent>, StoreError> {
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

    fn session(&self, key: &SessionKey, now: Millis) -> Result<Option<Entry>, StoreError> {
        let conn = self.reader()?;
        schema::read_session(&conn, key, now).map_err(|e| StoreError::Read(e.to_string()))
    }

    fn sessions(&self, now: Millis) -> Result<Vec<(SessionKey, Entry)>, StoreError> {
        let conn = self.reader()?;
        let mut all = Vec::new();
        schema::load(&conn, &self.path, now, |k, e| all.push((k, e)))?;
        Ok(all)
    }

    fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<SessionKey>, StoreError> {
        Ok(self
            .sessions(Millis(0))?
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| hex::encode(k.0).starts_with(prefix))
            .take(2)
            .collect())
    }
}

impl SqliteReads {
    fn reader(&self) -> Result<Connection, StoreError> {
        connect(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| StoreError::Read(e.to_string()))
    }
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
