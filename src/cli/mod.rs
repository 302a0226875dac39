//! Command-line tools that are clients, not the server: `check` (validate a config file) and
//! `ctl` (a client of the admin API, which needs only `control::api`'s types), with `ctl turnover`
//! in `turnover`.

pub mod check;
pub mod ctl;
pub mod turnover;
