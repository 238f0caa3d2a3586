use crate::helpers::*;

#[actix_rt::test]
async fn a_restart_keeps_active_sessions_active_and_ended_ones_ended() {
    let app = spawn_app().await;
    let active = app.login("admin").await;
    let logged_out = app.login("admin").await;
    let expired = app.login("admin").await;
    let portal = app.login("portal").await;
    for c in [&active, &logged_out, &expired, &portal] {
        app.check(c).await;
    }
    app.advance(40.0);
    app.heartbeat(&active, 0).await;
    app.logout(&logged_out).await;
    app.advance(25.0);
    assert_eq!(state_of(&app.check(&expired).await), "expired");
    let (dir, clock, tmp) = app.stop().await;

    let app = spawn_in(&dir, Options::default(), clock).await;
    let r = app.check(&active).await;
    assert_eq!(
        (state_of(&r), r.body["remaining_ms"].as_i64()),
        ("active", Some(35_000)),
        "{}",
        r.text
    );
    assert_eq!(state_of(&app.check(&logged_out).await), "expired");
    assert_eq!(state_of(&app.heartbeat(&expired, 0).await), "expired");
    assert_eq!(
        state_of(&app.check(&portal).await),
        "exempt",
        "the owner is remembered across restarts"
    );
    assert_eq!(app.auth(&logged_out).await.status, 401);
    drop(tmp);
}

#[actix_rt::test]
async fn a_clock_jumping_back_does_not_revive_an_ended_session() {
    let app = spawn_app().await;
    let c = app.login("admin").await;
    app.check(&c).await;
    app.advance(61.0);
    assert_eq!(state_of(&app.check(&c).await), "expired");
    app.advance(-3600.0);
    assert_eq!(state_of(&app.heartbeat(&c, 0).await), "expired");
    assert_eq!(app.auth(&c).await.status, 401);
    // And after a restart with the clock still behind.
    let (dir, clock, tmp) = app.stop().await;
    let app = spawn_in(&dir, Options::default(), clock).await;
    assert_eq!(app.auth(&c).await.status, 401);
    drop(tmp);
}

#[actix_rt::test]
async fn the_raw_cookie_value_is_nowhere_in_the_database_files() {
    let app = spawn_app().await;
    let cookies = [
        app.login("admin").await,
        app.login("portal").await,
        app.login("admin").await,
    ];
    for c in &cookies {
        app.heartbeat(c, 0).await;
    }
    app.logout(&cookies[2]).await;
    app.flush().await;
    let (dir, _, tmp) = app.stop().await;
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        checked += bytes.len();
        for c in &cookies {
            assert!(
                !bytes.windows(c.len()).any(|w| w == c.as_bytes()),
                "cookie found in {}",
                path.display()
            );
            // Nor its bytes in binary form.
            let raw = hex::decode(c).unwrap();
            assert!(
                !bytes.windows(raw.len()).any(|w| w == raw.as_slice()),
                "cookie bytes found in {}",
                path.display()
            );
        }
    }
    assert!(checked > 4096, "the database was written");
    drop(tmp);
}

