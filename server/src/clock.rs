//! Time as an input. Production reads the system clock; tests drive a
//! `ManualClock` so they need not sleep through timeouts.

use std::sync::atomic::{AtomicI64, Ordering};

use crate::policy::Millis;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Millis;
}

/// The server's clock: the wall clock, read so that a step of it (an NTP
/// step, a virtual machine resumed) is taken in slowly rather than at once.
/// Elapsed time comes from the monotonic clock; the offset to the wall
/// clock follows it at once when they differ by at most `SMALL_GAP_MS`, and
/// otherwise by 1 ms per `SLEW_PER_MS` ms (1%), as NTP slews. So a wall clock
/// stepped 13 s forward does not end every session 13 s early, and one
/// stepped back does not hold sessions open; the time stays the wall
/// clock's to within the slew (audit log, ERP requests).
pub struct SystemClock {
    start: std::time::Instant,
    /// Wall clock minus the monotonic clock, in ms.
    offset: AtomicI64,
    /// Monotonic ms when `offset` last changed or matched the wall clock.
    adjusted: AtomicI64,
}

const SMALL_GAP_MS: i64 = 500;
const SLEW_PER_MS: i64 = 100;

/// The wall clock, in ms since the Unix epoch.
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl SystemClock {
    pub fn new() -> SystemClock {
        SystemClock {
            start: std::time::Instant::now(),
            offset: AtomicI64::new(wall_ms()),
            adjusted: AtomicI64::new(0),
        }
    }

    /// The time at monotonic `mono` ms with the wall clock at `wall`.
    fn at(&self, mono: i64, wall: i64) -> Millis {
        let off = self.offset.load(Ordering::Relaxed);
        let gap = wall - mono - off;
        if gap == 0 {
            // In step: a later step is slewed from here. Noted once a second
            // at most, not on every request (at most 10 ms credited early).
            if mono - self.adjusted.load(Ordering::Relaxed) >= 1_000 {
                self.adjusted.store(mono, Ordering::Relaxed);
            }
        } else {
            let step = if gap.abs() <= SMALL_GAP_MS {
                gap
            } else {
                let since = mono - self.adjusted.load(Ordering::Relaxed);
                gap.signum() * (since / SLEW_PER_MS).min(gap.abs())
            };
            if step != 0
                && self
                    .offset
                    .compare_exchange(off, off + step, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                self.adjusted.store(mono, Ordering::Relaxed);
            }
        }
        Millis(mono + self.offset.load(Ordering::Relaxed))
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        let mono = self.start.elapsed().as_millis() as i64;
        self.at(mono, wall_ms())
    }
}

/// A clock that moves only when told to; it starts at the real time.
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new() -> ManualClock {
        ManualClock(AtomicI64::new(wall_ms()))
    }
    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
    pub fn set(&self, t: Millis) {
        self.0.store(t.0, Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        Millis(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stepped_wall_clock_is_taken_in_slowly_and_small_gaps_at_once() {
        let c = SystemClock {
            start: std::time::Instant::now(),
            offset: AtomicI64::new(1_000_000),
            adjusted: AtomicI64::new(0),
        };
        assert_eq!(c.at(0, 1_000_000), Millis(1_000_000));
        // NTP's small corrections: followed at once.
        assert_eq!(c.at(1_000, 1_001_300), Millis(1_001_300));
        // A 13 s step forward: 1 s later the clock has moved 1 s and 10 ms.
        let base = c.at(2_000, 1_002_300).0;
        assert_eq!(base, 1_002_300);
        assert_eq!(c.at(3_000, 1_016_300), Millis(base + 1_000 + 10));
        // It catches up at 1% (13 s in about 1300 s), the last half second at once.
        let mut last = 0;
        for s in 4..2_000 {
            let t = c.at(s * 1_000, 1_002_300 + 13_000 + (s - 2) * 1_000).0;
            assert!(
                t - last <= 1_010 + SMALL_GAP_MS || last == 0,
                "slewed, not stepped"
            );
            last = t;
        }
        assert_eq!(last, 1_002_300 + 13_000 + 1_997 * 1_000, "caught up");
        // A step back: time goes on, only 1% slower, until caught up.
        let before = c.at(2_000_000, 1_002_300 + 13_000 + 1_998 * 1_000).0;
        let after = c.at(2_001_000, 1_002_300 + 1_999 * 1_000).0;
        assert_eq!(after - before, 1_000 - 10);
    }
}
