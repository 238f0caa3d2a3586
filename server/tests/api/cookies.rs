//! The session cookie as the sidecar reads it against werkzeug 2.2.2 itself
//! (the version Odoo 17 and 18 pin; installed from PyPI into a venv under
//! target/ on first run): for the corpus of tricky headers
//! (`cookie-corpus.txt`) and for generated ones (quoting, escapes,
//! duplicates, non-ASCII, separators, empty parts, whitespace), the sidecar
//! must find the same session cookie as werkzeug, or refuse
//! (`Ambiguous`). Then, through the real app: a session that has ended is
//! refused by `auth` for every header of the corpus that carries it.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use session_timeout::cookie::{cookie_value, SessionId};

use crate::helpers::*;

const WERKZEUG: &str = "2.2.2";

/// A Python with werkzeug 2.2.2, made once per target folder.
fn werkzeug_python() -> Option<PathBuf> {
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("werkzeug-{WERKZEUG}"));
    let python = venv.join("bin/python");
    let ready = venv.join(".ready");
    if ready.exists() {
        return Some(python);
    }
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "-q",
                &format!("werkzeug=={WERKZEUG}"),
            ])
            .status()
            .is_ok_and(|s| s.success());
    if !made {
        return None;
    }
    std::fs::write(&ready, WERKZEUG).ok()?;
    Some(python)
}

/// werkzeug's reading of each header: `Some(value)` or `None` (no session_id).
fn werkzeug_reads(python: &PathBuf, headers: &[Vec<u8>]) -> Vec<Option<String>> {
    // WSGI hands Odoo the header as a latin-1 string; parse_cookie encodes it back.
    let script = r#"
import sys, json
from werkzeug.http import parse_cookie
for line in sys.stdin:
    raw = bytes.fromhex(line.strip())
    v = parse_cookie(raw.decode("latin1")).get("session_id")
    print(json.dumps(v))
"#;
    let mut child = Command::new(python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python runs");
    let mut input = String::new();
    for h in headers {
        input.push_str(&hex::encode(h));
        input.push('\n');
    }
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("python answers");
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "werkzeug script failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The corpus file: `\xNN` is a byte, `\\` a backslash.
pub fn corpus() -> Vec<Vec<u8>> {
    let text = include_str!("cookie-corpus.txt");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let b = l.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'\\' && b.get(i + 1) == Some(&b'\\') {
                    out.push(b'\\');
                    i += 2;
                } else if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') {
                    out.push(u8::from_str_radix(&l[i + 2..i + 4], 16).unwrap());
                    i += 4;
                } else if b[i] == b'\\' && b.get(i + 1) == Some(&b't') {
                    out.push(b'\t');
                    i += 2;
                } else {
                    out.push(b[i]);
                    i += 1;
                }
            }
            out
        })
        .collect()
}

/// Headers built from the pieces that make parsers disagree.
fn generated(n: usize, mut seed: u64) -> Vec<Vec<u8>> {
    let names: &[&[u8]] = &[
        b"session_id",
        b"session_id",
        b" session_id",
        b"session_id ",
        b"Session_id",
        b"x",
        b"a b",
        b"\"session_id\"",
        b"",
        b"session_id\t",
        b"\xe9",
        b"session_idx",
    ];
    let values: &[&[u8]] = &[
        b"abc",
        b"ENDED",
        b"",
        b" abc ",
        b"\"abc\"",
        b"\"a;b\"",
        b"\"a\\\"b\"",
        b"\"\\101bc\"",
        b"\"\\377\"",
        b"\"a\\",
        b"\"",
        b"a\"b",
        b"\xc3\xa9",
        b"\xff",
        b"\"a;session_id=DECOY\"",
        b"a=b",
        b"\"\\\\\"",
        b"\"\\\n\"",
        b"\x0b",
        b"a,b",
    ];
    let seps: &[&[u8]] = &[b"; ", b";", b";;", b" ; ", b",", b"; ;", b"\t;", b";\t"];
    let eqs: &[&[u8]] = &[b"=", b"=", b" = ", b"==", b""];
    let mut next = move |m: usize| {
        // xorshift64: the same headers on every run.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % m as u64) as usize
    };
    (0..n)
        .map(|_| {
            let mut h = Vec::new();
            for p in 0..1 + next(4) {
                if p > 0 {
                    h.extend_from_slice(seps[next(seps.len())]);
                }
                h.extend_from_slice(names[next(names.len())]);
                h.extend_from_slice(eqs[next(eqs.len())]);
                h.extend_from_slice(values[next(values.len())]);
            }
            h
        })
        .collect()
}

