//! The storage interface: what a backend keeps for the store, so that
//! sessions, settings and the audit log outlive the process. SQLite
//! (`sqlite.rs`) is the embedded one; PostgreSQL (`postgres/`, for several
//! replicas) implements the same two traits.
//!
//! The writer thread (`writer.rs`) decides when to write: endings and
//! settings at once, activity once per commit window, retries after a
//! failure. A backend only makes each call durable before it returns `Ok`.

use std::collections::HashMap;

use super::{AuditEvent, Entry, SessionKey, StoreError};
use crate::policy::Millis;

/// A setting change: its name, its new value, and the audit log's words.
pub struct SettingChange<'a> {
    pub name: &'a str,
    pub value: &'a str,
    pub detail: &'a str,
    /// Stored only if the setting has no value yet (the secret's
    /// fingerprint: the first replica to start records it, the others must
    /// match it).
    pub if_absent: bool,
}

/// One commit's worth of changes.
pub struct Changes<'a> {
    /// Activity of live sessions, in key order. An upsert never touches a
    /// session that has ended and never moves its last activity back.
    pub activity: &'a [(SessionKey, Entry)],
    /// Endings (logout, expiry, revocation), each recorded with its audit
    /// event, only if the session had not ended already.
    pub endings: &'a [(SessionKey, Entry)],
    /// Settings, each recorded with its audit event.
    pub settings: &'a [SettingChange<'a>],
    /// Idle expiries decided by one of several replicas: each ends its
    /// session only if the stored last activity is not after the given
    /// cutoff (another replica may have stored newer activity).
    pub expiries: &'a [(SessionKey, Entry, Millis)],
    /// Audit events of their own (`event`, `detail`), such as who asked
    /// for every session of a user to end.
    pub notes: &'a [(&'a str, &'a str)],
}

/// What a commit did with each of `Changes::expiries`, in order: `None` when
/// the session was ended as asked, else the stored row that refused it (newer
/// activity, or ended already).
pub type Expiries = Vec<Option<Entry>>;

/// The writing side, owned by the writer thread.
pub trait Backend: Send {
    /// Every stored session, at start, before any write.
    fn load(
        &mut self,
        now: Millis,
        insert: &mut dyn FnMut(SessionKey, Entry),
    ) -> Result<(), StoreError>;
    /// Stores all of `changes` in one transaction; durable when `Ok`.
    fn commit(&mut self, changes: &Changes<'_>) -> Result<Expiries, StoreError>;
    /// Deletes sessions that ended before `before`; returns how many.
    fn purge(&mut self, before: Millis) -> Result<usize, StoreError>;
    /// After a failure: a small real write, `Ok` once storage takes writes again.
    fn probe(&mut self) -> Result<(), StoreError>;
}

/// The reading side, for the admin API and the start (blocking calls: keep
/// them off the async workers).
pub trait Reads: Send + Sync {
    fn settings(&self) -> Result<HashMap<String, String>, StoreError>;
    /// Audit events with id greater than `after`, oldest first.
    fn audit(&self, after: i64, limit: u32) -> Result<Vec<AuditEvent>, StoreError>;
    /// One stored session (a replica meeting a session another one saw); an
    /// unverified one is due for a lookup at `now`.
    fn session(&self, key: &SessionKey, now: Millis) -> Result<Option<Entry>, StoreError>;
    /// Every stored session (the admin list of a replica, which has not met
    /// every session the others did).
    fn sessions(&self, now: Millis) -> Result<Vec<(SessionKey, Entry)>, StoreError>;
    /// Up to two stored keys whose hex form starts with `prefix`.
    fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<SessionKey>, StoreError>;
}
