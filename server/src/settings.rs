//! The settings in force: the idle timeout and the absolute lifetime as
//! configured (raw, possibly invalid) and the policy they give, applied to
//! the store. Where the timeout comes from (the sidecar, or the ERP with
//! `--erp-settings-url`) is decided here too. No HTTP here.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use crate::policy::{self, Policy, DEFAULT_TIMEOUT_S};
use crate::rules::{self, Compiled, Rule, RULES_KEY};
use crate::sessions::Sessions;
use crate::store::StoreError;

/// The setting ERP administrators know from the add-on we replace.
pub const TIMEOUT_KEY: &str = "activity_session_timeout_key";
pub const LIFETIME_KEY: &str = "absolute_lifetime_s";
/// Seconds before the logout to show the opt-in notice in the page (0: off).
pub const WARN_KEY: &str = "warn_before_s";
/// The longest notice, and never more than half the timeout (a longer one
/// would be up after every heartbeat answer of an idle user).
pub const MAX_WARN_BEFORE_S: u64 = 86_400;

/// The settings as configured (raw strings, possibly invalid).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Configured {
    pub timeout: Option<String>,
    pub lifetime: Option<String>,
    pub warn_before: Option<String>,
    /// The rules per group and per user (`rules::RULES_KEY`, JSON).
    pub rules: Option<String>,
}

impl Configured {
    /// The policy these values give, with a warning for each invalid one.
    pub fn effective(&self) -> (Policy, Vec<String>) {
        let mut warnings = Vec::new();
        let (timeout, err) = policy::effective_timeout(self.timeout.as_deref());
        if let Some(e) = err {
            warnings.push(format!(
                "{TIMEOUT_KEY} is invalid ({e}); using {DEFAULT_TIMEOUT_S} s"
            ));
        }
        let lifetime = match self.lifetime.as_deref().map(policy::parse_lifetime) {
            None => None,
            Some(Ok(v)) => v,
            Some(Err(e)) => {
                warnings.push(format!(
                    "{LIFETIME_KEY} is invalid ({e}); absolute lifetime is off"
                ));
                None
            }
        };
        (Policy::new(timeout, lifetime), warnings)
    }

    /// The rules in force, or none (with why) when the stored text is not
    /// valid rules: the global policy then applies to everyone.
    pub fn rules(&self) -> (Vec<Rule>, Option<String>) {
        match rules::parse_rules(self.rules.as_deref().unwrap_or("")) {
            Ok(r) => (r, None),
            Err(e) => (
                Vec::new(),
                Some(format!(
                    "{RULES_KEY} is invalid ({e}); no rule per group or user applies"
                )),
            ),
        }
    }

    /// The settings as stored (by their keys).
    pub fn from_stored(stored: &HashMap<String, String>) -> Configured {
        let get = |key: &str| stored.get(key).cloned();
        Configured {
            timeout: get(TIMEOUT_KEY),
            lifetime: get(LIFETIME_KEY),
            warn_before: get(WARN_KEY),
            rules: get(RULES_KEY),
        }
    }

    /// The value of a setting by its key.
    pub fn get(&self, key: &str) -> Option<&String> {
        match key {
            TIMEOUT_KEY => self.timeout.as_ref(),
            LIFETIME_KEY => self.lifetime.as_ref(),
            WARN_KEY => self.warn_before.as_ref(),
            RULES_KEY => self.rules.as_ref(),
            _ => None,
        }
    }

    /// Sets a setting by its key (unknown keys are ignored).
    pub fn set(&mut self, key: &str, value: String) {
        match key {
            TIMEOUT_KEY => self.timeout = Some(value),
            LIFETIME_KEY => self.lifetime = Some(value),
            WARN_KEY => self.warn_before = Some(value),
            RULES_KEY => self.rules = Some(value),
            _ => {}
        }
    }

