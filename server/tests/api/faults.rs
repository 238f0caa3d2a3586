//! Storage faults: disk full under the running server, a read-only file
//! system at start and under the running server, the database file deleted
//! or overwritten in place under the running server. The disk-full and
//! read-only tests put the database on a small file system they mount (a
//! tmpfs, or a loop-mounted ext4 image; root only, elsewhere they say they
//! were skipped).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::helpers::*;
use session_timeout::clock::ManualClock;

struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs here (needs root); storage fault test not run"
            );
            return None;
        }
        Some(Tmpfs { dir })
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn remount(&self, mode: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(self.path())
            .status()
            .unwrap();
        assert!(st.success(), "remount {mode}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

async fn wait_healthy(app: &TestApp, want: u16) {
    let start = Instant::now();
    loop {
        let r = app
            .request("GET", &format!("{}/healthz", app.base), None, &[], None)
            .await;
        if r.status == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "healthz stayed {} (wanted {want})",
            r.status
        );
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
}

fn stored_reason(db: &Path, prefix: &str) -> Option<String> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    conn.query_row(
        "SELECT end_reason FROM sessions WHERE lower(hex(key)) LIKE ?1 || '%'",
        [prefix],
        |r| r.get(0),
    )
    .unwrap_or(None)
}

fn key_prefix(app: &TestApp, cookie: &str) -> String {
    app.state.sessions.key(cookie).prefix()
}

/// Fills the file system until a write fails; returns the filler's path.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let p = dir.join("filler");
    let mut f = std::fs::File::create(&p).unwrap();
    let block = vec![0u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    let _ = f.flush();
    p
}

#[actix_rt::test]
async fn disk_full_refuses_to_claim_a_logout_then_recovers() {
    let Some(fs) = Tmpfs::mount("4m") else { return };
    let app = spawn_in(fs.path(), Options::default(), Arc::new(ManualClock::new())).await;
    let (c1, c2) = (app.login("admin").await, app.login("admin").await);
    app.check(&c1).await;
    app.check(&c2).await;
    app.flush().await;

    let filler = fill(fs.path());
    let r = app.logout(&c1).await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (503, Some("storage_unavailable")),
        "{}",
        r.text
    );
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("could not be stored"),
        "{}",
        r.text
    );
    wait_healthy(&app, 503).await;
    // Memory stays on the safe side: the session is refused, and others go on.
    assert_eq!(app.auth(&c1).await.status, 401);
    assert_eq!(state_of(&app.heartbeat(&c2, 0).await), "active");

    std::fs::remove_file(filler).unwrap();
    wait_healthy(&app, 200).await;
    app.flush().await;
    assert_eq!(
        stored_reason(&app.dir.join("sessions.db"), &key_prefix(&app, &c1)).as_deref(),
        Some("logout"),
        "stored once space came back"
    );
    let _ = app.stop().await;
}

