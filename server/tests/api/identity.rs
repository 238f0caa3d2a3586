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
