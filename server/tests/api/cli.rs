//! The binary itself: flags, exit codes, and the admin subcommands against a
//! running `serve`.

use std::process::{Child, Command, Stdio};

use crate::helpers::free_port;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_session-timeout");

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("SESSION_TIMEOUT_ADMIN_TOKEN")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn invalid_flags_exit_2_naming_the_field_and_range() {
    for (args, needle) in [
        (
            vec!["serve", "--timeout", "0"],
            "invalid --timeout: 0 is out of range (accepted: 1 to 2592000 seconds)",
        ),
        (vec!["serve", "--timeout", "ten"], "invalid --timeout"),
        (vec!["serve", "--bind", "localhost"], "invalid --bind"),
        (vec!["serve", "--base-path", "api"], "invalid --base-path"),
        (
            vec!["serve", "--commit-window-ms", "9000"],
            "accepted: 1 to 5000 ms",
        ),
        (
            vec!["demo", "--absolute-lifetime", "-1"],
            "invalid --absolute-lifetime",
        ),
        (vec!["serve", "--no-such-flag"], "--no-such-flag"),
    ] {
        let (code, _, err) = run(&args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn invalid_values_in_the_environment_and_config_file_exit_2() {
    let out = Command::new(BIN)
        .args(["serve"])
        .env("SESSION_TIMEOUT_TIMEOUT", "-4")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid --timeout"));
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("st.toml");
    std::fs::write(&f, "cookie_name = \"bad name\"\n").unwrap();
    let (code, _, err) = run(&["serve", "--config", f.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(err.contains("invalid --cookie-name"), "{err}");
}

#[test]
fn help_lists_the_subcommands_and_flags() {
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, Some(0));
    for s in ["serve", "demo", "settings", "sessions"] {
        assert!(out.contains(s), "{out}");
    }
    let (_, out, _) = run(&["serve", "--help"]);
    for f in [
        "--bind",
        "--db",
        "--timeout",
        "--base-path",
        "--cookie-name",
        "--session-info-url",
        "--login-url",
        "--logout-url",
    ] {
        assert!(out.contains(f), "{f} missing from serve --help");
    }
}

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn settings_and_sessions_subcommands_drive_the_running_server() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let token = "cli-test-token-abcdefghijklmnop";
    let db = tmp.path().join("s.db");
    let _server = Server(
        Command::new(BIN)
            .args([
                "serve",
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--session-info-url",
                "none",
                "--timeout",
                "120",
            ])
            .arg("--db")
            .arg(&db)
            .env("SESSION_TIMEOUT_ADMIN_TOKEN", token)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{port}/session-timeout");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let cli = |args: &[&str], with_token: bool| {
        let mut c = Command::new(BIN);
        c.args(args).args(["--url", &url]);
        if with_token {
            c.env("SESSION_TIMEOUT_ADMIN_TOKEN", token);
        } else {
            c.env_remove("SESSION_TIMEOUT_ADMIN_TOKEN");
        }
        let out = c.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, out, _) = cli(&["settings", "get"], true);
    assert_eq!(code, Some(0));
    assert!(out.contains("\"effective\": 120"), "{out}");
    let (code, out, err) = cli(
        &["settings", "set", "activity_session_timeout_key", "900"],
        true,
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("\"effective\": 900"), "{out}");
    let (code, _, err) = cli(
        &["settings", "set", "activity_session_timeout_key", "0"],
        true,
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("accepted: 1 to 2592000"), "{err}");
    let (code, _, err) = cli(&["settings", "get"], false);
    assert_eq!(code, Some(2));
    assert!(err.contains("SESSION_TIMEOUT_ADMIN_TOKEN"), "{err}");

    // A session appears through the public API, then is listed and revoked.
    let check = |cookie: &str| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        use std::io::{Read, Write};
        write!(s, "GET /session-timeout/api/v1/auth HTTP/1.1\r\nHost: x\r\nCookie: session_id={cookie}\r\nConnection: close\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        resp.lines().next().unwrap().to_string()
    };
    assert!(check("abcdef0123456789").contains("204"));
    let (code, out, _) = cli(&["sessions", "list"], true);
    assert_eq!(code, Some(0));
    let prefix = out
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert_eq!(prefix.len(), 16, "{out}");
    assert!(out.contains("active"), "{out}");
    let (code, out, _) = cli(&["sessions", "revoke", &prefix], true);
    assert_eq!(code, Some(0));
    assert!(out.contains("revoked"), "{out}");
    assert!(check("abcdef0123456789").contains("401"));
    // Every session of a user: this server times every session as uid 0
    // (no ERP), so user 7 has none; the command says so and who asked.
    let (code, out, err) = cli(&["sessions", "end-user", "7", "--by", "alice"], true);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("0 sessions of user 7 ended (asked by alice)"),
        "{out}"
    );
    let (code, _, err) = cli(&["sessions", "end-user", "seven"], true);
    assert_eq!(code, Some(2), "{err}");
    // An argument stays one path segment: `../../x` names no other route.
    let (code, _, err) = cli(&["sessions", "revoke", "../../settings"], true);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("is not a key prefix"), "{err}");
    // Values are stored canonically.
    let (code, out, err) = cli(
        &["settings", "set", "activity_session_timeout_key", " +0900 "],
        true,
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("\"configured\": \"900\""), "{out}");
    // Policy per group and per user: a preset, a rule, the report.
    let (code, out, err) = cli(
        &[
            "policy",
            "preset",
            "nist-aal3",
            "--for",
            "admin",
            "--by",
            "alice",
        ],
        true,
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("preset nist-aal3 applied to admin: idle 900 s, absolute 43200 s"),
        "{out}"
    );
    let (code, _, err) = cli(
        &["policy", "set", "user:7", "--exempt", "--login", "kiosk"],
        true,
    );
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = cli(
        &["policy", "set", "user:7", "--exempt", "--idle", "60"],
        true,
    );
    assert_eq!(code, Some(2), "clap refuses exempt with limits: {err}");
    let (code, _, err) = cli(&["policy", "set", "staff", "--idle", "60"], true);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not a rule subject"), "{err}");
    let (code, out, err) = cli(&["policy", "report"], true);
    assert_eq!(code, Some(0), "{err}");
    let row = |who: &str| {
        out.lines()
            .find(|l| l.starts_with(who))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        row("every internal user (default)").contains("15 min"),
        "{out}"
    );
    assert!(row("group admin").contains("15 min  12 h"), "{out}");
    assert!(row("user kiosk (uid 7)").contains("exempt"), "{out}");
    assert!(out.contains("pci-dss-4   PCI DSS 4.0, Req. 8.2.8"), "{out}");
    let (code, out, err) = cli(&["policy", "report", "--format", "json"], true);
    assert_eq!(code, Some(0), "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["lines"][1]["subject"], "admin");
    assert_eq!(json["lines"][1]["idle_s"], 900);
    assert_eq!(json["standards"].as_array().map(Vec::len), Some(6));
    let (code, _, err) = cli(&["policy", "report", "--format", "xml"], true);
    assert_eq!(code, Some(2), "{err}");
    let (code, out, err) = cli(&["policy", "unset", "user:7"], true);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("the rule of user:7 is removed"), "{out}");
    let (code, _, _) = cli(&["policy", "unset", "user:7"], true);
    assert_eq!(code, Some(1), "404: nothing to remove");
}
