//! Policy per group and per user: the rules, the strictest-wins resolution,
//! the compliance presets and the report an auditor reads. Pure: no I/O and
//! no clock.
//!
//! A rule names who it is for (a group or one user) and sets the idle
//! timeout, the absolute lifetime, both, or (for one user) an exemption.
//! A session's effective policy takes, for each limit, the smallest value
//! among every rule that matches its user; a limit that no matching rule
//! sets comes from the global setting, so a group can be looser than the
//! default (warehouse staff) as well as tighter (accountants). An explicit
//! exemption of a user wins over every group: it is a decision about that
//! person, audited and shown in the report. Portal and public users are
//! exempt whatever the rules say (decided from the ERP's answer).
//!
//! Groups come from two places. With the Odoo addon, Odoo sends each rule
//! of a group with its members' user ids (`uids`), so the rules are matched
//! by user id only. Without it, the sidecar's own rules can name the two
//! groups the ERP's session info reveals: `admin` (`is_admin`) and `system`
//! (`is_system`).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::policy::{Policy, MAX_LIFETIME_S, MAX_TIMEOUT_S};

/// The setting that holds the rules (JSON text, canonical).
pub const RULES_KEY: &str = "policy_rules";

/// What the ERP said about a session's user, as far as rules care.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts {
    pub uid: i32,
    pub is_admin: bool,
    pub is_system: bool,
}

impl Facts {
    /// The two roles in one byte, as the session keeps them.
    pub fn roles(self) -> u8 {
        u8::from(self.is_admin) | u8::from(self.is_system) << 1
    }
    pub fn with_roles(uid: i32, roles: u8) -> Facts {
        Facts {
            uid,
            is_admin: roles & 1 != 0,
            is_system: roles & 2 != 0,
        }
    }
}

/// One rule, as stored and as the ERP sends it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Rule {
    /// The ERP's id of the rule (Odoo's record id), for the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// A group: `admin` or `system` for the sidecar's own rules, else the
    /// ERP's name of the group (which then sends `uids`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_xmlid: Option<String>,
    /// The group's members, as the ERP computed them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uids: Option<Vec<i32>>,
    /// One user, by the ERP's user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<i32>,
    /// That user's login, when known (for the report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
    #[serde(default)]
    pub idle_s: Option<u64>,
    #[serde(default)]
    pub absolute_s: Option<u64>,
    /// Never logged out (one user only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exempt: bool,
}

/// The sidecar's own groups, read from the ERP's session info.
pub const ROLE_GROUPS: [&str; 2] = ["admin", "system"];

impl Rule {
    /// Who the rule is for, as the admin API and the CLI name it:
    /// `admin`, `system`, `user:7`, or `group:<name>` (from the ERP).
    pub fn subject(&self) -> String {
        match (&self.group, self.user) {
            (Some(g), _) if self.uids.is_none() => g.clone(),
            (Some(g), _) => format!("group:{g}"),
            (None, Some(uid)) => format!("user:{uid}"),
            (None, None) => "(nobody)".into(),
        }
    }

    /// Who the rule is for, in words (the report).
    pub fn applies_to(&self) -> String {
        match (&self.group, self.user) {
            (Some(g), _) if self.uids.is_none() => format!("group {g} (the ERP's is_{g})"),
            (Some(g), _) => format!("group {g}"),
            (None, Some(uid)) => match &self.login {
                Some(login) => format!("user {login} (uid {uid})"),
                None => format!("user uid {uid}"),
            },
            (None, None) => "(nobody)".into(),
        }
    }

