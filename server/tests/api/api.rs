use crate::helpers::*;

#[actix_rt::test]
async fn heartbeat_keeps_an_internal_session_alive_and_check_reports_remaining_time() {
    let app = spawn_app().await;
    let c = app.login("admin").await;
    let r = app.check(&c).await;
    assert_eq!((r.status, state_of(&r)), (200, "active"));
    assert_eq!(r.body["timeout_s"], 60);
    assert_eq!(
        r.body["remaining_ms"], 60_000,
        "first sight counts as the login"
    );

    for _ in 0..5 {
        app.advance(50.0);
        let r = app.heartbeat(&c, 0).await;
        assert_eq!(state_of(&r), "active", "{}", r.text);
        assert_eq!(r.body["remaining_ms"], 60_000);
    }
    // 250 s after login, still active thanks to the heartbeats.
    assert_eq!(state_of(&app.check(&c).await), "active");
}

#[actix_rt::test]
async fn idle_ms_backdates_the_activity_but_never_moves_it_back() {
    let app = spawn_app().await;
    let c = app.login("admin").await;
    app.check(&c).await;
    app.advance(30.0);
    let r = app.heartbeat(&c, 10_000).await;
    assert_eq!(r.body["remaining_ms"], 50_000, "last input was 10 s ago");
    // An older input than what is known changes nothing.
    app.advance(1.0);
    let r = app.heartbeat(&c, 25_000).await;
    assert_eq!(r.body["remaining_ms"], 49_000);
    // A huge idle_ms cannot overflow or revive anything.
    app.advance(1.0);
    let r = app.heartbeat(&c, u64::MAX).await;
    assert_eq!(
        (r.status, r.body["remaining_ms"].as_i64()),
        (200, Some(48_000))
    );
}

#[actix_rt::test]
async fn heartbeats_too_close_together_are_refused_but_their_activity_counts() {
    let app = spawn_app().await;
    let c = app.login("admin").await;
    app.check(&c).await;
    app.advance(30.0);
    assert_eq!(app.heartbeat(&c, 20_000).await.body["remaining_ms"], 40_000);
    app.clock.advance_ms(100);
    let r = app.heartbeat(&c, 0).await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (429, Some("rate_limited")),
        "{}",
        r.text
    );
    assert!(
        r.body["message"].as_str().unwrap().contains("was recorded"),
        "{}",
        r.text
    );
    // The newest input was not lost: the full timeout remains.
    assert_eq!(app.check(&c).await.body["remaining_ms"], 60_000);
    app.clock.advance_ms(250);
    assert_eq!(app.heartbeat(&c, 0).await.status, 200);
}

#[actix_rt::test]
async fn exactly_at_the_timeout_is_active_one_ms_later_is_expired() {
    let app = spawn_app().await;
    let c = app.login("admin").await;
    app.check(&c).await;
    app.clock.advance_ms(60_000);
    let r = app.check(&c).await;
    assert_eq!(
        (state_of(&r), r.body["remaining_ms"].as_i64()),
        ("active", Some(0))
    );
    app.clock.advance_ms(1);
    let r = app.check(&c).await;
    assert_eq!(state_of(&r), "expired");
    assert_eq!(r.body["reason"], "idle_timeout");
    assert_eq!(
        r.body["logout_url"],
        "/web/session/logout?redirect=%2Fweb%2Flogin"
    );
}

#[actix_rt::test]
async fn an_expired_session_is_not_revived_by_a_heartbeat() {
    let app = spawn_app().await;
    let c = app.login("admin").await;
    app.check(&c).await;
    app.advance(61.0);
    assert_eq!(state_of(&app.heartbeat(&c, 0).await), "expired");
    for _ in 0..3 {
        assert_eq!(state_of(&app.heartbeat(&c, 0).await), "expired");
    }
    assert_eq!(state_of(&app.check(&c).await), "expired");
    assert_eq!(app.auth(&c).await.status, 401);
}

