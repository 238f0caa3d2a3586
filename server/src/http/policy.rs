//! The admin API of the policy per group and per user: the rules in force,
//! one rule set or removed, a compliance preset applied, and the report.
//!
//! The rules have one source of truth, like the timeout: with
//! `--erp-settings-url` the ERP's addon sends them (Odoo: Settings > Users &
//! Companies > Session Timeout Rules) and these routes only read; without
//! it they are the sidecar's own, and every change is audited with the old
//! and the new rule and who made it.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::admin::{change_settings, take_asked_by};
use super::error::ApiError;
use super::{read_json_body, resource, AppState};
use crate::rules::{self, Rule, RULES_KEY, STANDARDS};
use crate::settings::{LIFETIME_KEY, TIMEOUT_KEY};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/v1/admin/policy", "GET").route(web::get().to(show)))
        .service(
            resource("/api/v1/admin/policy/rules/{subject}", "PUT or DELETE")
                .route(web::put().to(put_rule))
                .route(web::delete().to(delete_rule)),
        )
        .service(resource("/api/v1/admin/policy/preset", "POST").route(web::post().to(preset)))
        .service(resource("/api/v1/admin/policy/report", "GET").route(web::get().to(report)));
}

/// One read-modify-write of the rules at a time in this process.
static EDITS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn source(st: &AppState) -> &'static str {
    if st.settings.erp.is_some() {
        "erp"
    } else {
        "sidecar"
    }
}

async fn show(req: HttpRequest, st: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    st.admin.authorize(&req)?;
    let configured = st.settings.configured();
    let (rules, invalid) = configured.rules();
    let default = st.sessions.policy();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "source": source(&st),
        "default": {
            "idle_s": default.timeout_s(),
            "absolute_s": default.absolute_lifetime_ms.map(|ms| ms / 1000),
        },
        "rules": rules,
        "warnings": invalid.into_iter().collect::<Vec<_>>(),
    })))
}

async fn report(req: HttpRequest, st: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    st.admin.authorize(&req)?;
    let (rules, invalid) = st.settings.configured().rules();
    let lines = rules::report(st.sessions.policy(), &rules);
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "source": source(&st),
        "lines": lines,
        "standards": STANDARDS,
        "table": rules::report_table(&lines),
        "warnings": invalid.into_iter().collect::<Vec<_>>(),
    })))
}

fn managed_by_erp(st: &AppState) -> Result<(), ApiError> {
    match &st.settings.erp {
        Some(erp) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "managed_by_erp",
            format!(
                "the rules are set in the ERP (Odoo: Settings > Users & Companies > Session \
                 Timeout Rules), which this sidecar reads from {}; change them there",
                erp.url
            ),
        )),
        None => Ok(()),
    }
}

/// A rule's subject as the API names it: `admin`, `system` or `user:UID`.
fn subject_rule(subject: &str) -> Result<Rule, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "invalid_subject",
            format!(
                "`{}` is not a rule subject: use admin, system (the ERP's is_admin and \
                 is_system) or user:UID",
                subject.chars().take(60).collect::<String>()
            ),
        )
    };
    if rules::ROLE_GROUPS.contains(&subject) {
        return Ok(Rule {
            group: Some(subject.to_string()),
            ..Rule::default()
        });
    }
    let uid = subject
        .strip_prefix("user:")
        .and_then(|u| u.parse::<i32>().ok())
        .filter(|u| *u > 0)
        .ok_or_else(bad)?;
    Ok(Rule {
        user: Some(uid),
        ..Rule::default()
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleBody {
    #[serde(default)]
    idle_s: Option<u64>,
    #[serde(default)]
    absolute_s: Option<u64>,
    #[serde(default)]
    exempt: bool,
    #[serde(default)]
    login: Option<String>,
}

/// Replaces the rule of `rule.subject()` (or removes it, `rule` = `None`
/// with that subject), audited with the old and the new rule.
async fn store_rule(
    st: &AppState,
    subject: &str,
    rule: Option<Rule>,
    by: &str,
) -> Result<Option<Rule>, ApiError> {
    let _one = EDITS.lock().await;
    let configured = st.settings.configured();
    let (mut rules, _) = configured.rules();
    let old_text = configured.get(RULES_KEY).cloned().unwrap_or_default();
    let at = rules.iter().position(|r| r.subject() == subject);
    let old = at.map(|i| rules.remove(i));
    if rule.is_none() && old.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_rule",
            format!("there is no rule for {subject}"),
        ));
    }
    if let Some(r) = &rule {
        rules.insert(at.unwrap_or(rules.len()), r.clone());
    }
    let text = rules::rules_text(&rules);
    if text != old_text {
        let show = |r: &Option<Rule>| {
            r.as_ref().map_or("(none)".into(), |r| {
                rules::rules_text(std::slice::from_ref(r))
            })
        };
        let detail = format!(
            "{RULES_KEY} {subject}: {} -> {} (by {by})",
            show(&old),
            show(&rule)
        );
        st.sessions
            .store
            .set_setting(RULES_KEY, &text, &detail)
            .await
            .map_err(ApiError::storage)?;
        st.settings
            .configured
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .set(RULES_KEY, text);
        log::info!("policy changed: {detail}");
        st.settings.apply(&st.sessions);
    }
    Ok(old)
}

