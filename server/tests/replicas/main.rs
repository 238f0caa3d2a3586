//! Several sidecar replicas (the real binary, one process each) on one real
//! PostgreSQL server started by the test itself: one verdict for a session
//! from every replica, with replicas and the database failing.
//! `make test` runs these; without a PostgreSQL server installed they say
//! SKIPPED (and fail with CI=true).

mod harness;

use std::time::{Duration, Instant};

use harness::*;

/// Polls `f` every 20 ms until it is true; the time it took, or `None`.
async fn within<F, Fut>(limit: Duration, mut f: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return Some(start.elapsed());
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

#[actix_rt::test]
async fn a_logout_through_one_replica_is_refused_by_every_other_within_a_second() {
    if !postgres_installed() {
        return;
    }
    let pg = Pg::start();
    let replicas: Vec<Replica> = (0..3)
        .map(|_| Replica::start(&pg, Default::default()))
        .collect();
    let c = client();
    let mut slowest = Duration::ZERO;
    for i in 0..10 {
        let cookie = format!("logout-{i}");
        // Seen by every replica (the last one only for odd sessions: a
        // replica meeting an ended session for the first time must refuse it).
        for r in &replicas[..2 + (i % 2)] {
            assert_eq!(r.auth(&c, &cookie).await, 204);
        }
        let through = &replicas[i % 3];
        let out = through.logout(&c, &cookie).await;
        assert_eq!((out.status, out.state()), (200, "expired"), "{}", out.body);
        for r in &replicas {
            let took = within(Duration::from_secs(1), || async {
                r.auth(&c, &cookie).await == 401
            })
            .await
            .unwrap_or_else(|| {
                panic!(
                    "replica {} still lets session {cookie} through after 1 s",
                    r.base
                )
            });
            slowest = slowest.max(took);
        }
    }
    eprintln!("slowest replica to refuse a logged-out session: {slowest:?}");
    // Stored once, audited once, whatever replica was asked.
    let audited = pg.psql("SELECT count(*) FROM session_timeout.audit WHERE event = 'logout'");
    assert_eq!(audited, "10");
}

#[actix_rt::test]
async fn heartbeats_to_one_replica_and_checks_to_another_never_end_the_session() {
    if !postgres_installed() {
        return;
    }
    let pg = Pg::start();
    let o = || ReplicaOptions {
        timeout_s: 2,
        ..Default::default()
    };
    let (a, b) = (Replica::start(&pg, o()), Replica::start(&pg, o()));
    let c = client();
    let cookie = "busy-user";
    assert_eq!(b.auth(&c, cookie).await, 204);
    // Three timeouts: the user works (heartbeats reach A only), the page and
    // the proxy ask B only.
    let start = Instant::now();
    let mut last_heartbeat = Instant::now() - Duration::from_secs(1);
    while start.elapsed() < Duration::from_secs(6) {
        if last_heartbeat.elapsed() >= Duration::from_millis(600) {
            let hb = a.heartbeat(&c, cookie).await;
            assert_eq!(hb.state(), "active", "{}", hb.body);
            last_heartbeat = Instant::now();
        }
        let check = b.check(&c, cookie).await;
        assert_eq!(
            check.state(),
            "active",
            "B ended a session A saw active: {}",
            check.body
        );
        assert_eq!(b.auth(&c, cookie).await, 204);
        actix_rt::time::sleep(Duration::from_millis(150)).await;
    }
    // The user leaves: B ends it once it was idle for the timeout (plus the
    // grace for A's commit window), and A learns of it.
    let idle = Instant::now();
    let ended = within(Duration::from_secs(5), || async {
        b.check(&c, cookie).await.state() == "expired"
    })
    .await
    .expect("B never ended the idle session");
    let took = idle.elapsed();
    assert!(
        took >= Duration::from_millis(1400) && ended < Duration::from_secs(4),
        "ended {took:?} after the last heartbeat (timeout 2 s)"
    );
    within(Duration::from_secs(1), || async {
        a.auth(&c, cookie).await == 401
    })
    .await
    .expect("A still lets the expired session through");
    let expiries = pg.psql("SELECT count(*) FROM session_timeout.audit WHERE event = 'expired'");
    assert_eq!(expiries, "1", "one expiry, recorded once");
}

#[actix_rt::test]
async fn a_setting_changed_through_one_replica_applies_on_every_other_within_a_second() {
    if !postgres_installed() {
        return;
    }
    let pg = Pg::start();
    let replicas: Vec<Replica> = (0..3)
        .map(|_| Replica::start(&pg, Default::default()))
        .collect();
    let c = client();
    let put = replicas[1].set_timeout(&c, 420).await;
    assert_eq!(put.status, 200, "{}", put.body);
    for r in &replicas {
        within(Duration::from_secs(1), || async {
            r.settings(&c).await.body["activity_session_timeout_key"]["effective"] == 420
        })
        .await
        .unwrap_or_else(|| panic!("{} did not apply the new timeout within 1 s", r.base));
        let check = r.check(&c, "settings-user").await;
        assert_eq!(check.body["timeout_s"], 420, "{}", check.body);
    }
    let changes = pg.psql(
        "SELECT count(*) FROM session_timeout.audit WHERE detail LIKE 'activity_session_timeout_key:%420%'",
    );
    assert_eq!(changes, "1", "the change is audited once");
}

#[actix_rt::test]
async fn replicas_starting_together_migrate_once_and_one_with_another_secret_is_refused() {
    if !postgres_installed() {
        return;
    }
    let pg = Pg::start();
    let secret = pg.secret();
    // Three at once on an empty database.
    let replicas: Vec<Replica> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    let o = ReplicaOptions {
                        secret: Some(&secret),
                        ..Default::default()
                    };
                    Replica::start(&pg, o)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(replicas.len(), 3);
    assert_eq!(
        pg.psql("SELECT string_agg(version::text, ',') FROM session_timeout.schema_version"),
        "1",
        "each migration applied exactly once"
    );
    let other = pg.dir.path().join("other-secret");
    std::fs::write(&other, "ab".repeat(32)).unwrap();
    let refused = Replica::try_start(
        &pg,
        ReplicaOptions {
            secret: Some(&other),
            ..Default::default()
        },
    );
    let err = refused
        .err()
        .expect("a replica with another secret must not start");
    assert!(
        err.contains("every replica needs the same secret file"),
        "{err}"
    );
    // The URL's password never appears in messages.
    assert!(!err.contains("panicked"), "{err}");
}

/// Known sessions are answered from memory while the database is down;
/// endings and settings answer 503 and are never claimed; the replicas
/// reconnect by themselves, catch up, and nothing acknowledged is lost.
#[actix_rt::test]
async fn postgres_stopped_and_started_under_load() {
    if !postgres_installed() {
        return;
    }
    let pg = Pg::start();
    let (a, b) = (
        Replica::start(&pg, Default::default()),
        Replica::start(&pg, Default::default()),
    );
    let c = client();
    let cookies: Vec<String> = (0..20).map(|i| format!("load-{i}")).collect();
    for k in &cookies {
        assert_eq!(a.heartbeat(&c, k).await.state(), "active");
        assert_eq!(b.auth(&c, k).await, 204);
    }
    // Acknowledged before the outage.
    assert_eq!(a.logout(&c, &cookies[0]).await.status, 200);
    // Load in the background all along: heartbeats to A, auth to B.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (stop, cookies) = (stop.clone(), cookies.clone());
        let (abase, bbase) = (a.base.clone(), b.base.clone());
        actix_rt::spawn(async move {
            let c = client();
            let mut n = 0usize;
            let mut wrong = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let k = &cookies[1 + n % 19];
                let hb = call(
                    &c,
                    "POST",
                    &format!("{abase}/heartbeat"),
                    Some(k),
                    Some(r#"{"idle_ms":0}"#),
                )
                .await;
                let auth = call(&c, "GET", &format!("{bbase}/auth"), Some(k), None).await;
                // 429: too soon after the previous one, recorded all the same.
                let recorded = hb.state() == "active" || hb.status == 429;
                if !recorded || auth.status != 204 {
                    wrong.push(format!(
                        "{k}: heartbeat {} {}, auth {}",
                        hb.status, hb.body, auth.status
                    ));
                }
                n += 1;
                // Each session's heartbeats about 400 ms apart, as a page sends them.
                actix_rt::time::sleep(Duration::from_millis(20)).await;
            }
            (n, wrong)
        })
    };
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    pg.stop();
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    // Known sessions: from memory, on both replicas.
    assert_eq!(b.auth(&c, &cookies[5]).await, 204);
    assert_eq!(a.check(&c, &cookies[5]).await.state(), "active");
    assert_eq!(
        b.auth(&c, &cookies[0]).await,
        401,
        "an ending stored before stays"
    );
    // Endings and settings cannot be stored: 503, never claimed.
    let out = a.logout(&c, &cookies[1]).await;
    assert_eq!(out.status, 503, "logout during the outage: {}", out.body);
    let put = b.set_timeout(&c, 900).await;
    assert_eq!(put.status, 503, "a setting during the outage: {}", put.body);
    // A session neither replica knows cannot be judged: neither passed nor ended.
    assert_eq!(b.auth(&c, "never-seen").await, 503);
    actix_rt::time::sleep(Duration::from_millis(1500)).await;
    pg.restart();
    // Both reconnect by themselves; a logout through B reaches A within 1 s.
    let back = within(Duration::from_secs(15), || async {
        b.logout(&c, &cookies[2]).await.status == 200
    })
    .await
    .expect("B never took endings again after PostgreSQL came back");
    eprintln!("endings stored again {back:?} after PostgreSQL restarted");
    within(Duration::from_secs(1), || async {
        a.auth(&c, &cookies[2]).await == 401
    })
    .await
    .expect("A did not learn of B's logout within 1 s after the restart");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (n, wrong) = load.await.unwrap();
    // Sessions 1 and 2 ended on purpose (1 refused by A alone during the
    // outage, then stored once the database was back); the others never.
    let unexpected: Vec<_> = wrong
        .iter()
        .filter(|w| !w.starts_with("load-1:") && !w.starts_with("load-2:"))
        .collect();
    assert!(
        unexpected.is_empty(),
        "{} of {n} load requests went wrong, the first: {:?}",
        unexpected.len(),
        &unexpected[..unexpected.len().min(5)]
    );
    // Nothing acknowledged was lost; the refused setting was not stored.
    let ended = pg.psql("SELECT count(*) FROM session_timeout.sessions WHERE key IS NOT NULL AND end_reason = 'logout'");
    assert!(ended == "2" || ended == "3", "logouts stored: {ended}");
    let timeout = pg.psql(
        "SELECT value FROM session_timeout.settings WHERE name = 'activity_session_timeout_key'",
    );
    assert_eq!(timeout, "60", "the setting refused with 503 was not stored");
}

