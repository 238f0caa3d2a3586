//! The pure timeout policy: given times and settings, is a session active
//! or expired (idle too long, or past its absolute lifetime)? No I/O and no
//! clock here, so nothing can fail and the tests need no database.

use std::fmt;

/// Milliseconds since the Unix epoch, as read from the server's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub i64);

impl Millis {
    pub fn saturating_sub(self, other: Millis) -> i64 {
        self.0.saturating_sub(other.0)
    }
}

/// Heartbeats of one session closer together than this are answered `429`
/// (their activity is still recorded): the page sends at most one per
/// heartbeat interval, so only a broken or hostile client gets there.
pub const MIN_HEARTBEAT_GAP_MS: i64 = 250;

/// The default idle timeout, in seconds, used when none is configured or the
/// configured value is invalid.
pub const DEFAULT_TIMEOUT_S: u64 = 300;
/// The largest idle timeout accepted: 30 days. Anything larger is treated as a
/// mistake (an "absurdly large" value) rather than a wish to never log out.
pub const MAX_TIMEOUT_S: u64 = 30 * 24 * 3600;
/// The largest absolute lifetime accepted: 30 days.
pub const MAX_LIFETIME_S: u64 = 30 * 24 * 3600;

/// Why a session ended. Stored in the database and the audit log by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    IdleTimeout,
    AbsoluteLifetime,
    Logout,
    Revoked,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::IdleTimeout => "idle_timeout",
            EndReason::AbsoluteLifetime => "absolute_lifetime",
            EndReason::Logout => "logout",
            EndReason::Revoked => "revoked",
        }
    }

    /// The audit log's event for an ending of this reason.
    pub fn audit_event(self) -> &'static str {
        match self {
            EndReason::IdleTimeout | EndReason::AbsoluteLifetime => "expired",
            EndReason::Logout => "logout",
            EndReason::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<EndReason> {
        Some(match s {
            "idle_timeout" => EndReason::IdleTimeout,
            "absolute_lifetime" => EndReason::AbsoluteLifetime,
            "logout" => EndReason::Logout,
            "revoked" => EndReason::Revoked,
            _ => return None,
        })
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who owns a session, as the ERP told us. Only `Internal` is timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserClass {
    Internal,
    Portal,
    Public,
}

impl UserClass {
    pub fn as_str(self) -> &'static str {
        match self {
            UserClass::Internal => "internal",
            UserClass::Portal => "portal",
            UserClass::Public => "public",
        }
    }
    pub fn to_i64(self) -> i64 {
        match self {
            UserClass::Internal => 0,
            UserClass::Portal => 1,
            UserClass::Public => 2,
        }
    }
    pub fn from_i64(v: i64) -> UserClass {
        match v {
            1 => UserClass::Portal,
            2 => UserClass::Public,
            // Anything unknown is treated as internal: never exempt by accident.
            _ => UserClass::Internal,
        }
    }
    pub fn is_exempt(self) -> bool {
        !matches!(self, UserClass::Internal)
    }
}

/// The effective policy, already validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Idle timeout in milliseconds (always > 0).
    pub timeout_ms: i64,
    /// Absolute lifetime in milliseconds, if enabled.
    pub absolute_lifetime_ms: Option<i64>,
}

impl Policy {
    pub fn new(timeout_s: u64, absolute_lifetime_s: Option<u64>) -> Policy {
        Policy {
            timeout_ms: timeout_s as i64 * 1000,
            absolute_lifetime_ms: absolute_lifetime_s.map(|s| s as i64 * 1000),
        }
    }
    pub fn timeout_s(&self) -> u64 {
        (self.timeout_ms / 1000) as u64
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy::new(DEFAULT_TIMEOUT_S, None)
    }
}

/// What the policy says about a session at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    /// Still active; this many milliseconds remain before it expires.
    Active { remaining_ms: i64 },
    /// The deadline passed now (first observed); the caller records it.
    Expired { reason: EndReason, at: Millis },
}

impl SessionStatus {
    pub fn is_expired(&self) -> bool {
        matches!(self, SessionStatus::Expired { .. })
    }
}

