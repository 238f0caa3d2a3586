//! A stand-in for the ERP (Odoo's URLs, two demo users) with the sidecar
//! mounted under its base path, on one port. It exists so `make run` shows
//! the product working and the browser tests have a host; nothing in the
//! sidecar's production path depends on it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::http::{self, cookie_value, AppState};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DemoUser {
    Admin,
    Portal,
}

impl DemoUser {
    fn uid(self) -> i32 {
        match self {
            DemoUser::Admin => 2,
            DemoUser::Portal => 7,
        }
    }
    fn name(self) -> &'static str {
        match self {
            DemoUser::Admin => "Mitchell Admin",
            DemoUser::Portal => "Joel Willis (portal)",
        }
    }
    fn home(self) -> &'static str {
        match self {
            DemoUser::Admin => "/odoo",
            DemoUser::Portal => "/my",
        }
    }
}

/// The demo ERP's own sessions (in memory: a restart logs everyone out of
/// the demo ERP, as a restart of a real ERP with a memory store would).
#[derive(Clone)]
pub struct DemoErp {
    sessions: Arc<Mutex<HashMap<String, DemoUser>>>,
    www: PathBuf,
    /// Whether the ERP pages ask the embedded sidecar before showing.
    enforce: bool,
}

const COOKIE: &str = "session_id";

impl DemoErp {
    pub fn new(www: PathBuf) -> DemoErp {
        DemoErp {
            sessions: Arc::default(),
            www,
            enforce: true,
        }
    }

    /// With `false` the pages are served like a plain ERP's: only a reverse
    /// proxy in front enforces the timeout.
    pub fn enforce(mut self, on: bool) -> DemoErp {
        self.enforce = on;
        self
    }

    /// Mounts the demo ERP's routes.
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(web::Data::new(self.clone()))
            .route("/", web::get().to(|| async { see_other("/odoo") }))
            .route("/web", web::get().to(|| async { see_other("/odoo") }))
            .route("/web/login", web::get().to(login_page))
            .route("/web/login", web::post().to(login))
            .route("/web/session/logout", web::get().to(logout))
            .route("/web/session/logout", web::post().to(logout))
            .route(
                "/web/session/get_session_info",
                web::post().to(session_info),
            )
            .route("/odoo", web::get().to(backoffice))
            .route("/odoo/{tail:.*}", web::get().to(backoffice))
            .route("/my", web::get().to(portal))
            .route("/websocket", web::get().to(websocket))
            .service(actix_files::Files::new("/static", &self.www).prefer_utf8(true));
    }

    fn user(&self, req: &HttpRequest) -> Option<(String, DemoUser)> {
        let sid = cookie_value(req, COOKIE)?;
        let user = *self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&sid)?;
        Some((sid, user))
    }
}

fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// Only same-site paths are followed, so `redirect` cannot send users away:
/// no `//`, no backslash, and nothing but visible ASCII (a browser drops a
/// tab or newline, so `/\t/evil.example` would become `//evil.example`).
fn local_path(p: Option<&str>) -> Option<&str> {
    p.filter(|p| {
        p.starts_with('/')
            && !p.starts_with("//")
            && p.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
    })
}

/// The login form's CSRF token travels in a cookie and in the form (the
/// double-submit pattern): another site can make a browser post the form,
/// but cannot read the cookie to fill in the field.
const CSRF_COOKIE: &str = "demo_csrf";

fn new_token() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[derive(Deserialize)]
struct RedirectQuery {
    redirect: Option<String>,
}

async fn login_page(q: web::Query<RedirectQuery>) -> HttpResponse {
    login_html(q.redirect.as_deref(), None)
}