/// A replica killed with SIGKILL under load: everything it acknowledged is
/// stored (the others and its successor refuse those sessions), and of the
/// heartbeats at most its commit window is lost.
#[actix_rt::test]
async fn a_replica_killed_with_kill_9_under_load_loses_nothing_acknowledged() {
    if !postgres_installed() {
        return;
    }
    let pg = Pg::start();
    let mut a = Replica::start(&pg, Default::default());
    let b = Replica::start(&pg, Default::default());
    let c = client();
    let mut logged_out = Vec::new();
    let mut last_heartbeat = Vec::new();
    for i in 0..60 {
        let k = format!("kill-{i}");
        assert_eq!(a.heartbeat(&c, &k).await.state(), "active");
        if i % 2 == 0 {
            let out = a.logout(&c, &k).await;
            assert_eq!(out.status, 200);
            logged_out.push(k);
        } else {
            last_heartbeat.push((k, Instant::now()));
        }
    }
    a.kill9();
    let fresh = Replica::start(&pg, Default::default());
    for k in &logged_out {
        assert_eq!(b.auth(&c, k).await, 401, "{k}: acknowledged logout lost");
        assert_eq!(
            fresh.auth(&c, k).await,
            401,
            "{k}: acknowledged logout lost"
        );
    }
    // Heartbeats older than the commit window are stored.
    let stored: i64 = pg
        .psql("SELECT count(*) FROM session_timeout.sessions WHERE key IS NOT NULL AND ended_ms IS NULL")
        .parse()
        .unwrap();
    let old_enough = last_heartbeat
        .iter()
        .filter(|(_, t)| t.elapsed() > Duration::from_millis(400))
        .count() as i64;
    assert!(
        stored >= old_enough.min(29),
        "{stored} live sessions stored, {old_enough} heartbeats older than the window"
    );
    assert!(
        fresh.stderr().contains("listening for other replicas"),
        "{}",
        fresh.stderr()
    );
}

