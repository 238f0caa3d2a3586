use crate::helpers::*;

#[actix_rt::test]
async fn admin_routes_refuse_a_missing_or_wrong_token() {
    let app = spawn_app().await;
    let url = format!("{}/api/v1/admin/settings", app.base);
    let r = app.request("GET", &url, None, &[], None).await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (401, Some("admin_token_missing"))
    );
    assert_eq!(r.headers.get("www-authenticate").unwrap(), "Bearer");
    for wrong in [
        "Bearer nope",
        "Bearer test-admin-token-012345678",
        "Basic dGVzdA==",
        "Bearer test-admin-token-0123456789x",
    ] {
        let r = app
            .request("GET", &url, None, &[("Authorization", wrong)], None)
            .await;
        assert_eq!(r.status, 401, "{wrong}");
    }
    let r = app
        .request(
            "PUT",
            &url,
            None,
            &[
                ("Authorization", "Bearer nope"),
                ("Content-Type", "application/json"),
            ],
            Some(r#"{"activity_session_timeout_key":1}"#),
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        app.admin("GET", "settings", None).await.body["activity_session_timeout_key"]["effective"],
        60,
        "unchanged"
    );
    for path in ["sessions", "audit"] {
        let r = app
            .request(
                "GET",
                &format!("{}/api/v1/admin/{path}", app.base),
                None,
                &[],
                None,
            )
            .await;
        assert_eq!(r.status, 401, "{path}");
    }
}

#[actix_rt::test]
async fn without_a_token_the_admin_routes_are_off() {
    let app = spawn_with(Options {
        admin_token: false,
        ..Default::default()
    })
    .await;
    let r = app.admin("GET", "settings", None).await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (404, Some("admin_disabled"))
    );
}

