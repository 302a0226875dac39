//! The HTTP/1 and AJP codecs, the pure core and the config loader of stickyroute, compiled from their
//! own source for fuzzing (see Cargo.toml for why they are not a dependency on the crate).

#[path = "../../src/h1/mod.rs"]
pub mod h1;

#[path = "../../src/ajp/mod.rs"]
pub mod ajp;

#[path = "../../src/core/mod.rs"]
pub mod core;

#[path = "../../src/config/mod.rs"]
pub mod config;
