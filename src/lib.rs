//! WhatsApp Business (Cloud API) channel for the flow engine, built as a WebAssembly component
//! implementing the `flow:channel@1.2.0` contract (`wit/channel.wit`).
//!
//! The WhatsApp domain lives in plain modules, one concern each, tested natively:
//! - [`templates`]: Meta's template creation rules;
//! - [`catalog`], [`send_check`]: approved templates, and each send checked against its own;
//! - [`payloads`]: message content → Cloud API request;
//! - [`classify`]: send results and error codes → one [`Classification`];
//! - [`webhooks`]: verification handshakes, signatures and status events;
//! - [`accounts`]: onboarding a business account and listing its templates (contract 1.2.0);
//! - [`config`], [`phone`], [`schemas`], [`field_errors`]: the pieces they share.
//!
//! The bindings, the `Host` trait and the classification builders every channel shares come
//! from `crates/channel-sdk`; `glue.rs` implements the contract's exports over the domain, and
//! the types the domain uses are re-exported here by name.

#![recursion_limit = "256"]

pub mod accounts;
pub mod catalog;
pub mod classify;
pub mod config;
pub mod field_errors;
mod glue;

/// Every call runs in a fresh instance: nothing needs freeing (see `bump_alloc`).
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: bump_alloc::Bump = bump_alloc::Bump::new();
pub mod graph_versions;
pub mod host;
pub mod meta_limits;
pub mod payloads;
pub mod phone;
pub mod schemas;

pub mod templates;
pub use templates::send_check;
pub mod webhooks;

pub use channel_sdk::{
    ChannelConfig, ChannelInfo, Classification, Disposition, EventKind, FieldError, Header,
    HttpRequest, HttpResponse, LogLevel, MessageRequest, SecretError, SendOutcome, TransportError,
    TransportErrorKind, WebhookError, WebhookEvent, WebhookOutcome, WebhookRequest,
};

/// The contract this component implements.
pub const CONTRACT: &str = "flow:channel@1.2.0";
/// The channel's name in `describe`.
pub const CHANNEL_NAME: &str = "whatsapp";
/// This component's version.
pub const PLUGIN_VERSION: &str = env!("CARGO_PKG_VERSION");
