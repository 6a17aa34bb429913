//! The whole reference stack on loopback, for the demo and the end-to-end tests: the mock
//! (Cloud API + SMS API, posting signed status webhooks), both channel components with their
//! own grants, the flow runner and its HTTP server.

use crate::defaults::{DEMO_ACCESS_TOKEN, DEMO_PHONE_NUMBER_ID, DEMO_SMS_API_KEY};
use crate::mock::{Latency, MockApi, MockConfig, MockLimits, WebhookTargets};
use anyhow::Result;
use host::channels::{ChannelSetup, load_channels};
use host::contract::types::LogLevel;
use host::flow::pacing::ChannelPacing;
use host::flow::{Runner, RunnerOptions};
use host::runtime::Runtime;
use host::server::{self, Server, ServerOptions};
use host::services::Secrets;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub const DEMO_APP_SECRET: &str = "demo-app-secret";
pub const DEMO_VERIFY_TOKEN: &str = "demo-verify-token";
pub const DEMO_SMS_WEBHOOK_SECRET: &str = "demo-sms-webhook-secret";
/// The bearer token of the demo stack's flow API.
pub const DEMO_API_TOKEN: &str = "demo-api-token";
/// The secret the demo stack signs flow callbacks with.
pub const DEMO_CALLBACK_SECRET: &str = "demo-callback-secret";

/// How the stack is set up.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// Pause between the mock's answer and each status webhook.
    pub step: Duration,
    pub runner: RunnerOptions,
    /// WhatsApp pacing (per number, per customer).
    pub whatsapp_pacing: ChannelPacing,
    pub mock_latency: Latency,
    pub mock_limits: Option<MockLimits>,
    /// Time a client has to send its headers, and its body.
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    /// The WhatsApp channel's cached template catalog (`templates` in its settings).
    pub whatsapp_templates: Option<Value>,
}

impl StackConfig {
    /// The server's options; `url` is where the mock reaches it (its public URL).
    fn server_options(&self, url: &str) -> ServerOptions {
        ServerOptions {
            header_read_timeout: self.header_read_timeout,
            body_read_timeout: self.body_read_timeout,
            public_url: Some(url.to_string()),
            ..ServerOptions::new(DEMO_API_TOKEN)
        }
    }
}

impl Default for StackConfig {
    fn default() -> Self {
        StackConfig {
            step: Duration::from_millis(60),
            runner: RunnerOptions::default(),
            whatsapp_pacing: ChannelPacing::whatsapp(1_000.0),
            mock_latency: Latency::None,
            mock_limits: None,
            header_read_timeout: ServerOptions::new("").header_read_timeout,
            body_read_timeout: ServerOptions::new("").body_read_timeout,
            whatsapp_templates: None,
        }
    }
}

/// The running stack.
pub struct Stack {
    pub mock: MockApi,
    pub server: Option<Server>,
    pub runner: Arc<Runner>,
    port: u16,
    db: String,
    runtime: Runtime,
    config: StackConfig,
}

/// The demo secrets, as a host's secret store holds them.
pub fn demo_secrets() -> Secrets {
    let mut s = Secrets::default();
    for (k, v) in [
        ("whatsapp/access-token", DEMO_ACCESS_TOKEN),
        ("whatsapp/app-secret", DEMO_APP_SECRET),
        ("whatsapp/verify-token", DEMO_VERIFY_TOKEN),
        ("sms/api-key", DEMO_SMS_API_KEY),
        ("sms/webhook-secret", DEMO_SMS_WEBHOOK_SECRET),
        ("sms/account-sid", crate::mock_twilio::DEMO_ACCOUNT_SID),
        ("sms/auth-token", crate::mock_twilio::DEMO_AUTH_TOKEN),
        ("email/api-key", crate::mock_sendgrid::DEMO_API_KEY),
        ("flow/api-token", DEMO_API_TOKEN),
        ("flow/callback-secret", DEMO_CALLBACK_SECRET),
    ] {
        s.insert(k, v);
    }
    s.insert(
        "email/webhook-public-key",
        crate::mock_sendgrid::demo_event_public_key(),
    );
    s
}

/// The SMS channel's settings against the mock's Twilio account.
pub fn demo_sms_settings() -> Value {
    json!({"account_sid": crate::mock_twilio::DEMO_ACCOUNT_SID, "from": crate::mock_twilio::DEMO_FROM})
}

/// The email channel's settings: the demo shop's sender.
pub fn demo_email_settings() -> Value {
    json!({"from": {"email": "orders@example.com", "name": "Example Shop"}})
}

/// Every channel pointed at one API base (the mock), each allowed only that host: WhatsApp,
/// SMS through the mock's Twilio, email through its SendGrid.
pub fn demo_setups(api_base: &str, rate_per_number: f64) -> Vec<ChannelSetup> {
    let setup = |name: &str, wasm: &str, settings: String, pacing| ChannelSetup {
        allow_hosts: vec![api_base.trim_end_matches('/').into()],
        pacing,
        http_timeout: Duration::from_secs(2),
        ..ChannelSetup::new(name, PathBuf::from(wasm), api_base, settings)
    };
    vec![
        setup(
            "whatsapp",
            crate::WHATSAPP_CHANNEL_WASM,
            json!({"phone_number_id": DEMO_PHONE_NUMBER_ID}).to_string(),
            Some(ChannelPacing::whatsapp(rate_per_number)),
        ),
        setup(
            "sms",
            crate::SMS_CHANNEL_WASM,
            demo_sms_settings().to_string(),
            None,
        ),
        setup(
            "email",
            crate::EMAIL_CHANNEL_WASM,
            demo_email_settings().to_string(),
            None,
        ),
    ]
}

