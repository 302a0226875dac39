//! `stickyroute serve`: loads the configuration, starts the worker threads and the balancer
//! (`control::Running`), and runs until SIGTERM / SIGINT; SIGHUP reloads the configuration.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::control::Running;
use crate::proxy::workers::{self, Workers};

/// Exit code of `serve` for a configuration it cannot load (64, `EX_USAGE` of sysexits.h).
/// `check` reports an invalid file with 1, its ordinary failure.
pub const EXIT_CONFIG: u8 = 64;

/// `stickyroute serve` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Configuration file.
    #[arg(short, long, default_value = "balancer.yaml")]
    pub config: PathBuf,
    /// Worker threads for the proxy listeners, each with its own runtime and sockets
    /// (SO_REUSEPORT); 0 means one per CPU, 1 runs everything on one thread.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Time in-flight requests get to finish on SIGTERM / SIGINT.
    #[arg(long, default_value = "30s", value_parser = crate::config::duration::parse)]
    pub grace: Duration,
}

/// Runs the balancer until a shutdown signal and its grace period are over. Errors go to
/// stderr: [`EXIT_CONFIG`] for the configuration (the file, plus `STICKYROUTE_ADMIN_TOKEN`,
/// read the way every reload reads it), 1 when the threads or the listeners cannot start.
pub async fn run(args: ServeArgs) -> ExitCode {
    let cfg = match crate::control::load_config(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    #[cfg(unix)]
    let hup = crate::control::listen_for_sighup();
    let workers = match start_workers(args.threads) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: cannot start the worker threads: {e}");
            return ExitCode::from(1);
        }
    };
    let running = match Running::start_on(cfg, args.grace, workers).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    #[cfg(unix)]
    if let Some(hup) = hup {
        tokio::spawn(crate::control::reload_on_sighup(
            running.control().clone(),
            hup,
        ));
    }
    let token = running.shutdown_token();
    tokio::spawn(async move {
        crate::proxy::listener::shutdown_signal().await;
        tracing::info!("shutdown requested");
        token.cancel();
    });
    running.wait().await;
    ExitCode::SUCCESS
}

/// `--threads`: 1 runs everything on the calling thread, with no worker thread at all.
fn start_workers(threads: usize) -> std::io::Result<Workers> {
    if threads == 1 {
        Ok(Workers::inline())
    } else {
        Workers::start(workers::count_for(threads))
    }
}