fn login_html(redirect: Option<&str>, error: Option<&str>) -> HttpResponse {
    let redirect = escape(local_path(redirect).unwrap_or(""));
    let token = new_token();
    let error = error
        .map(|e| format!("<p class=\"alert\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    HttpResponse::Ok().content_type("text/html; charset=utf-8").insert_header((header::CACHE_CONTROL, "no-store"))
    .insert_header((header::SET_COOKIE, format!("{CSRF_COOKIE}={token}; Path=/web/login; HttpOnly; SameSite=Strict")))
    .body(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Login | Demo ERP</title>
<link rel="stylesheet" href="/static/demo/demo.css"></head>
<body class="login"><main>
<h1>Demo ERP</h1>
{error}
<form method="post" action="/web/login" id="login-form">
<label>Email <input name="login" id="login" autocomplete="username" autofocus></label>
<label>Password <input name="password" id="password" type="password" autocomplete="current-password"></label>
<input type="hidden" name="redirect" value="{redirect}">
<input type="hidden" name="csrf_token" value="{token}">
<button type="submit" id="submit">Log in</button>
</form>
<p class="hint">Demo users: <code>admin</code>/<code>admin</code> (internal, timed out) and <code>portal</code>/<code>portal</code> (portal, exempt).</p>
</main></body></html>"#
    ))
}

#[derive(Deserialize)]
struct LoginForm {
    login: String,
    password: String,
    redirect: Option<String>,
    #[serde(default)]
    csrf_token: String,
}

async fn login(
    req: HttpRequest,
    form: web::Form<LoginForm>,
    erp: web::Data<DemoErp>,
) -> HttpResponse {
    use subtle::ConstantTimeEq as _;
    let expected = cookie_value(&req, CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(form.csrf_token.as_bytes())) {
        let page = login_html(
            form.redirect.as_deref(),
            Some("The login form expired or came from another site; please log in again"),
        );
        let mut page = page;
        *page.status_mut() = actix_web::http::StatusCode::BAD_REQUEST;
        return page;
    }
    let user = match (form.login.as_str(), form.password.as_str()) {
        ("admin", "admin") => DemoUser::Admin,
        ("portal", "portal") => DemoUser::Portal,
        _ => return login_html(form.redirect.as_deref(), Some("Wrong login/password")),
    };
    // A fresh random 128-bit id at every login, as Odoo rotates its session.
    let sid = new_token();
    erp.sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(sid.clone(), user);
    let to = local_path(form.redirect.as_deref())
        .filter(|p| !p.starts_with("/web/login"))
        .unwrap_or(user.home());
    let to = if user == DemoUser::Portal && to.starts_with("/odoo") {
        "/my"
    } else {
        to
    };
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .insert_header((
            header::SET_COOKIE,
            format!("{COOKIE}={sid}; Path=/; HttpOnly; SameSite=Lax"),
        ))
        .finish()
}

/// What the sidecar says about this browser's session, asked in process the
/// way a reverse proxy's forward-auth would (never counts as activity).
async fn sidecar_allows(req: &HttpRequest, erp: &DemoErp, st: &AppState) -> bool {
    if !erp.enforce {
        return true;
    }
    http::allows(req, st).await
}

async fn page(req: &HttpRequest, erp: &DemoErp, file: &str) -> HttpResponse {
    match actix_files::NamedFile::open_async(erp.www.join("demo").join(file)).await {
        Ok(f) => {
            let mut resp = f.use_etag(false).use_last_modified(false).into_response(req);
            // The back office must not come back from the browser's cache
            // (back button) once the session has ended.
            resp.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
            resp
        }
        Err(e) => HttpResponse::InternalServerError()
            .content_type("text/plain; charset=utf-8")
            .body(format!("demo page {file} is missing from the www folder ({e}); run from the repository root or pass --www")),
    }
}

async fn backoffice(
    req: HttpRequest,
    erp: web::Data<DemoErp>,
    st: web::Data<AppState>,
) -> HttpResponse {
    let Some((_, user)) = erp.user(&req) else {
        return see_other(&format!("/web/login?redirect={}", urlencode(req.path())));
    };
    if !sidecar_allows(&req, &erp, &st).await {
        return see_other(&st.logout_url);
    }
    if user != DemoUser::Admin {
        return see_other("/my");
    }
    page(&req, &erp, "odoo.html").await
}

async fn portal(
    req: HttpRequest,
    erp: web::Data<DemoErp>,
    st: web::Data<AppState>,
) -> HttpResponse {
    if erp.user(&req).is_none() {
        return see_other("/web/login?redirect=%2Fmy");
    }
    if !sidecar_allows(&req, &erp, &st).await {
        return see_other(&st.logout_url);
    }
    page(&req, &erp, "my.html").await
}

/// Stands in for Odoo's bus: background traffic that must never count as
/// activity. Answers like any other ERP URL.
async fn websocket(req: HttpRequest, erp: web::Data<DemoErp>) -> HttpResponse {
    match erp.user(&req) {
        Some(_) => HttpResponse::Ok().json(serde_json::json!({ "channel": "bus", "messages": [] })),
        None => HttpResponse::Unauthorized().json(serde_json::json!({ "error": "no session" })),
    }
}

async fn logout(
    req: HttpRequest,
    q: web::Query<RedirectQuery>,
    erp: web::Data<DemoErp>,
    st: web::Data<AppState>,
) -> HttpResponse {
    if let Some(sid) = cookie_value(&req, COOKIE) {
        let known = erp
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&sid)
            .is_some();
        if known {
            // The ERP tells the sidecar, so a copied cookie is refused at once.
            if let Err(e) = http::end_session(&st, &sid).await {
                log::error!("demo logout not stored by the sidecar: {e}");
            }
        }
    }
    let to = local_path(q.redirect.as_deref()).unwrap_or("/web/login");
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .insert_header((
            header::SET_COOKIE,
            format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// Odoo's JSON-RPC answer shape for `/web/session/get_session_info`.
async fn session_info(req: HttpRequest, erp: web::Data<DemoErp>) -> HttpResponse {
    match erp.user(&req) {
        Some((_, user)) => HttpResponse::Ok().json(serde_json::json!({
            "jsonrpc": "2.0", "id": null,
            "result": {
                "uid": user.uid(), "name": user.name(), "is_public": false,
                "is_internal_user": user == DemoUser::Admin, "is_system": user == DemoUser::Admin,
                "is_admin": user == DemoUser::Admin,
            }
        })),
        None => HttpResponse::Ok().json(serde_json::json!({
            "jsonrpc": "2.0", "id": null,
            "error": { "code": 100, "message": "Odoo Session Expired",
                       "data": { "name": "odoo.http.SessionExpiredException", "message": "Session expired" } }
        })),
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
