//! SMS through Twilio's Programmable Messaging API, as a WebAssembly component implementing
//! `flow:channel@1.2.0`: the fallback channel that reaches a real provider.
//!
//! The provider's rules live in plain modules, tested natively against Twilio's published
//! examples and signatures made by its SDK; `glue.rs` implements the contract's exports over
//! them (bindings, `Host` trait and builders from `crates/channel-sdk`):
//!
//! - [`settings`]: the account, the sender and the secrets' names;
//! - [`send`]: a message → the form-encoded `Messages.json` request; every answer classified;
//! - [`codes`]: Twilio's error codes, each with what the flow does about it;
//! - [`segments`]: what a body costs: GSM-7 or UCS-2, and the segments the carrier bills;
//! - [`signature`]: the text Twilio signs in `X-Twilio-Signature` (the host holds the key);
//! - [`webhook`]: status callbacks and inbound messages (STOP / START / HELP);
//! - [`describe`]: the channel's name, capabilities and schemas.

pub mod codes;
pub mod describe;
mod glue;
pub mod segments;
pub mod send;
pub mod settings;
pub mod signature;
pub mod webhook;

/// Every call runs in a fresh instance: nothing needs freeing (see `bump_alloc`).
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: bump_alloc::Bump = bump_alloc::Bump::new();
