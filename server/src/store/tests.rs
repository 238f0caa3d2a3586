//! The store over a fake backend (this module's unit tests only): group
//! commits, durable endings, failures reported and retried.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::policy::{EndReason, UserClass};

#[derive(Default)]
struct Log {
    commits: usize,
    activity_rows: usize,
    endings: Vec<SessionKey>,
    settings: Vec<String>,
    failing: bool,
}

struct Fake(Arc<Mutex<Log>>);

impl Backend for Fake {
    fn load(&mut self, _: Millis, _: &mut dyn FnMut(SessionKey, Entry)) -> Result<(), StoreError> {
        Ok(())
    }
    fn commit(&mut self, c: &Changes<'_>) -> Result<Expiries, StoreError> {
        let mut log = self.0.lock().unwrap();
        if log.failing {
            return Err(StoreError::Write("disk full".into()));
        }
        assert!(
            c.activity.windows(2).all(|w| w[0].0 .0 < w[1].0 .0),
            "activity in key order"
        );
        log.commits += 1;
        log.activity_rows += c.activity.len();
        log.endings.extend(c.endings.iter().map(|(k, _)| *k));
        log.settings
            .extend(c.settings.iter().map(|s| s.detail.to_string()));
        Ok(c.expiries.iter().map(|_| None).collect())
    }
    fn purge(&mut self, _: Millis) -> Result<usize, StoreError> {
        Ok(0)
    }
    fn probe(&mut self) -> Result<(), StoreError> {
        match self.0.lock().unwrap().failing {
            true => Err(StoreError::Write("disk full".into())),
            false => Ok(()),
        }
    }
}

impl Reads for Fake {
    fn settings(&self) -> Result<HashMap<String, String>, StoreError> {
        Ok(HashMap::new())
    }
    fn audit(&self, _: i64, _: u32) -> Result<Vec<AuditEvent>, StoreError> {
        Ok(Vec::new())
    }
    fn session(&self, _: &SessionKey, _: Millis) -> Result<Option<Entry>, StoreError> {
        Ok(None)
    }
    fn sessions(&self, _: Millis) -> Result<Vec<(SessionKey, Entry)>, StoreError> {
        Ok(Vec::new())
    }
    fn keys_with_prefix(&self, _: &str) -> Result<Vec<SessionKey>, StoreError> {
        Ok(Vec::new())
    }
}

fn store(window_ms: u64) -> (Store, Arc<Mutex<Log>>) {
    let log = Arc::new(Mutex::new(Log::default()));
    let opts = StoreOptions {
        commit_window: Duration::from_millis(window_ms),
    };
    let s = Store::with_backend(
        Box::new(Fake(log.clone())),
        Arc::new(Fake(log.clone())),
        opts,
        Millis(0),
    )
    .unwrap();
    (s, log)
}

fn key(i: u8) -> SessionKey {
    SessionKey([i; 16])
}

#[actix_rt::test]
async fn heartbeats_of_one_window_share_one_commit() {
    let (s, log) = store(50);
    for i in 0..100 {
        s.update(&key(i), |slot| {
            *slot = Some(Entry::new(Millis(1), UserClass::Internal, 2, 0));
        });
    }
    s.flush().await.unwrap();
    let l = log.lock().unwrap();
    assert_eq!(l.activity_rows, 100);
    assert!(
        l.commits <= 2,
        "{} commits for one window of heartbeats",
        l.commits
    );
}

#[actix_rt::test]
async fn an_ending_is_acknowledged_only_once_stored_and_retried_after_a_failure() {
    let (s, log) = store(10);
    s.update(&key(1), |slot| {
        *slot = Some(Entry::new(Millis(1), UserClass::Internal, 2, 0));
    });
    s.flush().await.unwrap();
    log.lock().unwrap().failing = true;
    let end = |slot: &mut Option<Entry>| {
        let e = slot.as_mut().unwrap();
        e.end_reason = Some(EndReason::Logout);
        e.ended_at = Millis(5);
    };
    let (_, rx) = s.update(&key(1), end);
    let first = rx.expect("an ending waits for its commit").await.unwrap();
    assert!(first.is_err(), "a failed commit is reported, never claimed");
    assert!(!s.stats.healthy.load(Ordering::Relaxed));
    assert!(log.lock().unwrap().endings.is_empty());
    // The storage comes back: the queued ending is retried and stored.
    log.lock().unwrap().failing = false;
    let mut stored = false;
    for _ in 0..50 {
        if log.lock().unwrap().endings == [key(1)] {
            stored = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(stored, "the ending was retried");
    s.flush().await.unwrap();
    assert!(s.stats.healthy.load(Ordering::Relaxed));
    // A setting is stored at once, with its audit words.
    s.set_setting("x", "1", "x: 0 -> 1").await.unwrap();
    assert_eq!(log.lock().unwrap().settings, ["x: 0 -> 1"]);
    s.close();
}
