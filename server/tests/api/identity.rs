use crate::helpers::*;

#[actix_rt::test]
async fn portal_users_are_exempt_whatever_they_send() {
    let app = spawn_app().await;
    let c = app.login("portal").await;
    assert_eq!(state_of(&app.check(&c).await), "exempt");
    // Nothing the page sends makes it internal: a heartbeat claiming
    // anything is still just a heartbeat.
    let r = app
        .request(
            "POST",
            &app.api("heartbeat"),
            Some(&c),
            &[("Content-Type", "application/json")],
            Some(r#"{"idle_ms":0,"is_internal_user":true,"class":"internal"}"#),
        )
        .await;
    assert_eq!(state_of(&r), "exempt");
    app.advance(3600.0);
    assert_eq!(state_of(&app.check(&c).await), "exempt");
    assert_eq!(app.auth(&c).await.status, 204);
}

#[actix_rt::test]
async fn a_session_the_erp_does_not_know_is_public_and_exempt() {
    let app = spawn_app().await;
    let visitor = "0123456789abcdef0123456789abcdef";
    assert_eq!(state_of(&app.check(visitor).await), "exempt");
    app.advance(3600.0);
    assert_eq!(app.auth(visitor).await.status, 204);
}

#[actix_rt::test]
async fn an_internal_session_cannot_make_itself_exempt() {
    let app = spawn_app().await;
    let c = app.login("admin").await;
    let r = app
        .request(
            "POST",
            &app.api("heartbeat"),
            Some(&c),
            &[("Content-Type", "application/json")],
            Some(r#"{"idle_ms":0,"exempt":true,"state":"exempt"}"#),
        )
        .await;
    assert_eq!(state_of(&r), "active");
    app.advance(61.0);
    assert_eq!(state_of(&app.check(&c).await), "expired");
}

#[actix_rt::test]
async fn when_the_erp_cannot_be_reached_sessions_are_timed_not_exempt() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let app = spawn_with(Options {
        session_info_url: Some(format!("http://{closed}/web/session/get_session_info")),
        ..Default::default()
    })
    .await;
    let c = "fedcba9876543210fedcba9876543210";
    assert_eq!(state_of(&app.check(c).await), "active");
    app.advance(61.0);
    assert_eq!(state_of(&app.check(c).await), "expired");
}

#[actix_rt::test]
async fn when_the_erp_answers_nonsense_sessions_are_timed_not_exempt() {
    let app0 = spawn_app().await;
    // The demo's login form is a real URL that answers HTML to a JSON-RPC call.
    let app = spawn_with(Options {
        session_info_url: Some(format!("{}/web/login", app0.root)),
        ..Default::default()
    })
    .await;
    let c = app0.login("portal").await;
    assert_eq!(state_of(&app.check(&c).await), "active");
}

async fn public_lookups(app: &TestApp) -> String {
    let m = app
        .request("GET", &format!("{}/metrics", app.base), None, &[], None)
        .await
        .text;
    m.lines()
        .find(|l| l.starts_with("session_timeout_erp_lookups_total{answer=\"public\"}"))
        .unwrap()
        .to_string()
}

#[actix_rt::test]
async fn a_public_answer_is_cached_for_a_while_then_asked_again() {
    let app = spawn_app().await;
    let public = "00000000000000000000000000000042";
    assert_eq!(state_of(&app.check(public).await), "exempt");
    assert!(public_lookups(&app).await.ends_with(" 1"));
    assert_eq!(state_of(&app.check(public).await), "exempt");
    assert!(
        public_lookups(&app).await.ends_with(" 1"),
        "cached: no second lookup"
    );
    // A visitor may log in on the same cookie: after the recheck delay the
    // ERP is asked again.
    app.advance(31.0);
    assert_eq!(state_of(&app.check(public).await), "exempt");
    assert!(
        public_lookups(&app).await.ends_with(" 2"),
        "{}",
        public_lookups(&app).await
    );
}

#[actix_rt::test]
async fn concurrent_first_requests_of_a_session_ask_the_erp_once() {
    let app = spawn_app().await;
    let c = app.login("portal").await;
    let answers = futures_util::future::join_all((0..10).map(|_| app.check(&c))).await;
    for r in &answers {
        assert_eq!(
            state_of(r),
            "exempt",
            "every concurrent request waits for the one answer"
        );
    }
    let m = app
        .request("GET", &format!("{}/metrics", app.base), None, &[], None)
        .await
        .text;
    let asked: u64 = m
        .lines()
        .filter(|l| l.starts_with("session_timeout_erp_lookups_total"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(asked, 1, "{m}");
}

/// An ERP that accepts connections and never answers.
fn hanging_erp() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    format!("http://{addr}/web/session/get_session_info")
}

/// A hanging ERP and a flood of never-seen cookies (each waiting for an ERP
/// lookup) must not delay users the sidecar already knows, even when their
/// session is due to be looked up again: their `auth` is answered from
/// memory, in well under the proxy's 2 s read timeout. A new user waits at
/// most the lookup timeout, then is timed as internal (never exempt).
#[actix_rt::test]
async fn a_hanging_erp_and_a_flood_of_new_cookies_never_delay_known_users() {
    let app = spawn_with(Options {
        session_info_url: Some(hanging_erp()),
        ..Default::default()
    })
    .await;
    // Known: first seen while the ERP already hung (timed as internal, asked again in 30 s).
    let known = "0123456789abcdef0123456789abcdef";
    let t = std::time::Instant::now();
    assert_eq!(app.auth(known).await.status, 204);
    assert!(
        t.elapsed() < std::time::Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    app.advance(31.0); // due for another lookup now
    let flood: Vec<_> = (0..100)
        .map(|i| {
            let base = app.base.clone();
            actix_rt::spawn(async move {
                let c = format!("flood{i:027}");
                awc::Client::builder()
                    .timeout(std::time::Duration::from_secs(10))
                    .finish()
                    .get(format!("{base}/api/v1/auth"))
                    .insert_header(("Cookie", format!("session_id={c}")))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    actix_rt::time::sleep(std::time::Duration::from_millis(100)).await;
    let mut slowest = std::time::Duration::ZERO;
    for _ in 0..20 {
        let t = std::time::Instant::now();
        assert_eq!(app.auth(known).await.status, 204);
        slowest = slowest.max(t.elapsed());
        actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        slowest < std::time::Duration::from_millis(50),
        "a known user's auth took {slowest:?}"
    );
    // A new user during the flood: the lookup timeout (1 s here) at most.
    let t = std::time::Instant::now();
    assert_eq!(
        app.auth("fedcba9876543210fedcba9876543210").await.status,
        204
    );
    assert!(
        t.elapsed() < std::time::Duration::from_millis(1500),
        "a new user waited {:?}",
        t.elapsed()
    );
    for f in flood {
        assert_eq!(
            f.await.unwrap().unwrap(),
            204,
            "unknown owners are timed, and pass while active"
        );
    }
    // Still timed, never exempt.
    app.advance(61.0);
    assert_eq!(app.auth(known).await.status, 401);
}

/// A portal user made internal while the session lives is timed from then
/// on: exempt sessions are looked up again after a bounded time.
#[actix_rt::test]
async fn a_portal_user_made_internal_is_timed_from_then_on() {
    use actix_web::{web, App, HttpResponse, HttpServer};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let internal = Arc::new(AtomicBool::new(false));
    let flag = internal.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let erp = HttpServer::new(move || {
        let flag = flag.clone();
        App::new().route(
            "/web/session/get_session_info",
            web::post().to(move || {
                let is_internal = flag.load(Ordering::SeqCst);
                async move {
                    HttpResponse::Ok().json(serde_json::json!({"jsonrpc": "2.0", "id": null,
                        "result": {"uid": 7, "is_internal_user": is_internal, "is_public": false}}))
                }
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    actix_rt::spawn(erp);
    let app = spawn_with(Options {
        session_info_url: Some(format!("http://{addr}/web/session/get_session_info")),
        ..Default::default()
    })
    .await;
    let c = "0123456789abcdef0123456789abcdef";
    assert_eq!(state_of(&app.check(c).await), "exempt");
    internal.store(true, Ordering::SeqCst);
    app.advance(200.0);
    assert_eq!(
        state_of(&app.check(c).await),
        "exempt",
        "not asked again yet"
    );
    app.advance(101.0);
    let r = app.check(c).await;
    assert_eq!(
        state_of(&r),
        "active",
        "asked again after 5 minutes: internal now"
    );
    assert!(
        r.body["remaining_ms"].as_i64().unwrap() > 59_000,
        "timed from now: {}",
        r.text
    );
    app.advance(61.0);
    assert_eq!(state_of(&app.check(c).await), "expired");
}
