//! Reading the session id exactly as the ERP does, and refusing when that
//! cannot be done for sure.
//!
//! A gate that reads a request differently from the ERP behind it can be
//! walked past: the gate judges one session while the ERP serves another.
//! Odoo 17 and 18 read cookies with werkzeug 2.2.2 (`parse_cookie`: a regular
//! expression over the raw bytes, quoted values unescaped, the first of
//! duplicate names wins), so this module runs the same expression (the
//! `regex` crate has the same leftmost-first semantics as Python's `re`) and
//! the same unquoting. `tests/cookies/` checks it against werkzeug itself.
//!
//! Odoo 17 also takes a session id from the query string (`?session_id=`)
//! and from the `X-Openerp-Session-Id` header, before the cookie (Odoo 18
//! reads the cookie only). The gate judges every session id the request
//! carries: an ended one anywhere refuses the request.
//!
//! Where the ERP's reading cannot be reproduced for sure (several `Cookie` or
//! `X-Openerp-Session-Id` headers, a session id that is not UTF-8), the
//! answer is `Ambiguous`, and the gate refuses rather than guess.

use std::sync::LazyLock;

use regex::bytes::Regex;

/// werkzeug 2.2.2's `_cookie_re` (`werkzeug/_internal.py`), byte for byte.
static COOKIE_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?-u)(?x)
        (?P<key>[^=;]+)
        (?:\s*=\s*
            (?P<val>
                "(?:[^\\"]|\\.)*" |
                 (?:.*?)
            )
        )?
        \s*;"#,
    )
    .expect("the cookie expression compiles")
});

/// The session id a request carries, as the ERP reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionId {
    /// No session id at all.
    None,
    /// One or more session ids (Odoo 17 may use any of them); each must be
    /// judged. The cookie's comes first when there is one.
    Found(Vec<String>),
    /// The ERP's reading cannot be reproduced for sure; refuse.
    Ambiguous(&'static str),
}

/// Python's `bytes.strip()`: ASCII whitespace, vertical tab included.
fn strip(b: &[u8]) -> &[u8] {
    let ws = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
    let start = b.iter().position(|c| !ws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !ws(c)).map_or(start, |e| e + 1);
    &b[start..end.max(start)]
}

/// werkzeug 2.2.2's `_cookie_unquote`: a value in double quotes loses them,
/// and `\ooo` (octal, first digit 0-3) and `\x` escapes are decoded.
fn unquote(b: &[u8]) -> Vec<u8> {
    if b.len() < 2 || b[0] != b'"' || b[b.len() - 1] != b'"' {
        return b.to_vec();
    }
    let b = &b[1..b.len() - 1];
    let n = b.len();
    let is_octal = |j: usize| {
        j + 3 < n
            && b[j] == b'\\'
            && (b'0'..=b'3').contains(&b[j + 1])
            && (b'0'..=b'7').contains(&b[j + 2])
            && (b'0'..=b'7').contains(&b[j + 3])
    };
    // `[\\].`: a backslash and any byte but a newline.
    let is_quote = |k: usize| k + 1 < n && b[k] == b'\\' && b[k + 1] != b'\n';
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        let j = (i..n).find(|&j| is_octal(j));
        let k = (i..n).find(|&k| is_quote(k));
        match (j, k) {
            (None, None) => {
                out.extend_from_slice(&b[i..]);
                break;
            }
            (j, Some(k)) if j.is_none_or(|j| k < j) => {
                out.extend_from_slice(&b[i..k]);
                out.push(b[k + 1]);
                i = k + 2;
            }
            (Some(j), _) => {
                out.extend_from_slice(&b[i..j]);
                let v = (b[j + 1] - b'0') * 64 + (b[j + 2] - b'0') * 8 + (b[j + 3] - b'0');
                out.push(v);
                i = j + 4;
            }
            (None, Some(_)) => unreachable!("handled by the arm above"),
        }
    }
    out
}

/// werkzeug 2.2.2's `parse_cookie(header).get(name)`: the unquoted value of
/// the first pair whose stripped name is `name`. Pairs are matched one by
/// one with werkzeug's expression and the search stops at the first match,
/// so the proxy's check on every request copies nothing but that value.
fn first_cookie(header: &[u8], name: &[u8]) -> Option<Vec<u8>> {
    let n = header.len();
    let mut b = Vec::with_capacity(n + 1);
    b.extend_from_slice(header);
    b.push(b';');
    let mut i = 0;
    while i < n {
        let c = COOKIE_RE.captures_at(&b, i)?;
        i = c.get(0).map_or(n, |m| m.end());
        if strip(c.name("key").map_or(&b""[..], |m| m.as_bytes())) == name {
            return Some(unquote(c.name("val").map_or(&b""[..], |m| m.as_bytes())));
        }
    }
    None
}

/// The value of the cookie `name` as Odoo reads it (the first of duplicate
/// names), from the request's `Cookie` header lines.
pub fn cookie_value(headers: &[&[u8]], name: &str) -> SessionId {
    let mentions = |h: &[u8]| h.windows(name.len()).any(|w| w == name.as_bytes());
    match headers.len() {
        0 => return SessionId::None,
        // How the ERP's server joins several lines is its own business
        // (werkzeug: with ","); browsers send one.
        _ if headers.len() > 1 && headers.iter().any(|h| mentions(h)) => {
            return SessionId::Ambiguous("several Cookie headers")
        }
        _ => {}
    }
    let Some(header) = headers.iter().find(|h| mentions(h)) else {
        return SessionId::None;
    };
    let Some(value) = first_cookie(header, name.as_bytes()) else {
        return SessionId::None;
    };
    match String::from_utf8(value) {
        Ok(v) if v.is_empty() => SessionId::None,
        Ok(v) => SessionId::Found(vec![v]),
        Err(_) => SessionId::Ambiguous("a session cookie that is not UTF-8"),
    }
}

