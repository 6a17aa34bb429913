//! Channels as a host sets them up: each plugin gets its own host services — its own
//! allowlist, and only the secrets under its own name (`whatsapp/…`, `sms/…`), which may
//! travel only to that allowlist. One plugin can never name another's secret or reach
//! another's provider.

use crate::contract::types::{ChannelConfig, LogLevel};
use crate::flow::Channel;
use crate::flow::pacing::ChannelPacing;
use crate::runtime::{Limits, Runtime};
use crate::services::{HostServices, HttpClient, HttpPolicy, Log, SecretGrant, Secrets};
use anyhow::{Context, Result};
use sha2::Digest;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How one channel is set up.
#[derive(Debug, Clone)]
pub struct ChannelSetup {
    /// The channel's name in flows, and the prefix of the secrets it may use.
    pub name: String,
    pub wasm: PathBuf,
    pub api_base: String,
    /// The channel's settings JSON.
    pub settings: String,
    /// Hosts its plugin may call (and send its secrets to).
    pub allow_hosts: Vec<String>,
    pub pacing: Option<ChannelPacing>,
    /// Total time for one provider request.
    pub http_timeout: Duration,
    /// Secrets its plugin may use (names, or `prefix/*`); empty: those under its own name.
    pub secrets: Vec<String>,
    /// The artifact's `sha256:<hex>`, checked before it is compiled (from a lock file).
    pub digest: Option<String>,
    /// The plugin version the lock file pins, checked against `describe`.
    pub version: Option<String>,
    /// Where providers reach this channel's webhook (`{serve --public-url}/webhooks/{name}`).
    /// A channel whose settings schema has `status_callback` (a provider that is told per
    /// message where to post statuses, as Twilio is) gets it there unless its settings name
    /// one.
    pub webhook_url: Option<String>,
}

impl ChannelSetup {
    /// A channel with the default grants (its own secrets, its own allowlist), unpinned.
    pub fn new(name: &str, wasm: PathBuf, api_base: &str, settings: String) -> ChannelSetup {
        ChannelSetup {
            name: name.into(),
            wasm,
            api_base: api_base.into(),
            settings,
            allow_hosts: Vec::new(),
            pacing: None,
            http_timeout: Duration::from_secs(20),
            secrets: Vec::new(),
            digest: None,
            version: None,
            webhook_url: None,
        }
    }

    fn secret_names(&self) -> Vec<String> {
        if self.secrets.is_empty() {
            vec![format!("{}/*", self.name)]
        } else {
            self.secrets.clone()
        }
    }
}

/// The host services of one channel.
pub fn services_for(
    setup: &ChannelSetup,
    secrets: &Secrets,
    log: LogLevel,
) -> Result<HostServices> {
    let policy = HttpPolicy {
        response_timeout: setup.http_timeout,
        ..HttpPolicy::default()
    }
    .allowing(setup.allow_hosts.iter().map(String::as_str))
    .with_context(|| format!("the {} channel's allowlist", setup.name))?;
    let grants = setup
        .secret_names()
        .into_iter()
        .map(|name| SecretGrant {
            name,
            to_hosts: policy.allow.clone(),
        })
        .collect();
    Ok(HostServices::new(
        HttpClient::new(policy),
        secrets.scoped(grants),
        Log::stderr(log),
    ))
}

/// Loads every channel, each with its own services.
pub async fn load_channels(
    runtime: &Runtime,
    secrets: &Secrets,
    log: LogLevel,
    setups: &[ChannelSetup],
) -> Result<HashMap<String, Channel>> {
    let mut channels = HashMap::new();
    for setup in setups {
        let services = Arc::new(services_for(setup, secrets, log)?);
        let limits = Limits {
            call_timeout: setup.http_timeout + Duration::from_secs(10),
            ..Limits::default()
        };
        let bytes = std::fs::read(&setup.wasm)
            .with_context(|| format!("reading the plugin {}", setup.wasm.display()))?;
        if let Some(pinned) = &setup.digest {
            let actual = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)));
            if !actual.eq_ignore_ascii_case(pinned) {
                anyhow::bail!(
                    "the {} plugin at {} is {actual}, but the lock file pins {pinned}: refusing to load it",
                    setup.name,
                    setup.wasm.display()
                );
            }
        }
        let plugin = runtime
            .load(&bytes, services, limits)
            .with_context(|| format!("loading the plugin {}", setup.wasm.display()))?;
        let info = plugin.describe().await?;
        if let Some(pinned) = &setup.version
            && &info.plugin_version != pinned
        {
            anyhow::bail!(
                "the {} plugin describes itself as version {}, but the lock file pins {pinned}",
                setup.name,
                info.plugin_version
            );
        }
        let settings = with_status_callback(&setup.settings, &info.config_schema, setup);
        channels.insert(
            setup.name.clone(),
            Channel::new(
                plugin,
                ChannelConfig {
                    api_base: Some(setup.api_base.clone()),
                    settings,
                },
                setup.pacing,
            ),
        );
    }
    Ok(channels)
}

/// The settings with `status_callback` set to the channel's webhook URL, when the channel's
/// settings schema has that property and the settings do not name one.
fn with_status_callback(settings: &str, config_schema: &str, setup: &ChannelSetup) -> String {
    const KEY: &str = "status_callback";
    let Some(url) = &setup.webhook_url else {
        return settings.to_string();
    };
    let declared = serde_json::from_str::<serde_json::Value>(config_schema)
        .ok()
        .is_some_and(|schema| schema.pointer(&format!("/properties/{KEY}")).is_some());
    let text = if settings.trim().is_empty() {
        "{}"
    } else {
        settings
    };
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(mut map)) if declared && !map.contains_key(KEY) => {
            map.insert(KEY.into(), url.clone().into());
            serde_json::Value::Object(map).to_string()
        }
        _ => settings.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_that_takes_a_status_callback_gets_its_webhook_url_unless_it_names_one() {
        let schema = r#"{"properties": {"status_callback": {"type": "string"}}}"#;
        let mut setup = ChannelSetup::new("sms", PathBuf::new(), "http://x", String::new());
        assert_eq!(with_status_callback("{}", schema, &setup), "{}");
        setup.webhook_url = Some("https://h.example/webhooks/sms".into());
        assert_eq!(
            with_status_callback("{\"from\":\"+1\"}", schema, &setup),
            r#"{"from":"+1","status_callback":"https://h.example/webhooks/sms"}"#
        );
        let own = r#"{"status_callback":"https://mine.example/cb"}"#;
        assert_eq!(with_status_callback(own, schema, &setup), own);
        assert_eq!(with_status_callback("{}", "{}", &setup), "{}");
    }
}
