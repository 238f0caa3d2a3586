//! A throwaway PostgreSQL cluster (Debian's server, `scripts/pg-throwaway.sh`)
//! and sidecar replicas: the real binary, one process each, on it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/pg-throwaway.sh");
pub const TOKEN: &str = "replica-admin-token-0123456789";

/// Whether a PostgreSQL server is installed; without one the tests say
/// SKIPPED, and fail instead when `CI=true` (CI must run them).
pub fn postgres_installed() -> bool {
    let found = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().any(|v| v.path().join("bin/initdb").exists()))
        .unwrap_or(false);
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no PostgreSQL server under /usr/lib/postgresql: `make tools` installs it"
        );
        eprintln!(
            "SKIPPED: no PostgreSQL server under /usr/lib/postgresql (make tools installs it)"
        );
    }
    found
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Pg {
    pub dir: tempfile::TempDir,
    pub url: String,
}

impl Pg {
    pub fn start() -> Pg {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port().to_string();
        let url = script(&["start", &dir.path().join("pg").to_string_lossy(), &port]);
        // Written once here: replicas started together only read it.
        std::fs::write(dir.path().join("token"), TOKEN).unwrap();
        let bytes: Vec<u8> = (0..32).map(|_| rand_byte()).collect();
        std::fs::write(dir.path().join("secret"), hex(&bytes)).unwrap();
        Pg { dir, url }
    }

    fn data(&self) -> String {
        self.dir.path().join("pg").to_string_lossy().into_owned()
    }

    /// Fast shutdown: connections are closed, the server is gone.
    pub fn stop(&self) {
        script(&["stop", &self.data()]);
    }

    pub fn restart(&self) {
        script(&["start", &self.data()]);
    }

    /// Runs SQL with psql; the rows, unaligned.
    pub fn psql(&self, sql: &str) -> String {
        script(&["psql", &self.data(), sql])
    }

    /// The file with the fresh secret the replicas of a test share
    /// (written once at start: replicas started together only read it).
    pub fn secret(&self) -> PathBuf {
        self.dir.path().join("secret")
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = Command::new(SCRIPT).args(["remove", &self.data()]).output();
    }
}

fn rand_byte() -> u8 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish() as u8
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn script(args: &[&str]) -> String {
    let out = Command::new(SCRIPT).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "pg-throwaway.sh {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One sidecar process on the shared database.
pub struct Replica {
    child: Option<Child>,
    pub base: String,
    pub log: PathBuf,
}

pub struct ReplicaOptions<'a> {
    pub timeout_s: u32,
    pub commit_window_ms: u32,
    pub secret: Option<&'a Path>,
    /// Another database URL than the cluster's.
    pub url: Option<&'a str>,
    /// The ERP's session-info URL (default: none, every session internal, uid 0).
    pub session_info_url: Option<&'a str>,
}

impl Default for ReplicaOptions<'_> {
    fn default() -> Self {
        ReplicaOptions {
            timeout_s: 60,
            commit_window_ms: 250,
            secret: None,
            url: None,
            session_info_url: None,
        }
    }
}

impl Replica {
    /// Starts a replica and waits until it answers, or returns its stderr
    /// if it exits first.
    pub fn try_start(pg: &Pg, o: ReplicaOptions<'_>) -> Result<Replica, String> {
        let port = free_port();
        let n = std::fs::read_dir(pg.dir.path()).unwrap().count();
        let log = pg.dir.path().join(format!("replica-{port}-{n}.log"));
        let token = pg.dir.path().join("token");
        let secret = o
            .secret
            .map(Path::to_path_buf)
            .unwrap_or_else(|| pg.secret());
        let child = Command::new(env!("CARGO_BIN_EXE_session-timeout"))
            .args([
                "serve",
                "--session-info-url",
                o.session_info_url.unwrap_or("none"),
                "--bind",
            ])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--database-url")
            .arg(o.url.unwrap_or(&pg.url))
            .arg("--secret-file")
            .arg(&secret)
            .arg("--admin-token-file")
            .arg(&token)
            .args(["--timeout", &o.timeout_s.to_string()])
            .args(["--commit-window-ms", &o.commit_window_ms.to_string()])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut r = Replica {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}/session-timeout/api/v1"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = r.child.as_mut().unwrap().try_wait().unwrap() {
                r.child = None;
                return Err(format!("exited with {status}: {}", r.stderr()));
            }
            // The port is bound before the database is opened: wait for an answer.
            if healthy(port) {
                return Ok(r);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("did not listen within 20 s: {}", r.stderr()))
    }

    pub fn start(pg: &Pg, o: ReplicaOptions<'_>) -> Replica {
        Replica::try_start(pg, o).unwrap_or_else(|e| panic!("replica: {e}"))
    }

    /// The process id (its connections are named after it in `pg_stat_activity`).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no shutdown, no last commit.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn healthy(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = "GET /session-timeout/healthz HTTP/1.0\r\n\r\n";
    let mut out = String::new();
    s.write_all(req.as_bytes()).is_ok()
        && s.read_to_string(&mut out).is_ok()
        && out.starts_with("HTTP/1.0 200")
}

