//! `host-harness serve`: the flow runner behind HTTP until SIGTERM or ctrl-c.

use crate::common::{Outcome, UsageError, check_api_base_allowed, demo_settings, secrets_from};
use anyhow::Result;
use clap::Args;
use host::channels::{ChannelSetup, load_channels};
use host::contract::types::LogLevel;
use host::flow::pacing::ChannelPacing;
use host::flow::{Runner, RunnerOptions};
use host::lockfile::LockFile;
use host::runtime::Runtime;
use host::server::{self, Server, ServerOptions};
use host::services::vault::Vault;
use host::services::{AllowRule, HttpPolicy};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The host secret holding the flow API's bearer token (the default tenant's).
pub const API_TOKEN_SECRET: &str = "flow/api-token";
/// The host secret holding the operator API's bearer token (`/admin/…`).
pub const ADMIN_TOKEN_SECRET: &str = "flow/admin-token";

/// Run the flow runner: flows in over an authenticated API, webhooks in, timers, pacing;
/// state in SQLite or PostgreSQL, so a restart (or a crash) carries on where the last run
/// stopped. Several nodes may share one PostgreSQL database.
#[derive(Args, Debug)]
pub struct ServeArgs {
    #[arg(long, default_value_t = 8788)]
    pub port: u16,
    /// Where flows, attempts and timelines live: a SQLite file, or a `postgres://` URL that
    /// several nodes share.
    #[arg(long, env = "DATABASE_URL", default_value = "flows.sqlite")]
    pub db: String,
    /// How long a claimed send belongs to this node; with several nodes, another takes it
    /// over (outcome unknown, never resent blindly) once it has passed. Must exceed the
    /// longest plugin call (30 s).
    #[arg(long, default_value_t = host::flow::store::DEFAULT_LEASE_MS)]
    pub lease_ms: u64,
    /// Base URL for every built-in channel's API (e.g. the mock: http://127.0.0.1:8787); it
    /// must be on the allowlist (--allow-host).
    #[arg(long)]
    pub api_base: Option<String>,
    /// The `whatsapp` channel's settings JSON (default: the embedded demo settings).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A JSON file of secret name → value (FLOW_SECRET_* variables are read too). Needs
    /// `flow/api-token`; each channel may use only the secrets under its own name.
    #[arg(long)]
    pub secrets: Option<PathBuf>,
    /// A file holding the master key that seals the secrets tenants bring (32 bytes: base64,
    /// hex or raw); else FLOW_MASTER_KEY. A key that does not open this store's secrets, or
    /// none when it holds some, stops serve at start.
    #[arg(long)]
    pub master_key_file: Option<PathBuf>,
    /// A channel on which every tenant but the default sends only from its own account (put
    /// with the operator API); a tenant without one falls back (`no_channel_account`). On
    /// the other channels a tenant without an account sends from serve's. Repeatable.
    #[arg(long = "own-accounts", default_value = "whatsapp")]
    pub own_accounts: Vec<String>,
    /// Where operator events are posted (a tenant's account needing a new token, or
    /// disabled), once per change, signed like callbacks with `flow/callback-secret`; it must
    /// be on the --allow-callback-host list.
    #[arg(long)]
    pub operator_callback_url: Option<String>,
    /// The base URL providers reach this server at, e.g. `https://hooks.example.com` (behind
    /// a proxy serve cannot know it): webhook requests carry the full URL the provider called,
    /// which providers that sign the URL (Twilio) need, and channels told per message where
    /// to post statuses get `{URL}/webhooks/{channel}`. Default: `http://127.0.0.1:{port}`,
    /// right only when the providers (the mock) call this machine directly.
    #[arg(long)]
    pub public_url: Option<String>,
    /// A sender's sends per second, `SENDER_ID=RATE`, in place of the throughput the provider
    /// reports for it (Meta: 80, or 1,000 once upgraded). Repeatable.
    #[arg(long = "sender-rate")]
    pub sender_rates: Vec<String>,
    /// How often every tenant account's templates are synced from the provider, in minutes
    /// (0: only at connect, on demand and after template webhooks).
    #[arg(long, default_value_t = 15)]
    pub template_sync_minutes: u64,
    /// Allowlist entries for the built-in channels besides the hosts each asks for (e.g.
    /// http://127.0.0.1:8787).
    #[arg(long = "allow-host")]
    pub allow_hosts: Vec<String>,
    /// Messages per second per sending number (Meta: 80 by default, up to 1,000).
    #[arg(long, default_value_t = 80.0)]
    pub rate_per_number: f64,
    /// Sends in flight at once (at most half the instance pool, 1,024).
    #[arg(long, default_value_t = 512)]
    pub max_in_flight: usize,
    /// Open flows beyond which POST /flows answers 429.
    #[arg(long, default_value_t = 200_000)]
    pub max_queued: u64,
    /// Connections served at once (each costs a task and a file descriptor).
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,
    /// Largest webhook body in bytes (Meta sends at most 3 MB).
    #[arg(long, default_value_t = 4 << 20)]
    pub max_webhook_body_bytes: usize,
    /// Hosts flows may name as `callback_url` (deny by default).
    #[arg(long = "allow-callback-host")]
    pub callback_hosts: Vec<String>,
    /// Load exactly the plugins of this lock file (pinned by version and sha256, each with
    /// its allowed hosts and secrets; `registry pull` writes it). Without it: the lock file of
    /// the channels built from this repository, adjusted by --api-base, --allow-host, --config.
    #[arg(long, conflicts_with_all = ["config", "api_base", "allow_hosts", "channel_settings"])]
    pub plugins: Option<PathBuf>,
    /// Another built-in channel's settings, `CHANNEL=FILE` (e.g. `sms=twilio.json`; the
    /// `whatsapp` channel's are --config). Without it a channel runs on the embedded demo
    /// settings (the mock's accounts). Repeatable.
    #[arg(long = "channel-settings")]
    pub channel_settings: Vec<String>,
}