#[actix_rt::test]
async fn auth_and_check_never_extend_a_session() {
    let app = spawn_app().await;
    let c = app.login("admin").await;
    app.check(&c).await;
    // Background traffic every 5 s for longer than the timeout.
    for _ in 0..12 {
        app.advance(5.0);
        assert_eq!(app.auth(&c).await.status, 204);
        app.check(&c).await;
    }
    app.clock.advance_ms(1);
    let r = app.auth(&c).await;
    assert_eq!(
        r.status, 401,
        "60 s of auth and check calls must not count as activity"
    );
    assert_eq!(
        r.headers.get("x-session-timeout-logout").unwrap(),
        "/web/session/logout?redirect=%2Fweb%2Flogin"
    );
    assert_eq!(state_of(&app.check(&c).await), "expired");
}

#[actix_rt::test]
async fn auth_without_a_cookie_passes_and_other_routes_ask_for_one() {
    let app = spawn_app().await;
    let r = app.request("GET", &app.api("auth"), None, &[], None).await;
    assert_eq!(r.status, 204);
    for (method, route) in [("GET", "check"), ("POST", "heartbeat"), ("POST", "logout")] {
        let r = app
            .request(
                method,
                &app.api(route),
                None,
                &[("Content-Type", "application/json")],
                Some("{}"),
            )
            .await;
        assert_eq!(r.status, 401, "{route}");
        assert_eq!(r.body["error"], "missing_cookie");
        assert!(
            r.body["message"].as_str().unwrap().contains("session_id"),
            "{}",
            r.text
        );
    }
}

