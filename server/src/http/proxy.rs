//! Forward auth for the reverse proxy: asked before every ERP request.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::{cookie_lines, AppState, LOGOUT_HEADER};
use crate::cookie::{self, SessionId};
use crate::policy::EndReason;
use crate::sessions::{Answer, Op};

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

/// Forward auth: 204 lets the proxy pass the request, 401 sends the user to
/// the logout URL. Never counts as activity.
/// A request without a session cookie passes: the ERP itself asks for a login.
pub(super) async fn auth(req: HttpRequest, st: web::Data<AppState>) -> HttpResponse {
    match forward_verdict(&req, &st).await {
        Ok(()) => HttpResponse::NoContent().finish(),
        Err(refusal) => refused(&st, refusal),
    }
}

/// Whether a proxy would let this request through to the ERP: the same
/// verdict as `auth`, for an ERP that asks the sidecar in process (the demo).
pub async fn allows(req: &HttpRequest, st: &AppState) -> bool {
    forward_verdict(req, st).await.is_ok()
}

/// Why the proxy must not pass a request.
enum Refusal {
    Ended(EndReason),
    /// The request's session id cannot be read as the ERP reads it.
    Ambiguous(&'static str),
    /// The session's state cannot be read (first seen here, database down).
    Unavailable,
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
        match st.sessions.answer(&id, Op::Auth).await {
            Answer::Ended(reason) => return Err(Refusal::Ended(reason)),
            Answer::Unavailable => return Err(Refusal::Unavailable),
            Answer::Active { .. } | Answer::Exempt => {}
        }
    }
    Ok(())
}

fn refused(st: &AppState, refusal: Refusal) -> HttpResponse {
    let body = match refusal {
        // Neither "pass" nor "log in again": the proxy shows an error page.
        Refusal::Unavailable => return super::store_unavailable(),
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
pub(super) async fn auth_any(req: HttpRequest, st: web::Data<AppState>) -> HttpResponse {
    match forward_verdict(&req, &st).await {
        Ok(()) => HttpResponse::Ok().finish(),
        Err(refusal) => refused(&st, refusal),
    }
}

/// Forward auth for proxies that return the refusal to the browser as is
/// (Traefik, Envoy): `200` to allow, `303` to the logout URL to refuse.
pub(super) async fn auth_redirect(req: HttpRequest, st: web::Data<AppState>) -> HttpResponse {
    match forward_verdict(&req, &st).await {
        Ok(()) => HttpResponse::Ok().finish(),
        Err(Refusal::Unavailable) => refused(&st, Refusal::Unavailable),
        Err(_) => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, st.logout_url.as_str()))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish(),
    }
}
