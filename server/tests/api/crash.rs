//! kill -9 under load: everything acknowledged before the kill is still in
//! force after it. A few rounds run in `make test`; `CRASH_ROUNDS=20` (as in
//! `make soak`) runs more.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use session_timeout::secret::{key_for, load_or_create_secret};

use crate::helpers::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_session-timeout");
const WINDOW_MS: i64 = 100;
const TOKEN: &str = "crash-test-admin-token-0123456789";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// One HTTP/1.1 request on a fresh connection; `None` when the server is gone.
fn http(
    port: u16,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: Option<&str>,
    auth: bool,
) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    if let Some(c) = cookie {
        req += &format!("Cookie: session_id={c}\r\n");
    }
    if auth {
        req += &format!("Authorization: Bearer {TOKEN}\r\n");
    }
    let body = body.unwrap_or("");
    req += &format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let status = resp.split(' ').nth(1)?.parse().ok()?;
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Some((status, body))
}

fn start(dir: &Path, port: u16) -> Child {
    let child = Command::new(BIN)
        .args([
            "serve",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--session-info-url",
            "none",
            "--timeout",
            "1",
        ])
        .args([
            "--commit-window-ms",
            &WINDOW_MS.to_string(),
            "--workers",
            "2",
            "--db",
        ])
        .arg(dir.join("s.db"))
        .env("SESSION_TIMEOUT_ADMIN_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while http(port, "GET", "/session-timeout/healthz", None, None, false).map(|r| r.0) != Some(200)
    {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[derive(Default)]
struct Acked {
    /// (cookie, sent at, acknowledged at)
    heartbeats: Vec<(String, i64, i64)>,
    /// (cookie, reason)
    endings: Vec<(String, &'static str)>,
}

fn one_round(round: u32) {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = start(tmp.path(), port);
    let cookies: Vec<String> = (0..40).map(|i| format!("crash-{round}-{i:02}")).collect();
    for c in &cookies {
        http(
            port,
            "GET",
            "/session-timeout/api/v1/check",
            Some(c),
            None,
            false,
        )
        .unwrap();
    }
    let secret = load_or_create_secret(&tmp.path().join("s.db.secret")).unwrap();
    let acked = Arc::new(Mutex::new(Acked::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    // Heartbeats on the first 30 sessions, from two threads.
    for t in 0..2 {
        let (acked, stop, cookies) = (acked.clone(), stop.clone(), cookies.clone());
        threads.push(std::thread::spawn(move || {
            let mut i = t;
            while !stop.load(Ordering::Relaxed) {
                let c = &cookies[i % 30];
                i += 7;
                let sent = now_ms();
                match http(
                    port,
                    "POST",
                    "/session-timeout/api/v1/heartbeat",
                    Some(c),
                    Some(r#"{"idle_ms":0}"#),
                    false,
                ) {
                    Some((200, body)) if body.contains("\"active\"") => acked
                        .lock()
                        .unwrap()
                        .heartbeats
                        .push((c.clone(), sent, now_ms())),
                    Some(_) => {}
                    None => break,
                }
            }
        }));
    }
    // Logouts (sessions 30..34), revocations (35..37) and observed expiries (38, 39: no heartbeats).
    {
        let (acked, stop, cookies) = (acked.clone(), stop.clone(), cookies.clone());
        threads.push(std::thread::spawn(move || {
            let mut pending: Vec<(usize, &'static str)> = (30..35)
                .map(|i| (i, "logout"))
                .chain((35..38).map(|i| (i, "revoked")))
                .chain([(38, "idle_timeout"), (39, "idle_timeout")])
                .collect();
            while !stop.load(Ordering::Relaxed) && !pending.is_empty() {
                let (i, what) = pending[0];
                let c = &cookies[i];
                let ok = match what {
                    "logout" => http(
                        port,
                        "POST",
                        "/session-timeout/api/v1/logout",
                        Some(c),
                        Some("{}"),
                        false,
                    )
                    .is_some_and(|r| r.0 == 200),
                    "revoked" => {
                        let prefix = key_for(&secret, c).prefix();
                        http(
                            port,
                            "POST",
                            &format!("/session-timeout/api/v1/admin/sessions/{prefix}/revoke"),
                            None,
                            None,
                            true,
                        )
                        .is_some_and(|r| r.0 == 200)
                    }
                    _ => http(
                        port,
                        "GET",
                        "/session-timeout/api/v1/check",
                        Some(c),
                        None,
                        false,
                    )
                    .is_some_and(|r| r.1.contains("\"expired\"")),
                };
                if ok {
                    acked.lock().unwrap().endings.push((c.clone(), what));
                    pending.remove(0);
                } else {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }));
    }
    // Kill at a moment that varies from round to round.
    let kill_after = 700 + (round as u64 * 379) % 900;
    std::thread::sleep(Duration::from_millis(kill_after));
    server.kill().unwrap(); // SIGKILL
    let killed_at = now_ms();
    server.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let mut log = String::new();
    server
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    for c in &cookies {
        assert!(
            !log.contains(c.as_str()),
            "the raw cookie {c} appears in the server's log"
        );
    }

    let acked = acked.lock().unwrap();
    let conn = rusqlite::Connection::open(tmp.path().join("s.db")).unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok", "round {round}");
    let row = |c: &str| -> (i64, Option<String>) {
        let key = key_for(&secret, c);
        conn.query_row(
            "SELECT last_activity_ms, end_reason FROM sessions WHERE key = ?1",
            [&key.0[..]],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    for (c, reason) in &acked.endings {
        assert_eq!(
            row(c).1.as_deref(),
            Some(*reason),
            "round {round}: acknowledged {reason} of {c} lost"
        );
    }
    // Heartbeats acknowledged longer than the window (plus one commit) before the kill are on disk.
    let margin = WINDOW_MS + 400;
    let mut checked = 0;
    for (c, sent, ack) in &acked.heartbeats {
        if *ack < killed_at - margin {
            let (last, _) = row(c);
            assert!(last >= *sent, "round {round}: heartbeat of {c} sent at {sent}, acknowledged {} ms before the kill, lost (stored {last})", killed_at - ack);
            checked += 1;
        }
    }
    assert!(
        checked > 20,
        "round {round}: only {checked} heartbeats were old enough to check"
    );
    assert!(
        acked.endings.len() >= 5,
        "round {round}: only {} endings acknowledged",
        acked.endings.len()
    );
    drop(conn);

    // After a restart, every acknowledged ending is still in force.
    let mut server = start(tmp.path(), port);
    for (c, reason) in &acked.endings {
        let (status, _) = http(
            port,
            "GET",
            "/session-timeout/api/v1/auth",
            Some(c),
            None,
            false,
        )
        .unwrap();
        assert_eq!(
            status, 401,
            "round {round}: {reason} of {c} not in force after the restart"
        );
    }
    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn kill_9_under_load_loses_nothing_acknowledged() {
    let rounds: u32 = std::env::var("CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    for round in 0..rounds {
        one_round(round);
    }
}
