//! The `stickyroute` binary: parses the command line and calls the library.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use stickyroute::demo::node::RouteSource;
use stickyroute::demo::own_route::PtrLookup;

/// jemalloc rather than glibc's malloc: see the `jemalloc` feature in Cargo.toml.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "stickyroute",
    version,
    about = "Sticky-session load balancer for Tomcat-style application servers"
)]
struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the balancer.
    Serve(stickyroute::cli::serve::ServeArgs),
    /// Talk to a running balancer's admin API: status, drain / disable / activate / standby a
    /// node, reload the configuration.
    Ctl(stickyroute::cli::ctl::CtlArgs),
    /// Validate a configuration file: exit 0 with a summary, or 1 with the error.
    Check {
        #[arg(short, long, default_value = "balancer.yaml")]
        config: PathBuf,
    },
    /// Print a balancer.yaml made from an httpd balancer configuration: `import mod-jk
    /// workers.properties [--uri-map uriworkermap.properties]` or `import mod-proxy httpd.conf`.
    Import(stickyroute::cli::import::ImportArgs),
    /// Run one Tomcat-like demo application server.
    DemoNode {
        /// The node's jvmRoute.
        #[arg(long, default_value = "jvm1")]
        route: String,
        /// Take the route from DNS instead: the first label of the PTR name of the node's own
        /// address (what a balancer's `discovery.host` computes for it; for `compose --scale`).
        #[arg(long, conflicts_with = "route")]
        route_from_ptr: bool,
        /// With --route-from-ptr: the address whose PTR name gives the route (default: the
        /// first address the host name resolves to that is not loopback or link-local).
        #[arg(long, requires = "route_from_ptr")]
        ptr_address: Option<IpAddr>,
        /// With --route-from-ptr: the DNS server to ask, IP:PORT (default: /etc/resolv.conf's).
        #[arg(long, requires = "route_from_ptr")]
        resolver: Option<SocketAddr>,
        #[arg(long, default_value = "127.0.0.1:18081")]
        listen: SocketAddr,
        /// memory | redis://… | postgres://… | mysql://…
        #[arg(long, default_value = "memory")]
        store: String,
        #[arg(long, default_value = "30m", value_parser = stickyroute::config::duration::parse)]
        session_timeout: Duration,
        /// Behave like Tomcat's JvmRouteBinderValve (rename a foreign-route session).
        #[arg(long)]
        binder_valve: bool,
    },
    /// Three demo nodes sharing a session store, the balancer in front, and a guide to try
    /// failover; `demo stop|start|status` control a running demo from another terminal.
    Demo(stickyroute::demo::command::DemoArgs),
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    stickyroute::proxy::access_log::install(match format {
        LogFormat::Text => stickyroute::proxy::access_log::Format::Text,
        LogFormat::Json => stickyroute::proxy::access_log::Format::Json,
    });
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` runs its control plane on this thread and its proxy listeners on worker threads
    // of their own (thread per core); everything else runs on a multi-threaded runtime.
    let runtime = if matches!(cli.command, Command::Serve { .. }) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    match runtime {
        Ok(rt) => {
            let code = rt.block_on(run(cli));
            stickyroute::proxy::access_log::flush();
            code
        }
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Ctl(args) => stickyroute::cli::ctl::run_cli(args).await,
        Command::Check { config } => stickyroute::cli::check::run_cli(&config),
        Command::Import(args) => stickyroute::cli::import::run_cli(&args),
        Command::Serve(args) => {
            init_tracing(cli.log_format);
            stickyroute::cli::serve::run(args).await
        }
        Command::DemoNode {
            route,
            route_from_ptr,
            ptr_address,
            resolver,
            listen,
            store,
            session_timeout,
            binder_valve,
        } => {
            init_tracing(cli.log_format);
            let route = if route_from_ptr {
                RouteSource::FromPtr(PtrLookup {
                    address: ptr_address,
                    resolver,
                })
            } else {
                RouteSource::Given(route)
            };
            exit_code(
                stickyroute::demo::node::run_demo_node_cli(
                    route,
                    listen,
                    store,
                    session_timeout,
                    binder_valve,
                )
                .await,
            )
        }
        Command::Demo(args) => {
            init_tracing(cli.log_format);
            exit_code(stickyroute::demo::command::run_cli(args).await)
        }
    }
}

/// 0, or 1 with the error on stderr.
fn exit_code<E: std::fmt::Display>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
