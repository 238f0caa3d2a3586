//! The browser client's API: heartbeat, check, logout, config.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::error::ApiError;
use super::{read_json_body, same_origin, session_cookie, AppState};
use crate::policy::{heartbeat_interval_ms, EndReason};
use crate::sessions::{Answer, Op};

fn truncate_json(v: &serde_json::Value) -> String {
    v.to_string().chars().take(40).collect()
}

fn answer_response(st: &AppState, a: Answer) -> HttpResponse {
    let body = match a {
        Answer::Unavailable => return super::store_unavailable(),
        Answer::Active {
            timeout_s,
            remaining_ms,
        } => {
            serde_json::json!({ "state": "active", "timeout_s": timeout_s, "remaining_ms": remaining_ms })
        }
        Answer::Exempt => serde_json::json!({ "state": "exempt" }),
        Answer::Ended(reason) => {
            serde_json::json!({ "state": "expired", "reason": reason.as_str(), "logout_url": st.logout_url })
        }
    };
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}

#[derive(Deserialize)]
struct HeartbeatBody {
    #[serde(default)]
    idle_ms: Option<u64>,
}

pub(super) async fn heartbeat(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    same_origin(&req)?;
    let cookie = session_cookie(&req, &st)?;
    let body = read_json_body(&req, payload, true).await?;
    let idle_ms = match body {
        None => 0,
        Some(v) if !v.is_object() => {
            return Err(ApiError::bad_request(
                "invalid_body",
                format!(
                    "a heartbeat body must be a JSON object such as {{\"idle_ms\": 1200}}, not {}",
                    truncate_json(&v)
                ),
            ))
        }
        Some(v) => {
            let b: HeartbeatBody = serde_json::from_value(v).map_err(|e| {
                ApiError::bad_request(
                    "invalid_body",
                    format!("`idle_ms` must be a whole number of milliseconds, 0 or more: {e}"),
                )
            })?;
            b.idle_ms.unwrap_or(0)
        }
    };
    let (a, too_soon) = st
        .sessions
        .answer_limited(&cookie, Op::Heartbeat { idle_ms })
        .await;
    if let Some(wait_ms) = too_soon {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("heartbeats of one session must be at least {} ms apart (this one was recorded); retry in {wait_ms} ms", crate::policy::MIN_HEARTBEAT_GAP_MS),
        ));
    }
    Ok(answer_response(&st, a))
}

pub(super) async fn check(
    req: HttpRequest,
    st: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let cookie = session_cookie(&req, &st)?;
    let a = st.sessions.answer(&cookie, Op::Check).await;
    Ok(answer_response(&st, a))
}

pub(super) async fn logout(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    same_origin(&req)?;
    let cookie = session_cookie(&req, &st)?;
    read_json_body(&req, payload, true).await?;
    let key = st.sessions.key(&cookie);
    st.sessions
        .end(&key, EndReason::Logout)
        .await
        .map_err(ApiError::storage)?;
    let reason = st
        .sessions
        .store
        .get(&key)
        .and_then(|e| e.end_reason)
        .unwrap_or(EndReason::Logout);
    Ok(answer_response(&st, Answer::Ended(reason)))
}

/// The page's settings. The timeout is the session's own when its owner is
/// known (rules per group and per user), else the global one; the
/// heartbeat pace follows the shortest timeout in force, so that a page
/// loaded before its user is known, or before a stricter rule, still
/// reports activity in time.
pub(super) async fn config(req: HttpRequest, st: web::Data<AppState>) -> HttpResponse {
    let policies = st.sessions.policies();
    let own = session_cookie(&req, &st)
        .ok()
        .and_then(|c| st.sessions.store.get(&st.sessions.key(&c)))
        .map_or(policies.default, |e| policies.timed(&e));
    let pace = policies.strictest_idle_ms().min(own.timeout_ms);
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({
            "timeout_s": own.timeout_s(),
            "heartbeat_interval_ms": heartbeat_interval_ms(pace),
            "warn_before_s": st.settings.configured().effective_warn_before_s(),
            "logout_url": st.logout_url,
            "login_url": st.login_url,
            "base_path": st.base_path,
        }))
}
