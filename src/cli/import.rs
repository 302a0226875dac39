//! `stickyroute import mod-jk FILE [--uri-map FILE]` and `stickyroute import mod-proxy FILE`:
//! reads the httpd balancer configuration and prints the `balancer.yaml` that
//! `crate::import` makes of it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::import::{self, ImportError, Input};

#[derive(Args)]
pub struct ImportArgs {
    #[command(subcommand)]
    pub source: ImportSource,
}

#[derive(Subcommand)]
pub enum ImportSource {
    /// mod_jk: the lb workers of a workers.properties become pools, their ajp13 members nodes.
    ModJk {
        /// workers.properties
        file: PathBuf,
        /// uriworkermap.properties: the mounts give the pools' path prefixes.
        #[arg(long)]
        uri_map: Option<PathBuf>,
    },
    /// mod_proxy_balancer: the <Proxy balancer://…> sections of an httpd.conf become pools.
    ModProxy {
        /// httpd.conf (or the file holding the balancer sections)
        file: PathBuf,
    },
}

/// The YAML text, or the error naming the file (and line).
pub fn run(args: &ImportArgs) -> Result<String, ImportError> {
    let env = |name: &str| std::env::var(name).ok();
    match &args.source {
        ImportSource::ModJk { file, uri_map } => {
            let (name, text) = read(file)?;
            let map = uri_map.as_deref().map(read).transpose()?;
            let map = map.as_ref().map(|(name, text)| Input { name, text });
            import::mod_jk(
                Input {
                    name: &name,
                    text: &text,
                },
                map,
                &env,
            )
        }
        ImportSource::ModProxy { file } => {
            let (name, text) = read(file)?;
            import::mod_proxy(Input {
                name: &name,
                text: &text,
            })
        }
    }
}

fn read(path: &Path) -> Result<(String, String), ImportError> {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((name, text)),
        Err(e) => Err(ImportError {
            file: name,
            line: None,
            message: format!("cannot read: {e}"),
        }),
    }
}

/// `stickyroute import`: the YAML on stdout (exit 0), or the error on stderr (exit 1).
pub fn run_cli(args: &ImportArgs) -> ExitCode {
    match run(args) {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