    /// Whether the rule is well formed; the error names what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let who = self.subject();
        match (&self.group, self.user) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "rule {who}: names both a group and a user; a rule is for one of them"
                ))
            }
            (None, None) => return Err("a rule must name a group or a user".into()),
            (Some(g), None) => {
                if self.uids.is_none() && !ROLE_GROUPS.contains(&g.as_str()) {
                    return Err(format!(
                        "unknown group `{g}`: without the ERP's member list a rule can name \
                         the groups admin or system, or one user (user:UID)"
                    ));
                }
                if g.trim().is_empty() || g.len() > 200 {
                    return Err("a group name must be 1 to 200 characters".into());
                }
                if let Some(bad) = self.uids.iter().flatten().find(|u| **u <= 0) {
                    return Err(format!("rule {who}: member uid {bad} is not a user id"));
                }
                if self.exempt {
                    return Err(format!(
                        "rule {who}: only a single user can be exempt, not a group"
                    ));
                }
            }
            (None, Some(uid)) if uid <= 0 => {
                return Err(format!("rule {who}: {uid} is not a user id"))
            }
            (None, Some(_)) => {}
        }
        if let Some(s) = self.idle_s {
            if !(1..=MAX_TIMEOUT_S).contains(&s) {
                return Err(format!(
                    "rule {who}: idle_s {s} is not between 1 and {MAX_TIMEOUT_S} (30 days)"
                ));
            }
        }
        if let Some(s) = self.absolute_s {
            if !(1..=MAX_LIFETIME_S).contains(&s) {
                return Err(format!(
                    "rule {who}: absolute_s {s} is not between 1 and {MAX_LIFETIME_S} (30 days)"
                ));
            }
        }
        if self.exempt && (self.idle_s.is_some() || self.absolute_s.is_some()) {
            return Err(format!(
                "rule {who}: an exempt user has no limits; send exempt or limits, not both"
            ));
        }
        if !self.exempt && self.idle_s.is_none() && self.absolute_s.is_none() {
            return Err(format!(
                "rule {who}: sets nothing; give idle_s, absolute_s or exempt"
            ));
        }
        Ok(())
    }

    fn matches(&self, f: Facts) -> bool {
        match (&self.group, self.user, &self.uids) {
            (_, Some(uid), _) => uid == f.uid,
            (Some(_), None, Some(uids)) => uids.contains(&f.uid),
            (Some(g), None, None) => (g == "admin" && f.is_admin) || (g == "system" && f.is_system),
            _ => false,
        }
    }
}

/// Parses and validates stored or received rules (a JSON array).
pub fn parse_rules(text: &str) -> Result<Vec<Rule>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let rules: Vec<Rule> = serde_json::from_str(text)
        .map_err(|e| format!("the rules are not a JSON array of rules: {e}"))?;
    for r in &rules {
        r.validate()?;
    }
    Ok(rules)
}

/// The canonical text of rules, as stored (compared to tell a change).
pub fn rules_text(rules: &[Rule]) -> String {
    serde_json::to_string(rules).unwrap_or_else(|_| "[]".into())
}

/// What applies to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effective {
    Exempt,
    Timed(Policy),
}

/// The rule of strictest wins, written plainly over every rule (the
/// reference for `Compiled`, which answers the same from a table).
pub fn effective(default: Policy, rules: &[Rule], f: Facts) -> Effective {
    let matching: Vec<&Rule> = rules.iter().filter(|r| r.matches(f)).collect();
    if matching.iter().any(|r| r.exempt) {
        return Effective::Exempt;
    }
    let idle = matching.iter().filter_map(|r| r.idle_s).min();
    let absolute = matching.iter().filter_map(|r| r.absolute_s).min();
    Effective::Timed(Policy {
        timeout_ms: idle.map_or(default.timeout_ms, |s| s as i64 * 1000),
        absolute_lifetime_ms: absolute
            .map(|s| s as i64 * 1000)
            .or(default.absolute_lifetime_ms),
    })
}

/// The limits set for one user or group, merged strictest first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Limits {
    idle_s: Option<u64>,
    absolute_s: Option<u64>,
    exempt: bool,
}

