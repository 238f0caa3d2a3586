//! Configuration: raw values from flags, environment variables and an
//! optional TOML file, validated once into typed `Settings`. An invalid value
//! is reported with the field's name and the accepted range.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::policy;

/// The raw options shared by `serve` and `demo`, each declared once: clap
/// reads it from a flag or the environment, serde from the config file (its
/// keys are the field names). Every field is optional so that a config file
/// can fill what flags and the environment leave out.
#[derive(clap::Args, Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOptions {
    /// TOML file with any of the options below (keys as the flag names with `_`).
    #[arg(long, env = "SESSION_TIMEOUT_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8390, demo: 127.0.0.1:8080].
    #[arg(long, env = "SESSION_TIMEOUT_BIND")]
    pub bind: Option<String>,
    /// SQLite database file [default: data/session-timeout.db].
    #[arg(long, env = "SESSION_TIMEOUT_DB")]
    pub db: Option<String>,
    /// PostgreSQL database shared by several replicas, instead of --db: a URL such as
    /// postgres://session_timeout:PASSWORD@db.internal/erp or a key=value string such as
    /// `host=/run/postgresql dbname=erp user=session_timeout`. Needs --secret-file.
    #[arg(long, env = "SESSION_TIMEOUT_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Idle timeout in seconds, 1 to 2592000; stored as `activity_session_timeout_key`
    /// [default: the stored value, else 300].
    #[arg(long, env = "SESSION_TIMEOUT_TIMEOUT", allow_hyphen_values = true)]
    pub timeout: Option<String>,
    /// Absolute session lifetime in seconds, 0 (off) or 60 to 2592000 [default: the stored value, else 0].
    #[arg(
        long,
        env = "SESSION_TIMEOUT_ABSOLUTE_LIFETIME",
        allow_hyphen_values = true
    )]
    pub absolute_lifetime: Option<String>,
    /// Seconds before the logout to show a non-modal notice with a "Stay signed in" button in
    /// the page, 0 (off) to 86400, at most half the timeout in effect; stored as `warn_before_s`
    /// [default: the stored value, else 0].
    #[arg(long, env = "SESSION_TIMEOUT_WARN_BEFORE", allow_hyphen_values = true)]
    pub warn_before: Option<String>,
    /// Path prefix of every sidecar route [default: /session-timeout].
    #[arg(long, env = "SESSION_TIMEOUT_BASE_PATH")]
    pub base_path: Option<String>,
    /// Name of the ERP's session cookie [default: session_id].
    #[arg(long, env = "SESSION_TIMEOUT_COOKIE_NAME")]
    pub cookie_name: Option<String>,
    /// ERP URL answering who owns a session (Odoo JSON-RPC), or `none` to time every session
    /// [default: http://127.0.0.1:8069/web/session/get_session_info].
    #[arg(long, env = "SESSION_TIMEOUT_SESSION_INFO_URL")]
    pub session_info_url: Option<String>,
    /// ERP login page [default: /web/login].
    #[arg(long, env = "SESSION_TIMEOUT_LOGIN_URL")]
    pub login_url: Option<String>,
    /// ERP logout URL that destroys the session and lands on the login page
    /// [default: /web/session/logout?redirect=%2Fweb%2Flogin].
    #[arg(long, env = "SESSION_TIMEOUT_LOGOUT_URL")]
    pub logout_url: Option<String>,
    /// Longest wait before heartbeats are committed together, 1 to 5000 ms [default: 250].
    #[arg(
        long,
        env = "SESSION_TIMEOUT_COMMIT_WINDOW_MS",
        allow_hyphen_values = true
    )]
    pub commit_window_ms: Option<String>,
    /// Days to keep rows of ended sessions, 1 to 3650 (the audit log is kept) [default: 30].
    #[arg(
        long,
        env = "SESSION_TIMEOUT_RETENTION_DAYS",
        allow_hyphen_values = true
    )]
    pub retention_days: Option<String>,
    /// Seconds before a public session is looked up again, 1 to 86400 [default: 30].
    #[arg(
        long,
        env = "SESSION_TIMEOUT_PUBLIC_RECHECK_S",
        allow_hyphen_values = true
    )]
    pub public_recheck_s: Option<String>,
    /// Timeout of a lookup at the ERP, 50 to 60000 ms [default: 2000].
    #[arg(
        long,
        env = "SESSION_TIMEOUT_LOOKUP_TIMEOUT_MS",
        allow_hyphen_values = true
    )]
    pub lookup_timeout_ms: Option<String>,
    /// File holding the admin API bearer token (or set SESSION_TIMEOUT_ADMIN_TOKEN).
    /// Without a token the admin routes are off.
    #[arg(long, env = "SESSION_TIMEOUT_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// File holding the server secret [default: the database path + `.secret`].
    #[arg(long, env = "SESSION_TIMEOUT_SECRET_FILE")]
    pub secret_file: Option<PathBuf>,
    /// HTTP worker threads, 1 to 64 [default: number of CPUs].
    #[arg(long, env = "SESSION_TIMEOUT_WORKERS", allow_hyphen_values = true)]
    pub workers: Option<String>,
    /// The ERP route holding the idle timeout (the Odoo addon's
    /// http://127.0.0.1:8069/session_timeout/settings). When set, the ERP's setting
    /// `activity_session_timeout_key` is the one source of truth: it is read every
    /// --erp-settings-interval-ms, and the admin API and CLI refuse to change it.
    #[arg(long, env = "SESSION_TIMEOUT_ERP_SETTINGS_URL")]
    pub erp_settings_url: Option<String>,
    /// File holding the token sent to --erp-settings-url (or set SESSION_TIMEOUT_ERP_TOKEN);
    /// the same value as `session_timeout_token` in odoo.conf.
    #[arg(long, env = "SESSION_TIMEOUT_ERP_TOKEN_FILE")]
    pub erp_token_file: Option<PathBuf>,
    /// How often the ERP's setting is read, 200 to 600000 ms [default: 2000].
    #[arg(
        long,
        env = "SESSION_TIMEOUT_ERP_SETTINGS_INTERVAL_MS",
        allow_hyphen_values = true
    )]
    pub erp_settings_interval_ms: Option<String>,
}

