use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use session_timeout::clock::ManualClock;
use session_timeout::config::RawOptions;
use session_timeout::demo::DemoErp;
use session_timeout::http::AppState;
use session_timeout::startup;

pub const TOKEN: &str = "test-admin-token-0123456789";

pub struct Options {
    pub timeout: Option<&'static str>,
    pub lifetime: Option<&'static str>,
    pub admin_token: bool,
    /// `None`: the app's own demo ERP; `Some(url)`: that URL.
    pub session_info_url: Option<String>,
    /// The ERP owns the idle timeout (`--erp-settings-url`); the test starts the poller.
    pub erp_settings: Option<session_timeout::config::ErpSettings>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: Some("60"),
            lifetime: None,
            admin_token: true,
            session_info_url: None,
            erp_settings: None,
        }
    }
}

pub struct TestApp {
    pub base: String,
    pub root: String,
    pub clock: Arc<ManualClock>,
    pub state: web::Data<AppState>,
    pub dir: PathBuf,
    handle: actix_web::dev::ServerHandle,
    _tmp: Option<tempfile::TempDir>,
}

pub async fn spawn_app() -> TestApp {
    spawn_with(Options::default()).await
}

pub async fn spawn_with(opts: Options) -> TestApp {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let mut app = spawn_in(&dir, opts, Arc::new(ManualClock::new())).await;
    app._tmp = Some(tmp);
    app
}

/// Starts the app on an existing folder (for restart tests).
pub async fn spawn_in(dir: &Path, opts: Options, clock: Arc<ManualClock>) -> TestApp {
    let listener = startup::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let root = format!("http://{addr}");
    let raw = RawOptions {
        db: Some(dir.join("sessions.db").display().to_string()),
        timeout: opts.timeout.map(String::from),
        absolute_lifetime: opts.lifetime.map(String::from),
        session_info_url: Some(
            opts.session_info_url
                .unwrap_or_else(|| format!("{root}/web/session/get_session_info")),
        ),
        lookup_timeout_ms: Some("1000".into()),
        ..Default::default()
    };
    let mut settings = raw.resolve("127.0.0.1:0").unwrap();
    settings.admin_token = opts.admin_token.then(|| TOKEN.to_string());
    settings.erp_settings = opts.erp_settings.clone();
    let state = startup::open_state(&settings, clock.clone()).await.unwrap();
    let www = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../www");
    let erp = DemoErp::new(www);
    let server = startup::server(listener, state.clone(), 1, move |c| erp.configure(c)).unwrap();
    let handle = server.handle();
    actix_rt::spawn(server);
    TestApp {
        base: format!("{root}/session-timeout"),
        root,
        clock,
        state,
        dir: dir.to_path_buf(),
        handle,
        _tmp: None,
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: awc::http::header::HeaderMap,
    pub body: serde_json::Value,
    pub text: String,
}

fn client() -> awc::Client {
    awc::Client::builder()
        .disable_redirects()
        .timeout(Duration::from_secs(10))
        .finish()
}

impl TestApp {
    /// Stops the server and closes the store (everything queued is committed).
    pub async fn stop(self) -> (PathBuf, Arc<ManualClock>, Option<tempfile::TempDir>) {
        self.handle.stop(true).await;
        self.state.sessions.store.close();
        (self.dir, self.clock, self._tmp)
    }

    pub fn advance(&self, secs: f64) {
        self.clock.advance_ms((secs * 1000.0) as i64);
    }

    /// Logs in through the demo ERP's form; returns the session cookie value.
    pub async fn login(&self, user: &str) -> String {
        // The form's CSRF token: in a cookie and in a hidden field.
        let page = client()
            .get(format!("{}/web/login", self.root))
            .send()
            .await
            .unwrap();
        let token = page
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("demo_csrf="))
            .and_then(|v| v.split(';').next())
            .expect("the login page sets its CSRF cookie")
            .to_string();
        let resp = client()
            .post(format!("{}/web/login", self.root))
            .insert_header(("Cookie", format!("demo_csrf={token}")))
            .send_form(&[("login", user), ("password", user), ("csrf_token", &token)])
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 303, "login as {user}");
        let set = resp
            .headers()
            .get("set-cookie")
            .expect("login sets a cookie")
            .to_str()
            .unwrap()
            .to_string();
        set.split(';')
            .next()
            .unwrap()
            .strip_prefix("session_id=")
            .unwrap()
            .to_string()
    }

    pub async fn request(
        &self,
        method: &str,
        url: &str,
        cookie: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Reply {
        let c = client();
        let mut req = c.request(method.parse().unwrap(), url);
        if let Some(v) = cookie {
            req = req.insert_header(("Cookie", format!("session_id={v}")));
        }
        for (k, v) in headers {
            req = req.append_header((*k, *v));
        }
        let mut resp = match body {
            Some(b) => req.send_body(b.to_string()).await.unwrap(),
            None => req.send().await.unwrap(),
        };
        let bytes = resp.body().limit(16 * 1024 * 1024).await.unwrap();
        let text = String::from_utf8_lossy(&bytes).to_string();
        Reply {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
            text,
        }
    }

    pub async fn heartbeat(&self, cookie: &str, idle_ms: u64) -> Reply {
        let body = format!("{{\"idle_ms\":{idle_ms}}}");
        self.request(
            "POST",
            &self.api("heartbeat"),
            Some(cookie),
            &[("Content-Type", "application/json")],
            Some(&body),
        )
        .await
    }

    pub async fn check(&self, cookie: &str) -> Reply {
        self.request("GET", &self.api("check"), Some(cookie), &[], None)
            .await
    }

    pub async fn auth(&self, cookie: &str) -> Reply {
        self.request("GET", &self.api("auth"), Some(cookie), &[], None)
            .await
    }

    pub async fn logout(&self, cookie: &str) -> Reply {
        self.request(
            "POST",
            &self.api("logout"),
            Some(cookie),
            &[("Content-Type", "application/json")],
            Some("{}"),
        )
        .await
    }

    pub async fn admin(&self, method: &str, path: &str, body: Option<&str>) -> Reply {
        let auth = format!("Bearer {TOKEN}");
        let url = format!("{}/api/v1/admin/{path}", self.base);
        self.request(
            method,
            &url,
            None,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body,
        )
        .await
    }

    pub fn api(&self, route: &str) -> String {
        format!("{}/api/v1/{route}", self.base)
    }

    /// Waits until every queued change is on disk.
    pub async fn flush(&self) {
        self.state.sessions.store.flush().await.unwrap();
    }
}

pub fn state_of(r: &Reply) -> &str {
    r.body["state"].as_str().unwrap_or("(none)")
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real binary serving on `db` (any port, no ERP), its stderr piped.
pub fn spawn_binary(db: &std::path::Path) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_session-timeout"))
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--session-info-url",
            "none",
            "--db",
        ])
        .arg(db)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Starts the real binary on `db` and returns its exit code and stderr, for
/// starts that must be refused (a start that succeeds would keep serving:
/// it is stopped after 3 s and reported as `None`).
pub fn start_binary(db: &std::path::Path) -> (Option<i32>, String) {
    let mut child = spawn_binary(db);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while std::time::Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            return (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into(),
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    (None, String::from_utf8_lossy(&out.stderr).into())
}
