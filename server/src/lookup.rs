//! Who owns a session? Asks the ERP, forwarding only the session cookie.
//!
//! Odoo 17/18 answer `/web/session/get_session_info` (JSON-RPC) with
//! `result.uid` and `result.is_internal_user` for a logged-in session (with
//! `is_admin` and `is_system`, which the sidecar's own rules can name), and
//! with a JSON-RPC error ("Session expired") for a session it does not know.

use std::time::Duration;

use serde_json::Value;

/// What the ERP said about a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Internal {
        uid: i32,
        /// Odoo's `is_admin` (Access Rights) and `is_system` (Settings).
        is_admin: bool,
        is_system: bool,
    },
    Portal {
        uid: i32,
    },
    /// No user behind the session: a website visitor, or a session the ERP
    /// does not know.
    Public,
    /// The ERP could not be reached or answered something we do not
    /// understand. The caller must not exempt the session.
    Unknown(String),
}

/// Interprets the body of a `get_session_info` answer.
pub fn parse_session_info(status: u16, body: &[u8]) -> Lookup {
    if !(200..300).contains(&status) {
        return Lookup::Unknown(format!("session-info answered HTTP {status}"));
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Lookup::Unknown("session-info answer is not JSON".into());
    };
    if let Some(err) = v.get("error") {
        // Odoo: code 100, data.name "odoo.http.SessionExpiredException".
        let code = err.get("code").and_then(Value::as_i64);
        let name = err
            .pointer("/data/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let msg = err.get("message").and_then(Value::as_str).unwrap_or("");
        if code == Some(100)
            || name.contains("SessionExpired")
            || msg.contains("Session Expired")
            || msg.contains("Session expired")
        {
            return Lookup::Public;
        }
        return Lookup::Unknown(format!(
            "session-info answered a JSON-RPC error: {}",
            truncate(msg)
        ));
    }
    let Some(result) = v.get("result").filter(|r| r.is_object()) else {
        return Lookup::Unknown("session-info answer has no `result` object".into());
    };
    let uid = match result.get("uid") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => return Lookup::Public,
        Some(Value::Number(n)) => match n.as_i64().and_then(|n| i32::try_from(n).ok()) {
            Some(uid) if uid > 0 => uid,
            _ => return Lookup::Unknown(format!("session-info `uid` {n} is not a user id")),
        },
        Some(other) => {
            return Lookup::Unknown(format!(
                "session-info `uid` is not a number: {}",
                truncate(&other.to_string())
            ))
        }
    };
    if result.get("is_public").and_then(Value::as_bool) == Some(true) {
        return Lookup::Public;
    }
    let flag = |name: &str| result.get(name).and_then(Value::as_bool) == Some(true);
    let internal = Lookup::Internal {
        uid,
        is_admin: flag("is_admin"),
        is_system: flag("is_system"),
    };
    match result.get("is_internal_user") {
        Some(Value::Bool(true)) => internal,
        Some(Value::Bool(false)) => Lookup::Portal { uid },
        // Real Odoo 17 and 18 always send the flag for a logged-in user; an
        // answer without it is not Odoo's, and such a session is timed, never
        // exempted on a guess.
        None => internal,
        Some(other) => Lookup::Unknown(format!(
            "session-info `is_internal_user` is not a boolean: {}",
            truncate(&other.to_string())
        )),
    }
}

/// The value as the ERP must read it back: as is when it is plain cookie
/// octets, else quoted with every other byte as a `\ooo` escape (which
/// werkzeug decodes), so that the ERP is asked about exactly the session id
/// the gate judges, whatever the request carried.
pub fn cookie_octets(value: &str) -> String {
    let plain = |b: u8| matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e);
    if !value.is_empty() && value.bytes().all(plain) {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for b in value.bytes() {
        if plain(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\{b:03o}"));
        }
    }
    out.push('"');
    out
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Asks the ERP. Only the session cookie is sent.
pub async fn lookup(url: &str, cookie_name: &str, cookie_value: &str, timeout: Duration) -> Lookup {
    thread_local! {
        // awc clients are per thread; one per worker keeps connections pooled.
        static CLIENT: awc::Client = awc::Client::builder().disable_redirects().finish();
    }
    let client = CLIENT.with(|c| c.clone());
    let req = client
        .post(url)
        .timeout(timeout)
        .insert_header(("Content-Type", "application/json"))
        .insert_header((
            "Cookie",
            format!("{cookie_name}={}", cookie_octets(cookie_value)),
        ));
    let mut resp = match req
        .send_body(r#"{"jsonrpc":"2.0","method":"call","params":{}}"#)
        .await
    {
        Ok(r) => r,
        Err(e) => return Lookup::Unknown(format!("session-info request failed: {e}")),
    };
    let status = resp.status().as_u16();
    match resp.body().limit(256 * 1024).await {
        Ok(body) => parse_session_info(status, &body),
        Err(e) => Lookup::Unknown(format!("session-info body unreadable: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odoo_shapes() {
        let internal = br#"{"jsonrpc":"2.0","id":null,"result":{"uid":2,"is_internal_user":true,"is_public":false,"is_admin":true,"is_system":true}}"#;
        assert_eq!(
            parse_session_info(200, internal),
            Lookup::Internal {
                uid: 2,
                is_admin: true,
                is_system: true
            }
        );
        let clerk = br#"{"jsonrpc":"2.0","id":null,"result":{"uid":6,"is_internal_user":true,"is_admin":false,"is_system":false}}"#;
        assert_eq!(
            parse_session_info(200, clerk),
            Lookup::Internal {
                uid: 6,
                is_admin: false,
                is_system: false
            }
        );
        let portal = br#"{"jsonrpc":"2.0","id":null,"result":{"uid":7,"is_internal_user":false}}"#;
        assert_eq!(parse_session_info(200, portal), Lookup::Portal { uid: 7 });
        let public = br#"{"jsonrpc":"2.0","id":null,"result":{"uid":false,"is_public":true}}"#;
        assert_eq!(parse_session_info(200, public), Lookup::Public);
        let expired = br#"{"jsonrpc":"2.0","id":null,"error":{"code":100,"message":"Odoo Session Expired","data":{"name":"odoo.http.SessionExpiredException","message":"Session expired"}}}"#;
        assert_eq!(parse_session_info(200, expired), Lookup::Public);
    }

    #[test]
    fn the_erp_is_asked_about_exactly_the_judged_value() {
        assert_eq!(cookie_octets("abc-_.09"), "abc-_.09");
        let odd = "a;b \"c\\é";
        let sent = cookie_octets(odd);
        assert!(sent.bytes().all(|b| (0x20..0x7f).contains(&b)), "{sent}");
        let header = format!("session_id={sent}");
        let read = crate::cookie::cookie_value(&[header.as_bytes()], "session_id");
        assert_eq!(read, crate::cookie::SessionId::Found(vec![odd.to_string()]));
    }

    #[test]
    fn nonsense_is_unknown_never_exempt() {
        for (status, body) in [
            (500, &b"oops"[..]),
            (200, b"<html>"),
            (200, br#"{"result":{"uid":"2"}}"#),
            (200, br#"{"result":{"uid":-3}}"#),
            (200, br#"{"result":{"uid":2,"is_internal_user":"yes"}}"#),
            (200, br#"{"error":{"code":200,"message":"Server error"}}"#),
            (200, br#"[]"#),
        ] {
            assert!(
                matches!(parse_session_info(status, body), Lookup::Unknown(_)),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