#[actix_rt::test]
async fn logout_ends_the_session_durably_and_for_good() {
    let app = spawn_app().await;
    let c = app.login("admin").await;
    assert_eq!(state_of(&app.check(&c).await), "active");
    let r = app.logout(&c).await;
    assert_eq!((r.status, state_of(&r)), (200, "expired"));
    assert_eq!(r.body["reason"], "logout");
    assert_eq!(app.auth(&c).await.status, 401);
    assert_eq!(state_of(&app.heartbeat(&c, 0).await), "expired");
    // Durable before the answer: the row is already in the file.
    let conn = rusqlite::Connection::open(app.dir.join("sessions.db")).unwrap();
    let reason: String = conn
        .query_row("SELECT end_reason FROM sessions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(reason, "logout");
    // A second logout is harmless.
    assert_eq!(app.logout(&c).await.status, 200);
}

#[actix_rt::test]
async fn bad_requests_get_a_json_error_naming_the_problem() {
    let app = spawn_app().await;
    let c = app.login("admin").await;
    let hb = app.api("heartbeat");
    let json = [("Content-Type", "application/json")];
    #[allow(clippy::type_complexity)]
    let cases: Vec<(
        &str,
        String,
        Vec<(&str, &str)>,
        Option<String>,
        u16,
        &str,
        &str,
    )> = vec![
        (
            "POST",
            hb.clone(),
            json.to_vec(),
            Some("{idle_ms:".into()),
            400,
            "malformed_json",
            "not valid JSON",
        ),
        (
            "POST",
            hb.clone(),
            json.to_vec(),
            Some(r#"{"idle_ms":-5}"#.into()),
            400,
            "invalid_body",
            "idle_ms",
        ),
        (
            "POST",
            hb.clone(),
            json.to_vec(),
            Some(r#"{"idle_ms":"soon"}"#.into()),
            400,
            "invalid_body",
            "idle_ms",
        ),
        (
            "POST",
            hb.clone(),
            vec![("Content-Type", "text/plain")],
            Some("{}".into()),
            415,
            "wrong_content_type",
            "application/json",
        ),
        (
            "POST",
            hb.clone(),
            vec![],
            Some("{}".into()),
            415,
            "wrong_content_type",
            "application/json",
        ),
        (
            "POST",
            hb.clone(),
            json.to_vec(),
            Some(format!(
                "{{\"idle_ms\":0,\"pad\":\"{}\"}}",
                "x".repeat(5000)
            )),
            413,
            "body_too_large",
            "1024 bytes",
        ),
        (
            "GET",
            hb.clone(),
            vec![],
            None,
            405,
            "method_not_allowed",
            "use POST",
        ),
        (
            "GET",
            app.api("nothing-here"),
            vec![],
            None,
            404,
            "not_found",
            "/session-timeout/api/v1/nothing-here",
        ),
        (
            "GET",
            format!("{}/elsewhere", app.root),
            vec![],
            None,
            404,
            "not_found",
            "/elsewhere",
        ),
        (
            "POST",
            app.api("check"),
            json.to_vec(),
            Some("{}".into()),
            405,
            "method_not_allowed",
            "use GET",
        ),
    ];
    for (method, url, headers, body, status, code, needle) in cases {
        let r = app
            .request(method, &url, Some(&c), &headers, body.as_deref())
            .await;
        assert_eq!(r.status, status, "{method} {url} {body:?}: {}", r.text);
        assert_eq!(r.body["error"], code, "{}", r.text);
        assert!(
            r.body["message"].as_str().unwrap_or("").contains(needle),
            "{needle:?} not in {}",
            r.text
        );
    }
    // The session survived all of that.
    assert_eq!(state_of(&app.check(&c).await), "active");
}

#[actix_rt::test]
async fn cross_site_requests_cannot_change_a_session() {
    let app = spawn_app().await;
    let c = app.login("admin").await;
    let host = app.root.trim_start_matches("http://").to_string();
    let same = format!("http://{host}");
    let r = app
        .request(
            "POST",
            &app.api("logout"),
            Some(&c),
            &[
                ("Content-Type", "application/json"),
                ("Origin", "https://evil.example"),
            ],
            Some("{}"),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (403, Some("cross_site"))
    );
    let r = app
        .request(
            "POST",
            &app.api("heartbeat"),
            Some(&c),
            &[
                ("Content-Type", "application/json"),
                ("Sec-Fetch-Site", "cross-site"),
            ],
            Some("{}"),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(state_of(&app.check(&c).await), "active", "nothing changed");
    let r = app
        .request(
            "POST",
            &app.api("heartbeat"),
            Some(&c),
            &[
                ("Content-Type", "application/json"),
                ("Origin", &same),
                ("Sec-Fetch-Site", "same-origin"),
            ],
            Some("{}"),
        )
        .await;
    assert_eq!((r.status, state_of(&r)), (200, "active"));
}

#[actix_rt::test]
async fn config_tells_the_page_how_to_start() {
    let app = spawn_with(Options {
        timeout: Some("8"),
        ..Default::default()
    })
    .await;
    let r = app
        .request("GET", &app.api("config"), None, &[], None)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["timeout_s"], 8);
    assert_eq!(
        r.body["heartbeat_interval_ms"], 2000,
        "a quarter of the timeout"
    );
    assert_eq!(r.body["login_url"], "/web/login");
    assert_eq!(
        r.body["logout_url"],
        "/web/session/logout?redirect=%2Fweb%2Flogin"
    );
}

#[actix_rt::test]
async fn health_and_metrics() {
    let app = spawn_app().await;
    let c = app.login("admin").await;
    app.heartbeat(&c, 0).await;
    app.auth(&c).await;
    let r = app
        .request("GET", &format!("{}/healthz", app.base), None, &[], None)
        .await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("ok")));
    let r = app
        .request("GET", &format!("{}/metrics", app.base), None, &[], None)
        .await;
    assert_eq!(r.status, 200);
    assert!(
        r.text
            .contains("session_timeout_sessions{state=\"active\"} 1"),
        "{}",
        r.text
    );
    assert!(
        r.text
            .contains("session_timeout_heartbeats_total{result=\"recorded\"} 1"),
        "{}",
        r.text
    );
    assert!(
        r.text
            .contains("session_timeout_http_requests_total{route=\"auth\",status=\"2xx\"} 1"),
        "{}",
        r.text
    );
    assert!(
        r.text
            .contains("session_timeout_http_request_duration_seconds_count{route=\"heartbeat\"} 1"),
        "{}",
        r.text
    );
}

#[actix_rt::test]
async fn absolute_lifetime_ends_even_an_active_session() {
    let app = spawn_with(Options {
        timeout: Some("60"),
        lifetime: Some("120"),
        ..Default::default()
    })
    .await;
    let c = app.login("admin").await;
    app.check(&c).await;
    for _ in 0..4 {
        app.advance(30.0);
        assert_eq!(state_of(&app.heartbeat(&c, 0).await), "active");
    }
    app.clock.advance_ms(1);
    let r = app.heartbeat(&c, 0).await;
    assert_eq!(
        (state_of(&r), r.body["reason"].as_str()),
        ("expired", Some("absolute_lifetime"))
    );
}

#[actix_rt::test]
async fn demo_flow_end_to_end_over_http() {
    let app = spawn_with(Options {
        timeout: Some("5"),
        ..Default::default()
    })
    .await;
    let c = app.login("admin").await;
    // The back office is shown to the logged-in admin.
    let page = app
        .request("GET", &format!("{}/odoo", app.root), Some(&c), &[], None)
        .await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("Back office"));
    assert_eq!(state_of(&app.heartbeat(&c, 0).await), "active");
    app.advance(5.5);
    let r = app.check(&c).await;
    assert_eq!(state_of(&r), "expired");
    let logout_url = r.body["logout_url"].as_str().unwrap().to_string();
    let a = app.auth(&c).await;
    assert_eq!(a.status, 401);
    assert_eq!(
        a.headers
            .get("x-session-timeout-logout")
            .unwrap()
            .to_str()
            .unwrap(),
        logout_url
    );
    // The back office now sends the user to the logout URL ...
    let page = app
        .request("GET", &format!("{}/odoo", app.root), Some(&c), &[], None)
        .await;
    assert_eq!(
        (
            page.status,
            page.headers.get("location").unwrap().to_str().unwrap()
        ),
        (303, logout_url.as_str())
    );
    // ... which ends the ERP session and lands on the login page.
    let out = app
        .request(
            "GET",
            &format!("{}{logout_url}", app.root),
            Some(&c),
            &[],
            None,
        )
        .await;
    assert_eq!(
        (
            out.status,
            out.headers.get("location").unwrap().to_str().unwrap()
        ),
        (303, "/web/login")
    );
    let page = app
        .request("GET", &format!("{}/odoo", app.root), Some(&c), &[], None)
        .await;
    assert!(page
        .headers
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("/web/login"));
    // Logging in again works: a new session, active.
    let c2 = app.login("admin").await;
    assert_ne!(c, c2);
    assert_eq!(
        app.request("GET", &format!("{}/odoo", app.root), Some(&c2), &[], None)
            .await
            .status,
        200
    );
}