fn parse_body<T: serde::de::DeserializeOwned>(
    body: Option<serde_json::Value>,
    example: &str,
) -> Result<T, ApiError> {
    serde_json::from_value(body.unwrap_or_else(|| serde_json::json!({}))).map_err(|e| {
        ApiError::bad_request("invalid_body", format!("{e}; send for example {example}"))
    })
}

async fn put_rule(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    st: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    st.admin.authorize(&req)?;
    let subject = path.into_inner();
    let mut rule = subject_rule(&subject)?;
    managed_by_erp(&st)?;
    let mut body = read_json_body(&req, payload, true).await?;
    let by = take_asked_by(&mut body)?;
    let b: RuleBody = parse_body(body, r#"{"idle_s": 600, "absolute_s": 28800}"#)?;
    rule.idle_s = b.idle_s;
    rule.absolute_s = b.absolute_s;
    rule.exempt = b.exempt;
    rule.login = b.login.filter(|_| rule.user.is_some());
    rule.validate()
        .map_err(|e| ApiError::bad_request("invalid_rule", e))?;
    let old = store_rule(&st, &subject, Some(rule.clone()), &by).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "rule": rule, "replaced": old })))
}

async fn delete_rule(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    st: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    st.admin.authorize(&req)?;
    let subject = path.into_inner();
    subject_rule(&subject)?;
    managed_by_erp(&st)?;
    let mut body = read_json_body(&req, payload, false).await?;
    let by = take_asked_by(&mut body)?;
    let old = store_rule(&st, &subject, None, &by).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "removed": old })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PresetBody {
    preset: String,
    /// `default` (the global settings), `admin`, `system` or `user:UID`.
    #[serde(default)]
    subject: Option<String>,
}

/// Sets the limits of a preset for the default or one subject in one step.
async fn preset(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    st.admin.authorize(&req)?;
    let mut body = read_json_body(&req, payload, true).await?;
    let by = take_asked_by(&mut body)?;
    let b: PresetBody = parse_body(body, r#"{"preset": "pci-dss-4", "subject": "admin"}"#)?;
    let p = rules::preset(&b.preset).map_err(|e| ApiError::bad_request("unknown_preset", e))?;
    let subject = b.subject.unwrap_or_else(|| "default".into());
    if subject == "default" {
        let mut changes = serde_json::Map::new();
        changes.insert(TIMEOUT_KEY.into(), p.idle_s.into());
        changes.insert(LIFETIME_KEY.into(), p.absolute_s.unwrap_or(0).into());
        changes.insert("by".into(), format!("{by}, preset {}", p.id).into());
        change_settings(&st, changes).await?;
    } else {
        let mut rule = subject_rule(&subject)?;
        managed_by_erp(&st)?;
        rule.idle_s = Some(p.idle_s);
        rule.absolute_s = p.absolute_s;
        store_rule(&st, &subject, Some(rule), &format!("{by}, preset {}", p.id)).await?;
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "preset": p.id,
        "subject": subject,
        "idle_s": p.idle_s,
        "absolute_s": p.absolute_s,
    })))
}
