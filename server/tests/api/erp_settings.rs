//! The idle timeout owned by the ERP (`--erp-settings-url`). The ERP here is a
//! stand-in for one route, in the shape of the Odoo addon's; the real addon
//! in real Odoo 17 and 18 is tested by tests/e2e/odoo.test.mjs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use session_timeout::config::ErpSettings;
use session_timeout::erp_settings::spawn_poller;

use crate::helpers::*;

const ERP_TOKEN: &str = "erp-token-0123456789abcdef";

/// The addon's `GET /session_timeout/settings`: the stored parameter, behind the token.
async fn erp_route(value: Arc<Mutex<serde_json::Value>>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = HttpServer::new(move || {
        let value = value.clone();
        App::new().route(
            "/session_timeout/settings",
            web::get().to(move |req: HttpRequest| {
                let value = value.clone();
                async move {
                    let auth = req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok());
                    if auth != Some(&format!("Bearer {ERP_TOKEN}")) {
                        return HttpResponse::Unauthorized().json(
                            serde_json::json!({"error": "token_wrong", "message": "wrong token"}),
                        );
                    }
                    // A whole answer (an object), or the timeout alone (an older addon).
                    let v = value.lock().unwrap().clone();
                    let body = if v.is_object() {
                        v
                    } else {
                        serde_json::json!({ "activity_session_timeout_key": v })
                    };
                    HttpResponse::Ok().json(body)
                }
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    actix_rt::spawn(server);
    format!("http://{addr}/session_timeout/settings")
}

/// The sidecar reading the stand-in route every 100 ms.
async fn reading_erp(value: Arc<Mutex<serde_json::Value>>) -> (TestApp, ErpSettings) {
    let erp = ErpSettings {
        url: erp_route(value).await,
        token: ERP_TOKEN.into(),
        interval: Duration::from_millis(100),
    };
    let app = spawn_with(Options {
        timeout: None,
        erp_settings: Some(erp.clone()),
        ..Default::default()
    })
    .await;
    spawn_poller(app.state.clone(), erp.clone(), Duration::from_secs(1));
    (app, erp)
}

/// Reads an admin route until `ok` holds (5 s at most); its last answer.
async fn admin_until(
    app: &TestApp,
    route: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut body = serde_json::Value::Null;
    for _ in 0..100 {
        body = app.admin("GET", route, None).await.body;
        if ok(&body) {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    body
}

async fn effective_when(app: &TestApp, want: u64) -> serde_json::Value {
    let s = admin_until(app, "settings", |s| {
        s["activity_session_timeout_key"]["effective"] == want
    })
    .await;
    assert_eq!(
        s["activity_session_timeout_key"]["effective"], want,
        "the sidecar never enforced {want} s"
    );
    s
}

#[actix_rt::test]
async fn the_timeout_set_in_the_erp_is_enforced_and_the_admin_api_cannot_change_it() {
    let value = Arc::new(Mutex::new(serde_json::json!("20")));
    let (app, erp) = reading_erp(value.clone()).await;
    let url = erp.url.clone();

    let s = effective_when(&app, 20).await;
    assert_eq!(s["activity_session_timeout_key"]["source"], "erp");
    assert_eq!(s["erp"]["url"], url.as_str());
    assert!(s["erp"]["last_ok_ms"].as_u64().is_some());
    // A session opened now gets the ERP's timeout.
    let cookie = app.login("admin").await;
    let r = app
        .request("GET", &app.api("check"), Some(&cookie), &[], None)
        .await;
    assert_eq!(r.body["timeout_s"], 20);

    // The sidecar's API and CLI refuse to disagree with the ERP.
    let r = app
        .admin(
            "PUT",
            "settings",
            Some(r#"{"activity_session_timeout_key": 600}"#),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (409, Some("managed_by_erp"))
    );
    assert!(r.body["message"]
        .as_str()
        .unwrap()
        .contains("General Settings"));
    // The absolute lifetime is still the sidecar's.
    let r = app
        .admin("PUT", "settings", Some(r#"{"absolute_lifetime_s": 3600}"#))
        .await;
    assert_eq!(r.status, 200);

    // Changed in the ERP: applied, audited as coming from the ERP.
    *value.lock().unwrap() = serde_json::json!("45");
    effective_when(&app, 45).await;
    // Invalid or unset in the ERP: 300, as the addon's field shows.
    *value.lock().unwrap() = serde_json::json!("abc");
    let s = effective_when(&app, 300).await;
    assert_eq!(s["activity_session_timeout_key"]["configured"], "abc");
    assert_eq!(s["activity_session_timeout_key"]["valid"], false);
    *value.lock().unwrap() = serde_json::json!("45");
    effective_when(&app, 45).await;
    *value.lock().unwrap() = serde_json::Value::Null;
    effective_when(&app, 300).await;
    let audit = app
        .admin("GET", "audit?limit=1000", None)
        .await
        .body
        .to_string();
    assert!(
        audit.contains("activity_session_timeout_key: 20 -> 45 (from the ERP)"),
        "{audit}"
    );
    assert!(
        audit.contains("activity_session_timeout_key: 45 -> (unset) (from the ERP)"),
        "{audit}"
    );

    // Back at 45; then the ERP goes away: the last value read stays in force,
    // and the admin API says why it is not refreshed.
    *value.lock().unwrap() = serde_json::json!("45");
    effective_when(&app, 45).await;
    let dead = ErpSettings {
        url: "http://127.0.0.1:9/session_timeout/settings".into(),
        ..erp
    };
    let dir = app.dir.clone();
    let (_, clock, tmp) = app.stop().await;
    let app = spawn_in(
        &dir,
        Options {
            timeout: None,
            erp_settings: Some(dead.clone()),
            ..Default::default()
        },
        clock,
    )
    .await;
    spawn_poller(app.state.clone(), dead, Duration::from_millis(300));
    let last_error = admin_until(&app, "settings", |s| !s["erp"]["last_error"].is_null()).await
        ["erp"]["last_error"]
        .clone();
    assert!(
        last_error
            .as_str()
            .unwrap_or("")
            .contains("cannot reach the ERP"),
        "{last_error}"
    );
    let s = app.admin("GET", "settings", None).await.body;
    assert_eq!(
        s["activity_session_timeout_key"]["effective"], 45,
        "kept across the restart"
    );
    drop(tmp);
}

#[actix_rt::test]
async fn a_wrong_token_is_reported_and_changes_nothing() {
    let value = Arc::new(Mutex::new(serde_json::json!("20")));
    let url = erp_route(value).await;
    let erp = ErpSettings {
        url,
        token: "not-the-erp-token-0000".into(),
        interval: Duration::from_millis(100),
    };
    let app = spawn_with(Options {
        timeout: None,
        erp_settings: Some(erp.clone()),
        ..Default::default()
    })
    .await;
    spawn_poller(app.state.clone(), erp, Duration::from_secs(1));
    let s = admin_until(&app, "settings", |s| !s["erp"]["last_error"].is_null()).await;
    let e = s["erp"]["last_error"].as_str().unwrap_or("");
    assert!(
        e.contains("refused the token") && e.contains("session_timeout_token"),
        "{e}"
    );
    assert_eq!(s["activity_session_timeout_key"]["effective"], 300);
}

#[actix_rt::test]
async fn the_notice_lead_set_in_the_erp_is_read_with_the_timeout_and_owned_by_it() {
    let value = Arc::new(Mutex::new(serde_json::json!(
        {"activity_session_timeout_key": "20", "warn_before_s": null}
    )));
    let (app, _) = reading_erp(value.clone()).await;
    effective_when(&app, 20).await;
    // Odoo saves the form: a timeout of 0 (stored as 300) and a notice of 0.
    *value.lock().unwrap() =
        serde_json::json!({"activity_session_timeout_key": "300", "warn_before_s": "0"});
    let s = effective_when(&app, 300).await;
    assert_eq!(s["warn_before_s"]["effective"], 0);
    *value.lock().unwrap() =
        serde_json::json!({"activity_session_timeout_key": "300", "warn_before_s": "45"});
    admin_until(&app, "settings", |s| s["warn_before_s"]["effective"] == 45).await;
    let r = app
        .request("GET", &app.api("config"), None, &[], None)
        .await;
    assert_eq!(r.body["warn_before_s"], 45, "the page is told");
    let put = app
        .admin("PUT", "settings", Some(r#"{"warn_before_s": 10}"#))
        .await;
    assert_eq!(
        (put.status, put.body["error"].as_str()),
        (409, Some("managed_by_erp"))
    );
}

#[actix_rt::test]
async fn rules_and_requests_to_end_sessions_come_from_the_erp() {
    let answer = |rules: serde_json::Value, ends: serde_json::Value| {
        serde_json::json!({
            "activity_session_timeout_key": "60", "warn_before_s": null,
            "absolute_lifetime_s": null, "policy_rules": rules,
            "policy_changed_by": "alice", "end_sessions": ends,
        })
    };
    let value = Arc::new(Mutex::new(answer(
        serde_json::json!([]),
        serde_json::json!([]),
    )));
    let (app, _) = reading_erp(value.clone()).await;
    effective_when(&app, 60).await;
    let a = app.login("admin").await;
    app.check(&a).await;
    let uid = app.admin("GET", "sessions?state=active", None).await.body["sessions"][0]["uid"]
        .as_i64()
        .unwrap();
    // A group of the ERP with its members: the admin is one.
    *value.lock().unwrap() = answer(
        serde_json::json!([{"id": 1, "group": "Accounting / Billing", "group_xmlid": "account.group_account_invoice",
                             "uids": [uid, 99], "idle_s": 30, "absolute_s": null}]),
        serde_json::json!([]),
    );
    let p = admin_until(&app, "policy", |p| {
        p["rules"].as_array().map(Vec::len) == Some(1)
    })
    .await;
    assert_eq!(p["rules"][0]["uids"], serde_json::json!([uid, 99]), "{p}");
    assert_eq!(p["source"], "erp");
    // This addon sends the absolute lifetime too: the ERP owns it.
    let r = app
        .admin("PUT", "settings", Some(r#"{"absolute_lifetime_s": 3600}"#))
        .await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (409, Some("managed_by_erp"))
    );
    assert_eq!(
        app.check(&a).await.body["timeout_s"],
        30,
        "the open session takes it"
    );
    let audit = app.admin("GET", "audit?limit=1000", None).await.text;
    assert!(
        audit.contains(r#"policy_rules: (unset) -> [{\"id\":1,\"group\":\"Accounting / Billing\""#),
        "{audit}"
    );
    assert!(audit.contains("(from the ERP, by alice)"), "{audit}");
    // The sidecar's API only reads them.
    let r = app
        .admin("PUT", "policy/rules/admin", Some(r#"{"idle_s": 600}"#))
        .await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (409, Some("managed_by_erp"))
    );
    let report = app.admin("GET", "policy/report", None).await.body;
    assert_eq!(
        report["lines"][1]["applies_to"],
        "group Accounting / Billing"
    );
    assert_eq!(report["lines"][1]["idle_s"], 30);
    // A rule the sidecar refuses keeps the rules in force, and says why.
    *value.lock().unwrap() = answer(
        serde_json::json!([{"group": "Sales", "uids": [2], "idle_s": 0}]),
        serde_json::json!([]),
    );
    let said = admin_until(&app, "settings", |s| {
        s["erp"]["last_error"].to_string().contains("idle_s 0")
    })
    .await["erp"]["last_error"]
        .to_string();
    assert!(said.contains("the rules in force stay"), "{said}");
    assert_eq!(app.check(&a).await.body["timeout_s"], 30);
    // The button on the user's form: every session begun before it ends, later ones stay.
    let b = app.login("admin").await;
    app.check(&b).await;
    let asked = app.state.sessions.clock.now().0;
    app.advance(1.0);
    let later = app.login("admin").await;
    app.check(&later).await;
    *value.lock().unwrap() = answer(
        serde_json::json!([]),
        serde_json::json!([{"uid": uid, "login": "admin", "at_ms": asked, "by": "bob"}, {"bad": 1}]),
    );
    for _ in 0..100 {
        if state_of(&app.check(&b).await) == "expired" {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    for c in [&a, &b] {
        assert_eq!(app.check(c).await.body["reason"], "revoked");
    }
    assert_eq!(
        state_of(&app.check(&later).await),
        "active",
        "a login after the request is spared"
    );
    let audit = app.admin("GET", "audit?limit=1000", None).await.text;
    assert!(
        audit.contains(&format!(
            "uid {uid}: 2 sessions ended (asked by bob in the ERP)"
        )),
        "{audit}"
    );
}
