//! Wiring: opens the store, loads the settings, builds the actix server on a
//! bound listener (port 0 in tests) and starts the sweeper.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::{web, App, HttpServer};

use crate::clock::Clock;
use crate::config::Settings;
use crate::http::{self, AdminState, AppState};
use crate::metrics::Metrics;
use crate::secret;
use crate::sessions::{LookupConfig, Sessions};
use crate::settings::{Configured, LiveSettings, LIFETIME_KEY, TIMEOUT_KEY, WARN_KEY};
use crate::store::{Store, StoreOptions};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Secret(String),
    #[error("cannot create the database folder {0}: {1}")]
    Folder(String, std::io::Error),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

/// Opens the database and everything that lives as long as the process.
pub async fn open_state(
    settings: &Settings,
    clock: Arc<dyn Clock>,
) -> Result<web::Data<AppState>, StartError> {
    let opts = StoreOptions {
        commit_window: settings.commit_window,
    };
    let store = Arc::new(match &settings.database_url {
        // The PostgreSQL client blocks on a runtime of its own: opened on a
        // plain thread, never on this async one.
        Some(url) => {
            let now = clock.now();
            std::thread::scope(|s| {
                s.spawn(|| Store::open_postgres(url, opts, now))
                    .join()
                    .unwrap_or_else(|_| {
                        Err(crate::store::StoreError::Read(
                            "opening PostgreSQL panicked".into(),
                        ))
                    })
            })?
        }
        None => {
            if let Some(dir) = settings.db.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StartError::Folder(dir.display().to_string(), e))?;
            }
            Store::open(&settings.db, opts, clock.now())?
        }
    });
    let secret = secret::open(settings, &store)
        .await
        .map_err(StartError::Secret)?;

    // Values given in the configuration win over stored ones and are stored,
    // so the admin API and the audit log show what is in force.
    let stored = store.read_settings()?;
    let mut configured = Configured::from_stored(&stored);
    if let Some(w) = settings.warn_before_s.map(|w| w.to_string()) {
        if configured.warn_before.as_deref() != Some(&w) {
            let detail = format!(
                "{WARN_KEY}: {} -> {w} (from the configuration)",
                configured.warn_before.as_deref().unwrap_or("(unset)")
            );
            store.set_setting(WARN_KEY, &w, &detail).await?;
            configured.warn_before = Some(w);
        }
    }
    if let Some(t) = settings.timeout_s.map(|t| t.to_string()) {
        if configured.timeout.as_deref() != Some(&t) {
            let detail = format!(
                "{TIMEOUT_KEY}: {} -> {t} (from the configuration)",
                configured.timeout.as_deref().unwrap_or("(unset)")
            );
            store.set_setting(TIMEOUT_KEY, &t, &detail).await?;
            configured.timeout = Some(t);
        }
    }
    if let Some(l) = settings
        .absolute_lifetime_s
        .map(|l| l.unwrap_or(0).to_string())
    {
        if configured.lifetime.as_deref() != Some(&l) {
            let detail = format!(
                "{LIFETIME_KEY}: {} -> {l} (from the configuration)",
                configured.lifetime.as_deref().unwrap_or("(unset)")
            );
            store.set_setting(LIFETIME_KEY, &l, &detail).await?;
            configured.lifetime = Some(l);
        }
    }
    let admin = AdminState::new(settings.admin_token.as_deref());
    let live = LiveSettings::new(
        configured,
        settings.erp_settings.as_ref().map(|e| e.url.as_str()),
    );

    let erp = LookupConfig {
        session_info_url: settings.session_info_url.clone(),
        cookie_name: settings.cookie_name.clone(),
        lookup_timeout: settings.lookup_timeout,
        public_recheck: settings.public_recheck,
        unknown_retry: settings.public_recheck,
    };
    let metrics = Arc::new(Metrics::default());
    let sessions = Arc::new(Sessions::new(
        store,
        clock,
        metrics,
        erp,
        secret,
        settings.retention,
    ));
    live.apply(&sessions);
    let state = web::Data::new(AppState {
        sessions,
        cookie_name: settings.cookie_name.clone(),
        login_url: settings.login_url.clone(),
        logout_url: settings.logout_url.clone(),
        base_path: settings.base_path.clone(),
        settings: live,
        admin,
    });
    follow_other_replicas(&state);
    Ok(state)
}

