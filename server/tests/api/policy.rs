//! Policy per group and per user through the admin API: the strictest rule
//! wins, changes reach open sessions, presets, the report, the audit log.

use crate::helpers::*;

async fn config(app: &TestApp, cookie: &str) -> serde_json::Value {
    app.request("GET", &app.api("config"), Some(cookie), &[], None)
        .await
        .body
}

#[actix_rt::test]
async fn an_admin_rule_times_admins_by_their_own_limit_and_reaches_open_sessions() {
    let app = spawn_app().await;
    // The demo ERP says its admin is is_admin and is_system.
    let (a, p) = (app.login("admin").await, app.login("portal").await);
    assert_eq!(app.check(&a).await.body["timeout_s"], 60, "the default");
    let r = app
        .admin(
            "PUT",
            "policy/rules/admin",
            Some(r#"{"idle_s": 20, "by": "alice"}"#),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // The session opened before the rule is timed by it at once.
    let c = app.check(&a).await;
    assert_eq!((state_of(&c), &c.body["timeout_s"]), ("active", &20.into()));
    assert_eq!(config(&app, &a).await["timeout_s"], 20, "the page is told");
    assert_eq!(
        config(&app, &a).await["heartbeat_interval_ms"],
        5_000,
        "a quarter of 20 s"
    );
    assert_eq!(
        state_of(&app.check(&p).await),
        "exempt",
        "portal stays exempt"
    );
    app.advance(15.0);
    assert_eq!(state_of(&app.heartbeat(&a, 0).await), "active");
    app.advance(21.0);
    let c = app.check(&a).await;
    assert_eq!(
        (state_of(&c), c.body["reason"].as_str()),
        ("expired", Some("idle_timeout"))
    );
    // Removing the rule never brings an ended session back.
    let r = app
        .admin("DELETE", "policy/rules/admin", Some(r#"{"by": "alice"}"#))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(state_of(&app.check(&a).await), "expired");
    assert_eq!(app.auth(&a).await.status, 401);
    // Every change is audited with the old and the new rule and who made it.
    let audit = app.admin("GET", "audit", None).await.text;
    assert!(
        audit.contains(r#"policy_rules admin: (none) -> [{\"group\":\"admin\",\"idle_s\":20,\"absolute_s\":null}] (by alice)"#),
        "{audit}"
    );
    assert!(
        audit.contains(r#"policy_rules admin: [{\"group\":\"admin\",\"idle_s\":20,\"absolute_s\":null}] -> (none) (by alice)"#),
        "{audit}"
    );
    let r = app.admin("DELETE", "policy/rules/admin", None).await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (404, Some("no_such_rule"))
    );
}

#[actix_rt::test]
async fn a_looser_rule_and_an_exempt_user_are_honoured_and_shown_in_the_report() {
    let app = spawn_app().await;
    let a = app.login("admin").await;
    app.check(&a).await;
    let uid = app.admin("GET", "sessions?state=active", None).await.body["sessions"][0]["uid"]
        .as_i64()
        .unwrap();
    // Looser than the default of 60 s: a group may be, the strictest *rule* wins.
    app.admin(
        "PUT",
        "policy/rules/system",
        Some(r#"{"idle_s": 600, "absolute_s": 28800}"#),
    )
    .await;
    app.advance(90.0);
    assert_eq!(
        state_of(&app.check(&a).await),
        "active",
        "600 s for system users"
    );
    // A stricter rule for the same user wins over the group's.
    app.admin(
        "PUT",
        &format!("policy/rules/user:{uid}"),
        Some(r#"{"idle_s": 120}"#),
    )
    .await;
    assert_eq!(app.check(&a).await.body["timeout_s"], 120);
    // Exempt: never timed, listed as such.
    let r = app
        .admin(
            "PUT",
            &format!("policy/rules/user:{uid}"),
            Some(r#"{"exempt": true, "login": "admin"}"#),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["replaced"]["idle_s"], 120,
        "the old rule is returned"
    );
    app.advance(3_000.0);
    assert_eq!(state_of(&app.check(&a).await), "exempt");
    let listed = app.admin("GET", "sessions?state=exempt", None).await;
    assert_eq!(listed.body["total"], 1, "{}", listed.text);
    let report = app.admin("GET", "policy/report", None).await;
    assert_eq!(report.status, 200, "{}", report.text);
    let lines = report.body["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 3, "{}", report.text);
    assert_eq!(lines[0]["subject"], "default");
    assert_eq!(lines[0]["idle_s"], 60);
    assert_eq!(lines[1]["subject"], "system");
    assert_eq!(
        (lines[1]["idle_s"].as_i64(), lines[1]["absolute_s"].as_i64()),
        (Some(600), Some(28_800))
    );
    let met: Vec<_> = lines[1]["standards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["met"] == true)
        .map(|v| v["standard"].as_str().unwrap())
        .collect();
    assert_eq!(met, ["pci-dss-4", "nist-aal2", "nist-aal3", "owasp-low"]);
    assert_eq!(lines[2]["applies_to"], format!("user admin (uid {uid})"));
    assert_eq!(lines[2]["exempt"], true);
    assert!(report.body["table"].as_str().unwrap().contains("exempt"));
}

#[actix_rt::test]
async fn presets_set_the_default_or_a_group_in_one_step() {
    let app = spawn_app().await;
    let r = app
        .admin(
            "POST",
            "policy/preset",
            Some(r#"{"preset": "pci-dss-4", "by": "auditor"}"#),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let s = app.admin("GET", "settings", None).await.body;
    assert_eq!(s["activity_session_timeout_key"]["effective"], 900);
    assert_eq!(s["absolute_lifetime_s"]["effective"], 0);
    let r = app
        .admin(
            "POST",
            "policy/preset",
            Some(r#"{"preset": "nist-aal3", "subject": "admin"}"#),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let policy = app.admin("GET", "policy", None).await.body;
    assert_eq!(policy["default"]["idle_s"], 900);
    assert_eq!(policy["rules"][0]["idle_s"], 900);
    assert_eq!(policy["rules"][0]["absolute_s"], 43_200);
    let audit = app.admin("GET", "audit", None).await.text;
    assert!(
        audit.contains("-> 900 (by auditor, preset pci-dss-4)"),
        "{audit}"
    );
    assert!(
        audit.contains("(by the admin API, preset nist-aal3)"),
        "{audit}"
    );
    // Every line of the report meets the standard of its preset.
    let report = app.admin("GET", "policy/report", None).await.body;
    let verdict = |line: usize, std: &str| {
        report["lines"][line]["standards"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["standard"] == std)
            .unwrap()["met"]
            .as_bool()
            .unwrap()
    };
    assert!(verdict(0, "pci-dss-4") && !verdict(0, "nist-aal2"));
    assert!(verdict(1, "nist-aal3") && verdict(1, "nist-aal2") && !verdict(1, "psd2"));
}

#[actix_rt::test]
async fn bad_rules_are_refused_with_what_is_wrong_and_nothing_changes() {
    let app = spawn_app().await;
    for (method, path, body, code, says) in [
        (
            "PUT",
            "policy/rules/accountants",
            r#"{"idle_s": 60}"#,
            "invalid_subject",
            "not a rule subject",
        ),
        (
            "PUT",
            "policy/rules/user:0",
            r#"{"idle_s": 60}"#,
            "invalid_subject",
            "user:UID",
        ),
        (
            "PUT",
            "policy/rules/admin",
            r#"{"idle_s": 0}"#,
            "invalid_rule",
            "idle_s 0 is not between 1",
        ),
        (
            "PUT",
            "policy/rules/admin",
            r#"{}"#,
            "invalid_rule",
            "sets nothing",
        ),
        (
            "PUT",
            "policy/rules/admin",
            r#"{"exempt": true}"#,
            "invalid_rule",
            "only a single user",
        ),
        (
            "PUT",
            "policy/rules/user:4",
            r#"{"exempt": true, "idle_s": 9}"#,
            "invalid_rule",
            "not both",
        ),
        (
            "PUT",
            "policy/rules/admin",
            r#"{"idle": 60}"#,
            "invalid_body",
            "unknown field `idle`",
        ),
        (
            "PUT",
            "policy/rules/admin",
            r#"{"idle_s": "60"}"#,
            "invalid_body",
            "invalid type",
        ),
        (
            "POST",
            "policy/preset",
            r#"{"preset": "pci"}"#,
            "unknown_preset",
            "known: pci-dss-4",
        ),
        (
            "POST",
            "policy/preset",
            r#"{"preset": "psd2", "subject": "root"}"#,
            "invalid_subject",
            "not a rule subject",
        ),
    ] {
        let r = app.admin(method, path, Some(body)).await;
        assert_eq!(r.status, 400, "{path} {body}: {}", r.text);
        assert_eq!(r.body["error"], code, "{path} {body}: {}", r.text);
        assert!(
            r.body["message"].as_str().unwrap().contains(says),
            "{path} {body}: {}",
            r.text
        );
    }
    let policy = app.admin("GET", "policy", None).await.body;
    assert_eq!(policy["rules"], serde_json::json!([]));
    assert_eq!(policy["source"], "sidecar");
}
