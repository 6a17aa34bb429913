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
        if let Some(pinned) = &setup.version {
            let info = plugin.describe().await?;
            if &info.plugin_version != pinned {
                anyhow::bail!(
                    "the {} plugin describes itself as version {}, but the lock file pins {pinned}",
                    setup.name,
                    info.plugin_version
                );
            }
        }
        channels.insert(
            setup.name.clone(),
            Channel::new(
                plugin,
                ChannelConfig {
                    api_base: Some(setup.api_base.clone()),
                    settings: setup.settings.clone(),
                },
                setup.pacing,
            ),
        );
    }
    Ok(channels)
}
