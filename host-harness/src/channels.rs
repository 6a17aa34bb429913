//! Channels as a host sets them up: each plugin gets its own host services — its own
//! allowlist, and only the secrets under its own name (`whatsapp/…`, `sms/…`), which may
//! travel only to that allowlist. One plugin can never name another's secret or reach
//! another's provider.

use crate::flow::Channel;
use crate::flow::pacing::ChannelPacing;
use crate::runtime::{Limits, Runtime};
use crate::services::{HostServices, HttpClient, HttpPolicy, Log, SecretGrant, Secrets};
use crate::types::{ChannelConfig, LogLevel};
use anyhow::{Context, Result};
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
    let grant = SecretGrant {
        name: format!("{}/*", setup.name),
        to_hosts: policy.allow.clone(),
    };
    Ok(HostServices::new(
        HttpClient::new(policy),
        secrets.scoped(vec![grant]),
        Log::stderr(log),
    ))
}

/// Loads every channel, each with its own services.
pub fn load_channels(
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
        let plugin = runtime.load_file(&setup.wasm, services, limits)?;
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
