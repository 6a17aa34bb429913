//! Email through SendGrid's v3 Mail Send API and its signed Event Webhook, as a WebAssembly
//! component implementing `flow:channel@1.2.0`: the last channel a flow falls back to.
//!
//! The provider's rules live in plain modules, tested natively against a real in-process host
//! and signatures made with an ECDSA P-256 key; `glue.rs` implements the contract's exports
//! over them (bindings, `Host` trait and builders from `crates/channel-sdk`):
//!
//! - [`settings`]: the sender, the secrets' names, the event window;
//! - [`address`]: what an address must be before anything is sent;
//! - [`send`]: a message → `POST /v3/mail/send`; every answer classified;
//! - [`events`]: the signed Event Webhook → statuses and unsubscribes;
//! - [`describe`]: the channel's name, capabilities and schemas.

pub mod address;
pub mod describe;
pub mod events;
mod glue;
pub mod send;
pub mod settings;

/// Every call runs in a fresh instance: nothing needs freeing (see `bump_alloc`).
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: bump_alloc::Bump = bump_alloc::Bump::new();
