//! The admin API, behind a bearer token: settings, sessions, audit log.
//! Without a configured token every admin route answers 404 `admin_disabled`.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::{read_json_body, resource, AppState};
use crate::policy::{self, heartbeat_interval_ms, EndReason, SessionStatus};
use crate::rules::{Effective, Facts};
use crate::sessions::{PrefixError, Sessions};
use crate::settings::{LIFETIME_KEY, MAX_WARN_BEFORE_S, TIMEOUT_KEY, WARN_KEY};
use crate::store::{Entry, SessionKey, StoreError};

/// The admin API's access: the hash of its bearer token, if one is set.
pub struct AdminState {
    token_hash: Option<[u8; 32]>,
}

impl AdminState {
    pub fn new(token: Option<&str>) -> AdminState {
        AdminState {
            token_hash: token.map(|t| Sha256::digest(t.as_bytes()).into()),
        }
    }

    /// Checks the bearer token in constant time (both sides hashed first, so
    /// neither the length nor the content leaks through timing).
    pub(super) fn authorize(&self, req: &HttpRequest) -> Result<(), ApiError> {
        let Some(want) = &self.token_hash else {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "admin_disabled",
                "the admin API is off: start the server with SESSION_TIMEOUT_ADMIN_TOKEN or --admin-token-file",
            ));
        };
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "admin_token_missing",
                    "send `Authorization: Bearer <admin token>`",
                )
            })?;
        let given: [u8; 32] = Sha256::digest(given.trim().as_bytes()).into();
        if bool::from(given.ct_eq(want)) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "admin_token_wrong",
                "the admin token is wrong",
            ))
        }
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/api/v1/admin/settings", "GET, PUT or PATCH")
            .route(web::get().to(get_settings))
            .route(web::put().to(put_settings))
            .route(web::patch().to(put_settings)),
    )
    .service(resource("/api/v1/admin/sessions", "GET").route(web::get().to(list_sessions)))
    .service(
        resource("/api/v1/admin/sessions/{prefix}/revoke", "POST").route(web::post().to(revoke)),
    )
    .service(
        resource("/api/v1/admin/users/{uid}/end-sessions", "POST")
            .route(web::post().to(end_user_sessions)),
    )
    .service(resource("/api/v1/admin/audit", "GET").route(web::get().to(audit)));
}

fn settings_body(st: &AppState) -> serde_json::Value {
    let configured = st.settings.configured();
    let (policy, warnings) = configured.effective();
    let erp = st.settings.erp.as_ref().map(|src| {
        let status = src.status.lock().unwrap_or_else(|e| e.into_inner()).clone();
        serde_json::json!({ "url": src.url, "last_ok_ms": status.last_ok_ms, "last_error": status.last_error })
    });
    serde_json::json!({
        TIMEOUT_KEY: {
            "configured": configured.timeout,
            "effective": policy.timeout_s(),
            "valid": configured.timeout.as_deref().is_none_or(|t| policy::parse_timeout(t).is_ok()),
            "source": if erp.is_some() { "erp" } else { "sidecar" },
        },
        "erp": erp,
        LIFETIME_KEY: {
            "configured": configured.lifetime,
            "effective": policy.absolute_lifetime_ms.map_or(0, |ms| ms / 1000),
            "valid": configured.lifetime.as_deref().is_none_or(|t| policy::parse_lifetime(t).is_ok()),
        },
        WARN_KEY: {
            "configured": configured.warn_before,
            "effective": configured.effective_warn_before_s(),
            "valid": configured.warn_before.as_deref().is_none_or(|w| policy::parse_seconds(w, 0, MAX_WARN_BEFORE_S).is_ok()),
        },
        "heartbeat_interval_ms": heartbeat_interval_ms(policy.timeout_ms),
        "warnings": warnings,
    })
}

async fn get_settings(req: HttpRequest, st: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    st.admin.authorize(&req)?;
    Ok(HttpResponse::Ok().json(settings_body(&st)))
}

