//! Secrets and hosts are granted per plugin: through the real components, a channel whose
//! settings name another channel's secret, or whose base URL points at another channel's
//! provider, sends nothing.

use host_testkit::Block;

use host::channels::{ChannelSetup, load_channels};
use host::contract::types::{Disposition, LogLevel, MessageRequest};
use host::runtime::Runtime;
use host_testkit::mock::{MockApi, MockConfig};
use host_testkit::stack::{demo_secrets, demo_setups};
use serde_json::json;
use std::time::Duration;

fn sms_message() -> MessageRequest {
    MessageRequest {
        recipient: "+15550100001".into(),
        correlation_id: Some("grant-test/0/1".into()),
        content: json!({"text": "hi"}).to_string(),
        last_inbound_ms: None,
        now_ms: host::services::now_ms(),
        opted_out: vec![],
        deadline_ms: None,
    }
}

/// The SMS channel (Twilio) on the demo settings with `overrides` applied.
fn sms_setup(mock: &MockApi, overrides: serde_json::Value) -> ChannelSetup {
    let mut setup = demo_setups(&mock.base_url(), 80.0).remove(1);
    assert_eq!(setup.name, "sms");
    let mut settings = host_testkit::stack::demo_sms_settings();
    for (k, v) in overrides.as_object().unwrap() {
        settings[k] = v.clone();
    }
    setup.settings = settings.to_string();
    setup
}

#[test]
fn the_sms_plugin_cannot_use_the_whatsapp_token() {
    let mock = MockApi::start(0, MockConfig::default()).unwrap();
    let setup = sms_setup(&mock, json!({"auth_token_secret": "whatsapp/access-token"}));
    let channels = load_setups(&[setup]).unwrap();
    let c = send_sms(&channels);
    assert_eq!(
        (c.disposition, c.reason.as_str()),
        (Disposition::Failed, "host_policy_denied"),
        "{c:?}"
    );
    assert!(mock.requests().is_empty(), "nothing left the host");
}

#[test]
fn the_sms_plugin_cannot_reach_the_whatsapp_host() {
    let sms_api = MockApi::start(0, MockConfig::default()).unwrap();
    let graph = MockApi::start(0, MockConfig::default()).unwrap();
    // The SMS channel is allowed its own API only; its base URL is pointed at "Meta".
    let mut setup = sms_setup(&sms_api, json!({}));
    setup.api_base = graph.base_url();
    let channels = load_setups(&[setup]).unwrap();
    let c = send_sms(&channels);
    assert_eq!(c.reason, "host_policy_denied", "{c:?}");
    assert!(graph.requests().is_empty() && sms_api.requests().is_empty());
}

#[test]
fn the_whatsapp_plugin_cannot_verify_webhooks_with_the_sms_secret() {
    let mock = MockApi::start(0, MockConfig::default()).unwrap();
    let mut setup = demo_setups(&mock.base_url(), 80.0).remove(0);
    setup.settings =
        json!({"phone_number_id": "106540352242922", "app_secret": "sms/webhook-secret"})
            .to_string();
    setup.http_timeout = Duration::from_secs(2);
    let channels = load_setups(&[setup]).unwrap();
    let wa = &channels["whatsapp"];
    let body = br#"{"object":"whatsapp_business_account","entry":[]}"#.to_vec();
    let request = host::contract::types::WebhookRequest {
        method: "POST".into(),
        url: None,
        headers: vec![host::contract::types::Header {
            name: "X-Hub-Signature-256".into(),
            value: host::services::signing::signature("demo-sms-webhook-secret", &body),
        }],
        query: vec![],
        body,
    };
    let outcome = wa
        .plugin
        .parse_webhook(&request, &wa.config())
        .block()
        .unwrap();
    assert!(
        outcome.is_err(),
        "a secret outside the grant verifies nothing: {outcome:?}"
    );
}

/// A lock file next to copies of the built components, SMS pointed at `api_base`.
fn lock_dir(name: &str, api_base: &str, sms_secrets: serde_json::Value) -> std::path::PathBuf {
    use sha2::Digest;
    let dir = std::env::temp_dir().join(format!("lock-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut entries = Vec::new();
    for (channel, wasm, file) in [
        (
            "whatsapp",
            host_testkit::WHATSAPP_CHANNEL_WASM,
            "whatsapp_channel.wasm",
        ),
        ("sms", host_testkit::SMS_FIXTURE_V1_WASM, "sms_channel.wasm"),
    ] {
        let bytes = std::fs::read(wasm).unwrap();
        std::fs::write(dir.join(file), &bytes).unwrap();
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)));
        let mut entry = json!({"name": channel, "version": "0.1.0", "digest": digest, "path": file,
            "registry": "file:.", "api_base": api_base, "allowed_hosts": [api_base]});
        if channel == "sms" {
            entry["secrets"] = sms_secrets.clone();
            entry["settings"] = json!({"api_key_secret": "whatsapp/access-token"});
        }
        entries.push(entry);
    }
    std::fs::write(
        dir.join("plugins.lock"),
        json!({ "plugins": entries }).to_string(),
    )
    .unwrap();
    dir
}