/// With replicas sharing the database: settings changed through another one
/// (or found changed after a lost connection) are read and applied here.
fn follow_other_replicas(state: &web::Data<AppState>) {
    let Some(mut changes) = state.sessions.store.settings_changes() else {
        return;
    };
    let weak = Arc::downgrade(&state.clone().into_inner());
    actix_rt::spawn(async move {
        while changes.changed().await.is_ok() {
            let Some(st) = weak.upgrade() else { return };
            let store = st.sessions.store.clone();
            match web::block(move || store.read_settings()).await {
                Ok(Ok(stored)) => {
                    if st.settings.reload(&st.sessions, &stored) {
                        log::info!("settings changed through another replica applied");
                    }
                }
                Ok(Err(e)) => log::warn!("cannot read settings changed elsewhere: {e}"),
                Err(e) => log::warn!("cannot read settings changed elsewhere: {e}"),
            }
        }
    });
}

/// Raises the soft limit of open files to the hard one (systemd's default
/// soft limit is 1024, its hard limit far higher): each connection holds a
/// descriptor. Returns the soft limit in force.
pub fn raise_open_files() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    // rlim_t is u64 on Linux but not on every platform.
    #[allow(clippy::unnecessary_cast)]
    let soft = lim.rlim_cur as u64;
    soft
}

/// Connections per worker: the open-file limit less 256 for everything else,
/// shared by the workers, at most 25,000 (actix's default) and at least 64.
fn connection_cap(workers: usize) -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur
    } else {
        1024
    };
    let free = soft.min(1 << 20).saturating_sub(256) as usize;
    (free / workers.max(1)).clamp(64, 25_000)
}

/// Binds the listener first, so callers (tests, the demo) learn the real
/// port before the server runs.
pub fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).map_err(|e| StartError::Bind(addr, e))
}

/// Builds the HTTP server: the sidecar routes plus whatever `extra` mounts
/// (the demo ERP). The returned server must be awaited or spawned.
pub fn server<F>(
    listener: TcpListener,
    state: web::Data<AppState>,
    workers: usize,
    extra: F,
) -> std::io::Result<actix_web::dev::Server>
where
    F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
{
    let server = HttpServer::new(move || {
        let state = state.clone();
        App::new()
            .app_data(state.clone())
            .configure(|c| http::configure(c, state))
            .configure(extra.clone())
            .default_service(web::to(http::not_found))
    })
    .workers(workers)
    // Every connection costs a file descriptor: a cap per worker that leaves
    // room under the process's limit for the database, the ERP lookups and
    // the proxy's own connections (beyond the cap, connections wait in the
    // listen backlog instead of failing everything else).
    .max_connections(connection_cap(workers))
    .client_request_timeout(std::time::Duration::from_secs(5))
    .client_disconnect_timeout(std::time::Duration::from_secs(1))
    // Idle connections are kept longer than the proxies keep theirs (nginx
    // 60 s, Caddy 2 min by default), so the proxy always closes first: when
    // the server closes a kept-alive connection just as the proxy reuses it,
    // the proxy resends the check, and an ERP request is checked twice.
    .keep_alive(std::time::Duration::from_secs(150))
    .shutdown_timeout(5)
    .listen(listener)?
    .run();
    Ok(server)
}

/// Ends overdue sessions in the background, a full pass every `interval`,
/// one shard at a time, on a thread of its own: no request waits behind a
/// scan of the whole table. The thread stops once the server's state is gone.
pub fn spawn_sweeper(state: &web::Data<AppState>, interval: std::time::Duration) {
    let sessions = Arc::downgrade(&state.sessions);
    let spawned = std::thread::Builder::new()
        .name("sweeper".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                loop {
                    for shard in 0..Store::SHARDS {
                        tokio::time::sleep(interval / Store::SHARDS as u32).await;
                        let Some(sessions) = sessions.upgrade() else {
                            return;
                        };
                        sessions.sweep_shard(shard).await;
                    }
                    let Some(sessions) = sessions.upgrade() else {
                        return;
                    };
                    sessions.purge();
                }
            });
        });
    if let Err(e) = spawned {
        log::error!("cannot start the sweeper thread: {e}; expiries are then recorded when a session is next seen");
    }
}