    /// The notice's lead in seconds as configured (0: off, or invalid).
    pub fn warn_before_s(&self) -> u64 {
        self.warn_before
            .as_deref()
            .and_then(|w| policy::parse_seconds(w, 0, MAX_WARN_BEFORE_S).ok())
            .unwrap_or(0)
    }

    /// The notice's lead the page is told: at most half the timeout.
    pub fn effective_warn_before_s(&self) -> u64 {
        let (policy, _) = self.effective();
        self.warn_before_s().min(policy.timeout_s() / 2)
    }
}

/// What the last reads gave, for the admin API and the logs.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct SyncStatus {
    /// Wall-clock time (ms since the epoch) of the last successful read.
    pub last_ok_ms: Option<u64>,
    /// Why the last read failed, if it did.
    pub last_error: Option<String>,
    /// Whether the ERP sends the absolute lifetime (an addon with the
    /// field): then the ERP owns it as it owns the timeout.
    pub owns_lifetime: bool,
}

/// The ERP's source of the timeout, as the admin API shows it.
#[derive(Debug)]
pub struct ErpSource {
    pub url: String,
    pub status: Mutex<SyncStatus>,
}

/// The settings of the running server.
pub struct LiveSettings {
    pub configured: RwLock<Configured>,
    /// Set when the ERP owns the idle timeout (`--erp-settings-url`).
    pub erp: Option<ErpSource>,
}

impl LiveSettings {
    pub fn new(configured: Configured, erp_url: Option<&str>) -> LiveSettings {
        LiveSettings {
            configured: RwLock::new(configured),
            erp: erp_url.map(|url| ErpSource {
                url: url.to_string(),
                status: Default::default(),
            }),
        }
    }

    pub fn configured(&self) -> Configured {
        self.configured
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Applies the configured values to the store's live policy, logging a
    /// warning for each invalid one.
    pub fn apply(&self, sessions: &Sessions) {
        let (policy, warnings) = self.configured().effective();
        for w in warnings {
            log::warn!("{w}");
        }
        let (rules, invalid) = self.configured().rules();
        if let Some(w) = invalid {
            log::warn!("{w}");
        }
        sessions.set_policy(policy);
        sessions.set_rules(Compiled::new(&rules));
    }

    /// Takes the stored values (changed through another replica) and applies
    /// them; `true` when something changed.
    pub fn reload(&self, sessions: &Sessions, stored: &HashMap<String, String>) -> bool {
        let fresh = Configured::from_stored(stored);
        {
            let mut c = self.configured.write().unwrap_or_else(|e| e.into_inner());
            if *c == fresh {
                return false;
            }
            *c = fresh;
        }
        self.apply(sessions);
        true
    }

    /// Stores a setting read from the ERP (the timeout, the notice's lead,
    /// the absolute lifetime, the rules) when it differs from the one in
    /// force (`None`: unset in the ERP, so the default applies), with an
    /// audit entry naming who changed it in the ERP when known, and applies
    /// it to the next request.
    pub async fn apply_erp(
        &self,
        sessions: &Sessions,
        key: &str,
        raw: Option<String>,
        by: Option<&str>,
    ) -> Result<(), StoreError> {
        // Stored as an empty value when unset: invalid, so the default applies.
        let text = raw.map(|r| r.trim().to_string()).unwrap_or_default();
        let old = self.configured().get(key).cloned();
        // Unset in the ERP and never set here: nothing to record.
        if old.as_deref().unwrap_or("") == text {
            return Ok(());
        }
        let by = by.map(|b| format!(", by {b}")).unwrap_or_default();
        let detail = format!(
            "{key}: {} -> {} (from the ERP{by})",
            old.as_deref().unwrap_or("(unset)"),
            if text.is_empty() { "(unset)" } else { &text }
        );
        sessions.store.set_setting(key, &text, &detail).await?;
        self.configured
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .set(key, text);
        log::info!("setting changed: {detail}");
        self.apply(sessions);
        Ok(())
    }
}