/// A replica whose connection to the database was cut while another one
/// stored an ending catches up when it reconnects: the ending was notified
/// while nobody on that replica listened.
#[actix_rt::test]
async fn a_replica_that_lost_its_connection_catches_up_on_endings_it_missed() {
    if !postgres_installed() {
        return;
    }
    let pg = Pg::start();
    let (a, b) = (
        Replica::start(&pg, Default::default()),
        Replica::start(&pg, Default::default()),
    );
    let c = client();
    for round in 0..3 {
        let cookie = format!("missed-{round}");
        assert_eq!(a.auth(&c, &cookie).await, 204);
        assert_eq!(b.auth(&c, &cookie).await, 204);
        // deploy/README.md promises at most 4 connections per replica.
        let open = pg.psql(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'session-timeout % {}'",
            a.pid()
        ));
        let open: u32 = open.parse().unwrap();
        assert!(
            (2..=4).contains(&open),
            "replica A holds {open} connections"
        );
        // Every connection of A, the listener's included, is cut; at once a
        // logout goes through B.
        let cut = pg.psql(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name LIKE 'session-timeout % {}'",
            a.pid()
        ));
        assert_ne!(cut, "0", "A's connections are named after its pid");
        assert_eq!(b.logout(&c, &cookie).await.status, 200);
        within(Duration::from_secs(1), || async {
            a.auth(&c, &cookie).await == 401
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "A did not catch up on a logout it missed within 1 s\n{}",
                a.stderr()
            )
        });
    }
    // A writes again too: its own logout reaches B.
    assert_eq!(a.auth(&c, "after").await, 204);
    assert_eq!(b.auth(&c, "after").await, 204);
    let out = within(Duration::from_secs(5), || async {
        a.logout(&c, "after").await.status == 200
    })
    .await;
    assert!(out.is_some(), "A stores endings again");
    within(Duration::from_secs(1), || async {
        b.auth(&c, "after").await == 401
    })
    .await
    .expect("B refuses A's logout");
}

