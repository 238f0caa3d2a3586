//! The idle timeout read from the ERP, when the ERP owns it; with the
//! addon that sends them, also the notice's lead, the absolute lifetime,
//! the rules per group and per user (each group with its members' user
//! ids, as Odoo computes them) and the administrators' requests to end
//! every session of a user (the button on the user's form).
//!
//! With `--erp-settings-url`, the ERP's system parameter
//! `activity_session_timeout_key` (Odoo: General Settings, "Session timeout")
//! is the one source of truth. The sidecar reads it every interval from the
//! addon's route (`GET /session_timeout/settings`, bearer token) and stores
//! what it read like any setting change, with an audit entry, so a restart
//! with the ERP unreachable still enforces the last value read. The admin API
//! refuses to change the timeout (`409 managed_by_erp`), so the CLI and the
//! ERP cannot silently disagree. Polling rather than a push from the ERP: a
//! sidecar that was down, or a new sidecar, catches up by itself, and only a
//! committed value is ever read.

use std::time::Duration;

use actix_web::web;
use serde::Deserialize;
use serde_json::Value;

use crate::config::ErpSettings;
use crate::http::AppState;
use crate::policy::Millis;
use crate::rules::{self, RULES_KEY};
use crate::settings::{LIFETIME_KEY, TIMEOUT_KEY, WARN_KEY};

/// Interprets the addon's answer (parsed once): `{"activity_session_timeout_key":
/// "300"}`, the raw parameter as stored in the ERP (`null` when unset), and
/// what a newer addon sends beside it. The timeout is not validated here: an
/// invalid one is stored as configured, and the policy falls back to 300 s
/// for it, exactly as for a value typed into the ERP.
pub fn parse_answer(status: u16, body: &[u8]) -> Result<ErpAnswer, String> {
    let detail = || {
        serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
            .map(|m| format!(": {}", m.chars().take(200).collect::<String>()))
            .unwrap_or_default()
    };
    match status {
        200..=299 => {}
        401 | 403 => {
            return Err(format!(
                "the ERP refused the token (HTTP {status}){}; --erp-token-file must hold \
                 session_timeout_token of odoo.conf",
                detail()
            ))
        }
        404 => {
            return Err(format!(
                "the ERP has no settings route here (HTTP 404){}; is the session_timeout \
                 addon installed, and does the URL name the right database (dbfilter)?",
                detail()
            ))
        }
        s => return Err(format!("the ERP answered HTTP {s}{}", detail())),
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| "the ERP's settings answer is not JSON".to_string())?;
    let timeout = match v.get(TIMEOUT_KEY) {
        Some(raw) if raw.is_null() || raw.is_string() || raw.is_number() => raw_text(raw),
        Some(other) => {
            return Err(format!(
                "the ERP's `{TIMEOUT_KEY}` is neither a string nor null: {}",
                other.to_string().chars().take(80).collect::<String>()
            ))
        }
        None => return Err(format!("the ERP's settings answer has no `{TIMEOUT_KEY}`")),
    };
    // What an older addon does not send is `None`; unset in the ERP, `Some(None)`.
    let optional = |key: &str| v.get(key).map(raw_text);
    Ok(ErpAnswer {
        timeout,
        warn_before: optional(WARN_KEY),
        lifetime: optional(LIFETIME_KEY),
        rules: v.get(RULES_KEY).map(parse_rules),
        changed_by: optional("policy_changed_by").flatten(),
        end_requests: parse_end_requests(&v),
    })
}

/// A setting as the ERP stores it: text (at most 64 characters), a number as
/// text, or `None` when unset (or of another type).
fn raw_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.chars().take(64).collect()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The rules per group and per user the addon sends (`policy_rules`), as
/// their canonical text; an error names the rule that is wrong (the rules
/// in force then stay).
fn parse_rules(raw: &Value) -> Result<String, String> {
    let r = Vec::<rules::Rule>::deserialize(raw)
        .map_err(|e| format!("the ERP's `{RULES_KEY}` are not rules: {e}"))?;
    r.iter()
        .try_for_each(rules::Rule::validate)
        .map_err(|e| format!("the ERP sent a rule the sidecar refuses: {e}"))?;
    // No rules at all reads as unset (the audit log says so).
    Ok(if r.is_empty() {
        String::new()
    } else {
        rules::rules_text(&r)
    })
}