#[actix_rt::test]
async fn a_timeout_change_applies_at_once_without_restart() {
    let app = spawn_app().await;
    let c = app.login("admin").await;
    assert_eq!(app.check(&c).await.body["remaining_ms"], 60_000);
    let r = app
        .admin(
            "PUT",
            "settings",
            Some(r#"{"activity_session_timeout_key": 600}"#),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["activity_session_timeout_key"]["effective"], 600);
    assert_eq!(app.check(&c).await.body["remaining_ms"], 600_000);
    assert_eq!(
        app.request("GET", &app.api("config"), None, &[], None)
            .await
            .body["timeout_s"],
        600
    );
    // And shortening it ends idle sessions by the new rule.
    app.advance(120.0);
    app.admin(
        "PUT",
        "settings",
        Some(r#"{"activity_session_timeout_key": "100"}"#),
    )
    .await;
    assert_eq!(state_of(&app.check(&c).await), "expired");
    // The change is in the audit log.
    let audit = app.admin("GET", "audit", None).await;
    let details: Vec<_> = audit.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["detail"].as_str())
        .collect();
    assert!(
        details.contains(&"activity_session_timeout_key: 60 -> 600 (by the admin API)"),
        "{details:?}"
    );
}

#[actix_rt::test]
async fn invalid_settings_are_refused_with_the_accepted_range() {
    let app = spawn_app().await;
    for (body, needle) in [
        (
            r#"{"activity_session_timeout_key": 0}"#,
            "accepted: 1 to 2592000",
        ),
        (
            r#"{"activity_session_timeout_key": "abc"}"#,
            "not a whole number",
        ),
        (
            r#"{"activity_session_timeout_key": 99999999999}"#,
            "out of range",
        ),
        (
            r#"{"activity_session_timeout_key": true}"#,
            "string or an integer",
        ),
        (r#"{"absolute_lifetime_s": 5}"#, "accepted: 60 to"),
        (r#"{"warn_before_s": -1}"#, "accepted: 0 to 86400"),
        (r#"{"warn_before_s": "soon"}"#, "not a whole number"),
        (r#"{"timeout": 5}"#, "unknown setting `timeout`"),
        (r#"{}"#, "nothing to change"),
        (r#"[1]"#, "JSON object"),
    ] {
        let r = app.admin("PUT", "settings", Some(body)).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert!(
            r.body["message"].as_str().unwrap().contains(needle),
            "{body}: {}",
            r.text
        );
    }
    assert_eq!(
        app.admin("GET", "settings", None).await.body["activity_session_timeout_key"]["effective"],
        60
    );
}

#[actix_rt::test]
async fn an_invalid_stored_timeout_falls_back_to_300_and_shows_both() {
    let app = spawn_with(Options {
        timeout: None,
        ..Default::default()
    })
    .await;
    let (dir, clock, tmp) = app.stop().await;
    // What an ERP admin might have typed into the system parameter.
    let conn = rusqlite::Connection::open(dir.join("sessions.db")).unwrap();
    conn.execute(
        "INSERT INTO settings (name, value) VALUES ('activity_session_timeout_key', '5 minutes')",
        [],
    )
    .unwrap();
    drop(conn);
    let app = spawn_in(
        &dir,
        Options {
            timeout: None,
            ..Default::default()
        },
        clock,
    )
    .await;
    let r = app.admin("GET", "settings", None).await;
    let t = &r.body["activity_session_timeout_key"];
    assert_eq!(
        (
            t["configured"].as_str(),
            t["effective"].as_i64(),
            t["valid"].as_bool()
        ),
        (Some("5 minutes"), Some(300), Some(false))
    );
    assert!(r.body["warnings"][0]
        .as_str()
        .unwrap()
        .contains("using 300 s"));
    let c = app.login("admin").await;
    assert_eq!(app.check(&c).await.body["timeout_s"], 300);
    drop(tmp);
}

#[actix_rt::test]
async fn list_revoke_and_audit() {
    let app = spawn_app().await;
    let admin = app.login("admin").await;
    let portal = app.login("portal").await;
    app.check(&admin).await;
    app.check(&portal).await;
    let r = app.admin("GET", "sessions", None).await;
    assert_eq!(r.body["total"], 2);
    let rows = r.body["sessions"].as_array().unwrap();
    let admin_row = rows.iter().find(|s| s["class"] == "internal").unwrap();
    assert_eq!(
        (admin_row["uid"].as_i64(), admin_row["state"].as_str()),
        (Some(2), Some("active"))
    );
    let portal_row = rows.iter().find(|s| s["class"] == "portal").unwrap();
    assert_eq!(portal_row["state"], "exempt");
    // No raw cookie value anywhere in the listing.
    assert!(!r.text.contains(&admin) && !r.text.contains(&portal));

    let prefix = admin_row["key_prefix"].as_str().unwrap();
    let r = app
        .admin("POST", &format!("sessions/{prefix}/revoke"), None)
        .await;
    assert_eq!(
        (r.status, r.body["revoked"].as_bool()),
        (200, Some(true)),
        "{}",
        r.text
    );
    assert_eq!(app.auth(&admin).await.status, 401);
    assert_eq!(state_of(&app.heartbeat(&admin, 0).await), "expired");
    // Any 8 or more digits will do, an odd number too.
    let r = app
        .admin(
            "POST",
            &format!("sessions/{}/revoke", &prefix[..9].to_uppercase()),
            None,
        )
        .await;
    assert_eq!(
        (
            r.body["already_ended"].as_bool(),
            r.body["key_prefix"].as_str()
        ),
        (Some(true), Some(prefix)),
        "{}",
        r.text
    );

    for (path, status) in [
        ("sessions/zz/revoke", 400),
        ("sessions/0000000000000000/revoke", 404),
        ("sessions?state=sleepy", 400),
        ("audit?limit=x", 400),
    ] {
        let method = if path.contains("revoke") {
            "POST"
        } else {
            "GET"
        };
        assert_eq!(app.admin(method, path, None).await.status, status, "{path}");
    }

    app.logout(&portal).await;
    let events = app.admin("GET", "audit", None).await.body["events"]
        .as_array()
        .unwrap()
        .clone();
    let kinds: Vec<_> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"revoked") && kinds.contains(&"logout"),
        "{kinds:?}"
    );
    let revoked = events.iter().find(|e| e["event"] == "revoked").unwrap();
    assert_eq!(
        (revoked["key_prefix"].as_str(), revoked["uid"].as_i64()),
        (Some(prefix), Some(2))
    );
}

#[actix_rt::test]
async fn the_sweeper_records_expiries_nobody_asked_about() {
    let app = spawn_app().await;
    let c = app.login("admin").await;
    app.check(&c).await;
    app.advance(61.0);
    app.state.sessions.sweep().await;
    let events = app.admin("GET", "audit", None).await.body["events"]
        .as_array()
        .unwrap()
        .clone();
    let e = events
        .iter()
        .find(|e| e["event"] == "expired")
        .expect("expiry in the audit log");
    assert_eq!(e["detail"], "idle_timeout");
    let listed = app.admin("GET", "sessions?state=ended", None).await;
    assert_eq!(listed.body["sessions"][0]["end_reason"], "idle_timeout");
}

#[actix_rt::test]
async fn sessions_ended_before_the_retention_period_are_purged_but_stay_in_the_audit_log() {
    let app = spawn_app().await;
    let (old, recent) = (app.login("admin").await, app.login("admin").await);
    app.check(&old).await;
    app.check(&recent).await;
    // Through the ERP's logout, which ends the ERP's session too.
    let out = app
        .request(
            "GET",
            &format!("{}/web/session/logout", app.root),
            Some(&old),
            &[],
            None,
        )
        .await;
    assert_eq!(out.status, 303);
    app.advance(29.0 * 86_400.0);
    app.logout(&recent).await;
    app.advance(2.0 * 86_400.0); // `old` ended 31 days ago, `recent` 2 days ago
    app.state.sessions.sweep().await;
    app.flush().await;
    let conn = rusqlite::Connection::open(app.dir.join("sessions.db")).unwrap();
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 1, "only the recently ended session is still stored");
    let listed = app.admin("GET", "sessions", None).await;
    assert_eq!(
        listed.body["total"], 1,
        "and only it is still in memory: {}",
        listed.text
    );
    let logouts = app.admin("GET", "audit", None).await.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "logout")
        .count();
    assert_eq!(logouts, 2, "the audit log keeps both logouts");
    // Once purged, the old cookie is a stranger; the ERP no longer knows it
    // either, so it is a public visitor (hence: keep the retention longer
    // than the ERP's own session lifetime).
    assert_eq!(state_of(&app.check(&old).await), "exempt");
}

#[actix_rt::test]
async fn the_notice_lead_is_set_by_the_admin_and_told_to_the_page_at_most_half_the_timeout() {
    let app = spawn_app().await;
    let config = || async {
        let r = app
            .request("GET", &app.api("config"), None, &[], None)
            .await;
        r.body["warn_before_s"].clone()
    };
    assert_eq!(config().await, 0, "off by default");
    let r = app
        .admin("PUT", "settings", Some(r#"{"warn_before_s": "20"}"#))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["warn_before_s"]["effective"], 20);
    assert_eq!(config().await, 20, "the page is told");
    // The timeout is 60 s: a 50 s lead would be up after every answer.
    app.admin("PUT", "settings", Some(r#"{"warn_before_s": 50}"#))
        .await;
    assert_eq!(config().await, 30, "at most half the timeout");
    let audit = app.admin("GET", "audit", None).await;
    assert!(
        audit.text.contains("warn_before_s: 20 -> 50"),
        "audited with old and new: {}",
        audit.text
    );
}

#[actix_rt::test]
async fn every_session_of_a_user_ends_at_once_and_the_audit_log_says_who_asked() {
    let app = spawn_app().await;
    // Two browsers of the same internal user, and a portal user.
    let (a, b, p) = (
        app.login("admin").await,
        app.login("admin").await,
        app.login("portal").await,
    );
    for c in [&a, &b] {
        assert_eq!(state_of(&app.check(c).await), "active");
    }
    assert_eq!(state_of(&app.check(&p).await), "exempt");
    let list = app.admin("GET", "sessions?state=active", None).await;
    let uid = list.body["sessions"][0]["uid"]
        .as_i64()
        .expect("the ERP named the user");
    let r = app
        .admin(
            "POST",
            &format!("users/{uid}/end-sessions"),
            Some(r#"{"by": "alice (security officer)"}"#),
        )
        .await;
    assert_eq!(
        (r.status, r.body["ended"].as_i64()),
        (200, Some(2)),
        "{}",
        r.text
    );
    for c in [&a, &b] {
        assert_eq!(app.auth(c).await.status, 401, "both browsers are refused");
        assert_eq!(app.check(c).await.body["reason"], "revoked");
    }
    assert_eq!(
        state_of(&app.check(&p).await),
        "exempt",
        "other users untouched"
    );
    let audit = app.admin("GET", "audit", None).await.text;
    assert!(
        audit.contains(&format!(
            "uid {uid}: 2 sessions ended (asked by alice (security officer))"
        )),
        "{audit}"
    );
    assert_eq!(
        audit.matches(r#""event":"revoked""#).count(),
        2,
        "each session audited: {audit}"
    );
    // Nothing left to end; bad input is named.
    let again = app
        .admin("POST", &format!("users/{uid}/end-sessions"), None)
        .await;
    assert_eq!(again.body["ended"], 0);
    for bad in ["abc", "0", "-3"] {
        let r = app
            .admin("POST", &format!("users/{bad}/end-sessions"), None)
            .await;
        assert_eq!(
            (r.status, r.body["error"].as_str()),
            (400, Some("invalid_uid")),
            "{bad}"
        );
    }
    let r = app
        .admin(
            "POST",
            &format!("users/{uid}/end-sessions"),
            Some(r#"{"by": 5}"#),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
}