/// Decides a timed session's status from its creation and last activity.
///
/// A session is expired when `now - last_activity > timeout` (strictly: at
/// exactly the timeout it is still active). A clock that went backwards (now
/// before last activity) counts as zero elapsed time, never as negative, so it
/// cannot lengthen a session beyond the full timeout.
pub fn status(
    created: Millis,
    last_activity: Millis,
    now: Millis,
    policy: &Policy,
) -> SessionStatus {
    let idle = now.saturating_sub(last_activity).max(0);
    let idle_deadline = last_activity.0.saturating_add(policy.timeout_ms);
    let mut remaining = policy.timeout_ms - idle;
    let mut expiry = (idle > policy.timeout_ms).then_some((EndReason::IdleTimeout, idle_deadline));

    if let Some(life) = policy.absolute_lifetime_ms {
        let age = now.saturating_sub(created).max(0);
        let life_deadline = created.0.saturating_add(life);
        if age > life {
            // Report whichever deadline passed first.
            match expiry {
                Some((_, at)) if at <= life_deadline => {}
                _ => expiry = Some((EndReason::AbsoluteLifetime, life_deadline)),
            }
        }
        remaining = remaining.min(life - age);
    }

    match expiry {
        Some((reason, at)) => SessionStatus::Expired {
            reason,
            at: Millis(at),
        },
        None => SessionStatus::Active {
            remaining_ms: remaining.max(0),
        },
    }
}

/// The new last-activity time after a heartbeat saying the user's last input
/// was `idle_ms` ago. Never earlier than before, never later than now: a
/// client can only report activity in the past, never choose a future time.
pub fn touched(previous: Millis, now: Millis, idle_ms: u64) -> Millis {
    let idle = i64::try_from(idle_ms).unwrap_or(i64::MAX);
    let reported = now.0.saturating_sub(idle);
    Millis(previous.0.max(reported).min(now.0.max(previous.0)))
}

/// Why a configured timeout value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSetting {
    #[error("`{value}` is not a whole number of seconds (accepted: {min} to {max})")]
    NotAnInteger { value: String, min: u64, max: u64 },
    #[error("{value} is out of range (accepted: {min} to {max} seconds)")]
    OutOfRange { value: i128, min: u64, max: u64 },
}

/// Parses a timeout in seconds: a whole number from 1 to [`MAX_TIMEOUT_S`].
pub fn parse_timeout(raw: &str) -> Result<u64, InvalidSetting> {
    parse_seconds(raw, 1, MAX_TIMEOUT_S)
}

/// Parses an absolute lifetime in seconds: 0 means off, else 60 s to 30 days.
pub fn parse_lifetime(raw: &str) -> Result<Option<u64>, InvalidSetting> {
    let v = parse_seconds(raw, 0, MAX_LIFETIME_S)?;
    if v == 0 {
        return Ok(None);
    }
    if v < 60 {
        return Err(InvalidSetting::OutOfRange {
            value: v as i128,
            min: 60,
            max: MAX_LIFETIME_S,
        });
    }
    Ok(Some(v))
}

pub fn parse_seconds(raw: &str, min: u64, max: u64) -> Result<u64, InvalidSetting> {
    let t = raw.trim();
    let v: i128 = t.parse().map_err(|_| InvalidSetting::NotAnInteger {
        value: t.chars().take(40).collect(),
        min,
        max,
    })?;
    if v < min as i128 || v > max as i128 {
        return Err(InvalidSetting::OutOfRange { value: v, min, max });
    }
    Ok(v as u64)
}

/// The timeout actually applied for a configured value: the value itself when
/// valid, else the default (the caller logs the warning).
pub fn effective_timeout(configured: Option<&str>) -> (u64, Option<InvalidSetting>) {
    match configured {
        None => (DEFAULT_TIMEOUT_S, None),
        Some(raw) => match parse_timeout(raw) {
            Ok(v) => (v, None),
            Err(e) => (DEFAULT_TIMEOUT_S, Some(e)),
        },
    }
}