/// The admin API of any replica sees every session, also one only another
/// replica met, and a revocation through it reaches them all.
#[actix_rt::test]
async fn any_replica_lists_and_revokes_a_session_only_another_one_met() {
    if !postgres_installed() {
        return;
    }
    let pg = Pg::start();
    let (a, b) = (
        Replica::start(&pg, Default::default()),
        Replica::start(&pg, Default::default()),
    );
    let c = client();
    assert_eq!(a.heartbeat(&c, "only-on-a").await.state(), "active");
    // Stored within the commit window.
    let listed = within(Duration::from_secs(2), || async {
        b.admin(&c, "GET", "sessions?state=active").await.body["total"] == 1
    })
    .await;
    assert!(listed.is_some(), "B lists the session A met");
    let list = b.admin(&c, "GET", "sessions?state=active").await;
    let prefix = list.body["sessions"][0]["key_prefix"]
        .as_str()
        .unwrap()
        .to_string();
    let revoked = b
        .admin(&c, "POST", &format!("sessions/{prefix}/revoke"))
        .await;
    assert_eq!(
        (revoked.status, &revoked.body["revoked"]),
        (200, &serde_json::json!(true)),
        "{}",
        revoked.body
    );
    within(Duration::from_secs(1), || async {
        a.auth(&c, "only-on-a").await == 401
    })
    .await
    .expect("A refuses the session revoked through B");
    let missing = b
        .admin(&c, "POST", "sessions/0123456789abcdef/revoke")
        .await;
    assert_eq!(missing.status, 404, "{}", missing.body);
}