/// An administrator's request, in the ERP, to end every session of a user
/// (Odoo: the button on the user's form).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct EndRequest {
    pub uid: i32,
    #[serde(default)]
    pub login: Option<String>,
    /// When it was asked (ms since the epoch, the ERP's clock): sessions
    /// that began later are spared.
    pub at_ms: i64,
    pub by: String,
}

/// The requests the addon lists (`end_sessions`); malformed ones are skipped.
fn parse_end_requests(v: &Value) -> Vec<EndRequest> {
    v.get("end_sessions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| EndRequest::deserialize(r).ok())
        .filter(|r| r.uid > 0)
        .collect()
}

/// What one read of the ERP's settings gave.
#[derive(Debug)]
pub struct ErpAnswer {
    pub timeout: Option<String>,
    pub warn_before: Option<Option<String>>,
    pub lifetime: Option<Option<String>>,
    pub rules: Option<Result<String, String>>,
    /// Who last changed the rules in the ERP (its login), for the audit log.
    pub changed_by: Option<String>,
    pub end_requests: Vec<EndRequest>,
}

/// One read of the ERP's settings.
pub async fn fetch(cfg: &ErpSettings, timeout: Duration) -> Result<ErpAnswer, String> {
    let client = awc::Client::builder().disable_redirects().finish();
    let mut resp = client
        .get(&cfg.url)
        .timeout(timeout)
        .insert_header(("Authorization", format!("Bearer {}", cfg.token)))
        .insert_header(("Accept", "application/json"))
        .send()
        .await
        .map_err(|e| format!("cannot reach the ERP at {}: {e}", cfg.url))?;
    let status = resp.status().as_u16();
    // Rules of big groups list every member: room for tens of thousands.
    let body = resp
        .body()
        .limit(4 * 1024 * 1024)
        .await
        .map_err(|e| format!("the ERP's settings answer is unreadable: {e}"))?;
    parse_answer(status, &body)
}

/// Reads the ERP's setting now and every `cfg.interval`, on the current
/// actix system, for as long as the state lives. A failed read keeps the
/// last value in force; each change of outcome is logged once.
pub fn spawn_poller(state: web::Data<AppState>, cfg: ErpSettings, timeout: Duration) {
    let weak = std::sync::Arc::downgrade(&state.into_inner());
    actix_rt::spawn(async move {
        let mut last_error: Option<String> = None;
        let mut done: std::collections::HashSet<(i32, i64)> = Default::default();
        loop {
            let Some(st) = weak.upgrade() else { return };
            let outcome = match fetch(&cfg, timeout).await {
                Ok(answer) => apply(&st, answer, &mut done).await,
                Err(e) => Err(e),
            };
            if let Some(src) = &st.settings.erp {
                let mut s = src.status.lock().unwrap_or_else(|e| e.into_inner());
                match &outcome {
                    Ok(()) => {
                        s.last_ok_ms = Some(wall_ms());
                        s.last_error = None;
                    }
                    Err(e) => s.last_error = Some(e.clone()),
                }
            }
            match (&outcome, &last_error) {
                (Ok(()), Some(_)) => log::info!("reading the timeout from the ERP works again"),
                (Err(e), prev) if prev.as_ref() != Some(e) => log::warn!(
                    "{e}; the timeout in force stays {} s, read again every {} ms",
                    st.sessions.policy().timeout_s(),
                    cfg.interval.as_millis()
                ),
                _ => {}
            }
            last_error = outcome.err();
            drop(st);
            actix_rt::time::sleep(cfg.interval).await;
        }
    });
}

/// Stores what the ERP answered and carries out its requests to end every
/// session of a user (each once per process; again after a restart, which
/// ends nothing new: sessions that began after the request are spared).
async fn apply(
    st: &AppState,
    answer: ErpAnswer,
    done: &mut std::collections::HashSet<(i32, i64)>,
) -> Result<(), String> {
    let stored = |e: crate::store::StoreError| format!("cannot store the ERP's settings: {e}");
    let (settings, sessions) = (&st.settings, &st.sessions);
    settings
        .apply_erp(sessions, TIMEOUT_KEY, answer.timeout, None)
        .await
        .map_err(stored)?;
    if let Some(warn) = answer.warn_before {
        settings
            .apply_erp(sessions, WARN_KEY, warn, None)
            .await
            .map_err(stored)?;
    }
    if let Some(src) = &settings.erp {
        src.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .owns_lifetime = answer.lifetime.is_some();
    }
    if let Some(lifetime) = answer.lifetime {
        settings
            .apply_erp(sessions, LIFETIME_KEY, lifetime, None)
            .await
            .map_err(stored)?;
    }
    let mut refused = None;
    match answer.rules {
        Some(Ok(text)) => settings
            .apply_erp(
                sessions,
                RULES_KEY,
                Some(text),
                answer.changed_by.as_deref(),
            )
            .await
            .map_err(stored)?,
        Some(Err(e)) => refused = Some(e),
        None => {}
    }
    for r in answer.end_requests {
        if done.contains(&(r.uid, r.at_ms)) {
            continue;
        }
        let by = format!("{} in the ERP", r.by.chars().take(100).collect::<String>());
        let ended = sessions
            .end_user_before(r.uid, &by, Some(Millis(r.at_ms)))
            .await
            .map_err(|e| format!("cannot end the sessions of user {}: {e}", r.uid))?;
        log::info!(
            "the ERP asked to end every session of user {} ({}): {ended} ended",
            r.uid,
            r.login.as_deref().unwrap_or("?")
        );
        done.insert((r.uid, r.at_ms));
    }
    // A wrong rule keeps the rules in force; said after the rest is applied.
    refused.map_or(Ok(()), |e| Err(format!("{e}; the rules in force stay")))
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_of_the_addon() {
        assert_eq!(
            parse_answer(200, br#"{"activity_session_timeout_key": "900"}"#).map(|a| a.timeout),
            Ok(Some("900".into()))
        );
        assert_eq!(
            parse_answer(200, br#"{"activity_session_timeout_key": null}"#).map(|a| a.timeout),
            Ok(None)
        );
        // Kept as typed in the ERP: the policy decides it is invalid (300 s).
        assert_eq!(
            parse_answer(200, br#"{"activity_session_timeout_key": "abc"}"#).map(|a| a.timeout),
            Ok(Some("abc".into()))
        );
    }

    #[test]
    fn the_notice_lead_when_the_addon_sends_it() {
        let warn = |body: &[u8]| parse_answer(200, body).unwrap().warn_before;
        assert_eq!(warn(br#"{"activity_session_timeout_key": "900"}"#), None);
        assert_eq!(
            warn(br#"{"activity_session_timeout_key": "900", "warn_before_s": "60"}"#),
            Some(Some("60".into()))
        );
        assert_eq!(
            warn(br#"{"activity_session_timeout_key": "900", "warn_before_s": null}"#),
            Some(None)
        );
    }

    #[test]
    fn failures_say_what_to_fix() {
        let e = parse_answer(
            401,
            br#"{"error":"token_wrong","message":"the token is wrong"}"#,
        )
        .unwrap_err();
        assert!(
            e.contains("session_timeout_token") && e.contains("the token is wrong"),
            "{e}"
        );
        let e = parse_answer(404, b"<html>").unwrap_err();
        assert!(e.contains("addon installed"), "{e}");
        assert!(parse_answer(200, b"<html>")
            .unwrap_err()
            .contains("not JSON"));
        assert!(parse_answer(200, b"{}").unwrap_err().contains("has no"));
        assert!(
            parse_answer(200, br#"{"activity_session_timeout_key": [1]}"#)
                .unwrap_err()
                .contains("neither")
        );
        assert!(parse_answer(502, b"").unwrap_err().contains("HTTP 502"));
    }
}
