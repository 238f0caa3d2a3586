//! The sidecar's HTTP API. Only this module (and `admin`) knows HTTP and
//! JSON; they turn requests into calls on `Sessions` and answers into bodies.

use std::sync::Arc;
use std::time::Instant;

use actix_web::dev::Service as _;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt as _;
use serde::Deserialize;

use crate::admin::{self, AdminState};
use crate::cookie::{self, SessionId};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::policy::{heartbeat_interval_ms, EndReason};
use crate::sessions::{Answer, Op, Sessions};

/// Largest request body accepted anywhere in the API.
pub const MAX_BODY: usize = 1024;
/// Longest wait for a request body (bodies are at most `MAX_BODY` bytes).
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Header naming the logout URL on a `401` from `auth`.
pub const LOGOUT_HEADER: &str = "x-session-timeout-logout";

pub struct AppState {
    pub sessions: Arc<Sessions>,
    pub cookie_name: String,
    pub login_url: String,
    pub logout_url: String,
    pub base_path: String,
    pub admin: AdminState,
}

/// Mounts every sidecar route under the base path. Used by `serve`, by the
/// demo and by the tests.
pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<AppState>) {
    let metrics = state.sessions.metrics.clone();
    let scope = web::scope(&state.base_path)
        .app_data(state.clone())
        .wrap_fn(move |req, srv| {
            let start = Instant::now();
            let route = Metrics::route_index(route_name(req.path()));
            let metrics = metrics.clone();
            let fut = srv.call(req);
            async move {
                let res = fut.await;
                let status = match &res {
                    Ok(r) => r.status().as_u16(),
                    Err(e) => e.as_response_error().status_code().as_u16(),
                };
                metrics.observe(route, status, start.elapsed().as_micros() as u64);
                res
            }
        })
        .service(resource("/api/v1/heartbeat", "POST").route(web::post().to(heartbeat)))
        .service(resource("/api/v1/check", "GET").route(web::get().to(check)))
        .service(resource("/api/v1/logout", "POST").route(web::post().to(logout)))
        // HEAD too: some proxies probe forward-auth with it.
        .service(
            resource("/api/v1/auth", "GET")
                .route(web::get().to(auth))
                .route(web::head().to(auth)),
        )
        // Envoy ext_authz appends the original path and keeps the method, and
        // allows only 200; Traefik and Envoy hand a refusal to the browser as
        // is, so they use the variant that answers with the redirect itself.
        .service(web::resource("/api/v1/auth/{tail:.*}").to(auth_any))
        .service(
            web::resource(["/api/v1/auth-redirect", "/api/v1/auth-redirect/{tail:.*}"])
                .to(auth_redirect),
        )
        .service(resource("/api/v1/config", "GET").route(web::get().to(config)))
        .service(
            resource("/healthz", "GET")
                .route(web::get().to(healthz))
                .route(web::head().to(healthz)),
        )
        .service(resource("/metrics", "GET").route(web::get().to(metrics_text)))
        .configure(admin::configure)
        .default_service(web::to(not_found));
    cfg.service(scope);
}

/// A resource whose other methods get a JSON 405 naming the allowed ones;
/// the caller adds the routes.
pub fn resource(path: &str, allowed: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move |req: HttpRequest| async move {
        Err::<HttpResponse, _>(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!(
                "{} is not allowed on {}; use {allowed}",
                req.method(),
                req.path()
            ),
        ))
    }))
}

fn route_name(path: &str) -> &'static str {
    let tail = path.rsplit('/').next().unwrap_or("");
    if path.contains("/api/v1/admin/") {
        return "admin";
    }
    if path.contains("/api/v1/auth") {
        return "auth";
    }
    match tail {
        "heartbeat" => "heartbeat",
        "check" => "check",
        "logout" => "logout",
        "auth" => "auth",
        "config" => "config",
        "healthz" => "healthz",
        "metrics" => "metrics",
        _ => "other",
    }
}

pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route {} {}", req.method(), req.path()),
    ))
}

/// The value of the named cookie as the ERP reads it (see `cookie`), if the
/// request carries it unambiguously. The demo ERP reads its cookie this way.
pub fn cookie_value(req: &HttpRequest, name: &str) -> Option<String> {
    match cookie::cookie_value(&cookie_lines(req), name) {
        SessionId::Found(mut v) => v.pop(),
        SessionId::None | SessionId::Ambiguous(_) => None,
    }
}

