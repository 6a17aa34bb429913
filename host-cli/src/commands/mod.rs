//! Subcommands with their own module: a documented clap struct and `run`.

pub mod bench;
pub mod bench_floor;
pub mod bench_load;
mod bench_tenants;
pub mod demo;
pub mod flow;
pub mod mock_api;
pub mod plugin;
pub mod registry;
pub mod serve;
pub mod tenant;