/// A settings value may be sent as a JSON string or integer.
fn setting_text(name: &str, v: &serde_json::Value) -> Result<String, ApiError> {
    match v {
        serde_json::Value::String(s) => Ok(s.clone()),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        other => Err(ApiError::bad_request(
            "invalid_setting",
            format!("`{name}` must be a string or an integer, got {other}"),
        )),
    }
}

/// Validates and stores settings; the new policy applies to the next request.
/// A `by` beside the settings says who asked (the audit log names them).
pub async fn change_settings(
    st: &AppState,
    mut changes: serde_json::Map<String, serde_json::Value>,
) -> Result<(), ApiError> {
    let by = asked_by(changes.remove("by").as_ref())?;
    if changes.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_setting",
            format!("nothing to change: send {{\"{TIMEOUT_KEY}\": seconds}}"),
        ));
    }
    let mut validated = Vec::new();
    for (name, v) in &changes {
        let text = setting_text(name, v)?;
        // Stored canonically: "+900" and " 0900 " are 900.
        let canonical = match name.as_str() {
            TIMEOUT_KEY => policy::parse_timeout(&text).map(|v| v.to_string()).ok(),
            LIFETIME_KEY => policy::parse_lifetime(&text)
                .map(|v| v.unwrap_or(0).to_string())
                .ok(),
            WARN_KEY => policy::parse_seconds(&text, 0, MAX_WARN_BEFORE_S)
                .map(|v| v.to_string())
                .ok(),
            _ => None,
        };
        let check = match name.as_str() {
            TIMEOUT_KEY if st.settings.erp.is_some() => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "managed_by_erp",
                    format!(
                        "`{TIMEOUT_KEY}` is set in the ERP (Odoo: Settings > General Settings > \
                         Session timeout), which this sidecar reads from {}; change it there",
                        st.settings.erp.as_ref().map_or("", |e| e.url.as_str())
                    ),
                ))
            }
            WARN_KEY if st.settings.erp.is_some() => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "managed_by_erp",
                    format!(
                        "`{WARN_KEY}` is set in the ERP (Odoo: Settings > General Settings > \
                         Notice before logout), which this sidecar reads; change it there"
                    ),
                ))
            }
            LIFETIME_KEY
                if st.settings.erp.as_ref().is_some_and(|e| {
                    e.status
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .owns_lifetime
                }) =>
            {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "managed_by_erp",
                    format!(
                        "`{LIFETIME_KEY}` is set in the ERP (Odoo: Settings > General Settings > \
                         Absolute lifetime), which this sidecar reads; change it there"
                    ),
                ))
            }
            TIMEOUT_KEY => policy::parse_timeout(&text).map(|_| ()),
            LIFETIME_KEY => policy::parse_lifetime(&text).map(|_| ()),
            WARN_KEY => policy::parse_seconds(&text, 0, MAX_WARN_BEFORE_S).map(|_| ()),
            other => {
                return Err(ApiError::bad_request(
                    "unknown_setting",
                    format!(
                    "unknown setting `{other}` (known: {TIMEOUT_KEY}, {LIFETIME_KEY}, {WARN_KEY})"
                ),
                ))
            }
        };
        check.map_err(|e| ApiError::bad_request("invalid_setting", format!("`{name}`: {e}")))?;
        validated.push((
            name.clone(),
            canonical.unwrap_or_else(|| text.trim().to_string()),
        ));
    }
    for (name, text) in validated {
        let old = st.settings.configured().get(&name).cloned();
        let detail = format!(
            "{name}: {} -> {text} (by {by})",
            old.as_deref().unwrap_or("(unset)")
        );
        st.sessions
            .store
            .set_setting(&name, &text, &detail)
            .await
            .map_err(ApiError::storage)?;
        st.settings
            .configured
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .set(&name, text);
        log::info!("setting changed: {detail}");
    }
    st.settings.apply(&st.sessions);
    Ok(())
}