#[test]
fn the_sidecar_reads_the_session_cookie_as_werkzeug_does_or_refuses() {
    let Some(python) = werkzeug_python() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "werkzeug {WERKZEUG} could not be installed from PyPI (needed with CI=true)"
        );
        eprintln!("SKIPPED: the differential cookie test (python3 with venv and PyPI are needed for werkzeug {WERKZEUG})");
        return;
    };
    let mut headers = corpus();
    let from_corpus = headers.len();
    headers.extend(generated(20_000, 0x9e37_79b9_7f4a_7c15));
    let expected = werkzeug_reads(&python, &headers);
    assert_eq!(expected.len(), headers.len());
    let (mut same, mut refused, mut mismatches) = (0, 0, Vec::new());
    for (h, want) in headers.iter().zip(&expected) {
        let got = cookie_value(&[h.as_slice()], "session_id");
        // An empty value is no session to Odoo either (it starts a new one).
        let want = want.as_ref().filter(|v| !v.is_empty());
        match (&got, want) {
            // Refused only where werkzeug itself had to replace bytes that are not UTF-8.
            (SessionId::Ambiguous(_), Some(w)) if w.contains('\u{fffd}') => refused += 1,
            (SessionId::None, None) => same += 1,
            (SessionId::Found(v), Some(w)) if v.len() == 1 && &v[0] == w => same += 1,
            _ => mismatches.push(format!(
                "{:?}: sidecar {got:?}, werkzeug {want:?}",
                String::from_utf8_lossy(h)
            )),
        }
    }
    eprintln!(
        "{} headers ({from_corpus} from the corpus): {same} read as werkzeug does, {refused} refused as ambiguous",
        headers.len()
    );
    assert!(
        mismatches.is_empty(),
        "{} differences:\n{}",
        mismatches.len(),
        mismatches[..mismatches.len().min(20)].join("\n")
    );
    assert!(
        same > headers.len() * 9 / 10,
        "most headers are read, not refused ({same})"
    );
}

/// An app that times every session, with the session "ENDED" logged out.
async fn app_with_ended_session() -> TestApp {
    let app = spawn_with(Options {
        session_info_url: Some("none".into()),
        ..Default::default()
    })
    .await;
    let r = app
        .request(
            "POST",
            &app.api("logout"),
            Some("ENDED"),
            &[("Content-Type", "application/json")],
            Some("{}"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    app
}

/// Every corpus header that werkzeug reads as the ended session gets `401`
/// from `auth`, through the real app (bytes sent as they are).
#[actix_rt::test]
async fn an_ended_session_is_refused_however_its_cookie_is_written() {
    let app = app_with_ended_session().await;
    let url = app.api("auth");
    let client = awc::Client::builder().disable_redirects().finish();
    let mut checked = 0;
    for h in corpus() {
        if !h.windows(5).any(|w| w == b"ENDED") && !h.windows(4).any(|w| w == b"\\105") {
            continue;
        }
        // A control byte cannot travel in an HTTP header at all.
        let Ok(value) = awc::http::header::HeaderValue::from_bytes(&h) else {
            continue;
        };
        let resp = client
            .get(&url)
            .insert_header(("Cookie", value))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let read = cookie_value(&[h.as_slice()], "session_id");
        if read == SessionId::Found(vec!["ENDED".into()]) || matches!(read, SessionId::Ambiguous(_))
        {
            assert_eq!(
                status,
                401,
                "{:?} must be refused",
                String::from_utf8_lossy(&h)
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 12,
        "only {checked} corpus headers carry the ended session"
    );
}

/// Odoo 17 takes a session id from `?session_id=` and `X-Openerp-Session-Id`
/// before the cookie: an ended one there is refused too, whatever the cookie.
#[actix_rt::test]
async fn an_ended_session_id_in_the_query_or_the_odoo_header_is_refused() {
    let app = app_with_ended_session().await;
    let url = app.api("auth");
    type Case<'a> = (&'a str, Option<&'a str>, &'a [(&'a str, &'a str)]);
    let cases: [Case; 6] = [
        (
            "query",
            None,
            &[("X-Original-URI", "/web?session_id=ENDED")],
        ),
        (
            "query, encoded",
            None,
            &[("X-Forwarded-Uri", "/odoo?a=1&session%5Fid=END%45D")],
        ),
        (
            "query beside an active cookie",
            Some("ACTIVE"),
            &[("X-Original-URI", "/web/dataset/call_kw?session_id=ENDED")],
        ),
        ("Odoo's header", None, &[("X-Openerp-Session-Id", "ENDED")]),
        (
            "Odoo's header beside an active cookie",
            Some("ACTIVE"),
            &[("X-Openerp-Session-Id", "ENDED")],
        ),
        (
            "two Odoo headers",
            None,
            &[
                ("X-Openerp-Session-Id", "ACTIVE"),
                ("X-Openerp-Session-Id", "ACTIVE"),
            ],
        ),
    ];
    for (what, cookie, headers) in cases {
        let r = app.request("GET", &url, cookie, headers, None).await;
        assert_eq!(r.status, 401, "{what}: {}", r.text);
    }
    // The same with an active session id passes.
    for headers in [
        &[("X-Original-URI", "/web?session_id=ACTIVE")][..],
        &[("X-Openerp-Session-Id", "ACTIVE")][..],
        &[("X-Original-URI", "/web?session_id=&debug=1")][..],
    ] {
        let r = app
            .request("GET", &url, Some("ACTIVE"), headers, None)
            .await;
        assert_eq!(r.status, 204, "{headers:?}: {}", r.text);
    }
    // Envoy sends the original path and query on the auth route itself.
    let r = app
        .request(
            "GET",
            &format!("{url}/web?session_id=ENDED"),
            None,
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.text);
}
