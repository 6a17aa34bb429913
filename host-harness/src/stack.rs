//! The whole reference stack on loopback, for the demo and the end-to-end tests: the mock
//! (Cloud API + SMS API, posting signed status webhooks), both channel components, the flow
//! runner and its HTTP server.

use crate::cli::{DEMO_ACCESS_TOKEN, DEMO_PHONE_NUMBER_ID, DEMO_SMS_API_KEY};
use crate::flow::{Channel, Runner};
use crate::mock::{MockApi, MockConfig, WebhookTargets};
use crate::runtime::{Limits, Runtime};
use crate::serve::{self, Server};
use crate::services::{HostServices, HttpClient, HttpPolicy, Log, Secrets};
use crate::types::{ChannelConfig, LogLevel};
use anyhow::Result;
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub const DEMO_APP_SECRET: &str = "demo-app-secret";
pub const DEMO_VERIFY_TOKEN: &str = "demo-verify-token";
pub const DEMO_SMS_WEBHOOK_SECRET: &str = "demo-sms-webhook-secret";

/// The running stack.
pub struct Stack {
    pub mock: MockApi,
    pub server: Option<Server>,
    pub runner: Arc<Runner>,
    port: u16,
    db: String,
    runtime: Runtime,
}

fn services(mock_url: &str) -> Result<HostServices> {
    let policy = HttpPolicy {
        response_timeout: Duration::from_secs(2),
        ..HttpPolicy::default()
    }
    .allowing([mock_url])?;
    let mut s = Secrets::default();
    for (k, v) in [
        ("whatsapp/access-token", DEMO_ACCESS_TOKEN),
        ("whatsapp/app-secret", DEMO_APP_SECRET),
        ("whatsapp/verify-token", DEMO_VERIFY_TOKEN),
        ("sms/api-key", DEMO_SMS_API_KEY),
        ("sms/webhook-secret", DEMO_SMS_WEBHOOK_SECRET),
    ] {
        s.insert_for_hosts(k, v, [mock_url])?;
    }
    Ok(HostServices::new(
        HttpClient::new(policy),
        s,
        Log::stderr(LogLevel::Error),
    ))
}

/// Both channel components, sharing one set of host services, each pointed at `api_base`.
pub fn load_channels(
    runtime: &Runtime,
    services: Arc<HostServices>,
    whatsapp_wasm: &Path,
    api_base: &str,
    whatsapp_settings: &str,
) -> Result<HashMap<String, Channel>> {
    let whatsapp = runtime.load_file(whatsapp_wasm, services.clone(), Limits::default())?;
    let sms = runtime.load_file(
        Path::new(crate::SMS_CHANNEL_WASM),
        services,
        Limits::default(),
    )?;
    let config = |settings: &str| ChannelConfig {
        api_base: Some(api_base.into()),
        settings: settings.into(),
    };
    let mut map = HashMap::new();
    map.insert(
        "whatsapp".to_string(),
        Channel {
            plugin: whatsapp,
            config: config(whatsapp_settings),
        },
    );
    map.insert(
        "sms".to_string(),
        Channel {
            plugin: sms,
            config: config("{}"),
        },
    );
    Ok(map)
}

fn channels(runtime: &Runtime, mock_url: &str) -> Result<HashMap<String, Channel>> {
    let settings = json!({"phone_number_id": DEMO_PHONE_NUMBER_ID}).to_string();
    load_channels(
        runtime,
        Arc::new(services(mock_url)?),
        Path::new(crate::WHATSAPP_CHANNEL_WASM),
        mock_url,
        &settings,
    )
}

impl Stack {
    /// Starts everything; the mock posts each status `step` after the previous one.
    pub fn start(db: &str, step: Duration) -> Result<Stack> {
        let http = serve::bind(0)?;
        let port = http.server_addr().to_ip().map(|a| a.port()).unwrap_or(0);
        let url = format!("http://127.0.0.1:{port}");
        let mock = MockApi::start(
            0,
            MockConfig {
                webhooks: Some(WebhookTargets {
                    whatsapp_url: format!("{url}/webhooks/whatsapp"),
                    whatsapp_app_secret: DEMO_APP_SECRET.into(),
                    sms_url: format!("{url}/webhooks/sms"),
                    sms_secret: DEMO_SMS_WEBHOOK_SECRET.into(),
                    step,
                }),
                ..MockConfig::default()
            },
        )?;
        let runtime = Runtime::new()?;
        let runner = Arc::new(Runner::open(db, channels(&runtime, &mock.base_url())?)?);
        let server = Server::start(http, runner.clone())?;
        Ok(Stack {
            mock,
            server: Some(server),
            runner,
            port,
            db: db.to_string(),
            runtime,
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the server (webhooks posted meanwhile are lost, as when a host is down).
    pub fn stop_server(&mut self) {
        self.server = None;
    }

    /// A new runner and server on the same database and port: nothing in flight is lost.
    pub fn restart_server(&mut self) -> Result<()> {
        self.server = None;
        let runner = Arc::new(Runner::open(
            &self.db,
            channels(&self.runtime, &self.mock.base_url())?,
        )?);
        let http = serve::bind(self.port)?;
        self.server = Some(Server::start(http, runner.clone())?);
        self.runner = runner;
        Ok(())
    }
}
