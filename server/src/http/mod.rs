//! The sidecar's HTTP layer, the only code that knows HTTP and JSON: it turns
//! requests into calls on `Sessions` and answers into bodies.
//!
//! This module holds what every audience shares (`AppState`, `configure()`
//! mounting every route under the base path, `resource()`, the JSON body
//! reader, the same-origin check, reading the session cookie); then one
//! module per audience: `page` (the browser client: heartbeat, check,
//! logout, config), `proxy` (forward auth on every ERP request), `admin`
//! (admin API, bearer token); and `error` (`ApiError`, the JSON error body).

mod admin;
pub mod error;
mod page;
mod policy;
mod proxy;

pub use proxy::allows;

use std::sync::Arc;
use std::time::Instant;

use actix_web::dev::Service as _;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt as _;

pub use admin::AdminState;
use error::ApiError;

use crate::cookie::{self, SessionId};
use crate::metrics::Metrics;
use crate::sessions::Sessions;
use crate::settings::LiveSettings;

/// Largest request body accepted anywhere in the API.
pub const MAX_BODY: usize = 1024;
/// Longest wait for a request body (bodies are at most `MAX_BODY` bytes).
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Header naming the logout URL on a `401` from `auth`.
pub const LOGOUT_HEADER: &str = "x-session-timeout-logout";

/// Everything the handlers share, for as long as the server runs.
pub struct AppState {
    pub sessions: Arc<Sessions>,
    pub cookie_name: String,
    pub login_url: String,
    pub logout_url: String,
    pub base_path: String,
    pub settings: LiveSettings,
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
        .service(resource("/api/v1/heartbeat", "POST").route(web::post().to(page::heartbeat)))
        .service(resource("/api/v1/check", "GET").route(web::get().to(page::check)))
        .service(resource("/api/v1/logout", "POST").route(web::post().to(page::logout)))
        // HEAD too: some proxies probe forward-auth with it.
        .service(
            resource("/api/v1/auth", "GET")
                .route(web::get().to(proxy::auth))
                .route(web::head().to(proxy::auth)),
        )
        // Envoy ext_authz appends the original path and keeps the method, and
        // allows only 200; Traefik and Envoy hand a refusal to the browser as
        // is, so they use the variant that answers with the redirect itself.
        .service(web::resource("/api/v1/auth/{tail:.*}").to(proxy::auth_any))
        .service(
            web::resource(["/api/v1/auth-redirect", "/api/v1/auth-redirect/{tail:.*}"])
                .to(proxy::auth_redirect),
        )
        .service(resource("/api/v1/config", "GET").route(web::get().to(page::config)))
        .service(
            resource("/healthz", "GET")
                .route(web::get().to(healthz))
                .route(web::head().to(healthz)),
        )
        .service(resource("/metrics", "GET").route(web::get().to(metrics_text)))
        .configure(admin::configure)
        .configure(policy::configure)
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

pub(crate) fn cookie_lines(req: &HttpRequest) -> Vec<&[u8]> {
    req.headers()
        .get_all(header::COOKIE)
        .map(|v| v.as_bytes())
        .collect()
}

/// The session cookie of a page's request (heartbeat, check, logout).
pub(crate) fn session_cookie(req: &HttpRequest, st: &AppState) -> Result<String, ApiError> {
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

/// Ends the session behind a cookie value now (reason `logout`), durably:
/// for an ERP that tells the sidecar about its own logouts (the demo).
pub async fn end_session(
    st: &AppState,
    cookie_value: &str,
) -> Result<(), crate::store::StoreError> {
    let key = st.sessions.key(cookie_value);
    st.sessions
        .end(&key, crate::policy::EndReason::Logout)
        .await
        .map(|_| ())
}

/// Refuses state changes that a page of another site could trigger.
pub(crate) fn same_origin(req: &HttpRequest) -> Result<(), ApiError> {
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

/// A session first met here while the shared database is unreachable:
/// neither let through nor ended (replicas on PostgreSQL only).
fn store_unavailable() -> HttpResponse {
    HttpResponse::ServiceUnavailable()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::RETRY_AFTER, "1"))
        .json(serde_json::json!({
            "error": "store_unavailable",
            "message": "the session database cannot be reached to tell whether this session is still open; try again shortly",
        }))
}

pub(crate) async fn healthz(st: web::Data<AppState>) -> HttpResponse {
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

pub(crate) async fn metrics_text(st: web::Data<AppState>) -> HttpResponse {
    let text = st.sessions.metrics.render(&st.sessions.store);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(text)
}
