//! `stickyroute import`: an Apache httpd balancer configuration (mod_jk's `workers.properties`
//! with its `uriworkermap.properties`, or mod_proxy_balancer's `<Proxy balancer://…>` blocks
//! in `httpd.conf`) turned into `balancer.yaml` text, with a comment on every setting that
//! could not be carried over and why. Pure: the caller reads the files and prints the result.
//!
//! | file           | what it owns                                                          |
//! |----------------|-----------------------------------------------------------------------|
//! | `properties.rs`| the `name=value` format of mod_jk's files, `$(var)` substitution      |
//! | `mod_jk.rs`    | workers → pools and nodes (lb worker → pool, ajp13 member → node)     |
//! | `uri_map.rs`   | `uriworkermap.properties` and `worker.X.mount` → the pools' path prefixes |
//! | `httpd.rs`     | httpd.conf's directive and `<Section>` structure                     |
//! | `mod_proxy.rs` | `<Proxy balancer://…>`, `BalancerMember`, `ProxySet`, `ProxyPass`, `Listen` → pools |
//! | `model.rs`     | what both produce: the parts of a config, each value with its note    |
//! | `yaml.rs`      | the model as YAML text with comments                                  |

use std::fmt;

mod httpd;
mod mod_jk;
mod mod_proxy;
mod model;
mod properties;
mod uri_map;
mod yaml;

/// One input file: its name (for errors and the output's header) and its text.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub name: &'a str,
    pub text: &'a str,
}

/// A file that cannot be read as what it should be: the file, the line, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

impl ImportError {
    fn at(file: &str, line: usize, message: impl Into<String>) -> ImportError {
        ImportError {
            file: file.to_string(),
            line: Some(line),
            message: message.into(),
        }
    }

    fn whole(file: &str, message: impl Into<String>) -> ImportError {
        ImportError {
            file: file.to_string(),
            line: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for ImportError {}

/// `balancer.yaml` from mod_jk's `workers.properties` and, when given, the
/// `uriworkermap.properties` that mounts its workers; `env` looks up the environment
/// variables `$(NAME)` may refer to.
pub fn mod_jk(
    workers: Input,
    uri_map: Option<Input>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ImportError> {
    let balancer = mod_jk::import(workers, uri_map, env)?;
    Ok(yaml::write(&balancer))
}

/// `balancer.yaml` from the `<Proxy balancer://…>` blocks, `ProxyPass` lines and `Listen`
/// directives of an httpd configuration file.
pub fn mod_proxy(conf: Input) -> Result<String, ImportError> {
    let balancer = mod_proxy::import(conf)?;
    Ok(yaml::write(&balancer))
}