impl Settings {
    /// The database for messages: the SQLite file, or the PostgreSQL URL
    /// without its password.
    pub fn database_label(&self) -> String {
        match &self.database_url {
            Some(url) => crate::store::redact_url(url),
            None => self.db.display().to_string(),
        }
    }
}

/// Where the idle timeout comes from when the ERP owns it.
#[derive(Debug, Clone)]
pub struct ErpSettings {
    pub url: String,
    pub token: String,
    pub interval: Duration,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bind: SocketAddr,
    pub db: PathBuf,
    /// Set when several replicas share a PostgreSQL database (`db` unused).
    pub database_url: Option<String>,
    pub secret_file: PathBuf,
    /// The timeout given in the configuration, which overrides the stored one.
    pub timeout_s: Option<u64>,
    /// The absolute lifetime given in the configuration (`Some(None)`: off).
    pub absolute_lifetime_s: Option<Option<u64>>,
    /// The notice's lead given in the configuration.
    pub warn_before_s: Option<u64>,
    pub base_path: String,
    pub cookie_name: String,
    pub session_info_url: Option<String>,
    pub login_url: String,
    pub logout_url: String,
    pub commit_window: Duration,
    pub retention: Duration,
    pub public_recheck: Duration,
    pub lookup_timeout: Duration,
    pub admin_token: Option<String>,
    pub workers: usize,
    pub sweep_interval: Duration,
    /// Set when the ERP owns the idle timeout (`--erp-settings-url`).
    pub erp_settings: Option<ErpSettings>,
}

/// A configuration value that cannot be used; printed as is, exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("invalid {field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

fn err(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: format!("--{}", field.replace('_', "-")),
        message: message.into(),
    }
}

