//! The reference host for `flow:channel` components, as a library: the contract's versions
//! ([`contract`]), the wasmtime embedding ([`runtime`]), the host services a plugin may use
//! ([`services`]), the flow runtime and its store ([`flow`]), the versioned plugin registry
//! ([`registry`]) and the HTTP server ([`server`]). The command line is `host-cli` (the
//! `host-harness` binary); what the demo and the tests stand on is `host-testkit`.
//!
//! The host's vocabulary is the latest contract version's types, [`contract::types`]; the
//! bindings `bindgen!` generates stay inside [`contract`].

pub mod channels;
pub mod contract;
pub mod flow;
pub mod lockfile;
pub mod plugin_manifest;
pub mod registry;
pub mod runtime;
pub mod server;
pub mod services;
pub mod tenants;

pub use contract::json;
pub use runtime::{CallError, Limits, Plugin, Runtime};
pub use services::{HostServices, HttpClient, HttpPolicy, Log, Secrets};

/// The contract this host serves.
pub const CONTRACT: &str = "flow:channel@1.2.0";