fn cookie_lines(req: &HttpRequest) -> Vec<&[u8]> {
    req.headers()
        .get_all(header::COOKIE)
        .map(|v| v.as_bytes())
        .collect()
}

/// The session cookie of a page's request (heartbeat, check, logout).
fn session_cookie(req: &HttpRequest, st: &AppState) -> Result<String, ApiError> {
    match cookie::cookie_value(&cookie_lines(req), &st.cookie_name) {
        SessionId::Found(mut v) => Ok(v.pop().unwrap_or_default()),
        SessionId::Ambiguous(why) => Err(ApiError::bad_request(
            "ambiguous_cookie",
            format!(
                "the `{}` session cookie cannot be read for sure ({why})",
                st.cookie_name
            ),
        )),
        SessionId::None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing_cookie",
            format!(
                "the request carries no `{}` session cookie; call this route from the ERP's origin",
                st.cookie_name
            ),
        )),
    }
}

/// Every session id the ERP could use for a proxied request: the cookie,
/// and the explicit ones Odoo 17 reads (`X-Openerp-Session-Id`, and
/// `?session_id=` of the original URI, which nginx sends as `X-Original-URI`,
/// Caddy and Traefik as `X-Forwarded-Uri`, and Envoy as this request's own).
fn forwarded_session_ids(req: &HttpRequest, name: &str) -> SessionId {
    let explicit: Vec<&[u8]> = req
        .headers()
        .get_all("x-openerp-session-id")
        .map(|v| v.as_bytes())
        .collect();
    let mut queries: Vec<&[u8]> = ["x-original-uri", "x-forwarded-uri"]
        .iter()
        .flat_map(|h| req.headers().get_all(*h))
        .filter_map(|v| {
            let uri = v.as_bytes();
            uri.iter().position(|&c| c == b'?').map(|q| &uri[q + 1..])
        })
        .collect();
    if !req.query_string().is_empty() {
        queries.push(req.query_string().as_bytes());
    }
    cookie::session_ids(&cookie_lines(req), &explicit, &queries, name)
}

/// Refuses state changes that a page of another site could trigger.
fn same_origin(req: &HttpRequest) -> Result<(), ApiError> {
    let forbidden = |why: String| ApiError::new(StatusCode::FORBIDDEN, "cross_site", why);
    if let Some(site) = req
        .headers()
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
    {
        if site.eq_ignore_ascii_case("cross-site") {
            return Err(forbidden(
                "cross-site requests may not change a session (Sec-Fetch-Site: cross-site)".into(),
            ));
        }
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let host = req
            .headers()
            .get("x-forwarded-host")
            .or_else(|| req.headers().get(header::HOST))
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or("");
        if origin_host.is_empty() || !origin_host.eq_ignore_ascii_case(host) {
            return Err(forbidden(format!(
                "Origin `{origin}` does not match the host `{host}`"
            )));
        }
    }
    Ok(())
}

/// Reads a small body, insisting on JSON when there is one.
pub async fn read_json_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    required: bool,
) -> Result<Option<serde_json::Value>, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request bodies are limited to {MAX_BODY} bytes"),
        )
    };
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > MAX_BODY as u64 {
            return Err(too_large());
        }
    }
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let is_json = ct
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if required && !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "wrong_content_type",
            format!(
                "expected `Content-Type: application/json`, got `{}`",
                if ct.is_empty() { "(none)" } else { ct }
            ),
        ));
    }
    let mut body = web::BytesMut::new();
    // A body that stops half-way must not hold a connection (and a file
    // descriptor) forever.
    let read = async {
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::bad_request(
                    "unreadable_body",
                    format!("the request body could not be read: {e}"),
                )
            })?;
            if body.len() + chunk.len() > MAX_BODY {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(())
    };
    tokio::time::timeout(BODY_TIMEOUT, read)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the request body did not arrive within {} s",
                    BODY_TIMEOUT.as_secs()
                ),
            )
        })??;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "wrong_content_type",
            "a request body must be sent as `Content-Type: application/json`",
        ));
    }
    serde_json::from_slice(&body).map(Some).map_err(|e| {
        ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {e}"))
    })
}

fn truncate_json(v: &serde_json::Value) -> String {
    v.to_string().chars().take(40).collect()
}

