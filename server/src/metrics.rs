//! Counters for `GET /metrics`, in the Prometheus text format. Plain atomics:
//! counting must cost next to nothing on the hot paths.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::lookup::Lookup;
use crate::policy::{EndReason, UserClass};
use crate::store::Store;

/// The routes we report separately; anything else is `other`.
pub const ROUTES: [&str; 10] = [
    "heartbeat",
    "check",
    "logout",
    "auth",
    "config",
    "admin",
    "healthz",
    "metrics",
    "other",
    "demo",
];
const BUCKETS_S: [f64; 11] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0, 5.0,
];
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

#[derive(Default)]
struct RouteStats {
    by_status: [AtomicU64; 5],
    buckets: [AtomicU64; BUCKETS_S.len()],
    sum_us: AtomicU64,
    count: AtomicU64,
}

#[derive(Default)]
pub struct Metrics {
    routes: [RouteStats; ROUTES.len()],
    heartbeats_active: AtomicU64,
    heartbeats_refused: AtomicU64,
    expiries: [AtomicU64; 4],
    lookups: [AtomicU64; 4],
    ambiguous: AtomicU64,
}

impl Metrics {
    pub fn route_index(name: &str) -> usize {
        ROUTES.iter().position(|r| *r == name).unwrap_or(8)
    }

    pub fn observe(&self, route: usize, status: u16, micros: u64) {
        let r = &self.routes[route.min(ROUTES.len() - 1)];
        let class = (status / 100).clamp(1, 5) as usize - 1;
        r.by_status[class].fetch_add(1, Relaxed);
        r.count.fetch_add(1, Relaxed);
        r.sum_us.fetch_add(micros, Relaxed);
        let secs = micros as f64 / 1e6;
        if let Some(i) = BUCKETS_S.iter().position(|b| secs <= *b) {
            r.buckets[i].fetch_add(1, Relaxed);
        }
    }

    pub fn count_heartbeat(&self, accepted: bool) {
        if accepted {
            &self.heartbeats_active
        } else {
            &self.heartbeats_refused
        }
        .fetch_add(1, Relaxed);
    }

    pub fn count_expiry(&self, reason: EndReason) {
        let i = match reason {
            EndReason::IdleTimeout => 0,
            EndReason::AbsoluteLifetime => 1,
            EndReason::Logout => 2,
            EndReason::Revoked => 3,
        };
        self.expiries[i].fetch_add(1, Relaxed);
    }

    /// A forward-auth request refused because its session id could not be
    /// read as the ERP reads it.
    pub fn count_ambiguous(&self) {
        self.ambiguous.fetch_add(1, Relaxed);
    }

    pub fn count_lookup(&self, l: &Lookup) {
        let i = match l {
            Lookup::Internal { .. } => 0,
            Lookup::Portal { .. } => 1,
            Lookup::Public => 2,
            Lookup::Unknown(_) => 3,
        };
        self.lookups[i].fetch_add(1, Relaxed);
    }