/// The SMS channel's classification of one message.
fn send_sms(
    channels: &std::collections::HashMap<String, host::flow::Channel>,
) -> host::contract::types::Classification {
    let sms = &channels["sms"];
    sms.plugin
        .send(&sms_message(), &sms.config(), 1)
        .block()
        .unwrap()
        .unwrap()
}

/// The channels set up, with the demo secrets.
fn load_setups(
    setups: &[ChannelSetup],
) -> anyhow::Result<std::collections::HashMap<String, host::flow::Channel>> {
    load_channels(
        &Runtime::new().unwrap(),
        &demo_secrets(),
        LogLevel::Error,
        setups,
    )
    .block()
}

#[test]
fn grants_come_from_the_lock_file_and_nothing_more_is_granted() {
    use host::lockfile::LockFile;
    let mock = MockApi::start(0, MockConfig::default()).unwrap();
    let dir = lock_dir("grants", &mock.base_url(), json!(["sms/*"]));
    let lock_path = dir.join("plugins.lock");
    let setups = LockFile::setups_from(&lock_path).unwrap();
    let channels = load_setups(&setups).unwrap();
    // The SMS plugin's settings name the WhatsApp token: its lock entry grants `sms/*` only.
    let c = send_sms(&channels);
    assert_ne!(c.disposition, Disposition::Accepted, "{c:?}");
    assert!(mock.requests().is_empty(), "nothing reached the provider");
    // Granting it explicitly in the lock entry is what it would take.
    let dir = lock_dir(
        "granted",
        &mock.base_url(),
        json!(["sms/*", "whatsapp/access-token"]),
    );
    let lock_path = dir.join("plugins.lock");
    let setups = LockFile::setups_from(&lock_path).unwrap();
    assert!(
        setups[1]
            .secrets
            .contains(&"whatsapp/access-token".to_string())
    );
}

#[test]
fn a_lock_file_refuses_an_artifact_whose_digest_or_version_differs() {
    use host::lockfile::LockFile;
    let dir = lock_dir("digest", "http://127.0.0.1:9", json!([]));
    let lock_path = dir.join("plugins.lock");
    // Another artifact under the pinned name.
    std::fs::copy(
        host_testkit::SMS_FIXTURE_V1_WASM,
        dir.join("whatsapp_channel.wasm"),
    )
    .unwrap();
    let setups = LockFile::setups_from(&lock_path).unwrap();
    let err = load_setups(&setups).err().expect("refused");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("lock file pins sha256:") && msg.contains("is sha256:"),
        "{msg}"
    );
    // A malformed lock file names where.
    std::fs::write(&lock_path, r#"{"plugins": [{"name": "x"}]}"#).unwrap();
    let msg = format!("{:#}", LockFile::read(&lock_path).err().unwrap());
    assert!(
        msg.contains("/plugins") && msg.contains("missing field"),
        "{msg}"
    );
}

/// `serve --plugins`: the locked plugins, with the lock file's settings and grants, run flows.
#[test]
fn serve_runs_flows_on_exactly_the_locked_plugins() {
    use host_testkit::process::{assert_whatsapp_falls_back_to_sms, serve_locked};
    let mock = MockApi::start(0, MockConfig::default()).unwrap();
    let dir = lock_dir("serve", &mock.base_url(), json!(["sms/*"]));
    // The WhatsApp entry needs the number it sends from; the SMS one its own key.
    let lock_path = dir.join("plugins.lock");
    let mut lock: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&lock_path).unwrap()).unwrap();
    lock["plugins"][0]["settings"] = json!({"phone_number_id": "106540352242922"});
    lock["plugins"][1]["settings"] = json!({});
    std::fs::write(&lock_path, lock.to_string()).unwrap();
    let (_serve, client) = serve_locked(
        std::path::Path::new(env!("CARGO_BIN_EXE_host-harness")),
        &dir,
        &lock_path,
        "lock-token",
    )
    .unwrap();
    // Not on WhatsApp (131026): falls back to the locked SMS plugin.
    assert_whatsapp_falls_back_to_sms(&client, "locked-1");
}
