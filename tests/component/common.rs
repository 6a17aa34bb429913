//! Shared set-up: the real built component, loaded once per test binary through the harness.
#![allow(dead_code)]

use host::contract::types::{ChannelConfig, MessageRequest};
use host::services::{HostServices, HttpClient, HttpPolicy, Log, Secrets};
use host::{Limits, Plugin, Runtime};
use std::sync::{Arc, OnceLock};

pub const APP_SECRET: &str = "test-app-secret";
pub const VERIFY_TOKEN: &str = "test-verify-token";

/// The WhatsApp component with no network and test secrets, logging to memory.
pub fn plugin() -> &'static Plugin {
    static PLUGIN: OnceLock<Plugin> = OnceLock::new();
    PLUGIN.get_or_init(|| {
        let mut secrets = Secrets::default();
        secrets.insert("whatsapp/app-secret", APP_SECRET);
        secrets.insert("whatsapp/verify-token", VERIFY_TOKEN);
        let services = HostServices::new(
            HttpClient::new(HttpPolicy::default()),
            secrets,
            Log::memory(),
        );
        runtime()
            .load_file(
                std::path::Path::new(host_testkit::WHATSAPP_CHANNEL_WASM),
                Arc::new(services),
                Limits::default(),
            )
            .expect("the built component loads")
    })
}

pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::new().expect("engine"))
}

pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture exists")
}

pub fn fixture_json(name: &str) -> serde_json::Value {
    serde_json::from_str(&fixture(name)).expect("fixture is JSON")
}

pub fn demo_config(api_base: Option<String>) -> ChannelConfig {
    ChannelConfig {
        api_base,
        settings: r#"{"phone_number_id":"106540352242922"}"#.into(),
    }
}

/// Message content: the `order_update` template with one body parameter.
pub fn order_update_content() -> serde_json::Value {
    serde_json::json!({"type": "template", "template": {"name": "order_update", "language": "en_US",
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "Pablo"}]}]}})
}

pub fn message(recipient: &str, content: serde_json::Value) -> MessageRequest {
    MessageRequest {
        recipient: recipient.into(),
        correlation_id: None,
        content: content.to_string(),
        last_inbound_ms: None,
        now_ms: 1_750_000_000_000,
        opted_out: vec![],
        deadline_ms: None,
    }
}

/// `X-Hub-Signature-256` for a body.
#[allow(unused_imports)]
pub use host::services::signing::signature as sign;
