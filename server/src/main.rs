//! The `session-timeout` binary: `serve`, `demo`, `settings`, `sessions`,
//! `policy`.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use session_timeout::cli::{self, ClientOptions, PolicyCmd, SessionsCmd, SettingsCmd};
use session_timeout::clock::SystemClock;
use session_timeout::config::{RawOptions, Settings};
use session_timeout::demo::DemoErp;
use session_timeout::startup;

#[derive(Parser)]
#[command(
    name = "session-timeout",
    version,
    about = "Logs idle ERP users out, enforced on the server."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the sidecar beside the ERP (behind the reverse proxy).
    Serve(RawOptions),
    /// Run a demo ERP with the sidecar mounted in it, on one port.
    Demo {
        #[command(flatten)]
        opts: RawOptions,
        /// Folder with the web assets (the wasm client and the demo pages).
        #[arg(long, env = "SESSION_TIMEOUT_WWW", default_value = "www")]
        www: PathBuf,
        /// Serve the ERP pages without asking the embedded sidecar, like a plain
        /// ERP, so that a reverse proxy in front is the only gate (proxy tests).
        #[arg(long)]
        no_enforce: bool,
    },
    /// Read or change settings of the running sidecar.
    Settings {
        #[command(subcommand)]
        cmd: SettingsCmd,
        #[command(flatten)]
        client: ClientOptions,
    },
    /// List or revoke sessions of the running sidecar.
    Sessions {
        #[command(subcommand)]
        cmd: SessionsCmd,
        #[command(flatten)]
        client: ClientOptions,
    },
    /// Timeouts per group and per user, compliance presets and the report.
    Policy {
        #[command(subcommand)]
        cmd: PolicyCmd,
        #[command(flatten)]
        client: ClientOptions,
    },
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let code = actix_rt::System::new().block_on(async move {
        match cli.cmd {
            Cmd::Serve(opts) => run(resolve(opts, "127.0.0.1:8390"), None).await,
            Cmd::Demo {
                opts,
                www,
                no_enforce,
            } => run(resolve(opts, "127.0.0.1:8080"), Some((www, !no_enforce))).await,
            Cmd::Settings { cmd, client } => finish(cli::settings(client, cmd).await),
            Cmd::Sessions { cmd, client } => finish(cli::sessions(client, cmd).await),
            Cmd::Policy { cmd, client } => finish(cli::policy(client, cmd).await),
        }
    });
    std::process::exit(code);
}

fn resolve(opts: RawOptions, default_bind: &str) -> Settings {
    opts.resolve(default_bind).unwrap_or_else(|e| {
        eprintln!("session-timeout: {e}");
        std::process::exit(2);
    })
}

fn finish(r: Result<(), cli::Failure>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(cli::Failure(msg, code)) => {
            eprintln!("session-timeout: {msg}");
            code
        }
    }
}

async fn run(mut settings: Settings, demo: Option<(PathBuf, bool)>) -> i32 {
    let open_files = startup::raise_open_files();
    log::info!("open-file limit {open_files}");
    let listener = match startup::bind(settings.bind) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("session-timeout: {e}");
            return 1;
        }
    };
    let addr = listener.local_addr().unwrap_or(settings.bind);
    if demo.is_some() {
        // The demo ERP answers the session-info lookups itself.
        settings.session_info_url = Some(format!("http://{addr}/web/session/get_session_info"));
    }
    let state = match startup::open_state(&settings, Arc::new(SystemClock::new())).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("session-timeout: {e}");
            return 1;
        }
    };
    startup::spawn_sweeper(&state, settings.sweep_interval);
    if let Some(erp) = settings.erp_settings.clone() {
        session_timeout::erp_settings::spawn_poller(state.clone(), erp, settings.lookup_timeout);
    }
    let policy = state.sessions.policy();
    let server = match demo {
        Some((www, enforce)) => {
            let erp = DemoErp::new(www).enforce(enforce);
            println!(
                "Demo ERP with the session timeout ({} s idle) at http://{addr}/web/login",
                policy.timeout_s()
            );
            println!("  users: admin/admin (internal, timed out), portal/portal (portal, exempt); Ctrl-C stops");
            startup::server(listener, state.clone(), settings.workers, move |c| {
                erp.configure(c)
            })
        }
        None => {
            log::info!(
                "sidecar listening on http://{addr}{} (timeout {} s, database {})",
                settings.base_path,
                policy.timeout_s(),
                settings.database_label()
            );
            startup::server(listener, state.clone(), settings.workers, |_| {})
        }
    };
    let result = match server {
        Ok(s) => s.await,
        Err(e) => Err(e),
    };
    // Commit heartbeats still waiting for their window before exiting.
    state.sessions.store.close();
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("session-timeout: server error: {e}");
            1
        }
    }
}