async fn put_settings(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    st.admin.authorize(&req)?;
    let body = read_json_body(&req, payload, true).await?;
    let Some(serde_json::Value::Object(changes)) = body else {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("send a JSON object such as {{\"{TIMEOUT_KEY}\": 600}}"),
        ));
    };
    change_settings(&st, changes).await?;
    Ok(HttpResponse::Ok().json(settings_body(&st)))
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
    limit: Option<usize>,
}

fn parse_query<T: serde::de::DeserializeOwned>(req: &HttpRequest) -> Result<T, ApiError> {
    serde_urlencoded::from_str(req.query_string())
        .map_err(|e| ApiError::bad_request("invalid_query", format!("bad query string: {e}")))
}

async fn list_sessions(
    req: HttpRequest,
    st: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    st.admin.authorize(&req)?;
    let q: ListQuery = parse_query(&req)?;
    let want = q.state.as_deref().unwrap_or("all");
    if !["all", "active", "exempt", "expired", "ended"].contains(&want) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("`state` must be all, active, exempt or ended, not `{want}`"),
        ));
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    if st.sessions.store.shared_grace().is_some() {
        // A replica has not met every session the others did: list what
        // the shared database holds.
        let (store, now) = (st.sessions.store.clone(), st.sessions.clock.now());
        let stored = web::block(move || store.read_sessions(now))
            .await
            .map_err(|e| ApiError::storage(StoreError::Read(e.to_string())))?
            .map_err(ApiError::storage)?;
        let visit =
            |f: &mut dyn FnMut(&SessionKey, &Entry)| stored.iter().for_each(|(k, e)| f(k, e));
        return Ok(HttpResponse::Ok().json(session_rows(&st.sessions, want, limit, visit)));
    }
    let visit = |f: &mut dyn FnMut(&SessionKey, &Entry)| st.sessions.store.for_each(f);
    Ok(HttpResponse::Ok().json(session_rows(&st.sessions, want, limit, visit)))
}

fn session_rows(
    sessions: &Sessions,
    want: &str,
    limit: usize,
    visit: impl FnOnce(&mut dyn FnMut(&SessionKey, &Entry)),
) -> serde_json::Value {
    let now = sessions.clock.now();
    let policies = sessions.policies();
    let mut rows = Vec::new();
    visit(&mut |k, e| {
        let effective = policies.for_entry(e);
        let (state, remaining) = if let Some(r) = e.end_reason {
            ("ended", Some(r))
        } else if e.class.is_exempt() || effective == Effective::Exempt {
            ("exempt", None)
        } else {
            match policy::status(e.created, e.last_activity, now, &policies.timed(e)) {
                SessionStatus::Active { .. } => ("active", None),
                // Past its deadline; the sweeper records it within a second.
                SessionStatus::Expired { reason, .. } => ("ended", Some(reason)),
            }
        };
        if want == "all" || want == state || (want == "expired" && state == "ended") {
            rows.push((e.last_activity, k.prefix(), *e, state, remaining));
        }
    });
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    let total = rows.len();
    let out: Vec<_> = rows
        .into_iter()
        .take(limit)
        .map(|(_, prefix, e, state, reason)| {
            serde_json::json!({
                "key_prefix": prefix,
                "uid": (e.uid != 0).then_some(e.uid),
                "class": e.class.as_str(),
                "is_admin": Facts::with_roles(e.uid, e.roles).is_admin,
                "is_system": Facts::with_roles(e.uid, e.roles).is_system,
                "state": state,
                "created_ms": e.created.0,
                "last_activity_ms": e.last_activity.0,
                "ended_ms": e.is_ended().then_some(e.ended_at.0),
                "end_reason": reason.map(EndReason::as_str),
            })
        })
        .collect();
    serde_json::json!({ "total": total, "sessions": out })
}