/// Every session of one user, ended through one replica: both of that
/// user's browsers are refused by every replica within a second, also on a
/// replica that had not met one of them; other users are untouched.
/// Two replicas that ask the stand-in ERP who owns a session.
fn two_asking(pg: &Pg, erp: &Erp) -> (Replica, Replica) {
    let info = erp.session_info_url();
    let o = || ReplicaOptions {
        session_info_url: Some(&info),
        ..Default::default()
    };
    (Replica::start(pg, o()), Replica::start(pg, o()))
}

#[actix_rt::test]
async fn ending_every_session_of_a_user_through_one_replica_reaches_every_replica() {
    if !postgres_installed() {
        return;
    }
    let pg = Pg::start();
    let erp = Erp::start(pg.dir.path());
    let (a, b) = two_asking(&pg, &erp);
    let c = client();
    let (first, second, other) = (
        erp.login(&c, "admin").await,
        erp.login(&c, "admin").await,
        erp.login(&c, "portal").await,
    );
    // A meets both browsers, B only the first; the portal user on both.
    for cookie in [&first, &second, &other] {
        assert_eq!(a.auth(&c, cookie).await, 204);
    }
    assert_eq!(b.auth(&c, &first).await, 204);
    assert_eq!(b.auth(&c, &other).await, 204);
    // The internal user's id, once stored (within the commit window).
    let mut uid = None;
    let start = Instant::now();
    while uid.is_none() && start.elapsed() < Duration::from_secs(2) {
        let list = a.admin(&c, "GET", "sessions?state=active").await.body;
        uid = list["sessions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["class"] == "internal")
            .and_then(|s| s["uid"].as_i64());
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let listed = a.admin(&c, "GET", "sessions").await.body;
    let uid = uid.unwrap_or_else(|| panic!("the ERP named the internal user: {listed}"));
    let r = call(
        &c,
        "POST",
        &format!("{}/admin/users/{uid}/end-sessions", b.base),
        None,
        Some(r#"{"by": "security officer"}"#),
    )
    .await;
    assert_eq!(
        (r.status, r.body["ended"].as_i64()),
        (200, Some(2)),
        "{}",
        r.body
    );
    for cookie in [&first, &second] {
        for r in [&a, &b] {
            within(Duration::from_secs(1), || async {
                r.auth(&c, cookie).await == 401
            })
            .await
            .unwrap_or_else(|| panic!("{} still lets a session of user {uid} through", r.base));
        }
    }
    assert_eq!(a.auth(&c, &other).await, 204, "another user is untouched");
    let note =
        pg.psql("SELECT detail FROM session_timeout.audit WHERE event = 'user_sessions_ended'");
    assert_eq!(
        note,
        format!("uid {uid}: 2 sessions ended (asked by security officer)")
    );
}

#[actix_rt::test]
async fn a_rule_set_through_one_replica_times_the_users_sessions_on_every_other_within_a_second() {
    if !postgres_installed() {
        return;
    }
    let pg = Pg::start();
    let erp = Erp::start(pg.dir.path());
    let (a, b) = two_asking(&pg, &erp);
    let c = client();
    // The ERP's administrator (is_admin): met by A only.
    let admin = erp.login(&c, "admin").await;
    assert_eq!(a.auth(&c, &admin).await, 204);
    let r = call(
        &c,
        "PUT",
        &format!("{}/admin/policy/rules/admin", b.base),
        None,
        Some(r#"{"idle_s": 45, "by": "security officer"}"#),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    for r in [&a, &b] {
        within(Duration::from_secs(1), || async {
            r.check(&c, &admin).await.body["timeout_s"] == 45
        })
        .await
        .unwrap_or_else(|| panic!("{} does not time the admin by the new rule", r.base));
    }
    let audited = pg.psql(
        "SELECT count(*) FROM session_timeout.audit WHERE detail LIKE 'policy_rules admin: (none) -> %(by security officer)'",
    );
    assert_eq!(audited, "1", "the change is audited once, with who made it");
}