impl ServeArgs {
    pub async fn run(&self, plugin: Option<&Path>, log: LogLevel) -> Result<Outcome> {
        let secrets = secrets_from(self.secrets.as_deref())?;
        let token = secrets.value(API_TOKEN_SECRET).ok_or_else(|| {
            UsageError(format!(
                "serve needs the host secret {API_TOKEN_SECRET} for its API (set FLOW_SECRET_FLOW_API_TOKEN or add it to --secrets)"
            ))
        })?;
        if !(self.rate_per_number > 0.0 && self.rate_per_number <= 10_000.0) {
            return Err(UsageError(format!(
                "--rate-per-number must be between 0 and 10000, got {}",
                self.rate_per_number
            ))
            .into());
        }
        let options = RunnerOptions {
            // Half the instance pool: webhooks need instances too.
            max_in_flight: self
                .max_in_flight
                .clamp(1, host::runtime::POOL_INSTANCES as usize / 2),
            max_open_flows: self.max_queued,
            callback_hosts: self
                .callback_hosts
                .iter()
                .map(|h| AllowRule::parse(h))
                .collect::<Result<_>>()
                .map_err(|e| UsageError(format!("--allow-callback-host: {e:#}")))?,
            lease_ms: self.lease_ms,
            vault: Vault::from_env_or_file(self.master_key_file.as_deref())
                .map_err(|e| UsageError(format!("{e:#}")))?,
            own_accounts: self.own_accounts.clone(),
            operator_callback_url: self.operator_callback_url.clone(),
            sender_rates: self.sender_rates_checked()?,
            template_sync: (self.template_sync_minutes > 0).then(|| {
                std::time::Duration::from_secs(self.template_sync_minutes.saturating_mul(60))
            }),
            ..RunnerOptions::default()
        };
        if let Some(url) = &self.operator_callback_url
            && !reqwest::Url::parse(url)
                .is_ok_and(|u| host::services::http::url_allowed(&options.callback_hosts, &u))
        {
            return Err(UsageError(format!(
                "--operator-callback-url {url:?} is not on the --allow-callback-host list"
            ))
            .into());
        }
        host::flow::runner::callback_secret(&options, &secrets)
            .map_err(|e| UsageError(format!("--allow-callback-host: {e:#}")))?;
        if self.lease_ms < 35_000 {
            return Err(UsageError(format!(
                "--lease-ms must exceed the longest plugin call (30 s) with room to record it: at least 35000, got {}",
                self.lease_ms
            ))
            .into());
        }
        let public_url = self.public_url_checked()?;
        let mut setups = match &self.plugins {
            Some(lock) => LockFile::setups_from(lock).map_err(|e| UsageError(format!("{e:#}")))?,
            None => self.built_in_setups(plugin)?,
        };
        for setup in &mut setups {
            setup.webhook_url = public_url
                .as_ref()
                .map(|base| format!("{base}/webhooks/{}", setup.name));
        }
        let channels = load_channels(&Runtime::new()?, &secrets, log, &setups)
            .await
            .map_err(|e| UsageError(format!("{e:#}")))?;
        let runner = Arc::new(Runner::open_with(&self.db, channels, options, &secrets).await?);
        let server_options = ServerOptions {
            max_connections: self.max_connections.max(1),
            max_webhook_body_bytes: self.max_webhook_body_bytes.max(1),
            admin_token: secrets.value(ADMIN_TOKEN_SECRET).filter(|t| !t.is_empty()),
            public_url,
            ..ServerOptions::new(token)
        };
        let server = Server::start(server::bind(self.port)?, runner, server_options).await?;
        tracing::info!(
            url = %server.url(),
            store = %host::flow::store::redact(&self.db),
            "serving flows (webhooks at /webhooks/whatsapp and /webhooks/sms)"
        );
        server.run_until_signal().await?;
        Ok(Outcome::none())
    }