#[actix_rt::test]
async fn forward_auth_variants_for_envoy_and_traefik() {
    let app = spawn_app().await;
    let c = app.login("admin").await;
    app.check(&c).await;
    // Envoy: original path appended, original method kept, 200 to allow.
    let envoy = format!("{}/odoo/sales?x=1", app.api("auth"));
    for method in ["GET", "POST", "PUT"] {
        assert_eq!(
            app.request(method, &envoy, Some(&c), &[], None)
                .await
                .status,
            200,
            "{method}"
        );
    }
    let redirect = format!("{}/odoo", app.api("auth-redirect"));
    assert_eq!(
        app.request("GET", &redirect, Some(&c), &[], None)
            .await
            .status,
        200
    );
    assert_eq!(
        app.request("GET", &app.api("auth-redirect"), None, &[], None)
            .await
            .status,
        200,
        "no cookie passes"
    );
    app.advance(61.0);
    let r = app.request("POST", &envoy, Some(&c), &[], None).await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (401, Some("session_ended"))
    );
    let r = app.request("GET", &redirect, Some(&c), &[], None).await;
    assert_eq!(
        (
            r.status,
            r.headers.get("location").unwrap().to_str().unwrap()
        ),
        (303, "/web/session/logout?redirect=%2Fweb%2Flogin")
    );
}