fn min_set(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Limits {
    fn and(self, o: Limits) -> Limits {
        Limits {
            idle_s: min_set(self.idle_s, o.idle_s),
            absolute_s: min_set(self.absolute_s, o.absolute_s),
            exempt: self.exempt || o.exempt,
        }
    }
    fn of(r: &Rule) -> Limits {
        Limits {
            idle_s: r.idle_s,
            absolute_s: r.absolute_s,
            exempt: r.exempt,
        }
    }
}

/// The rules as a table, answered with one hash lookup per request.
#[derive(Debug, Default)]
pub struct Compiled {
    by_uid: HashMap<i32, Limits>,
    admin: Limits,
    system: Limits,
    empty: bool,
}

impl Compiled {
    pub fn new(rules: &[Rule]) -> Compiled {
        let mut c = Compiled {
            empty: rules.is_empty(),
            ..Compiled::default()
        };
        for r in rules {
            let l = Limits::of(r);
            match (&r.group, r.user, &r.uids) {
                (_, Some(uid), _) => {
                    let e = c.by_uid.entry(uid).or_default();
                    *e = e.and(l);
                }
                (Some(_), None, Some(uids)) => {
                    for uid in uids {
                        let e = c.by_uid.entry(*uid).or_default();
                        *e = e.and(l);
                    }
                }
                (Some(g), None, None) if g == "admin" => c.admin = c.admin.and(l),
                (Some(g), None, None) if g == "system" => c.system = c.system.and(l),
                _ => {}
            }
        }
        c
    }

    /// No rule at all.
    pub fn is_empty(&self) -> bool {
        self.empty
    }

    /// The policy for a user with these facts, given the global one.
    pub fn effective(&self, default: Policy, f: Facts) -> Effective {
        if self.empty {
            return Effective::Timed(default);
        }
        let mut l = self.by_uid.get(&f.uid).copied().unwrap_or_default();
        if f.is_admin {
            l = l.and(self.admin);
        }
        if f.is_system {
            l = l.and(self.system);
        }
        if l.exempt {
            return Effective::Exempt;
        }
        Effective::Timed(Policy {
            timeout_ms: l.idle_s.map_or(default.timeout_ms, |s| s as i64 * 1000),
            absolute_lifetime_ms: l
                .absolute_s
                .map(|s| s as i64 * 1000)
                .or(default.absolute_lifetime_ms),
        })
    }

    /// The shortest idle timeout any session can have.
    pub fn strictest_idle_ms(&self, default: Policy) -> i64 {
        [self.admin, self.system]
            .iter()
            .chain(self.by_uid.values())
            .filter_map(|l| l.idle_s)
            .map(|s| s as i64 * 1000)
            .fold(default.timeout_ms, i64::min)
    }
}

/// A standard an auditor holds the limits to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Standard {
    pub id: &'static str,
    pub name: &'static str,
    pub clause: &'static str,
    pub max_idle_s: u64,
    /// The overall limit the standard asks for; `None`: none.
    pub max_absolute_s: Option<u64>,
}

pub const STANDARDS: [Standard; 6] = [
    Standard {
        id: "pci-dss-4",
        name: "PCI DSS 4.0",
        clause: "Req. 8.2.8",
        max_idle_s: 900,
        max_absolute_s: None,
    },
    Standard {
        id: "nist-aal2",
        name: "NIST SP 800-63B-4 AAL2",
        clause: "2.2.3",
        max_idle_s: 3600,
        max_absolute_s: Some(86_400),
    },
    Standard {
        id: "nist-aal3",
        name: "NIST SP 800-63B-4 AAL3",
        clause: "2.3.3",
        max_idle_s: 900,
        max_absolute_s: Some(43_200),
    },
    Standard {
        id: "owasp-high",
        name: "OWASP Session Management, high-value",
        clause: "Session Expiration",
        max_idle_s: 300,
        max_absolute_s: Some(28_800),
    },
    Standard {
        id: "owasp-low",
        name: "OWASP Session Management, low-risk",
        clause: "Session Expiration",
        max_idle_s: 1800,
        max_absolute_s: Some(28_800),
    },
    Standard {
        id: "psd2",
        name: "PSD2 RTS (EU) 2018/389",
        clause: "Art. 4(3)(d)",
        max_idle_s: 300,
        max_absolute_s: None,
    },
];

impl Standard {
    /// Whether limits meet the standard (an exempt user meets none).
    pub fn met_by(&self, idle_s: Option<u64>, absolute_s: Option<u64>) -> bool {
        let Some(idle) = idle_s else { return false };
        idle <= self.max_idle_s
            && self
                .max_absolute_s
                .is_none_or(|max| absolute_s.is_some_and(|a| a <= max))
    }
}

/// What a preset sets: the idle timeout, and the absolute lifetime or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    pub id: &'static str,
    pub idle_s: u64,
    pub absolute_s: Option<u64>,
}

