//! Subcommands with their own module: a documented clap struct and `run`.

pub mod flow;
pub mod serve;