#[actix_rt::test]
async fn a_heartbeat_body_must_be_a_json_object() {
    let app = spawn_app().await;
    let c = app.login("admin").await;
    for body in ["[]", "[5000]", "5000", "\"idle\"", "null", "true"] {
        let r = app
            .request(
                "POST",
                &app.api("heartbeat"),
                Some(&c),
                &[("Content-Type", "application/json")],
                Some(body),
            )
            .await;
        assert_eq!(
            (r.status, r.body["error"].as_str()),
            (400, Some("invalid_body")),
            "{body}: {}",
            r.text
        );
    }
    let r = app
        .request(
            "POST",
            &app.api("heartbeat"),
            Some(&c),
            &[("Content-Type", "application/json")],
            Some(r#"{"idle_ms": 5}"#),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[actix_rt::test]
async fn the_demo_follows_only_plain_local_redirects_and_checks_its_csrf_token() {
    let app = spawn_app().await;
    let client = awc::Client::builder().disable_redirects().finish();
    // A tab or newline in `redirect` would be dropped by the browser: never followed.
    for evil in [
        "/%09/evil.example",
        "/%0a/x",
        "/%5Cevil.example",
        "//evil.example",
        "/%E9",
    ] {
        let page = client
            .get(format!("{}/web/login?redirect={evil}", app.root))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status().as_u16(), 200, "{evil}");
        let mut page = page;
        let html = String::from_utf8_lossy(&page.body().await.unwrap()).to_string();
        assert!(
            html.contains(r#"name="redirect" value="""#),
            "{evil}: the form carries no redirect"
        );
        let r = app
            .request(
                "GET",
                &format!("{}/web/session/logout?redirect={evil}", app.root),
                None,
                &[],
                None,
            )
            .await;
        assert_eq!(r.status, 303, "{evil}: {}", r.text);
        assert_eq!(r.headers.get("location").unwrap(), "/web/login", "{evil}");
    }
    // A login post without the form's token (another site's form) is refused.
    let r = client
        .post(format!("{}/web/login", app.root))
        .send_form(&[("login", "admin"), ("password", "admin")])
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r
        .headers()
        .get("set-cookie")
        .is_none_or(|c| !c.to_str().unwrap().starts_with("session_id=")));
    // With it, the login works (the helper does exactly that).
    let c = app.login("admin").await;
    assert_eq!(state_of(&app.check(&c).await), "active");
}

/// Random cookies (sessions the ERP does not know) cost no database row and
/// are forgotten from memory: a flood of them cannot grow the database.
#[actix_rt::test]
async fn cookies_the_erp_does_not_know_leave_no_row_and_are_forgotten() {
    let app = spawn_app().await;
    let known = app.login("admin").await;
    for i in 0..2000 {
        let r = app.auth(&format!("random{i:026}")).await;
        assert_eq!(r.status, 204);
    }
    app.check(&known).await;
    app.flush().await;
    let conn = rusqlite::Connection::open(app.dir.join("sessions.db")).unwrap();
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 1, "only the logged-in session has a row");
    let mut in_memory = 0;
    app.state.sessions.store.for_each(|_, _| in_memory += 1);
    assert_eq!(in_memory, 2001);
    // Ten minutes after they were due for another lookup (30 s), with no
    // question about them since: forgotten.
    app.advance(631.0);
    app.state.sessions.sweep().await;
    let mut in_memory = 0;
    app.state.sessions.store.for_each(|_, _| in_memory += 1);
    assert_eq!(
        in_memory, 1,
        "only the logged-in session is still in memory"
    );
}
