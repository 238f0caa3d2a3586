//! Property tests over the request handling and the configuration: random
//! methods, paths, headers, cookies and bodies against the real app (in
//! process, real SQLite file), and random option values. No input may panic
//! the server; every refusal is a well-formed JSON error. `PROPTEST_CASES`
//! raises the number of cases (`make fuzz`).

use std::sync::Arc;

use actix_web::{test as atest, web, App};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use session_timeout::clock::ManualClock;
use session_timeout::config::RawOptions;
use session_timeout::{http, startup};

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default)
}

#[derive(Debug, Clone)]
struct Input {
    method: &'static str,
    path: String,
    content_type: Option<String>,
    cookie: Option<String>,
    origin: Option<String>,
    auth: Option<String>,
    body: Vec<u8>,
}

fn input() -> impl Strategy<Value = Input> {
    let routes = prop_oneof![
        Just("/session-timeout/api/v1/heartbeat".to_string()),
        Just("/session-timeout/api/v1/check".to_string()),
        Just("/session-timeout/api/v1/logout".to_string()),
        Just("/session-timeout/api/v1/auth".to_string()),
        Just("/session-timeout/api/v1/config".to_string()),
        Just("/session-timeout/api/v1/admin/settings".to_string()),
        Just("/session-timeout/api/v1/admin/sessions".to_string()),
        Just("/session-timeout/api/v1/admin/audit".to_string()),
        "/session-timeout/api/v1/admin/sessions/[0-9a-fz%]{0,70}/revoke",
        "/session-timeout/api/v1/auth(-redirect)?/[a-z0-9/._%-]{0,40}",
        "/session-timeout/[a-zA-Z0-9/._~%-]{0,60}",
        "/[a-zA-Z0-9/._~%-]{0,60}",
    ];
    let query = prop_oneof![Just(String::new()), "\\?[a-z_=&0-9%-]{0,40}"];
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        Just(br#"{"idle_ms":0}"#.to_vec()),
        "\\{\"idle_ms\":-?[0-9e.]{0,25}\\}".prop_map(String::into_bytes),
        "\\{\"activity_session_timeout_key\":(\"[^\"]{0,12}\"|-?[0-9]{0,22}|true|null|\\[\\])\\}"
            .prop_map(String::into_bytes),
        "[{}\\[\\]\":,a-z0-9 ]{0,80}".prop_map(String::into_bytes),
        (1000usize..3000).prop_map(|n| vec![b'x'; n]),
    ];
    (
        prop::sample::select(vec![
            "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS",
        ]),
        routes,
        query,
        prop::option::of(prop_oneof![
            Just("application/json".to_string()),
            "[a-z/;= -]{0,30}"
        ]),
        prop::option::of("[ -~]{0,60}"),
        prop::option::of(prop_oneof![
            Just("http://localhost:8080".to_string()),
            "[ -~]{0,30}"
        ]),
        prop::option::of(prop_oneof![
            Just("Bearer fuzz-admin-token-0123456789".to_string()),
            "[ -~]{0,40}"
        ]),
        body,
    )
        .prop_map(
            |(method, path, query, content_type, cookie, origin, auth, body)| Input {
                method,
                path: path + &query,
                content_type,
                cookie,
                origin,
                auth,
                body,
            },
        )
}

#[test]
fn random_requests_never_panic_and_errors_are_json() {
    let sys = actix_rt::System::new();
    let tmp = tempfile::tempdir().unwrap();
    let raw = RawOptions {
        db: Some(tmp.path().join("f.db").display().to_string()),
        session_info_url: Some("none".into()),
        timeout: Some("60".into()),
        ..Default::default()
    };
    let mut settings = raw.resolve("127.0.0.1:0").unwrap();
    settings.admin_token = Some("fuzz-admin-token-0123456789".into());
    let clock = Arc::new(ManualClock::new());
    let state = sys
        .block_on(startup::open_state(&settings, clock.clone()))
        .unwrap();
    let app = {
        let state = state.clone();
        sys.block_on(atest::init_service(
            App::new()
                .app_data(state.clone())
                .configure(move |c| http::configure(c, state))
                .default_service(web::to(http::not_found)),
        ))
    };
    let mut runner = TestRunner::new(Config {
        cases: cases(512),
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&input(), |inp| {
            let mut req = atest::TestRequest::default()
                .method(inp.method.parse().unwrap())
                .uri(&inp.path)
                .insert_header(("Host", "localhost:8080"));
            for (name, value) in [
                ("Content-Type", &inp.content_type),
                ("Origin", &inp.origin),
                ("Authorization", &inp.auth),
            ] {
                if let Some(v) = value {
                    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(v) {
                        req = req.insert_header((name, v));
                    }
                }
            }
            if let Some(c) = &inp.cookie {
                if let Ok(v) =
                    actix_web::http::header::HeaderValue::from_str(&format!("session_id={c}"))
                {
                    req = req.insert_header(("Cookie", v));
                }
            }
            let req = req.set_payload(inp.body.clone()).to_request();
            let resp = sys.block_on(atest::call_service(&app, req));
            let status = resp.status();
            let body = sys.block_on(atest::read_body(resp));
            clock.advance_ms(997);
            prop_assert!(
                status.as_u16() < 500 || status.as_u16() == 503,
                "{inp:?} -> {status}"
            );
            if (status.is_client_error() || status.is_server_error()) && inp.method != "HEAD" {
                let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
                    TestCaseError::fail(format!(
                        "{inp:?} -> {status}: body is not JSON ({e}): {}",
                        String::from_utf8_lossy(&body)
                    ))
                })?;
                prop_assert!(
                    v["error"].is_string() && v["message"].is_string(),
                    "{inp:?} -> {status}: {v}"
                );
            }
            Ok(())
        })
        .unwrap();
    // The server is still healthy after all of that.
    let resp = sys.block_on(atest::call_service(
        &app,
        atest::TestRequest::get()
            .uri("/session-timeout/healthz")
            .to_request(),
    ));
    assert_eq!(resp.status(), 200);
    state.sessions.store.close();
}

#[test]
fn random_configuration_values_are_accepted_or_refused_with_the_field_named() {
    let mut runner = TestRunner::new(Config {
        cases: cases(2000),
        failure_persistence: None,
        ..Config::default()
    });
    let value = prop::option::of(prop_oneof![
        "[ -~]{0,24}",
        "-?[0-9]{1,24}",
        Just(String::new())
    ]);
    // Every key of the configuration but the one that needs another
    // (`erp_settings_url` needs a token, and the error names the token).
    let keys: Vec<String> = session_timeout::config::known_keys()
        .into_iter()
        .filter(|k| k != "erp_settings_url")
        .collect();
    let strategy = (0usize..keys.len(), value);
    runner
        .run(&strategy, |(field, v)| {
            let name = keys[field].as_str();
            let mut m = serde_json::Map::new();
            m.insert("session_info_url".into(), "none".into());
            if let Some(v) = &v {
                m.insert(name.into(), serde_json::Value::String(v.clone()));
            }
            let o: RawOptions = serde_json::from_value(serde_json::Value::Object(m)).unwrap();
            match o.resolve("127.0.0.1:0") {
                Ok(_) => {}
                Err(e) => {
                    prop_assert_eq!(
                        e.field.clone(),
                        format!("--{}", name.replace('_', "-")),
                        "{:?}",
                        v
                    );
                    prop_assert!(e.to_string().len() > e.field.len() + 10, "{}", e);
                }
            }
            Ok(())
        })
        .unwrap();
}