async fn revoke(
    req: HttpRequest,
    path: web::Path<String>,
    st: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    st.admin.authorize(&req)?;
    let prefix = path.into_inner();
    let mut found = st.sessions.find_by_prefix(&prefix);
    if found == Err(PrefixError::NotFound) && st.sessions.store.shared_grace().is_some() {
        // Met only by other replicas: look in the shared database.
        let (store, p) = (st.sessions.store.clone(), prefix.to_ascii_lowercase());
        let keys = web::block(move || store.read_keys_with_prefix(&p))
            .await
            .map_err(|e| ApiError::storage(StoreError::Read(e.to_string())))?
            .map_err(ApiError::storage)?;
        found = match keys.as_slice() {
            [] => Err(PrefixError::NotFound),
            [k] => Ok(*k),
            _ => Err(PrefixError::Ambiguous),
        };
    }
    let key = found.map_err(|e| match e {
        PrefixError::Malformed => ApiError::bad_request(
            "invalid_key",
            format!("`{prefix}` is not a key prefix (8 to 32 hex digits)"),
        ),
        PrefixError::NotFound => ApiError::new(
            StatusCode::NOT_FOUND,
            "session_not_found",
            format!("no session key starts with `{prefix}`"),
        ),
        PrefixError::Ambiguous => ApiError::new(
            StatusCode::CONFLICT,
            "ambiguous_key",
            format!("several sessions start with `{prefix}`; give more digits"),
        ),
    })?;
    let newly = st
        .sessions
        .end(&key, EndReason::Revoked)
        .await
        .map_err(ApiError::storage)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "key_prefix": key.prefix(), "revoked": newly, "already_ended": !newly })))
}

/// Ends every open session of one ERP user. The body may say who asked
/// (`{"by": "..."}`, written to the audit log); the CLI sends the OS user.
async fn end_user_sessions(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    st: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    st.admin.authorize(&req)?;
    let raw = path.into_inner();
    let uid = raw.parse::<i32>().ok().filter(|u| *u > 0).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_uid",
            format!(
                "`{}` is not an ERP user id (a whole number from 1)",
                raw.chars().take(40).collect::<String>()
            ),
        )
    })?;
    let mut body = read_json_body(&req, payload, false).await?;
    let by = take_asked_by(&mut body)?;
    let ended = st
        .sessions
        .end_user(uid, &by)
        .await
        .map_err(ApiError::storage)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "uid": uid, "ended": ended, "asked_by": by })))
}

/// Who asked for a change, from a body's `by` (the CLI sends the OS user),
/// for the audit log; `the admin API` when the body does not say.
fn asked_by(by: Option<&serde_json::Value>) -> Result<String, ApiError> {
    match by {
        None => Ok("the admin API".to_string()),
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() && s.len() <= 200 => {
            Ok(s.trim().chars().filter(|c| !c.is_control()).collect())
        }
        Some(_) => Err(ApiError::bad_request(
            "invalid_body",
            "`by` must be a non-empty string of at most 200 characters (who asked)",
        )),
    }
}

/// `asked_by`, taking `by` out of the body: what remains is the request.
pub(super) fn take_asked_by(body: &mut Option<serde_json::Value>) -> Result<String, ApiError> {
    let by = body
        .as_mut()
        .and_then(serde_json::Value::as_object_mut)
        .and_then(|m| m.remove("by"));
    asked_by(by.as_ref())
}

#[derive(Deserialize)]
struct AuditQuery {
    after: Option<i64>,
    limit: Option<u32>,
}

async fn audit(req: HttpRequest, st: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    st.admin.authorize(&req)?;
    let q: AuditQuery = parse_query(&req)?;
    let store = st.sessions.store.clone();
    let after = q.after.unwrap_or(0);
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let events = web::block(move || store.read_audit(after, limit))
        .await
        .map_err(|e| ApiError::storage(StoreError::Read(e.to_string())))?
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                e.to_string(),
            )
        })?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "events": events })))
}