impl Stack {
    /// Starts everything; the mock posts each status `step` after the previous one.
    pub fn start(db: &str, step: Duration) -> Result<Stack> {
        Self::start_with(db, step, RunnerOptions::default())
    }

    pub fn start_with(db: &str, step: Duration, runner: RunnerOptions) -> Result<Stack> {
        Self::start_config(
            db,
            StackConfig {
                step,
                runner,
                ..StackConfig::default()
            },
        )
    }

    /// Starts everything for a synchronous test, on the test kit's runtime.
    pub fn start_config(db: &str, config: StackConfig) -> Result<Stack> {
        crate::block_on(Self::spawn_config(db, config))
    }

    /// Starts everything as tasks of the caller's runtime (the `demo` command).
    pub async fn spawn(db: &str, step: Duration) -> Result<Stack> {
        Self::spawn_config(
            db,
            StackConfig {
                step,
                ..StackConfig::default()
            },
        )
        .await
    }

    pub async fn spawn_config(db: &str, config: StackConfig) -> Result<Stack> {
        let listener = server::bind(0)?;
        let port = listener.local_addr()?.port();
        let url = format!("http://127.0.0.1:{port}");
        let mock = MockApi::spawn(
            0,
            MockConfig {
                webhooks: Some(WebhookTargets::demo_serve(&url, config.step)),
                latency: config.mock_latency,
                limits: config.mock_limits,
                ..MockConfig::default()
            },
        )
        .await?;
        let runtime = Runtime::new()?;
        let mut stack = Stack {
            runner: Arc::new(Self::runner(&runtime, db, &mock.base_url(), &url, &config).await?),
            mock,
            server: None,
            port,
            db: db.to_string(),
            runtime,
            config,
        };
        stack.server = Some(
            Server::start(
                listener,
                stack.runner.clone(),
                stack.config.server_options(&url),
            )
            .await?,
        );
        Ok(stack)
    }

    async fn runner(
        runtime: &Runtime,
        db: &str,
        mock_url: &str,
        url: &str,
        config: &StackConfig,
    ) -> Result<Runner> {
        let secrets = demo_secrets();
        let mut setups = demo_setups(mock_url, 1_000.0);
        for setup in &mut setups {
            setup.webhook_url = Some(format!("{url}/webhooks/{}", setup.name));
        }
        setups[0].pacing = Some(config.whatsapp_pacing);
        if let Some(templates) = &config.whatsapp_templates {
            setups[0].settings =
                json!({"phone_number_id": DEMO_PHONE_NUMBER_ID, "templates": templates})
                    .to_string();
        }
        let channels = load_channels(runtime, &secrets, LogLevel::Error, &setups).await?;
        Runner::open_with(db, channels, config.runner.clone(), &secrets).await
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One blocking client for every stack of the test process (each one owns a thread).
    fn client() -> &'static reqwest::blocking::Client {
        static CLIENT: std::sync::OnceLock<reqwest::blocking::Client> = std::sync::OnceLock::new();
        CLIENT.get_or_init(reqwest::blocking::Client::new)
    }

    /// `POST /flows` with the API token: the status code and the JSON answer.
    pub fn post_flows(&self, body: &Value) -> Result<(u16, Value)> {
        let resp = Self::client()
            .post(format!("{}/flows", self.url()))
            .bearer_auth(DEMO_API_TOKEN)
            .body(body.to_string())
            .send()?;
        let status = resp.status().as_u16();
        Ok((status, serde_json::from_slice(&resp.bytes()?)?))
    }

    /// `GET /flows/{id}`.
    pub fn flow_status(&self, id: &str) -> Result<Value> {
        let resp = Self::client()
            .get(format!("{}/flows/{id}", self.url()))
            .bearer_auth(DEMO_API_TOKEN)
            .send()?;
        Ok(serde_json::from_slice(&resp.bytes()?)?)
    }

    /// The flow's status once it is final (an error after `within`).
    pub fn wait_final(&self, id: &str, within: Duration) -> Result<Value> {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if self.runner.is_final(host::tenants::DEFAULT_TENANT, id)? {
                return self.flow_status(id);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        anyhow::bail!("flow {id} did not finish: {}", self.flow_status(id)?)
    }

    /// A WhatsApp notification, signed with the demo app secret as Meta signs it, posted to
    /// `/webhooks/whatsapp`: the HTTP status.
    pub fn post_whatsapp_webhook(&self, doc: &Value) -> Result<u16> {
        let body = doc.to_string();
        let resp = Self::client()
            .post(format!("{}/webhooks/whatsapp", self.url()))
            .header(
                "X-Hub-Signature-256",
                host::services::signing::signature(DEMO_APP_SECRET, body.as_bytes()),
            )
            .body(body)
            .send()?;
        Ok(resp.status().as_u16())
    }

    /// Stops the server gracefully (webhooks posted meanwhile are lost, as when a host is
    /// down).
    pub fn stop_server(&mut self) {
        if let Some(s) = self.server.take() {
            let _ = crate::block_on(s.stop());
        }
    }

    /// A new runner and server on the same database and port: nothing in flight is lost.
    pub fn restart_server(&mut self) -> Result<()> {
        self.stop_server();
        crate::block_on(async {
            let url = self.url();
            let runner = Arc::new(
                Self::runner(
                    &self.runtime,
                    &self.db,
                    &self.mock.base_url(),
                    &url,
                    &self.config,
                )
                .await?,
            );
            let listener = server::bind(self.port)?;
            let options = self.config.server_options(&url);
            self.server = Some(Server::start(listener, runner.clone(), options).await?);
            self.runner = runner;
            Ok(())
        })
    }
}