    /// Renders everything, including a census of the sessions in memory.
    pub fn render(&self, store: &Store) -> String {
        let mut out = String::with_capacity(4096);
        let (mut active, mut exempt, mut ended) = (0u64, 0u64, 0u64);
        store.for_each(|_, e| {
            if e.is_ended() {
                ended += 1
            } else if e.class == UserClass::Internal {
                active += 1
            } else {
                exempt += 1
            }
        });
        let _ = writeln!(
            out,
            "# HELP session_timeout_sessions Sessions known to the sidecar, by state."
        );
        let _ = writeln!(out, "# TYPE session_timeout_sessions gauge");
        for (state, n) in [("active", active), ("exempt", exempt), ("ended", ended)] {
            let _ = writeln!(out, "session_timeout_sessions{{state=\"{state}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP session_timeout_ambiguous_refused_total Proxied requests refused because their session id could not be read as the ERP reads it."
        );
        let _ = writeln!(
            out,
            "# TYPE session_timeout_ambiguous_refused_total counter"
        );
        let _ = writeln!(
            out,
            "session_timeout_ambiguous_refused_total {}",
            self.ambiguous.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP session_timeout_heartbeats_total Heartbeats received, by outcome."
        );
        let _ = writeln!(out, "# TYPE session_timeout_heartbeats_total counter");
        let _ = writeln!(
            out,
            "session_timeout_heartbeats_total{{result=\"recorded\"}} {}",
            self.heartbeats_active.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "session_timeout_heartbeats_total{{result=\"not_recorded\"}} {}",
            self.heartbeats_refused.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP session_timeout_endings_total Sessions ended, by reason."
        );
        let _ = writeln!(out, "# TYPE session_timeout_endings_total counter");
        for (i, reason) in ["idle_timeout", "absolute_lifetime", "logout", "revoked"]
            .iter()
            .enumerate()
        {
            let _ = writeln!(
                out,
                "session_timeout_endings_total{{reason=\"{reason}\"}} {}",
                self.expiries[i].load(Relaxed)
            );
        }
        let _ = writeln!(out, "# HELP session_timeout_erp_lookups_total Questions to the ERP about who owns a session, by answer.");
        let _ = writeln!(out, "# TYPE session_timeout_erp_lookups_total counter");
        for (i, class) in ["internal", "portal", "public", "unknown"]
            .iter()
            .enumerate()
        {
            let _ = writeln!(
                out,
                "session_timeout_erp_lookups_total{{answer=\"{class}\"}} {}",
                self.lookups[i].load(Relaxed)
            );
        }
        let s = &store.stats;
        let _ = writeln!(
            out,
            "# HELP session_timeout_db_commits_total SQLite commits (each one fsync of the WAL)."
        );
        let _ = writeln!(out, "# TYPE session_timeout_db_commits_total counter");
        let _ = writeln!(
            out,
            "session_timeout_db_commits_total {}",
            s.commits.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# TYPE session_timeout_db_failed_commits_total counter"
        );
        let _ = writeln!(
            out,
            "session_timeout_db_failed_commits_total {}",
            s.failed_commits.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# TYPE session_timeout_db_heartbeat_rows_total counter"
        );
        let _ = writeln!(
            out,
            "session_timeout_db_heartbeat_rows_total {}",
            s.heartbeat_rows.load(Relaxed)
        );
        let _ = writeln!(out, "# HELP session_timeout_db_commit_wait_max_seconds Longest time a heartbeat waited for its group commit.");
        let _ = writeln!(
            out,
            "# TYPE session_timeout_db_commit_wait_max_seconds gauge"
        );
        let _ = writeln!(
            out,
            "session_timeout_db_commit_wait_max_seconds {}",
            s.max_wait_us.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "# HELP session_timeout_http_requests_total HTTP requests, by route and status class."
        );
        let _ = writeln!(out, "# TYPE session_timeout_http_requests_total counter");
        for (ri, r) in self.routes.iter().enumerate() {
            for (ci, c) in STATUS_CLASSES.iter().enumerate() {
                let n = r.by_status[ci].load(Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "session_timeout_http_requests_total{{route=\"{}\",status=\"{c}\"}} {n}",
                        ROUTES[ri]
                    );
                }
            }
        }
        let _ = writeln!(
            out,
            "# HELP session_timeout_http_request_duration_seconds Time to answer, by route."
        );
        let _ = writeln!(
            out,
            "# TYPE session_timeout_http_request_duration_seconds histogram"
        );
        for (ri, r) in self.routes.iter().enumerate() {
            let count = r.count.load(Relaxed);
            if count == 0 {
                continue;
            }
            let mut cumulative = 0;
            for (bi, b) in BUCKETS_S.iter().enumerate() {
                cumulative += r.buckets[bi].load(Relaxed);
                let _ = writeln!(out, "session_timeout_http_request_duration_seconds_bucket{{route=\"{}\",le=\"{b}\"}} {cumulative}", ROUTES[ri]);
            }
            let _ = writeln!(out, "session_timeout_http_request_duration_seconds_bucket{{route=\"{}\",le=\"+Inf\"}} {count}", ROUTES[ri]);
            let _ = writeln!(
                out,
                "session_timeout_http_request_duration_seconds_sum{{route=\"{}\"}} {}",
                ROUTES[ri],
                r.sum_us.load(Relaxed) as f64 / 1e6
            );
            let _ = writeln!(
                out,
                "session_timeout_http_request_duration_seconds_count{{route=\"{}\"}} {count}",
                ROUTES[ri]
            );
        }
        out
    }
}