/// What a request got back.
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    pub fn state(&self) -> &str {
        self.body["state"].as_str().unwrap_or("")
    }
}

pub fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(20))
        .finish()
}

pub async fn call(
    c: &awc::Client,
    method: &str,
    url: &str,
    cookie: Option<&str>,
    body: Option<&str>,
) -> Reply {
    let origin = url.split("/session-timeout").next().unwrap().to_string();
    let mut req = c
        .request(method.parse().unwrap(), url)
        .insert_header(("Origin", origin))
        .insert_header(("Authorization", format!("Bearer {TOKEN}")));
    if let Some(cookie) = cookie {
        req = req.insert_header(("Cookie", format!("session_id={cookie}")));
    }
    let mut res = match body {
        Some(b) => req
            .insert_header(("Content-Type", "application/json"))
            .send_body(b.to_string())
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}")),
        None => req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}")),
    };
    let bytes = res.body().limit(1 << 20).await.unwrap_or_default();
    Reply {
        status: res.status().as_u16(),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

impl Replica {
    pub async fn auth(&self, c: &awc::Client, cookie: &str) -> u16 {
        call(c, "GET", &format!("{}/auth", self.base), Some(cookie), None)
            .await
            .status
    }
    pub async fn check(&self, c: &awc::Client, cookie: &str) -> Reply {
        call(
            c,
            "GET",
            &format!("{}/check", self.base),
            Some(cookie),
            None,
        )
        .await
    }
    pub async fn heartbeat(&self, c: &awc::Client, cookie: &str) -> Reply {
        let url = format!("{}/heartbeat", self.base);
        call(c, "POST", &url, Some(cookie), Some(r#"{"idle_ms":0}"#)).await
    }
    pub async fn logout(&self, c: &awc::Client, cookie: &str) -> Reply {
        call(
            c,
            "POST",
            &format!("{}/logout", self.base),
            Some(cookie),
            Some("{}"),
        )
        .await
    }
    pub async fn set_timeout(&self, c: &awc::Client, seconds: u32) -> Reply {
        let body = format!(r#"{{"activity_session_timeout_key":"{seconds}"}}"#);
        call(
            c,
            "PUT",
            &format!("{}/admin/settings", self.base),
            None,
            Some(&body),
        )
        .await
    }
    pub async fn admin(&self, c: &awc::Client, method: &str, path: &str) -> Reply {
        call(
            c,
            method,
            &format!("{}/admin/{path}", self.base),
            None,
            None,
        )
        .await
    }
    pub async fn settings(&self, c: &awc::Client) -> Reply {
        call(
            c,
            "GET",
            &format!("{}/admin/settings", self.base),
            None,
            None,
        )
        .await
    }
}

/// The stand-in ERP (`session-timeout demo --no-enforce`): users with ids,
/// and the session-info route the replicas ask.
pub struct Erp {
    child: Child,
    pub root: String,
}

impl Erp {
    /// Started with its files in `dir` (the test's folder, removed after it).
    pub fn start(dir: &Path) -> Erp {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_session-timeout"))
            .args([
                "demo",
                "--no-enforce",
                "--session-info-url",
                "none",
                "--bind",
            ])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--db")
            .arg(dir.join("erp.db"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the demo ERP did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Erp {
            child,
            root: format!("http://127.0.0.1:{port}"),
        }
    }

    pub fn session_info_url(&self) -> String {
        format!("{}/web/session/get_session_info", self.root)
    }

    /// Logs in through the ERP's form; the session cookie's value.
    pub async fn login(&self, _: &awc::Client, user: &str) -> String {
        // The login answers 303 with the cookie: not followed.
        let c = awc::Client::builder().disable_redirects().finish();
        let page = c
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
        let resp = c
            .post(format!("{}/web/login", self.root))
            .insert_header(("Cookie", format!("demo_csrf={token}")))
            .send_form(&[("login", user), ("password", user), ("csrf_token", &token)])
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 303, "login as {user}");
        let set = resp
            .headers()
            .get("set-cookie")
            .expect("login sets a cookie");
        let set = set.to_str().unwrap();
        let cookie = set.split(';').next().unwrap();
        cookie
            .strip_prefix("session_id=")
            .unwrap_or_else(|| panic!("not the session cookie: {cookie}"))
            .to_string()
    }
}

impl Drop for Erp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
