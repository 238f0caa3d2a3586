use super::*;

fn raw() -> RawOptions {
    RawOptions {
        session_info_url: Some("none".into()),
        ..Default::default()
    }
}

#[test]
fn defaults() {
    let s = raw().resolve("127.0.0.1:8390").unwrap();
    assert_eq!(s.base_path, "/session-timeout");
    assert_eq!(s.cookie_name, "session_id");
    assert_eq!(s.timeout_s, None);
    assert_eq!(s.commit_window, Duration::from_millis(250));
    assert_eq!(
        s.secret_file,
        PathBuf::from("data/session-timeout.db.secret")
    );
}

#[test]
fn invalid_values_name_the_field_and_range() {
    let cases: Vec<(RawOptions, &str, &str)> = vec![
        (
            RawOptions {
                timeout: Some("0".into()),
                ..raw()
            },
            "--timeout",
            "accepted: 1 to 2592000",
        ),
        (
            RawOptions {
                timeout: Some("abc".into()),
                ..raw()
            },
            "--timeout",
            "not a whole number",
        ),
        (
            RawOptions {
                bind: Some("nowhere".into()),
                ..raw()
            },
            "--bind",
            "address:port",
        ),
        (
            RawOptions {
                database_url: Some("postgres://st@db/st".into()),
                db: Some("data/x.db".into()),
                secret_file: Some("s".into()),
                ..raw()
            },
            "--database-url",
            "not both",
        ),
        (
            RawOptions {
                database_url: Some("postgres://st@db/st".into()),
                ..raw()
            },
            "--database-url",
            "give --secret-file",
        ),
        (
            RawOptions {
                database_url: Some("  ".into()),
                ..raw()
            },
            "--database-url",
            "is empty",
        ),
        (
            RawOptions {
                base_path: Some("x/".into()),
                ..raw()
            },
            "--base-path",
            "must start with",
        ),
        (
            RawOptions {
                cookie_name: Some("a b".into()),
                ..raw()
            },
            "--cookie-name",
            "cookie name",
        ),
        (
            RawOptions {
                commit_window_ms: Some("0".into()),
                ..raw()
            },
            "--commit-window-ms",
            "accepted: 1 to 5000 ms",
        ),
        (
            RawOptions {
                logout_url: Some("javascript:alert(1)".into()),
                ..raw()
            },
            "--logout-url",
            "must be a path",
        ),
        (
            RawOptions {
                logout_url: Some("/\\evil.example".into()),
                ..raw()
            },
            "--logout-url",
            "must be a path",
        ),
        (
            RawOptions {
                logout_url: Some("//evil.example".into()),
                ..raw()
            },
            "--logout-url",
            "must be a path",
        ),
        (
            RawOptions {
                logout_url: Some("https://evil.example/".into()),
                ..raw()
            },
            "--logout-url",
            "must be a path",
        ),
        (
            RawOptions {
                logout_url: Some("/a b".into()),
                ..raw()
            },
            "--logout-url",
            "must be a path",
        ),
        (
            RawOptions {
                logout_url: Some("/\tx".into()),
                ..raw()
            },
            "--logout-url",
            "must be a path",
        ),
        (
            RawOptions {
                login_url: Some("/\\\\evil".into()),
                ..raw()
            },
            "--login-url",
            "must be a path",
        ),
        (
            RawOptions {
                absolute_lifetime: Some("10".into()),
                ..raw()
            },
            "--absolute-lifetime",
            "0 turns it off",
        ),
    ];
    for (o, field, needle) in cases {
        let e = o.resolve("127.0.0.1:1").unwrap_err();
        assert_eq!(e.field, field);
        assert!(e.to_string().contains(needle), "{e}");
    }
}

#[test]
fn the_erp_owns_the_timeout_with_a_token_and_without_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("erp-token");
    std::fs::write(&token, "0123456789abcdef0123\n").unwrap();
    let erp = |url: &str| RawOptions {
        erp_settings_url: Some(url.into()),
        erp_token_file: Some(token.clone()),
        ..raw()
    };
    let s = erp("http://127.0.0.1:8069/session_timeout/settings")
        .resolve("127.0.0.1:1")
        .unwrap();
    let e = s.erp_settings.unwrap();
    assert_eq!(e.token, "0123456789abcdef0123");
    assert_eq!(e.interval, Duration::from_secs(2));
    let cases = [
        (
            erp("https://erp/x"),
            "--erp-settings-url",
            "not an http:// URL",
        ),
        (
            RawOptions {
                timeout: Some("600".into()),
                ..erp("http://127.0.0.1:8069/session_timeout/settings")
            },
            "--timeout",
            "set in the ERP",
        ),
        (
            RawOptions {
                erp_token_file: Some(dir.path().join("missing")),
                ..erp("http://127.0.0.1:8069/x")
            },
            "--erp-token-file",
            "cannot read",
        ),
        (
            RawOptions {
                erp_settings_interval_ms: Some("50".into()),
                ..erp("http://127.0.0.1:8069/x")
            },
            "--erp-settings-interval-ms",
            "200 to 600000",
        ),
    ];
    for (o, field, needle) in cases {
        let e = o.resolve("127.0.0.1:1").unwrap_err();
        assert_eq!(e.field, field);
        assert!(e.to_string().contains(needle), "{e}");
    }
    std::fs::write(&token, "short").unwrap();
    let e = erp("http://127.0.0.1:8069/x")
        .resolve("127.0.0.1:1")
        .unwrap_err();
    assert_eq!(e.field, "--erp-token-file");
    assert!(e.to_string().contains("at least 16"), "{e}");
}

#[test]
fn config_file_fills_unset_values_and_rejects_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    std::fs::write(&f, "timeout = 600\ncookie_name = \"sid\"\n").unwrap();
    let s = RawOptions {
        config: Some(f.clone()),
        cookie_name: Some("flag_wins".into()),
        ..raw()
    }
    .resolve("127.0.0.1:1")
    .unwrap();
    assert_eq!(s.timeout_s, Some(600));
    assert_eq!(s.cookie_name, "flag_wins");
    std::fs::write(&f, "timeuot = 600\n").unwrap();
    let e = RawOptions {
        config: Some(f),
        ..raw()
    }
    .resolve("127.0.0.1:1")
    .unwrap_err();
    assert!(e.to_string().contains("unknown key `timeuot`"), "{e}");
}

#[test]
fn every_flag_is_a_config_file_key_and_nothing_else_is() {
    use clap::Args as _;
    let cmd = RawOptions::augment_args(clap::Command::new("t"));
    let mut flags: Vec<String> = cmd
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .filter(|id| id != "config")
        .collect();
    let mut keys = known_keys();
    flags.sort();
    keys.sort();
    assert_eq!(flags, keys);
    assert!(keys.contains(&"erp_settings_url".to_string()));
}
