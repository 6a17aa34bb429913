//! `host-harness mock-api`: the embedded mock Cloud API and SMS API as a process.

use crate::common::{Outcome, UsageError};
use anyhow::Result;
use clap::Args;
use host_testkit::defaults::{DEMO_ACCESS_TOKEN, DEMO_PHONE_NUMBER_ID};
use host_testkit::mock::{Latency, MockApi, MockConfig, MockLimits, SCENARIOS, WebhookTargets};
use host_testkit::stack::{DEMO_APP_SECRET, DEMO_SMS_WEBHOOK_SECRET};
use std::time::Duration;

/// Run the embedded mock Cloud API (and SMS API) on loopback.
#[derive(Args, Debug)]
pub struct MockApiArgs {
    #[arg(long, default_value_t = 8787)]
    pub port: u16,
    /// Post signed status webhooks to a running `serve` at this base URL (its
    /// /webhooks/whatsapp and /webhooks/sms), signed with the demo secrets.
    #[arg(long)]
    pub webhooks_to: Option<String>,
    /// Pause between an answer and each status webhook, in ms.
    #[arg(long, default_value_t = 500)]
    pub status_step_ms: u64,
    /// Answer after this many ms: fixed (`200`) or a range (`100-300`).
    #[arg(long)]
    pub latency_ms: Option<String>,
    /// Enforce Meta's throughput limit: this many messages per second per number, 130429
    /// past it.
    #[arg(long)]
    pub rate_per_number: Option<u32>,
    /// With --rate-per-number: the pair rate limit, one message per customer per this many ms
    /// (131056 when shorter).
    #[arg(long, default_value_t = 6_000)]
    pub pair_gap_ms: u64,
    /// Do not keep request bodies in memory (long load runs; the counters remain).
    #[arg(long)]
    pub no_record: bool,
}

impl MockApiArgs {
    pub async fn run(&self) -> Result<Outcome> {
        let latency = match &self.latency_ms {
            None => Latency::None,
            Some(s) => Latency::parse(s).map_err(|e| UsageError(format!("{e:#}")))?,
        };
        let webhooks = self.webhooks_to.as_ref().map(|base| {
            let base = base.trim_end_matches('/');
            WebhookTargets::demo_serve(base, Duration::from_millis(self.status_step_ms))
        });
        let limits = self.rate_per_number.map(|rate| MockLimits {
            rate_per_number: rate,
            pair_gap_ms: self.pair_gap_ms,
        });
        let mock = MockApi::spawn(
            self.port,
            MockConfig {
                webhooks,
                latency,
                limits,
                record: !self.no_record,
                ..MockConfig::default()
            },
        )
        .await?;
        if let Some(base) = &self.webhooks_to {
            eprintln!(
                "posting status webhooks to {base}, signed with {DEMO_APP_SECRET:?} (WhatsApp) and {DEMO_SMS_WEBHOOK_SECRET:?} (SMS)"
            );
        }
        eprintln!(
            "mock Cloud API listening on {} (token {DEMO_ACCESS_TOKEN:?}, phone number id {DEMO_PHONE_NUMBER_ID}; counters at /mock/counters)",
            mock.base_url()
        );
        for s in SCENARIOS {
            eprintln!("  {}  {}", s.recipient, s.description);
        }
        mock.wait().await;
        Ok(Outcome::none())
    }
}