pub const PRESETS: [Preset; 6] = [
    Preset {
        id: "pci-dss-4",
        idle_s: 900,
        absolute_s: None,
    },
    Preset {
        id: "nist-aal2",
        idle_s: 3600,
        absolute_s: Some(86_400),
    },
    Preset {
        id: "nist-aal3",
        idle_s: 900,
        absolute_s: Some(43_200),
    },
    Preset {
        id: "owasp-high",
        idle_s: 300,
        absolute_s: Some(14_400),
    },
    Preset {
        id: "owasp-low",
        idle_s: 1800,
        absolute_s: Some(28_800),
    },
    Preset {
        id: "psd2",
        idle_s: 300,
        absolute_s: None,
    },
];

/// The preset of that name; the error lists the known ones.
pub fn preset(name: &str) -> Result<Preset, String> {
    PRESETS
        .iter()
        .find(|p| p.id == name)
        .copied()
        .ok_or_else(|| {
            let known: Vec<_> = PRESETS.iter().map(|p| p.id).collect();
            format!("unknown preset `{name}` (known: {})", known.join(", "))
        })
}

/// One line of the report: who, the limits that apply to them, and each
/// standard met or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportLine {
    pub applies_to: String,
    pub subject: String,
    /// `None` when exempt.
    pub idle_s: Option<u64>,
    pub absolute_s: Option<u64>,
    pub exempt: bool,
    pub standards: Vec<Verdict>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub standard: &'static str,
    pub name: &'static str,
    pub clause: &'static str,
    pub met: bool,
}

fn line(applies_to: String, subject: String, idle: Option<u64>, abs: Option<u64>) -> ReportLine {
    ReportLine {
        applies_to,
        subject,
        idle_s: idle,
        absolute_s: abs,
        exempt: idle.is_none(),
        standards: STANDARDS
            .iter()
            .map(|s| Verdict {
                standard: s.id,
                name: s.name,
                clause: s.clause,
                met: s.met_by(idle, abs),
            })
            .collect(),
    }
}

/// The report: the default, then each rule with the limits a member of
/// that group (or that user) gets from it and the default.
pub fn report(default: Policy, rules: &[Rule]) -> Vec<ReportLine> {
    let secs = |ms: i64| (ms / 1000) as u64;
    let d_idle = secs(default.timeout_ms);
    let d_abs = default.absolute_lifetime_ms.map(secs);
    let mut out = vec![line(
        "every internal user (default)".into(),
        "default".into(),
        Some(d_idle),
        d_abs,
    )];
    for r in rules {
        let (idle, abs) = if r.exempt {
            (None, None)
        } else {
            (Some(r.idle_s.unwrap_or(d_idle)), r.absolute_s.or(d_abs))
        };
        out.push(line(r.applies_to(), r.subject(), idle, abs));
    }
    out
}

fn duration(s: Option<u64>) -> String {
    match s {
        None => "none".into(),
        Some(s) if s % 3600 == 0 => format!("{} h", s / 3600),
        Some(s) if s % 60 == 0 => format!("{} min", s / 60),
        Some(s) => format!("{s} s"),
    }
}

/// The report as a table for a terminal.
pub fn report_table(lines: &[ReportLine]) -> String {
    let mut rows: Vec<Vec<String>> =
        vec![vec!["applies to".into(), "idle".into(), "absolute".into()]];
    rows[0].extend(STANDARDS.iter().map(|s| s.id.to_string()));
    for l in lines {
        let mut row = vec![
            l.applies_to.clone(),
            if l.exempt {
                "exempt".into()
            } else {
                duration(l.idle_s)
            },
            if l.exempt {
                "-".into()
            } else {
                duration(l.absolute_s)
            },
        ];
        row.extend(
            l.standards
                .iter()
                .map(|v| if v.met { "met" } else { "NOT MET" }.to_string()),
        );
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str("\nstandards (met: idle at most / absolute at most):\n");
    for s in STANDARDS {
        out.push_str(&format!(
            "  {:<11} {}, {}: idle <= {}, {}\n",
            s.id,
            s.name,
            s.clause,
            duration(Some(s.max_idle_s)),
            s.max_absolute_s
                .map_or("no absolute limit asked".into(), |a| format!(
                    "absolute <= {}",
                    duration(Some(a))
                ))
        ));
    }
    out
}

#[cfg(test)]
mod tests;