#[actix_rt::test]
async fn heartbeats_are_group_committed_not_one_fsync_each() {
    let app = spawn_app().await;
    let c = app.login("admin").await;
    app.check(&c).await;
    app.flush().await;
    let before = app
        .state
        .sessions
        .store
        .stats
        .commits
        .load(std::sync::atomic::Ordering::Relaxed);
    for _ in 0..200 {
        app.clock.advance_ms(250);
        assert_eq!(state_of(&app.heartbeat(&c, 0).await), "active");
    }
    app.flush().await;
    let commits = app
        .state
        .sessions
        .store
        .stats
        .commits
        .load(std::sync::atomic::Ordering::Relaxed)
        - before;
    assert!(
        (1..20).contains(&commits),
        "{commits} commits for 200 heartbeats"
    );
    // The last heartbeat is on disk after the flush.
    let conn = rusqlite::Connection::open(app.dir.join("sessions.db")).unwrap();
    let last: i64 = conn
        .query_row("SELECT last_activity_ms FROM sessions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(last, app.clock_now());
}

#[actix_rt::test]
async fn a_file_that_is_not_a_database_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("sessions.db");
    std::fs::write(
        &db,
        b"this is not sqlite, it is a text file that somebody put here by mistake".repeat(100),
    )
    .unwrap();
    let (code, err) = start_binary(&db);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("is not a usable session-timeout database"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

impl TestApp {
    fn clock_now(&self) -> i64 {
        use session_timeout::clock::Clock;
        self.clock.now().0
    }
}

#[actix_rt::test]
async fn a_clock_jumping_forward_or_back_ends_sessions_only_as_the_policy_says() {
    let app = spawn_app().await;
    let c = app.login("admin").await;
    app.check(&c).await;
    // Forward by less than the timeout: still active, with what is left.
    app.advance(45.0);
    assert_eq!(app.check(&c).await.body["remaining_ms"], 15_000);
    // Back by an hour: never more than a full timeout left, never negative.
    app.advance(-3600.0);
    assert_eq!(app.check(&c).await.body["remaining_ms"], 60_000);
    assert_eq!(app.auth(&c).await.status, 204);
    // Forward again past the last activity + timeout: ended, by the policy.
    app.advance(3600.0 + 15.001);
    assert_eq!(state_of(&app.check(&c).await), "expired");
}

/// A stopped app's folder (kept alive by the returned guard) holding one
/// session that was logged out.
async fn app_with_an_ended_session() -> (tempfile::TempDir, std::path::PathBuf, String) {
    let app = spawn_app().await;
    let ended = app.login("admin").await;
    app.check(&ended).await;
    app.logout(&ended).await;
    let (dir, _, tmp) = app.stop().await;
    (tmp.unwrap(), dir, ended)
}

#[actix_rt::test]
async fn a_lost_secret_file_is_refused_at_start_not_replaced() {
    // A new secret would give every cookie a new key: the session that
    // ended here would look like a new login.
    let (_tmp, dir, _) = app_with_an_ended_session().await;
    let secret = dir.join("sessions.db.secret");
    assert!(secret.exists(), "the secret lives beside the database");
    std::fs::remove_file(&secret).unwrap();
    let (code, err) = start_binary(&dir.join("sessions.db"));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("sessions.db.secret is missing"), "{err}");
    assert!(err.contains("restore the secret file"), "{err}");
    assert!(!secret.exists(), "no new secret was made");
}

#[actix_rt::test]
async fn a_replaced_secret_file_is_refused_at_start() {
    let (_tmp, dir, _) = app_with_an_ended_session().await;
    let secret = dir.join("sessions.db.secret");
    std::fs::write(&secret, "ab".repeat(32)).unwrap();
    let (code, err) = start_binary(&dir.join("sessions.db"));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is not the secret database"), "{err}");
}

#[actix_rt::test]
async fn a_database_from_before_fingerprints_starts_and_records_its_secret() {
    let (_tmp, dir, ended) = app_with_an_ended_session().await;
    let db = dir.join("sessions.db");
    let fingerprint = || -> Option<String> {
        rusqlite::Connection::open(&db)
            .unwrap()
            .query_row(
                "SELECT value FROM settings WHERE name = 'secret_fingerprint'",
                [],
                |r| r.get(0),
            )
            .ok()
    };
    let recorded = fingerprint().expect("recorded at first start");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("DELETE FROM settings WHERE name = 'secret_fingerprint'", [])
        .unwrap();
    let app = spawn_in(
        &dir,
        Options::default(),
        std::sync::Arc::new(session_timeout::clock::ManualClock::new()),
    )
    .await;
    assert_eq!(
        app.auth(&ended).await.status,
        401,
        "the same keys: still ended"
    );
    app.flush().await;
    let _ = app.stop().await;
    assert_eq!(fingerprint(), Some(recorded), "recorded again");
}

/// Two servers on one database would disagree (a logout through one would
/// still pass `auth` on the other): the second refuses to start, naming the
/// first; once the first is gone, a new one starts.
#[actix_rt::test]
async fn a_second_server_on_the_same_database_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sessions.db");
    let mut first = spawn_binary(&db);
    let lock = dir.path().join("sessions.db.lock");
    for _ in 0..100 {
        if std::fs::read_to_string(&lock).is_ok_and(|p| p.trim() == first.id().to_string()) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (code, err) = start_binary(&db);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("in use by another session-timeout server"),
        "{err}"
    );
    assert!(
        err.contains(&format!("pid {}", first.id())),
        "names the holder: {err}"
    );
    // Also in-process (the tests' own app): refused the same way.
    let e = session_timeout::store::Store::open(
        &db,
        session_timeout::store::StoreOptions {
            commit_window: std::time::Duration::from_millis(10),
        },
        session_timeout::policy::Millis(0),
    )
    .err()
    .expect("refused");
    assert!(e.to_string().contains("in use"), "{e}");
    // kill -9: the OS releases the lock with the process.
    first.kill().unwrap();
    first.wait().unwrap();
    let (code, err) = start_binary(&db);
    assert_eq!(code, None, "starts once the first is gone: {err}");
}

/// The database says who was logged in when: its files are the owner's only.
#[actix_rt::test]
async fn database_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let app = spawn_app().await;
    let cookie = app.login("admin").await;
    app.heartbeat(&cookie, 0).await;
    app.flush().await;
    let dir = app.dir.clone();
    for name in [
        "sessions.db",
        "sessions.db-wal",
        "sessions.db-shm",
        "sessions.db.lock",
        "sessions.db.secret",
    ] {
        let meta = std::fs::metadata(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
    }
}