    /// `--sender-rate ID=RATE` pairs, each rate in (0, 10000].
    fn sender_rates_checked(&self) -> Result<std::collections::HashMap<String, f64>> {
        self.sender_rates
            .iter()
            .map(|pair| {
                let parsed = pair
                    .split_once('=')
                    .and_then(|(id, rate)| Some((id, rate.parse::<f64>().ok()?)))
                    .filter(|(id, rate)| !id.is_empty() && *rate > 0.0 && *rate <= 10_000.0);
                match parsed {
                    Some((id, rate)) => Ok((id.to_string(), rate)),
                    None => Err(UsageError(format!(
                        "--sender-rate takes SENDER_ID=RATE with a rate between 0 and 10000, got {pair:?}"
                    ))
                    .into()),
                }
            })
            .collect()
    }

    /// `--public-url`, checked: an absolute http(s) URL without query or fragment; by default
    /// this server on loopback.
    fn public_url_checked(&self) -> Result<Option<String>> {
        let Some(url) = &self.public_url else {
            return Ok(Some(format!("http://127.0.0.1:{}", self.port)));
        };
        match reqwest::Url::parse(url) {
            Ok(u)
                if matches!(u.scheme(), "http" | "https")
                    && u.query().is_none()
                    && u.fragment().is_none() =>
            {
                Ok(Some(url.trim_end_matches('/').to_string()))
            }
            _ => Err(UsageError(format!(
                "--public-url must be an absolute http(s) URL without query or fragment, got {url:?}"
            ))
            .into()),
        }
    }