fn answer_response(st: &AppState, a: Answer) -> HttpResponse {
    let body = match a {
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

async fn heartbeat(
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

async fn check(req: HttpRequest, st: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let cookie = session_cookie(&req, &st)?;
    let a = st.sessions.answer(&cookie, Op::Check).await;
    Ok(answer_response(&st, a))
}

async fn logout(
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

/// Forward auth: 204 lets the proxy pass the request, 401 sends the user to
/// the logout URL. Never counts as activity.
/// A request without a session cookie passes: the ERP itself asks for a login.
async fn auth(req: HttpRequest, st: web::Data<AppState>) -> HttpResponse {
    match forward_verdict(&req, &st).await {
        Ok(()) => HttpResponse::NoContent().finish(),
        Err(refusal) => refused(&st, refusal),
    }
}

/// Why the proxy must not pass a request.
enum Refusal {
    Ended(EndReason),
    /// The request's session id cannot be read as the ERP reads it.
    Ambiguous(&'static str),
}

/// Whether the proxy may pass the request: every session id the ERP could
/// use must be active or exempt.
async fn forward_verdict(req: &HttpRequest, st: &AppState) -> Result<(), Refusal> {
    let ids = match forwarded_session_ids(req, &st.cookie_name) {
        SessionId::None => return Ok(()),
        SessionId::Ambiguous(why) => {
            st.sessions.metrics.count_ambiguous();
            return Err(Refusal::Ambiguous(why));
        }
        SessionId::Found(ids) => ids,
    };
    for id in ids {
        if let Answer::Ended(reason) = st.sessions.answer(&id, Op::Auth).await {
            return Err(Refusal::Ended(reason));
        }
    }
    Ok(())
}

fn refused(st: &AppState, refusal: Refusal) -> HttpResponse {
    let body = match refusal {
        Refusal::Ended(reason) => serde_json::json!({
            "error": "session_ended",
            "message": format!("the session has ended ({reason}); log in again through {}", st.logout_url),
            "reason": reason.as_str(),
            "logout_url": st.logout_url,
        }),
        Refusal::Ambiguous(why) => serde_json::json!({
            "error": "ambiguous_session",
            "message": format!("the request's session id cannot be read as the ERP reads it ({why}); refused, log in again through {}", st.logout_url),
            "reason": "ambiguous",
            "logout_url": st.logout_url,
        }),
    };
    HttpResponse::Unauthorized()
        .insert_header((LOGOUT_HEADER, st.logout_url.as_str()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}

/// Forward auth for Envoy: any method and path, `200` to allow.
async fn auth_any(req: HttpRequest, st: web::Data<AppState>) -> HttpResponse {
    match forward_verdict(&req, &st).await {
        Ok(()) => HttpResponse::Ok().finish(),
        Err(refusal) => refused(&st, refusal),
    }
}

/// Forward auth for proxies that return the refusal to the browser as is
/// (Traefik, Envoy): `200` to allow, `303` to the logout URL to refuse.
async fn auth_redirect(req: HttpRequest, st: web::Data<AppState>) -> HttpResponse {
    match forward_verdict(&req, &st).await {
        Ok(()) => HttpResponse::Ok().finish(),
        Err(_) => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, st.logout_url.as_str()))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish(),
    }
}

async fn config(st: web::Data<AppState>) -> HttpResponse {
    let policy = st.sessions.store.policy();
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({
            "timeout_s": policy.timeout_s(),
            "heartbeat_interval_ms": heartbeat_interval_ms(policy.timeout_ms),
            "logout_url": st.logout_url,
            "login_url": st.login_url,
            "base_path": st.base_path,
        }))
}

async fn healthz(st: web::Data<AppState>) -> HttpResponse {
    let healthy = st
        .sessions
        .store
        .stats
        .healthy
        .load(std::sync::atomic::Ordering::Relaxed);
    let body = serde_json::json!({ "status": if healthy { "ok" } else { "degraded" }, "storage": if healthy { "ok" } else { "failing" } });
    if healthy {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    }
    .insert_header((header::CACHE_CONTROL, "no-store"))
    .json(body)
}

async fn metrics_text(st: web::Data<AppState>) -> HttpResponse {
    let text = st.sessions.metrics.render(&st.sessions.store);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(text)
}