/// Every key of the configuration file (the flag names with `_`), from the
/// one declaration of the options above.
pub fn known_keys() -> Vec<String> {
    match serde_json::to_value(RawOptions::default()) {
        Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

impl RawOptions {
    /// Fills unset options from the config file, if one is named. Flags and
    /// the environment (already in `self`) win over the file.
    fn merge_file(self) -> Result<RawOptions, ConfigError> {
        let Some(path) = self.config.clone() else {
            return Ok(self);
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| err("config", format!("cannot read {}: {e}", path.display())))?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| {
            err(
                "config",
                format!("{} is not valid TOML: {e}", path.display()),
            )
        })?;
        let known = known_keys();
        let mut file = serde_json::Map::new();
        for (k, v) in table {
            if !known.contains(&k) {
                return Err(err(
                    "config",
                    format!(
                        "{}: unknown key `{k}` (known: {})",
                        path.display(),
                        known.join(", ")
                    ),
                ));
            }
            let s = match v {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                other => {
                    return Err(err(
                        &k,
                        format!(
                            "in {}: expected a string or an integer, got {}",
                            path.display(),
                            other.type_str()
                        ),
                    ))
                }
            };
            file.insert(k, serde_json::Value::String(s));
        }
        // Flags and environment over the file, key by key.
        let internal = |e: serde_json::Error| err("config", format!("{}: {e}", path.display()));
        let mut merged = match serde_json::to_value(&self).map_err(internal)? {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        for (k, v) in file {
            if merged.get(&k).is_none_or(serde_json::Value::is_null) {
                merged.insert(k, v);
            }
        }
        let mut out: RawOptions =
            serde_json::from_value(serde_json::Value::Object(merged)).map_err(internal)?;
        out.config = self.config;
        Ok(out)
    }

    /// Validates everything. `default_bind` differs between `serve` and `demo`.
    pub fn resolve(self, default_bind: &str) -> Result<Settings, ConfigError> {
        let o = self.merge_file()?;
        let bind_raw = o.bind.as_deref().unwrap_or(default_bind);
        let bind: SocketAddr = bind_raw.parse().map_err(|_| {
            err(
                "bind",
                format!("`{bind_raw}` is not an address:port such as 127.0.0.1:8390"),
            )
        })?;
        let db = PathBuf::from(o.db.as_deref().unwrap_or("data/session-timeout.db"));
        if db.as_os_str().is_empty() {
            return Err(err("db", "the database path is empty"));
        }
        let database_url = match o.database_url.as_deref().map(str::trim) {
            None => None,
            Some("") => return Err(err("database_url", "the PostgreSQL URL is empty")),
            Some(_) if o.db.is_some() => {
                return Err(err(
                    "database_url",
                    "give either --db (one server on SQLite) or --database-url (replicas on \
                     PostgreSQL), not both",
                ))
            }
            Some(_) if o.secret_file.is_none() => {
                return Err(err(
                    "database_url",
                    "replicas sharing a PostgreSQL database must share one secret: give \
                     --secret-file, a file with the same content on every replica",
                ))
            }
            Some(url) => Some(url.to_string()),
        };
        let timeout_s = o
            .timeout
            .as_deref()
            .map(policy::parse_timeout)
            .transpose()
            .map_err(|e| err("timeout", e.to_string()))?;
        let absolute_lifetime_s = o
            .absolute_lifetime
            .as_deref()
            .map(policy::parse_lifetime)
            .transpose()
            .map_err(|e| err("absolute_lifetime", format!("{e}; 0 turns it off")))?;
        let warn_before_s = o
            .warn_before
            .as_deref()
            .map(|w| policy::parse_seconds(w, 0, crate::settings::MAX_WARN_BEFORE_S))
            .transpose()
            .map_err(|e| err("warn_before", format!("{e}; 0 turns the notice off")))?;
        let base_path = o.base_path.unwrap_or_else(|| "/session-timeout".into());
        check_base_path(&base_path)?;
        let cookie_name = o.cookie_name.unwrap_or_else(|| "session_id".into());
        if cookie_name.is_empty()
            || cookie_name.len() > 128
            || !cookie_name.bytes().all(is_token_byte)
        {
            return Err(err("cookie_name", format!("`{cookie_name}` is not a cookie name (1 to 128 letters, digits or !#$%&'*+-.^_`|~)")));
        }
        let session_info_url = match o.session_info_url.as_deref() {
            None => Some("http://127.0.0.1:8069/web/session/get_session_info".to_string()),
            Some("none") => None,
            Some(u) if (u.starts_with("http://") || u.starts_with("https://")) && u.len() > 8 => {
                Some(u.to_string())
            }
            Some(u) => {
                return Err(err(
                    "session_info_url",
                    format!("`{u}` is not an http:// or https:// URL (or `none`)"),
                ))
            }
        };
        if session_info_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
        {
            return Err(err("session_info_url", "https is not supported for the ERP lookup; point it at the ERP's internal http address"));
        }
        let login_url = o.login_url.unwrap_or_else(|| "/web/login".into());
        check_url("login_url", &login_url)?;
        let logout_url = o
            .logout_url
            .unwrap_or_else(|| "/web/session/logout?redirect=%2Fweb%2Flogin".into());
        check_url("logout_url", &logout_url)?;
        let commit_window = Duration::from_millis(number(
            &o.commit_window_ms,
            "commit_window_ms",
            1,
            5000,
            250,
        )?);
        let retention =
            Duration::from_secs(number(&o.retention_days, "retention_days", 1, 3650, 30)? * 86_400);
        let public_recheck = Duration::from_secs(number(
            &o.public_recheck_s,
            "public_recheck_s",
            1,
            86_400,
            30,
        )?);
        let lookup_timeout = Duration::from_millis(number(
            &o.lookup_timeout_ms,
            "lookup_timeout_ms",
            50,
            60_000,
            2000,
        )?);
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get() as u64)
            .unwrap_or(2);
        let workers = number(&o.workers, "workers", 1, 64, cpus.min(64))? as usize;
        let admin_token = read_admin_token(o.admin_token_file.as_deref())?;
        let erp_settings = match o.erp_settings_url.as_deref() {
            None => None,
            Some(url) => {
                if !url.starts_with("http://")
                    || url.len() <= 8
                    || url.bytes().any(|b| b.is_ascii_control() || b == b' ')
                {
                    return Err(err(
                        "erp_settings_url",
                        format!("`{url}` is not an http:// URL (the ERP's internal address, e.g. http://127.0.0.1:8069/session_timeout/settings)"),
                    ));
                }
                if timeout_s.is_some() {
                    return Err(err(
                        "timeout",
                        "the idle timeout is set in the ERP when --erp-settings-url is given (Odoo: General Settings, Session timeout); remove --timeout",
                    ));
                }
                let interval = Duration::from_millis(number(
                    &o.erp_settings_interval_ms,
                    "erp_settings_interval_ms",
                    200,
                    600_000,
                    2000,
                )?);
                let token = read_token(
                    o.erp_token_file.as_deref(),
                    "erp_token_file",
                    "SESSION_TIMEOUT_ERP_TOKEN",
                )?
                .ok_or_else(|| {
                    err(
                        "erp_token_file",
                        "--erp-settings-url needs a token: --erp-token-file or SESSION_TIMEOUT_ERP_TOKEN (the value of session_timeout_token in odoo.conf)",
                    )
                })?;
                Some(ErpSettings {
                    url: url.to_string(),
                    token,
                    interval,
                })
            }
        };
        let secret_file = o.secret_file.unwrap_or_else(|| {
            let mut s = db.clone().into_os_string();
            s.push(".secret");
            PathBuf::from(s)
        });
        Ok(Settings {
            bind,
            db,
            database_url,
            secret_file,
            timeout_s,
            absolute_lifetime_s,
            warn_before_s,
            base_path,
            cookie_name,
            session_info_url,
            login_url,
            logout_url,
            commit_window,
            retention,
            public_recheck,
            lookup_timeout,
            admin_token,
            workers,
            // Expiries are decided when a session is asked about; the sweep
            // only records the ones nobody asked about (at their deadline).
            sweep_interval: Duration::from_secs(2),
            erp_settings,
        })
    }
}

fn number(
    raw: &Option<String>,
    field: &str,
    min: u64,
    max: u64,
    default: u64,
) -> Result<u64, ConfigError> {
    match raw {
        None => Ok(default),
        Some(s) => policy::parse_seconds(s, min, max).map_err(|e| {
            // parse_seconds speaks of seconds; say the field's own unit.
            let unit = field.rsplit('_').next().unwrap_or("");
            err(
                field,
                e.to_string()
                    .replace("seconds", unit)
                    .replace("whole number of seconds", "whole number"),
            )
        }),
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn check_base_path(p: &str) -> Result<(), ConfigError> {
    let ok = p.starts_with('/')
        && p.len() > 1
        && !p.ends_with('/')
        && !p.contains("//")
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(err("base_path", format!("`{p}` must start with `/`, not end with `/`, and use only letters, digits, `-`, `_`, `.`")))
    }
}

/// The login and logout URLs are where browsers are sent: paths of the
/// ERP's own origin only. No `//` (another host to a browser), no backslash
/// (browsers read `/\\host` as `//host`), nothing but visible ASCII.
fn check_url(field: &str, u: &str) -> Result<(), ConfigError> {
    let ok = u.starts_with('/')
        && !u.starts_with("//")
        && u.len() <= 2048
        && u.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'\\' && b != b'"');
    if ok {
        Ok(())
    } else {
        Err(err(field, format!("`{u}` must be a path of the ERP's own site starting with one `/` (no `//`, backslash, space, quote or control character)")))
    }
}

fn read_admin_token(file: Option<&Path>) -> Result<Option<String>, ConfigError> {
    read_token(file, "admin_token_file", "SESSION_TIMEOUT_ADMIN_TOKEN")
}

/// A bearer token from a file or, without one, from an environment variable;
/// at least 16 characters.
fn read_token(file: Option<&Path>, field: &str, env: &str) -> Result<Option<String>, ConfigError> {
    let token = match file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .map_err(|e| err(field, format!("cannot read {}: {e}", f.display())))?
                .trim()
                .to_string(),
        ),
        None => std::env::var(env).ok().map(|t| t.trim().to_string()),
    };
    match token {
        Some(t) if t.len() < 16 => Err(ConfigError {
            field: if file.is_some() {
                format!("--{}", field.replace('_', "-"))
            } else {
                env.to_string()
            },
            message:
                "the token must be at least 16 characters long (use e.g. `openssl rand -hex 32`)"
                    .into(),
        }),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests;