    /// The channels built from this repository (`target/component/plugins.lock`), with the
    /// command line's base URL, extra hosts, WhatsApp settings and rate applied.
    fn built_in_setups(&self, plugin: Option<&Path>) -> Result<Vec<ChannelSetup>> {
        let usage = |e: anyhow::Error| UsageError(format!("{e:#}"));
        let mut setups =
            LockFile::setups_from(Path::new(host_testkit::BUILT_PLUGINS_LOCK)).map_err(usage)?;
        for setup in &mut setups {
            if let Some(base) = &self.api_base {
                setup.api_base = base.clone();
            }
            setup.allow_hosts.extend(self.allow_hosts.iter().cloned());
            let policy = HttpPolicy::default()
                .allowing(setup.allow_hosts.iter().map(String::as_str))
                .map_err(usage)?;
            check_api_base_allowed(Some(&setup.api_base), &policy)?;
            let gap = setup.pacing.map_or(0, |p| p.customer_gap_ms);
            let mut rate = self.rate_per_number;
            if setup.name == "whatsapp" {
                let mut settings = match &self.config {
                    None => demo_settings(),
                    Some(p) => crate::common::read_json(&p.to_string_lossy())?,
                };
                rate = number_rate(&mut settings)?.unwrap_or(rate);
                setup.settings = settings.to_string();
                if let Some(wasm) = plugin {
                    // Another build of the channel: not the one the lock file pins.
                    setup.wasm = wasm.to_path_buf();
                    (setup.digest, setup.version) = (None, None);
                }
            }
            if setup.name != "whatsapp" {
                setup.settings = match self.settings_file_for(&setup.name)? {
                    Some(settings) => settings.to_string(),
                    None if setup.name == "sms" => {
                        host_testkit::stack::demo_sms_settings().to_string()
                    }
                    None if setup.name == "email" => {
                        host_testkit::stack::demo_email_settings().to_string()
                    }
                    None => setup.settings.clone(),
                };
            }
            setup.pacing = Some(ChannelPacing {
                rate_per_second: rate,
                customer_gap_ms: gap,
            });
        }
        if let Some(unknown) = self.channel_settings.iter().find_map(|pair| {
            let name = pair.split_once('=').map_or(pair.as_str(), |(n, _)| n);
            (!setups.iter().any(|s| s.name == name)).then_some(name)
        }) {
            return Err(UsageError(format!(
                "--channel-settings names {unknown:?}, which is not a built-in channel"
            ))
            .into());
        }
        Ok(setups)
    }

    /// The settings file `--channel-settings` gives `channel`, read.
    fn settings_file_for(&self, channel: &str) -> Result<Option<serde_json::Value>> {
        for pair in &self.channel_settings {
            let Some((name, file)) = pair
                .split_once('=')
                .filter(|(n, f)| !n.is_empty() && !f.is_empty())
            else {
                return Err(UsageError(format!(
                    "--channel-settings takes CHANNEL=FILE, got {pair:?}"
                ))
                .into());
            };
            if name == channel {
                return crate::common::read_json(file).map(Some);
            }
        }
        Ok(None)
    }
}

/// The host's own key in the WhatsApp settings: `rate_per_second`, this number's rate (Meta
/// raises it per number). Taken out before the plugin sees the settings.
fn number_rate(settings: &mut serde_json::Value) -> Result<Option<f64>> {
    let Some(v) = settings
        .as_object_mut()
        .and_then(|o| o.remove("rate_per_second"))
    else {
        return Ok(None);
    };
    match v.as_f64() {
        Some(r) if r > 0.0 && r <= 10_000.0 => Ok(Some(r)),
        _ => Err(UsageError(format!(
            "/rate_per_second in the WhatsApp settings must be a number between 0 and 10000, got {v}"
        ))
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_number_rate_is_read_from_the_settings_and_hidden_from_the_plugin() {
        let mut s = json!({"phone_number_id": "1", "rate_per_second": 250});
        assert_eq!(number_rate(&mut s).unwrap(), Some(250.0));
        assert_eq!(s, json!({"phone_number_id": "1"}));
        assert_eq!(number_rate(&mut s).unwrap(), None);
        for bad in [json!(0), json!(-3), json!("fast"), json!(1e9)] {
            let mut s = json!({ "rate_per_second": bad });
            assert!(number_rate(&mut s).is_err(), "{s}");
        }
    }
}
