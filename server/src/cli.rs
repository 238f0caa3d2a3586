//! `session-timeout settings ...`, `sessions ...` and `policy ...`: a
//! client of the running sidecar's admin API, so that every change takes
//! effect at once in the process that enforces it.

use std::path::PathBuf;
use std::time::Duration;

use crate::settings::{LIFETIME_KEY, TIMEOUT_KEY, WARN_KEY};

#[derive(clap::Args, Debug, Clone)]
pub struct ClientOptions {
    /// Base URL of the running sidecar.
    #[arg(
        long,
        global = true,
        env = "SESSION_TIMEOUT_URL",
        default_value = "http://127.0.0.1:8390/session-timeout"
    )]
    pub url: String,
    /// File holding the admin token (or set SESSION_TIMEOUT_ADMIN_TOKEN).
    #[arg(long, global = true, env = "SESSION_TIMEOUT_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
}

#[derive(clap::Subcommand, Debug)]
pub enum SettingsCmd {
    /// Print the configured and effective settings.
    Get,
    /// Change a setting (takes effect at once, no restart):
    /// `activity_session_timeout_key` (seconds, 1 to 2592000) or `absolute_lifetime_s` (0 = off, 60 to 2592000).
    Set { name: String, value: String },
}

#[derive(clap::Subcommand, Debug)]
pub enum SessionsCmd {
    /// List sessions, most recently active first.
    List {
        /// all, active, exempt or ended.
        #[arg(long, default_value = "all")]
        state: String,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// End a session now (reason `revoked`), by the key prefix `list` shows.
    Revoke { key_prefix: String },
    /// End every open session of one ERP user now (a lost or stolen device); audited with who asked.
    EndUser {
        /// The ERP user id (`UID` in `list`).
        uid: i32,
        /// Who asks, for the audit log [default: the OS user running the command].
        #[arg(long)]
        by: Option<String>,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum PolicyCmd {
    /// Print the default policy and the rules per group and per user in force.
    Show,
    /// Set the rule of one subject: `admin` or `system` (the ERP's is_admin and
    /// is_system) or `user:UID`; the strictest matching rule wins per limit.
    Set {
        subject: String,
        /// Idle timeout in seconds.
        #[arg(long)]
        idle: Option<u64>,
        /// Absolute lifetime in seconds.
        #[arg(long)]
        absolute: Option<u64>,
        /// Never log this user out (`user:UID` only; audited, shown in the report).
        #[arg(long, conflicts_with_all = ["idle", "absolute"])]
        exempt: bool,
        /// The user's login, shown in the report.
        #[arg(long)]
        login: Option<String>,
        /// Who asks, for the audit log [default: the OS user].
        #[arg(long)]
        by: Option<String>,
    },
    /// Remove the rule of one subject.
    Unset {
        subject: String,
        #[arg(long)]
        by: Option<String>,
    },
    /// Apply a compliance preset (pci-dss-4, nist-aal2, nist-aal3, owasp-high,
    /// owasp-low, psd2) to the default or to one subject, in one step.
    Preset {
        name: String,
        /// `default` (the global timeout and lifetime), `admin`, `system` or `user:UID`.
        #[arg(long = "for", default_value = "default")]
        subject: String,
        #[arg(long)]
        by: Option<String>,
    },
    /// Each group and exempt user with its effective limits, and for each
    /// standard whether it is met, with the clause.
    Report {
        /// table or json.
        #[arg(long, default_value = "table")]
        format: String,
    },
}

/// Who runs the command, for the audit log.
fn os_user() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    format!("{user}@{} (session-timeout CLI)", host.trim())
}

/// Percent-encodes everything but unreserved characters, so an argument
/// stays one path segment (`../../x` is not a path to another route).
fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) && !(s == "." || s == "..") {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A failed CLI command: the message and the exit code.
pub struct Failure(pub String, pub i32);

fn token(opts: &ClientOptions) -> Result<String, Failure> {
    let t = match &opts.admin_token_file {
        Some(f) => std::fs::read_to_string(f)
            .map_err(|e| Failure(format!("cannot read {}: {e}", f.display()), 2))?,
        None => std::env::var("SESSION_TIMEOUT_ADMIN_TOKEN").map_err(|_| {
            Failure(
                "set SESSION_TIMEOUT_ADMIN_TOKEN or pass --admin-token-file".into(),
                2,
            )
        })?,
    };
    Ok(t.trim().to_string())
}

async fn call(
    opts: &ClientOptions,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<serde_json::Value, Failure> {
    let token = token(opts)?;
    let url = format!("{}{path}", opts.url.trim_end_matches('/'));
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish();
    let req = match method {
        "GET" => client.get(&url),
        "PUT" => client.put(&url),
        "DELETE" => client.delete(&url),
        _ => client.post(&url),
    }
    .insert_header(("Authorization", format!("Bearer {token}")));
    let sent = match body {
        Some(b) => req.send_json(&b).await,
        None => {
            req.insert_header(("Content-Type", "application/json"))
                .send()
                .await
        }
    };
    let mut resp =
        sent.map_err(|e| Failure(format!("cannot reach the sidecar at {url}: {e}"), 1))?;
    let status = resp.status();
    let bytes = resp
        .body()
        .limit(64 * 1024 * 1024)
        .await
        .map_err(|e| Failure(format!("unreadable answer from {url}: {e}"), 1))?;
    let json: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| {
        Failure(
            format!("{url} answered HTTP {status} with a body that is not JSON"),
            1,
        )
    })?;
    if status.is_success() {
        Ok(json)
    } else {
        let msg = json
            .get("message")
            .and_then(|m| m.as_str())
            .unwrap_or("(no message)");
        // Refused input is the caller's mistake (exit 2); the rest is the server's.
        let code = if status.is_client_error() && status.as_u16() != 401 && status.as_u16() != 404 {
            2
        } else {
            1
        };
        Err(Failure(format!("{msg} (HTTP {})", status.as_u16()), code))
    }
}

pub async fn settings(opts: ClientOptions, cmd: SettingsCmd) -> Result<(), Failure> {
    let json = match cmd {
        SettingsCmd::Get => call(&opts, "GET", "/api/v1/admin/settings", None).await?,
        SettingsCmd::Set { name, value } => {
            if ![TIMEOUT_KEY, LIFETIME_KEY, WARN_KEY].contains(&name.as_str()) {
                return Err(Failure(
                    format!(
                        "unknown setting `{name}` (known: {TIMEOUT_KEY}, {LIFETIME_KEY}, {WARN_KEY})"
                    ),
                    2,
                ));
            }
            call(
                &opts,
                "PUT",
                "/api/v1/admin/settings",
                Some(serde_json::json!({ name: value })),
            )
            .await?
        }
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&json).unwrap_or_default()
    );
    Ok(())
}

pub async fn sessions(opts: ClientOptions, cmd: SessionsCmd) -> Result<(), Failure> {
    match cmd {
        SessionsCmd::List { state, limit } => {
            let json = call(
                &opts,
                "GET",
                &format!("/api/v1/admin/sessions?state={state}&limit={limit}"),
                None,
            )
            .await?;
            println!(
                "{:<18} {:>6} {:<9} {:<7} {:<24} END",
                "KEY PREFIX", "UID", "CLASS", "STATE", "LAST ACTIVITY (UTC)"
            );
            for s in json["sessions"].as_array().into_iter().flatten() {
                println!(
                    "{:<18} {:>6} {:<9} {:<7} {:<24} {}",
                    s["key_prefix"].as_str().unwrap_or(""),
                    s["uid"]
                        .as_i64()
                        .map(|u| u.to_string())
                        .unwrap_or_else(|| "-".into()),
                    s["class"].as_str().unwrap_or(""),
                    s["state"].as_str().unwrap_or(""),
                    utc(s["last_activity_ms"].as_i64().unwrap_or(0)),
                    s["end_reason"].as_str().unwrap_or(""),
                );
            }
            println!(
                "{} of {} sessions shown",
                json["sessions"].as_array().map_or(0, |a| a.len()),
                json["total"]
            );
        }
        SessionsCmd::Revoke { key_prefix } => {
            let json = call(
                &opts,
                "POST",
                &format!(
                    "/api/v1/admin/sessions/{}/revoke",
                    path_segment(&key_prefix)
                ),
                None,
            )
            .await?;
            if json["revoked"].as_bool() == Some(true) {
                println!(
                    "session {} revoked",
                    json["key_prefix"].as_str().unwrap_or("")
                );
            } else {
                println!(
                    "session {} had already ended",
                    json["key_prefix"].as_str().unwrap_or("")
                );
            }
        }
        SessionsCmd::EndUser { uid, by } => {
            let by = by.unwrap_or_else(os_user);
            let json = call(
                &opts,
                "POST",
                &format!("/api/v1/admin/users/{uid}/end-sessions"),
                Some(serde_json::json!({ "by": by })),
            )
            .await?;
            println!(
                "{} sessions of user {uid} ended (asked by {})",
                json["ended"],
                json["asked_by"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}

pub async fn policy(opts: ClientOptions, cmd: PolicyCmd) -> Result<(), Failure> {
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    match cmd {
        PolicyCmd::Show => {
            let json = call(&opts, "GET", "/api/v1/admin/policy", None).await?;
            println!("{}", pretty(&json));
        }
        PolicyCmd::Set {
            subject,
            idle,
            absolute,
            exempt,
            login,
            by,
        } => {
            let json = call(
                &opts,
                "PUT",
                &format!("/api/v1/admin/policy/rules/{}", path_segment(&subject)),
                Some(serde_json::json!({
                    "idle_s": idle, "absolute_s": absolute, "exempt": exempt,
                    "login": login, "by": by.unwrap_or_else(os_user),
                })),
            )
            .await?;
            println!("{}", pretty(&json["rule"]));
        }
        PolicyCmd::Unset { subject, by } => {
            call(
                &opts,
                "DELETE",
                &format!("/api/v1/admin/policy/rules/{}", path_segment(&subject)),
                Some(serde_json::json!({ "by": by.unwrap_or_else(os_user) })),
            )
            .await?;
            println!("the rule of {subject} is removed");
        }
        PolicyCmd::Preset { name, subject, by } => {
            let json = call(
                &opts,
                "POST",
                "/api/v1/admin/policy/preset",
                Some(serde_json::json!({
                    "preset": name, "subject": subject, "by": by.unwrap_or_else(os_user),
                })),
            )
            .await?;
            println!(
                "preset {} applied to {subject}: idle {} s, absolute {}",
                json["preset"].as_str().unwrap_or(""),
                json["idle_s"],
                json["absolute_s"]
                    .as_u64()
                    .map_or("none".into(), |a| format!("{a} s"))
            );
        }
        PolicyCmd::Report { format } => {
            if format != "table" && format != "json" {
                return Err(Failure(
                    format!("unknown format `{format}` (known: table, json)"),
                    2,
                ));
            }
            let json = call(&opts, "GET", "/api/v1/admin/policy/report", None).await?;
            if format == "json" {
                let out = serde_json::json!({
                    "lines": json["lines"], "standards": json["standards"], "source": json["source"],
                });
                println!("{}", pretty(&out));
            } else {
                print!("{}", json["table"].as_str().unwrap_or(""));
            }
        }
    }
    Ok(())
}

/// Formats epoch milliseconds as `YYYY-MM-DD HH:MM:SS` (UTC), without a
/// date library.
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_formats() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc(1_795_000_000_000), "2026-11-18 11:06:40");
    }
}
