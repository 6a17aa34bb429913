//! Reference host for `flow:channel` components: a wasmtime embedding ([`runtime`]), the host
//! services a plugin may use ([`services`]), an embedded mock of the WhatsApp Cloud API
//! ([`mock`]), a versioned plugin registry ([`registry`]) and the CLI's commands ([`cli`]).
//!
//! The host works with the types `bindgen!` generates from `wit/` directly; [`bindings`] is
//! the only place they are defined.

pub mod channels;
pub mod cli;
pub mod commands;
pub mod contract;
pub mod flow;
pub mod lockfile;
pub mod plugin_manifest;
pub mod registry;
pub mod runtime;
pub mod server;
pub mod services;
pub mod testkit;

pub use bindings::flow::channel::types;
pub use contract::{bindings, json};
pub use runtime::{CallError, Limits, Plugin, Runtime};
pub use services::{HostServices, HttpClient, HttpPolicy, Log, Secrets};
pub use testkit::{mock, stack};

/// The WhatsApp component built from this repository by `build.rs`.
pub const WHATSAPP_CHANNEL_WASM: &str = env!("WHATSAPP_CHANNEL_WASM");

/// The SMS component from `examples/sms-channel`, built by `build.rs`.
pub const SMS_CHANNEL_WASM: &str = env!("SMS_CHANNEL_WASM");

/// A test fixture that misbehaves on request (`tests/fixtures/hostile-channel`).
pub const HOSTILE_CHANNEL_WASM: &str = env!("HOSTILE_CHANNEL_WASM");

/// The lock file of the built channels (`target/component/plugins.lock`, written by
/// `build.rs`): what `serve` loads when it is given no lock file.
pub const BUILT_PLUGINS_LOCK: &str = env!("BUILT_PLUGINS_LOCK");

/// The contract this host serves.
pub const CONTRACT: &str = "flow:channel@1.1.0";
