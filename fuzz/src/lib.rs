//! The HTTP/1 codec of stickyroute, compiled from its own source for fuzzing (see
//! Cargo.toml for why it is not a dependency on the crate).

#[path = "../../src/h1/mod.rs"]
pub mod h1;