/// The heartbeat interval the page should use: a quarter of the timeout,
/// capped at 60 s and at least 1 s, so short timeouts still work.
pub fn heartbeat_interval_ms(timeout_ms: i64) -> i64 {
    (timeout_ms / 4).clamp(1000, 60_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Policy = Policy {
        timeout_ms: 300_000,
        absolute_lifetime_ms: None,
    };

    #[test]
    fn exactly_at_timeout_is_active_one_ms_past_is_expired() {
        let t0 = Millis(1_000_000);
        assert_eq!(
            status(t0, t0, Millis(t0.0 + 300_000), &P),
            SessionStatus::Active { remaining_ms: 0 }
        );
        assert_eq!(
            status(t0, t0, Millis(t0.0 + 300_001), &P),
            SessionStatus::Expired {
                reason: EndReason::IdleTimeout,
                at: Millis(t0.0 + 300_000)
            }
        );
    }

    #[test]
    fn remaining_counts_down() {
        let t0 = Millis(5_000);
        assert_eq!(
            status(t0, t0, Millis(5_000 + 1_234), &P),
            SessionStatus::Active {
                remaining_ms: 298_766
            }
        );
    }

    #[test]
    fn clock_going_backwards_never_extends_beyond_full_timeout() {
        let t0 = Millis(10_000_000);
        // now is an hour before the last activity
        assert_eq!(
            status(t0, t0, Millis(t0.0 - 3_600_000), &P),
            SessionStatus::Active {
                remaining_ms: 300_000
            }
        );
    }

    #[test]
    fn absolute_lifetime_ends_an_active_session() {
        let p = Policy {
            timeout_ms: 300_000,
            absolute_lifetime_ms: Some(3_600_000),
        };
        let created = Millis(0);
        let last = Millis(3_600_000); // active right now
        assert_eq!(
            status(created, last, Millis(3_600_000), &p),
            SessionStatus::Active { remaining_ms: 0 }
        );
        assert_eq!(
            status(created, last, Millis(3_600_001), &p),
            SessionStatus::Expired {
                reason: EndReason::AbsoluteLifetime,
                at: Millis(3_600_000)
            }
        );
        // remaining is the nearer of the two deadlines
        assert_eq!(
            status(created, Millis(3_500_000), Millis(3_500_000), &p),
            SessionStatus::Active {
                remaining_ms: 100_000
            }
        );
    }

    #[test]
    fn idle_deadline_first_is_reported_as_idle() {
        let p = Policy {
            timeout_ms: 300_000,
            absolute_lifetime_ms: Some(3_600_000),
        };
        assert_eq!(
            status(Millis(0), Millis(1_000_000), Millis(10_000_000), &p),
            SessionStatus::Expired {
                reason: EndReason::IdleTimeout,
                at: Millis(1_300_000)
            }
        );
    }

    #[test]
    fn touch_never_moves_back_nor_into_the_future() {
        let now = Millis(100_000);
        assert_eq!(touched(Millis(50_000), now, 0), now);
        assert_eq!(touched(Millis(50_000), now, 10_000), Millis(90_000));
        // reported input older than what we know: keep what we know
        assert_eq!(touched(Millis(95_000), now, 10_000), Millis(95_000));
        // absurd idle values saturate rather than overflow
        assert_eq!(touched(Millis(95_000), now, u64::MAX), Millis(95_000));
        // clock went backwards: previous is later than now, keep previous
        assert_eq!(touched(Millis(200_000), now, 0), Millis(200_000));
    }

    #[test]
    fn invalid_timeouts_fall_back_to_300() {
        for raw in [
            "",
            "abc",
            "0",
            "-5",
            "1.5",
            "2592001",
            "99999999999999999999999",
            " ",
            "300s",
            "1e3",
        ] {
            let (eff, err) = effective_timeout(Some(raw));
            assert_eq!(eff, 300, "{raw:?}");
            assert!(err.is_some(), "{raw:?} should be reported invalid");
        }
        for (raw, want) in [
            ("1", 1),
            ("300", 300),
            (" 600 ", 600),
            ("2592000", 2_592_000),
        ] {
            assert_eq!(effective_timeout(Some(raw)), (want, None));
        }
        assert_eq!(effective_timeout(None), (300, None));
    }

    #[test]
    fn lifetime_parsing() {
        assert_eq!(parse_lifetime("0"), Ok(None));
        assert_eq!(parse_lifetime("28800"), Ok(Some(28_800)));
        assert!(parse_lifetime("30").is_err());
        assert!(parse_lifetime("-1").is_err());
        assert!(parse_lifetime("x").is_err());
    }

    #[test]
    fn heartbeat_interval_is_quarter_capped() {
        assert_eq!(heartbeat_interval_ms(300_000), 60_000);
        assert_eq!(heartbeat_interval_ms(8_000), 2_000);
        assert_eq!(heartbeat_interval_ms(2_000), 1_000);
    }

    #[test]
    fn unknown_class_codes_are_internal() {
        assert_eq!(UserClass::from_i64(99), UserClass::Internal);
        assert!(!UserClass::Internal.is_exempt());
        assert!(UserClass::Portal.is_exempt());
        assert!(UserClass::Public.is_exempt());
    }
}
