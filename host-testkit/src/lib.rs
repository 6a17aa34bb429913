//! What the demo and the tests stand on: the channels built from this repository (by
//! `build.rs`), the mock provider APIs ([`mock`]), the whole stack on loopback ([`stack`]),
//! `serve` processes driven from outside ([`process`]), throwaway PostgreSQL databases
//! ([`postgres`]) and OCI namespaces ([`oci`]). Nothing here ships in the `host` library.

pub mod blocking;
pub mod callbacks;
pub mod defaults;
pub mod mock;
pub mod mock_businesses;
pub mod mock_sendgrid;
pub mod mock_twilio;
pub mod oci;
pub mod postgres;
pub mod process;
pub mod stack;

pub use blocking::{Block, BlockingPlugin, block_on};
use serde_json::Value;

/// The WhatsApp component built from this repository by `build.rs`.
pub const WHATSAPP_CHANNEL_WASM: &str = env!("WHATSAPP_CHANNEL_WASM");

/// The SMS channel (Twilio, `channels/twilio-sms`), built by `build.rs`.
pub const SMS_CHANNEL_WASM: &str = env!("SMS_CHANNEL_WASM");

/// The email channel (SendGrid, `channels/sendgrid-email`), built by `build.rs`.
pub const EMAIL_CHANNEL_WASM: &str = env!("EMAIL_CHANNEL_WASM");

/// The frozen `flow:channel@1.0.0` SMS fixture (`tests/fixtures/sms-channel-v1`, against the
/// mock's `/sms/v1` API): every run loads a component of the first contract version.
pub const SMS_FIXTURE_V1_WASM: &str = env!("SMS_FIXTURE_V1_WASM");

/// A test fixture that misbehaves on request (`tests/fixtures/hostile-channel`).
pub const HOSTILE_CHANNEL_WASM: &str = env!("HOSTILE_CHANNEL_WASM");

/// The lock file of the built channels (`target/component/plugins.lock`, written by
/// `build.rs`): what `serve` loads when it is given no lock file.
pub const BUILT_PLUGINS_LOCK: &str = env!("BUILT_PLUGINS_LOCK");

/// The channels a flow's attempts went to, in order (from `GET /flows/{id}`).
pub fn attempt_channels(status: &Value) -> Vec<String> {
    status["attempts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["channel"].as_str().map(str::to_string))
        .collect()
}

/// A flow's timeline entries, one per line (from `GET /flows/{id}`).
pub fn timeline_text(status: &Value) -> String {
    status["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["entry"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}