/// werkzeug 2.2.2's `url_unquote_plus`, to bytes: `+` is a space, `%hh` a
/// byte, any other `%` stays.
fn url_unquote_plus(s: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                s.get(i + 1).and_then(|&c| hex(c)),
                s.get(i + 2).and_then(|&c| hex(c)),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// The first non-empty `session_id` of a query string, as werkzeug's
/// `args.get("session_id")` gives it to Odoo 17 (pairs split on `&`,
/// `+` and `%hh` decoded).
pub fn query_session_id(query: &[u8]) -> SessionId {
    for pair in query.split(|&c| c == b'&') {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = match pair.iter().position(|&c| c == b'=') {
            Some(p) => (&pair[..p], &pair[p + 1..]),
            None => (pair, &b""[..]),
        };
        if url_unquote_plus(k) != b"session_id" {
            continue;
        }
        // `args.get` gives the first one; an empty one makes Odoo 17 fall
        // back to the header and the cookie.
        return match String::from_utf8(url_unquote_plus(v)) {
            Ok(v) if v.is_empty() => SessionId::None,
            Ok(v) => SessionId::Found(vec![v]),
            Err(_) => SessionId::Ambiguous("a session_id query argument that is not UTF-8"),
        };
    }
    SessionId::None
}

/// Every session id the ERP could use for a request: the cookie, and the
/// explicit ones Odoo 17 reads first (`X-Openerp-Session-Id`, `?session_id=`
/// of the original URI the proxy forwards).
pub fn session_ids(
    cookies: &[&[u8]],
    explicit_headers: &[&[u8]],
    queries: &[&[u8]],
    name: &str,
) -> SessionId {
    let mut found = Vec::new();
    let parts = [
        cookie_value(cookies, name),
        match explicit_headers {
            [] => SessionId::None,
            [one] => match std::str::from_utf8(strip(one)) {
                Ok("") => SessionId::None,
                Ok(v) => SessionId::Found(vec![v.to_string()]),
                Err(_) => SessionId::Ambiguous("an X-Openerp-Session-Id header that is not UTF-8"),
            },
            _ => SessionId::Ambiguous("several X-Openerp-Session-Id headers"),
        },
    ];
    for part in parts
        .into_iter()
        .chain(queries.iter().map(|q| query_session_id(q)))
    {
        match part {
            SessionId::None => {}
            SessionId::Found(v) => found.extend(v),
            ambiguous @ SessionId::Ambiguous(_) => return ambiguous,
        }
    }
    let mut seen = std::collections::HashSet::new();
    found.retain(|v| seen.insert(v.clone()));
    if found.is_empty() {
        SessionId::None
    } else {
        SessionId::Found(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookie(h: &str) -> SessionId {
        cookie_value(&[h.as_bytes()], "session_id")
    }
    fn found(v: &str) -> SessionId {
        SessionId::Found(vec![v.to_string()])
    }

    #[test]
    fn plain_headers() {
        assert_eq!(cookie("session_id=abc"), found("abc"));
        assert_eq!(cookie("a=1; session_id=abc; b=2"), found("abc"));
        assert_eq!(cookie("  session_id = abc  ;"), found("abc"));
        assert_eq!(cookie("other=1"), SessionId::None);
        assert_eq!(cookie("session_id="), SessionId::None);
        assert_eq!(cookie_value(&[], "session_id"), SessionId::None);
    }

    #[test]
    fn the_first_of_duplicates_wins_as_in_werkzeug() {
        assert_eq!(
            cookie("session_id=first; session_id=second"),
            found("first")
        );
    }

    #[test]
    fn quoted_values_hide_separators_and_are_unescaped() {
        // The probe of issue 10: a naive split sees the ended session inside another cookie's value.
        assert_eq!(
            cookie(r#"x="a;session_id=ended"; session_id=real"#),
            found("real")
        );
        assert_eq!(cookie(r#"session_id="\141bc""#), found("abc"));
        assert_eq!(cookie(r#"session_id="a\"b""#), found("a\"b"));
    }

    #[test]
    fn non_ascii_bytes_do_not_hide_the_cookie() {
        let h = b"session_id=abc; x=\xc3\xa9\xff";
        assert_eq!(cookie_value(&[&h[..]], "session_id"), found("abc"));
        let h = b"session_id=a\xffb";
        assert!(matches!(
            cookie_value(&[&h[..]], "session_id"),
            SessionId::Ambiguous(_)
        ));
    }

    #[test]
    fn several_cookie_headers_with_the_session_are_ambiguous() {
        let v = cookie_value(&[b"a=1", b"session_id=x"], "session_id");
        assert!(matches!(v, SessionId::Ambiguous(_)));
        assert_eq!(
            cookie_value(&[b"a=1", b"b=2"], "session_id"),
            SessionId::None
        );
    }

    #[test]
    fn odoo_17_explicit_session_ids_are_judged_too() {
        assert_eq!(query_session_id(b"a=1&session_id=abc"), found("abc"));
        assert_eq!(query_session_id(b"session%5Fid=a%62c"), found("abc"));
        assert_eq!(
            query_session_id(b"session_id=&session_id=x"),
            SessionId::None
        );
        assert_eq!(query_session_id(b"debug=1"), SessionId::None);
        let all = session_ids(
            &[b"session_id=c"],
            &[b"h"],
            &[b"session_id=q"],
            "session_id",
        );
        assert_eq!(
            all,
            SessionId::Found(vec!["c".into(), "h".into(), "q".into()])
        );
        let two = session_ids(&[], &[b"h", b"h"], &[], "session_id");
        assert!(matches!(two, SessionId::Ambiguous(_)));
    }
}
