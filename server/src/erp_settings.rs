//! The idle timeout read from the ERP, when the ERP owns it.
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
use serde_json::Value;

use crate::config::ErpSettings;
use crate::http::AppState;
use crate::settings::{TIMEOUT_KEY, WARN_KEY};

/// Interprets the addon's answer: `{"activity_session_timeout_key": "300"}`,
/// the raw parameter as stored in the ERP (`null` when unset). The value is
/// not validated here: an invalid one is stored as configured, and the policy
/// falls back to 300 s for it, exactly as for a value typed into the ERP.
pub fn parse_answer(status: u16, body: &[u8]) -> Result<Option<String>, String> {
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
    match v.get(TIMEOUT_KEY) {
        Some(raw) if raw.is_null() || raw.is_string() || raw.is_number() => Ok(raw_text(raw)),
        Some(other) => Err(format!(
            "the ERP's `{TIMEOUT_KEY}` is neither a string nor null: {}",
            other.to_string().chars().take(80).collect::<String>()
        )),
        None => Err(format!("the ERP's settings answer has no `{TIMEOUT_KEY}`")),
    }
}

/// The notice's lead in the addon's answer (`"warn_before_s"`, beside the
/// timeout): `None` when the addon does not send it (an older one), else the
/// raw value (`Some(None)` when unset).
pub fn parse_warn_before(body: &[u8]) -> Option<Option<String>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get(WARN_KEY).map(raw_text)
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

/// What one read of the ERP's settings gave.
pub struct ErpAnswer {
    pub timeout: Option<String>,
    pub warn_before: Option<Option<String>>,
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
    let body = resp
        .body()
        .limit(16 * 1024)
        .await
        .map_err(|e| format!("the ERP's settings answer is unreadable: {e}"))?;
    Ok(ErpAnswer {
        timeout: parse_answer(status, &body)?,
        warn_before: parse_warn_before(&body),
    })
}

/// Reads the ERP's setting now and every `cfg.interval`, on the current
/// actix system, for as long as the state lives. A failed read keeps the
/// last value in force; each change of outcome is logged once.
pub fn spawn_poller(state: web::Data<AppState>, cfg: ErpSettings, timeout: Duration) {
    let weak = std::sync::Arc::downgrade(&state.into_inner());
    actix_rt::spawn(async move {
        let mut last_error: Option<String> = None;
        loop {
            let Some(st) = weak.upgrade() else { return };
            let outcome = match fetch(&cfg, timeout).await {
                Ok(answer) => {
                    let stored = st
                        .settings
                        .apply_erp(&st.sessions, TIMEOUT_KEY, answer.timeout)
                        .await;
                    let stored = match (stored, answer.warn_before) {
                        (Ok(()), Some(warn)) => {
                            st.settings.apply_erp(&st.sessions, WARN_KEY, warn).await
                        }
                        (other, _) => other,
                    };
                    stored.map_err(|e| format!("cannot store the ERP's settings: {e}"))
                }
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
            parse_answer(200, br#"{"activity_session_timeout_key": "900"}"#),
            Ok(Some("900".into()))
        );
        assert_eq!(
            parse_answer(200, br#"{"activity_session_timeout_key": null}"#),
            Ok(None)
        );
        // Kept as typed in the ERP: the policy decides it is invalid (300 s).
        assert_eq!(
            parse_answer(200, br#"{"activity_session_timeout_key": "abc"}"#),
            Ok(Some("abc".into()))
        );
    }

    #[test]
    fn the_notice_lead_when_the_addon_sends_it() {
        assert_eq!(
            parse_warn_before(br#"{"activity_session_timeout_key": "900"}"#),
            None
        );
        assert_eq!(
            parse_warn_before(br#"{"activity_session_timeout_key": "900", "warn_before_s": "60"}"#),
            Some(Some("60".into()))
        );
        assert_eq!(
            parse_warn_before(br#"{"activity_session_timeout_key": "900", "warn_before_s": null}"#),
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