#[actix_rt::test]
async fn a_setting_that_cannot_be_stored_is_not_applied() {
    let Some(fs) = Tmpfs::mount("4m") else { return };
    let app = spawn_in(fs.path(), Options::default(), Arc::new(ManualClock::new())).await;
    app.flush().await;
    let filler = fill(fs.path());
    let r = app
        .admin(
            "PUT",
            "settings",
            Some(r#"{"activity_session_timeout_key": 900}"#),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (503, Some("storage_unavailable")),
        "{}",
        r.text
    );
    assert_eq!(
        app.admin("GET", "settings", None).await.body["activity_session_timeout_key"]["effective"],
        60
    );
    std::fs::remove_file(filler).unwrap();
    wait_healthy(&app, 200).await;
    let _ = app.stop().await;
}

#[test]
fn a_read_only_file_system_at_start_is_a_clear_error() {
    let Some(fs) = Tmpfs::mount("4m") else { return };
    // A database that exists, then the file system turns read-only.
    let store = session_timeout::store::Store::open(
        &fs.path().join("s.db"),
        Default::default(),
        session_timeout::policy::Millis(0),
    )
    .unwrap();
    store.close();
    drop(store);
    fs.remount("ro");
    for db in [fs.path().join("s.db"), fs.path().join("new/s.db")] {
        let (code, err) = start_binary(&db);
        assert_eq!(code, Some(1), "{err}");
        assert!(
            err.contains(&db.parent().unwrap().display().to_string()),
            "names the path: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    fs.remount("rw");
}

#[actix_rt::test]
async fn a_deleted_database_file_is_restored_with_everything_in_it() {
    let tmp = tempfile::tempdir().unwrap();
    let app = spawn_in(tmp.path(), Options::default(), Arc::new(ManualClock::new())).await;
    let (gone, kept, later) = (
        app.login("admin").await,
        app.login("admin").await,
        app.login("admin").await,
    );
    for c in [&gone, &kept, &later] {
        app.check(c).await;
    }
    app.logout(&gone).await;
    app.flush().await;
    let db = app.dir.join("sessions.db");
    for f in ["sessions.db", "sessions.db-wal", "sessions.db-shm"] {
        let _ = std::fs::remove_file(app.dir.join(f));
    }
    // The next durable change notices, restores the file, and is stored in it.
    let r = app.logout(&later).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(db.exists(), "the file is back");
    assert_eq!(
        stored_reason(&db, &key_prefix(&app, &gone)).as_deref(),
        Some("logout"),
        "earlier logout kept"
    );
    assert_eq!(
        stored_reason(&db, &key_prefix(&app, &later)).as_deref(),
        Some("logout"),
        "new logout stored"
    );
    let (dir, clock, _) = app.stop().await;
    let app = spawn_in(&dir, Options::default(), clock).await;
    assert_eq!(app.auth(&gone).await.status, 401);
    assert_eq!(app.auth(&later).await.status, 401);
    assert_eq!(state_of(&app.check(&kept).await), "active");
    let _ = app.stop().await;
}

/// Overwrites `path` from byte `from` to its end with a pattern, in place
/// (the inode stays: the open connection keeps using the same file).
fn scribble(path: &Path, from: u64) {
    use std::io::{Seek, SeekFrom, Write};
    let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(path) else {
        return;
    };
    let len = f.metadata().unwrap().len();
    if len <= from {
        return;
    }
    f.seek(SeekFrom::Start(from)).unwrap();
    f.write_all(&vec![0x5a; (len - from) as usize]).unwrap();
    f.sync_all().unwrap();
}

#[actix_rt::test]
async fn a_database_corrupted_in_place_never_claims_a_write_and_is_refused_at_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let app = spawn_in(tmp.path(), Options::default(), Arc::new(ManualClock::new())).await;
    let mut cookies = Vec::new();
    for _ in 0..300 {
        let c = app.login("admin").await;
        app.check(&c).await;
        cookies.push(c);
    }
    let ended = cookies.pop().unwrap();
    app.logout(&ended).await;
    app.flush().await;
    // Everything after the header page of the database and of its WAL
    // becomes garbage under the running server, as a failing disk would do.
    scribble(&app.dir.join("sessions.db"), 4096);
    scribble(&app.dir.join("sessions.db-wal"), 32 + 24 + 4096);

    // Memory still judges every request: nothing crashes, the ended session
    // stays ended, the others go on.
    assert_eq!(app.auth(&ended).await.status, 401);
    assert_eq!(state_of(&app.check(&cookies[0]).await), "active");
    // A logout is either stored or refused with 503; never a 200 for a
    // write that failed, never a 500.
    let r = app.logout(&cookies[1]).await;
    assert!(
        r.status == 200 || (r.status == 503 && r.body["error"] == "storage_unavailable"),
        "{} {}",
        r.status,
        r.text
    );
    assert_eq!(
        app.auth(&cookies[1]).await.status,
        401,
        "refused either way"
    );
    if r.status == 503 {
        wait_healthy(&app, 503).await;
    }
    assert_eq!(state_of(&app.heartbeat(&cookies[2], 0).await), "active");
    let (dir, _, _) = app.stop().await;

    // At restart the damage is found and named: the server does not start on
    // a database that may have lost ended sessions (which would revive them).
    let (code, err) = start_binary(&dir.join("sessions.db"));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("is not a usable session-timeout database"),
        "{err}"
    );
    assert!(err.contains("Restore it from a backup"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// An ext4 file system in an image file, loop-mounted: ext4 can be made to
/// fail under open files as a dying disk makes it (`remount,abort`: the
/// journal aborts and the file system turns read-only, `emergency_ro`).
struct Ext4 {
    dir: tempfile::TempDir,
}

impl Ext4 {
    fn mount() -> Option<Ext4> {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("fs.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(32 << 20)
            .unwrap();
        std::fs::create_dir(dir.path().join("mnt")).unwrap();
        let ok = |c: &mut Command| c.output().map(|o| o.status.success()).unwrap_or(false);
        let made = ok(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&img));
        let fs = Ext4 { dir };
        if !made || !fs.mount_again() {
            eprintln!("SKIPPED: cannot loop-mount an ext4 image here (needs root and mkfs.ext4); test not run");
            return None;
        }
        Some(fs)
    }
    fn path(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }
    fn mount_again(&self) -> bool {
        Command::new("mount")
            .args(["-o", "loop"])
            .arg(self.dir.path().join("fs.img"))
            .arg(self.path())
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }
    /// What ext4 does on an I/O error: from now on every write fails.
    /// False if this kernel does not offer it.
    fn abort(&self) -> bool {
        Command::new("mount")
            .args(["-o", "remount,abort"])
            .arg(self.path())
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }
    /// The admin's repair: unmount, mount again (ext4 replays its journal).
    fn repair(&self) {
        let st = Command::new("umount").arg(self.path()).status().unwrap();
        assert!(st.success(), "umount (is a file still open?)");
        assert!(self.mount_again(), "mount again");
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

#[actix_rt::test]
async fn a_file_system_turning_read_only_under_the_server_never_claims_a_write() {
    let Some(fs) = Ext4::mount() else { return };
    let app = spawn_in(&fs.path(), Options::default(), Arc::new(ManualClock::new())).await;
    let (before, during, other) = (
        app.login("admin").await,
        app.login("admin").await,
        app.login("admin").await,
    );
    for c in [&before, &during, &other] {
        app.check(c).await;
    }
    assert_eq!(app.logout(&before).await.status, 200);
    app.flush().await;

    if !fs.abort() {
        eprintln!("SKIPPED: this kernel cannot abort an ext4 journal on demand; test not run");
        let _ = app.stop().await;
        return;
    }
    let r = app.logout(&during).await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (503, Some("storage_unavailable")),
        "{}",
        r.text
    );
    wait_healthy(&app, 503).await;
    // Memory stays on the safe side and the others go on.
    assert_eq!(app.auth(&during).await.status, 401);
    assert_eq!(state_of(&app.heartbeat(&other, 0).await), "active");
    let (_, clock, _) = app.stop().await;

    fs.repair();
    let app = spawn_in(&fs.path(), Options::default(), clock).await;
    assert_eq!(
        app.auth(&before).await.status,
        401,
        "the logout acknowledged before the fault is in force"
    );
    assert_eq!(state_of(&app.check(&other).await), "active");
    let _ = app.stop().await;
    // (`during` was answered 503, so nothing was promised about it.)
}

/// Under systemd's default soft limit of 1024 open files, 1,100 connections
/// held open (idle, or with a body that stops half-way) must not make the
/// server unanswerable: it raises its soft limit to the hard one at start,
/// and a body that stops is answered 408 and its connection closed.
#[test]
fn held_connections_do_not_exhaust_the_servers_file_descriptors() {
    use std::io::{Read as _, Write as _};
    // The test holds the connections: it needs the descriptors too.
    assert!(
        session_timeout::startup::raise_open_files() >= 2048,
        "this test needs a hard limit of open files of 2048 or more"
    );
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new("bash")
        .args(["-c", "ulimit -Sn 1024 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_session-timeout"))
        .args([
            "serve",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--session-info-url",
            "none",
            "--workers",
            "2",
            "--db",
        ])
        .arg(dir.path().join("sessions.db"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}");
    let get = |path: &str| -> Option<String> {
        let mut s = std::net::TcpStream::connect(&addr).ok()?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(3)))
            .ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    };
    let mut up = false;
    for _ in 0..100 {
        if get("/session-timeout/healthz").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(up, "the server started");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let soft: u64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(soft > 1024, "the soft limit was raised at start: {soft}");

    let mut held = Vec::new();
    for i in 0..1100 {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        if i % 10 == 0 {
            // A heartbeat whose body stops half-way.
            write!(s, "POST /session-timeout/api/v1/heartbeat HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://{addr}\r\nCookie: session_id=abc{i}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{").unwrap();
        }
        held.push(s);
    }
    let t = std::time::Instant::now();
    let health =
        get("/session-timeout/healthz").expect("healthz answers with 1,100 connections held");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        t.elapsed()
    );
    // The stopped bodies are answered 408 (JSON) after the body timeout.
    let mut stalled = held.swap_remove(0);
    stalled
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = stalled.read(&mut buf).unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"error\":\"body_timeout\""), "{answer}");
    drop(held);
    child.kill().unwrap();
    child.wait().unwrap();
}
