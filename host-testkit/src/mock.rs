//! An embedded mock of the WhatsApp Cloud API and an SMS API: a real HTTP server on loopback
//! (axum, tokio) that checks the bearer token and the request's shape and answers as Meta
//! documents it, after a configurable latency, enforcing Meta's limits when asked, and
//! posting signed status webhooks.
//!
//! Scenario recipients produce each common answer (see [`SCENARIOS`]); any other valid
//! recipient is accepted. Counters (requests per correlation id, per second, per error code)
//! are readable at `GET /mock/counters`.

use anyhow::{Context, Result, bail};
use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
pub use host::services::signing::signature;
use host::services::{ACCESS_TOKEN_NAME, HostServices, HttpClient, HttpPolicy, Log, Secrets};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// What the mock does for a recipient.
#[derive(Debug, Clone, Copy)]
pub enum Behaviour {
    /// 200 with a wamid.
    Accept,
    /// A Graph error: HTTP status, code, title, details.
    Error(u16, i64, &'static str, &'static str),
    /// 130429 on the first request for this recipient, accepted afterwards.
    RateLimitedOnce,
    /// 503 with an HTML page and no error code.
    HtmlOutage,
    /// Answers only after this many ms (to exercise the host's timeout).
    Slow(u64),
    /// 200, then these statuses by webhook (status, error code), when webhooks are configured.
    AcceptThen(&'static [(&'static str, Option<i64>)]),
}

/// What an accepted message to an unscripted recipient goes through, by webhook.
pub const DEFAULT_STATUSES: &[(&str, Option<i64>)] =
    &[("sent", None), ("delivered", None), ("read", None)];

/// A recipient with a scripted answer.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    pub recipient: &'static str,
    pub description: &'static str,
    pub behaviour: Behaviour,
}

/// The scripted recipients.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        recipient: "+15550100001",
        description: "accepted",
        behaviour: Behaviour::Accept,
    },
    Scenario {
        recipient: "+15550100002",
        description: "not on WhatsApp (131026)",
        behaviour: Behaviour::Error(
            400,
            131026,
            "Message Undeliverable",
            "Unable to deliver message. Reasons can include: the recipient phone number is not a WhatsApp phone number",
        ),
    },
    Scenario {
        recipient: "+15550100003",
        description: "throughput limit (130429)",
        behaviour: Behaviour::Error(
            400,
            130429,
            "Rate limit hit",
            "Cloud API message throughput has been reached.",
        ),
    },
    Scenario {
        recipient: "+15550100004",
        description: "outside the 24 h window (131047)",
        behaviour: Behaviour::Error(
            400,
            131047,
            "Re-engagement message",
            "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
        ),
    },
    Scenario {
        recipient: "+15550100005",
        description: "pair rate limit (131056)",
        behaviour: Behaviour::Error(
            400,
            131056,
            "(Business Account, Consumer Account) pair rate limit hit",
            "Message failed to send because there were too many messages sent from this phone number to the same phone number in a short period of time.",
        ),
    },
    Scenario {
        recipient: "+15550100006",
        description: "server error (131000)",
        behaviour: Behaviour::Error(
            500,
            131000,
            "Something went wrong",
            "Something went wrong while sending the message.",
        ),
    },
    Scenario {
        recipient: "+15550100007",
        description: "HTML 503 without a code",
        behaviour: Behaviour::HtmlOutage,
    },
    Scenario {
        recipient: "+15550100008",
        description: "template parameter count mismatch (132000)",
        behaviour: Behaviour::Error(
            400,
            132000,
            "Number of parameters does not match the expected number of params",
            "body: number of localizable_params (1) does not match the expected number of params (2)",
        ),
    },
    Scenario {
        recipient: "+15550100009",
        description: "template does not exist (132001)",
        behaviour: Behaviour::Error(
            404,
            132001,
            "Template name does not exist in the translation",
            "template name (order_update) does not exist in en_US",
        ),
    },
    Scenario {
        recipient: "+15550100010",
        description: "rate-limited once, then accepted",
        behaviour: Behaviour::RateLimitedOnce,
    },
    Scenario {
        recipient: "+15550100011",
        description: "answers after 3 s (host timeout → unknown)",
        behaviour: Behaviour::Slow(3_000),
    },
    Scenario {
        recipient: "+15550100012",
        description: "accepted, then a failed status: not on WhatsApp (131026)",
        behaviour: Behaviour::AcceptThen(&[("failed", Some(131026))]),
    },
    Scenario {
        recipient: "+15550100013",
        description: "accepted and sent, never delivered",
        behaviour: Behaviour::AcceptThen(&[("sent", None)]),
    },
];

/// A request the mock received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Where the mock posts status webhooks, and the secrets it signs them with.
#[derive(Debug, Clone)]
pub struct WebhookTargets {
    pub whatsapp_url: String,
    pub whatsapp_app_secret: String,
    pub sms_url: String,
    pub sms_secret: String,
    /// The SendGrid Event Webhook's URL (`/webhooks/email`).
    pub email_url: String,
    /// Pause between an answer and each following status.
    pub step: Duration,
    /// Meta's delivery habits across several nodes; `None` posts each status once, in order,
    /// to the URLs above.
    pub deliveries: Option<Deliveries>,
}

/// How statuses reach several nodes behind one app, as Meta delivers them: each to a node
/// picked at random, some twice, some out of order, and one not answered 200 again later
/// (to another node) until it is. Every delivery is logged ([`MockApi::deliveries`]).
#[derive(Debug, Clone, Default)]
pub struct Deliveries {
    /// Each node's base URL (`http://127.0.0.1:<port>`).
    pub nodes: Vec<String>,
    /// One status in this many is delivered a second time, to another node (0: none).
    pub duplicate_one_in: u64,
    /// One message in this many gets its statuses in reverse order (0: none).
    pub reverse_one_in: u64,
    /// Further tries of a delivery not answered 200 (Meta retries for days).
    pub retries: u32,
}

/// One delivery of a status webhook: to which node, and what it answered (0: no answer).
#[derive(Debug, Clone)]
pub struct Delivery {
    pub message_id: String,
    pub status: String,
    pub node: usize,
    pub http_status: u16,
}

impl WebhookTargets {
    /// A `serve` at `base` (its `/webhooks/whatsapp` and `/webhooks/sms`), signed with the
    /// demo secrets, a status every `step`.
    pub fn demo_serve(base: &str, step: Duration) -> WebhookTargets {
        let base = base.trim_end_matches('/');
        WebhookTargets {
            whatsapp_url: format!("{base}/webhooks/whatsapp"),
            whatsapp_app_secret: crate::stack::DEMO_APP_SECRET.into(),
            sms_url: format!("{base}/webhooks/sms"),
            sms_secret: crate::stack::DEMO_SMS_WEBHOOK_SECRET.into(),
            email_url: format!("{base}/webhooks/email"),
            step,
            deliveries: None,
        }
    }
}

/// How long the mock takes to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Latency {
    #[default]
    None,
    Fixed(u64),
    /// Uniformly between the two (inclusive), in ms.
    Range(u64, u64),
}

impl Latency {
    /// `200` or `100-300` (ms).
    pub fn parse(s: &str) -> Result<Latency> {
        let num = |t: &str| {
            t.trim()
                .parse::<u64>()
                .with_context(|| format!("--latency-ms: {t:?} is not a number of ms"))
        };
        let latency = match s.split_once('-') {
            Some((lo, hi)) => Latency::Range(num(lo)?, num(hi)?),
            None => Latency::Fixed(num(s)?),
        };
        match latency {
            Latency::Range(lo, hi) if lo > hi => bail!("--latency-ms {s}: the range is reversed"),
            Latency::Fixed(v) | Latency::Range(_, v) if v > 600_000 => {
                bail!("--latency-ms {s}: at most 600000")
            }
            l => Ok(l),
        }
    }

    fn sample(self, seed: u64) -> Duration {
        Duration::from_millis(match self {
            Latency::None => 0,
            Latency::Fixed(ms) => ms,
            Latency::Range(lo, hi) => lo + splitmix(seed) % (hi - lo + 1),
        })
    }
}

/// A cheap deterministic spread (no randomness needed for latency jitter).
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Meta's limits, enforced when set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MockLimits {
    /// Messages per calendar second per phone number id (130429 past it, with 1% allowed for
    /// arrival jitter).
    pub rate_per_number: u32,
    /// Minimum gap between two messages to one customer (131056 when shorter).
    pub pair_gap_ms: u64,
}

/// The mock's settings.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// The bearer token it accepts.
    pub access_token: String,
    /// The only phone number id it knows.
    pub phone_number_id: String,
    /// The SMS API key it accepts.
    pub sms_api_key: String,
    /// Status webhooks to post, if any.
    pub webhooks: Option<WebhookTargets>,
    pub latency: Latency,
    pub limits: Option<MockLimits>,
    /// Keep every request (tests read them); off for load runs, where counters suffice.
    pub record: bool,
    /// The statuses an accepted message to an unscripted recipient goes through.
    pub statuses: &'static [(&'static str, Option<i64>)],
    /// Businesses on the app besides the single one above (`access_token`,
    /// `phone_number_id`): each its own WABA, token, numbers and templates.
    pub businesses: Vec<crate::mock_businesses::MockBusiness>,
    /// The app they are on.
    pub app: crate::mock_businesses::MockApp,
    /// Templates per page at most, whatever `limit` asks (to make listings span pages).
    pub template_page_size: usize,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            access_token: crate::defaults::DEMO_ACCESS_TOKEN.into(),
            phone_number_id: crate::defaults::DEMO_PHONE_NUMBER_ID.into(),
            sms_api_key: crate::defaults::DEMO_SMS_API_KEY.into(),
            webhooks: None,
            latency: Latency::None,
            limits: None,
            record: true,
            statuses: DEFAULT_STATUSES,
            businesses: Vec::new(),
            app: crate::mock_businesses::MockApp::default(),
            template_page_size: 25,
        }
    }
}

/// What the mock counted.
#[derive(Debug, Default)]
struct Counters {
    requests: u64,
    by_correlation: HashMap<String, u32>,
    per_second: BTreeMap<u64, u32>,
    by_code: BTreeMap<String, u32>,
    number_second: HashMap<(String, u64), u32>,
    last_to_customer: HashMap<String, u64>,
}

struct State {
    config: MockConfig,
    businesses: Mutex<Vec<crate::mock_businesses::BusinessState>>,
    recorded: Mutex<Vec<Recorded>>,
    attempts: Mutex<HashMap<String, u32>>,
    counters: Mutex<Counters>,
    next_id: AtomicU64,
    http: reqwest::Client,
    deliveries: Mutex<Vec<Delivery>>,
}

/// A running mock; stops when dropped.
pub struct MockApi {
    addr: SocketAddr,
    state: Arc<State>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl MockApi {
    /// Starts on `127.0.0.1:port` (0 picks a free port), for synchronous tests: it serves on
    /// the test kit's runtime ([`crate::blocking::runtime`]).
    pub fn start(port: u16, config: MockConfig) -> Result<MockApi> {
        crate::block_on(Self::spawn(port, config))
    }

    /// Starts on `127.0.0.1:port` (0 picks a free port), serving as a task of the caller's
    /// runtime.
    pub async fn spawn(port: u16, config: MockConfig) -> Result<MockApi> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| format!("starting the mock Cloud API on port {port}"))?;
        let addr = listener.local_addr()?;
        let businesses = config
            .businesses
            .iter()
            .cloned()
            .map(crate::mock_businesses::BusinessState::new)
            .collect();
        let state = Arc::new(State {
            businesses: Mutex::new(businesses),
            config,
            recorded: Mutex::default(),
            attempts: Mutex::default(),
            counters: Mutex::default(),
            next_id: AtomicU64::new(1),
            deliveries: Mutex::default(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .context("the mock's webhook client")?,
        });
        let (stop, mut stopped) = watch::channel(false);
        let app = axum::Router::new()
            .route("/mock/counters", axum::routing::get(counters))
            .fallback(handle)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.changed().await;
                })
                .await;
        });
        Ok(MockApi {
            addr,
            state,
            stop,
            task: Some(task),
        })
    }

    /// Every status delivery so far (with [`Deliveries`] configured).
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state
            .deliveries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs `f` over the businesses as they stand (under their lock).
    pub(crate) fn with_businesses<R>(
        &self,
        f: impl FnOnce(&mut Vec<crate::mock_businesses::BusinessState>) -> R,
    ) -> R {
        let mut businesses = self
            .state
            .businesses
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        f(&mut businesses)
    }

    /// The app the businesses are on.
    pub fn app(&self) -> crate::mock_businesses::MockApp {
        self.state.config.app.clone()
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far (when recording).
    pub fn requests(&self) -> Vec<Recorded> {
        self.state
            .recorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The counters, as `GET /mock/counters` returns them.
    pub fn counters(&self) -> Value {
        counters_json(&self.state)
    }

    /// Serves until the process is stopped (for `mock-api`).
    pub async fn wait(mut self) {
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for MockApi {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        // A synchronous test waits until the port is closed, as a provider that went down;
        // inside a runtime the task finishes its requests and closes the port on its own.
        if let Some(task) = self.task.take()
            && tokio::runtime::Handle::try_current().is_err()
        {
            let _ = crate::block_on(task);
        }
    }
}

fn counters_json(state: &State) -> Value {
    let c = state.counters.lock().unwrap_or_else(|p| p.into_inner());
    let duplicates: BTreeMap<&String, &u32> =
        c.by_correlation.iter().filter(|(_, n)| **n > 1).collect();
    json!({
        "requests": c.requests,
        "distinct_correlation_ids": c.by_correlation.len(),
        "correlation_ids_sent_more_than_once": duplicates,
        "max_per_second": c.per_second.values().max().copied().unwrap_or(0),
        // The most one sending number sent in any calendar second (with limits set).
        "max_per_number_second": c.number_second.values().max().copied().unwrap_or(0),
        "numbers": c.number_second.keys().map(|(n, _)| n.as_str()).collect::<std::collections::BTreeSet<_>>().len(),
        "per_second": c.per_second.iter().map(|(s, n)| json!([s, n])).collect::<Vec<_>>(),
        "by_code": c.by_code,
    })
}

async fn counters(AxState(state): AxState<Arc<State>>) -> Response {
    axum::Json(counters_json(&state)).into_response()
}

/// Statuses to post after an answer.
pub(crate) enum FollowUp {
    WhatsApp {
        id: String,
        /// The number that sent it (its WABA's statuses name both).
        phone_id: String,
        digits: String,
        callback: Option<String>,
        statuses: &'static [(&'static str, Option<i64>)],
    },
    Sms {
        id: String,
        to: String,
        reference: Option<String>,
    },
    /// SendGrid's Event Webhook deliveries, to the account's event URL.
    SendGrid {
        message_id: String,
        email: String,
        correlation_id: Option<String>,
        events: &'static [crate::mock_sendgrid::MockEvent],
    },
    /// Twilio's callbacks, to the message's `StatusCallback`.
    Twilio {
        /// The account that sent it (its token signs the callbacks).
        account: &'static str,
        sid: String,
        to: String,
        from: String,
        callback: String,
        statuses: &'static [(&'static str, Option<u32>)],
    },
}

pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) answer: Answer,
    pub(crate) delay: Duration,
    pub(crate) then: Option<FollowUp>,
    /// Response headers besides the content type (SendGrid's `X-Message-Id`).
    pub(crate) headers: Vec<(&'static str, String)>,
}

pub(crate) enum Answer {
    Json(Value),
    Html(String),
}

async fn handle(
    AxState(state): AxState<Arc<State>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let recorded = Recorded {
        method: method.to_string(),
        path: uri.to_string(),
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    };
    let trace = state.next_id.fetch_add(1, Ordering::Relaxed);
    let mut reply = answer(&state, &recorded, trace);
    count(&state, &recorded, &reply);
    if state.config.record {
        state
            .recorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(recorded);
    }
    let delay = state.config.latency.sample(trace) + reply.delay;
    // Meta acts on a request it has received even if the client gives up waiting: the
    // statuses follow whether or not this answer is read.
    if let (Some(follow), Some(targets)) = (reply.then.take(), state.config.webhooks.clone()) {
        tokio::spawn(post_statuses(state.clone(), targets, follow, delay));
    }
    tokio::time::sleep(delay).await;
    let status = axum::http::StatusCode::from_u16(reply.status)
        .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = match reply.answer {
        Answer::Json(Value::Null) => status.into_response(),
        Answer::Json(v) => (status, axum::Json(v)).into_response(),
        Answer::Html(s) => (status, [("content-type", "text/html")], s).into_response(),
    };
    for (name, value) in reply.headers {
        if let Ok(v) = axum::http::HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, v);
        }
    }
    response
}

fn count(state: &State, req: &Recorded, reply: &Reply) {
    let mut c = state.counters.lock().unwrap_or_else(|p| p.into_inner());
    c.requests += 1;
    *c.per_second
        .entry(host::services::now_ms() / 1_000)
        .or_default() += 1;
    if let Some(id) = correlation_of(req) {
        *c.by_correlation.entry(id).or_default() += 1;
    }
    let code = match &reply.answer {
        Answer::Json(v) => v["error"]["code"]
            .as_i64()
            .map(|c| c.to_string())
            .or_else(|| v["error"]["code"].as_str().map(str::to_string)),
        Answer::Html(_) => None,
    };
    *c.by_code
        .entry(code.unwrap_or_else(|| reply.status.to_string()))
        .or_default() += 1;
}

/// The correlation id a request carries: WhatsApp's `biz_opaque_callback_data`, the SMS
/// API's `reference`.
impl Recorded {
    /// Whether it is an email send (SendGrid's Mail Send).
    pub fn is_email_send(&self) -> bool {
        self.path.split('?').next() == Some("/v3/mail/send")
    }

    /// Whether it is an SMS send: Twilio's Messages API, or the 1.0.0 fixture's `/sms/v1`.
    pub fn is_sms_send(&self) -> bool {
        let path = self.path.split('?').next().unwrap_or("");
        path.starts_with("/sms/") || path.ends_with("/Messages.json")
    }

    /// The correlation id the request carries (WhatsApp's `biz_opaque_callback_data`, the
    /// SMS API's `reference`).
    pub fn correlation_id(&self) -> Option<String> {
        correlation_of(self)
    }
}

fn correlation_of(req: &Recorded) -> Option<String> {
    if req.path.ends_with("/Messages.json") {
        return crate::mock_twilio::correlation_of(&req.body);
    }
    if req.path.starts_with("/v3/mail/send") {
        return crate::mock_sendgrid::correlation_of(&req.body);
    }
    let body: Value = serde_json::from_slice(&req.body).ok()?;
    body.get("biz_opaque_callback_data")
        .or_else(|| body.get("reference"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

pub(crate) fn graph_error(status: u16, code: i64, title: &str, details: &str, trace: u64) -> Reply {
    reply(
        status,
        json!({"error": {
            "message": format!("(#{code}) {title}"),
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": details},
            "fbtrace_id": format!("AmockTrace{trace:06}"),
        }}),
    )
}

pub(crate) fn reply(status: u16, body: Value) -> Reply {
    Reply {
        status,
        answer: Answer::Json(body),
        delay: Duration::ZERO,
        then: None,
        headers: Vec::new(),
    }
}

pub(crate) fn header<'a>(req: &'a Recorded, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn answer(state: &State, req: &Recorded, trace: u64) -> Reply {
    let path = req.path.split('?').next().unwrap_or("");
    if path == "/sms/v1/messages" {
        return sms_answer(state, req, trace);
    }
    if let Some(reply) = crate::mock_twilio::answer(req, trace) {
        return reply;
    }
    if let Some(reply) = crate::mock_sendgrid::answer(req, trace) {
        return reply;
    }
    {
        let mut businesses = state.businesses.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(reply) = crate::mock_businesses::answer(
            &mut businesses,
            &state.config.app,
            state.config.template_page_size,
            req,
            trace,
        ) {
            return reply;
        }
    }
    match check_graph_request(state, req, path, trace) {
        Ok((phone_id, body)) => whatsapp_answer(state, &phone_id, &body, trace),
        Err(refusal) => *refusal,
    }
}

/// `POST /{version}/{phone-number-id}/messages` (or `/marketing_messages`) with the token, content type and body Meta
/// requires; the parsed body, or Meta's error.
fn check_graph_request(
    state: &State,
    req: &Recorded,
    path: &str,
    trace: u64,
) -> Result<(String, Value), Box<Reply>> {
    let err = |status, code, title: &str, details: &str| {
        Box::new(graph_error(status, code, title, details, trace))
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    // `/messages`, or Meta's Marketing Messages API (`/marketing_messages`), templates only.
    let [
        version,
        phone_id,
        endpoint @ ("messages" | "marketing_messages"),
    ] = parts.as_slice()
    else {
        return Err(err(
            400,
            100,
            "Unsupported post request",
            &format!("unknown path {}", req.path),
        ));
    };
    if !version.starts_with('v') {
        return Err(err(
            400,
            100,
            "Invalid parameter",
            &format!("{version} is not a Graph API version"),
        ));
    }
    let owner = {
        let businesses = state.businesses.lock().unwrap_or_else(|p| p.into_inner());
        businesses
            .iter()
            .position(|b| b.business.numbers.iter().any(|n| n.id == *phone_id))
            .map(|i| crate::mock_businesses::check_token(&businesses, i, req, trace))
    };
    let owned = owner.is_some();
    if let Some(checked) = owner {
        checked?;
    } else if header(req, "authorization")
        != Some(format!("Bearer {}", state.config.access_token).as_str())
    {
        return Err(err(
            401,
            190,
            "Invalid OAuth access token - Cannot parse access token",
            "the bearer token is missing or wrong",
        ));
    }
    if !owned && *phone_id != state.config.phone_number_id {
        return Err(err(
            400,
            100,
            "Invalid parameter",
            &format!("Unsupported post request. Object with ID '{phone_id}' does not exist"),
        ));
    }
    if req.method != "POST" {
        return Err(err(
            400,
            100,
            "Invalid parameter",
            "messages are sent with POST",
        ));
    }
    if !header(req, "content-type").is_some_and(|c| c.starts_with("application/json")) {
        return Err(err(
            400,
            100,
            "Invalid parameter",
            "Content-Type must be application/json",
        ));
    }
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return Err(err(
            400,
            100,
            "Invalid parameter",
            "the request body is not JSON",
        ));
    };
    if *endpoint == "marketing_messages"
        && body.get("type").and_then(Value::as_str) != Some("template")
    {
        return Err(err(
            400,
            100,
            "Invalid parameter",
            "the Marketing Messages API sends template messages only",
        ));
    }
    if body.get("messaging_product").and_then(Value::as_str) != Some("whatsapp") {
        return Err(err(
            400,
            100,
            "Invalid parameter",
            "messaging_product must be \"whatsapp\"",
        ));
    }
    Ok((phone_id.to_string(), body))
}

fn whatsapp_answer(state: &State, phone_id: &str, body: &Value, trace: u64) -> Reply {
    let err =
        |status, code, title: &str, details: &str| graph_error(status, code, title, details, trace);
    // Mark as read.
    if body.get("status").and_then(Value::as_str) == Some("read") {
        return reply(200, json!({"success": true}));
    }
    // A phone number in `to`, or a business-scoped user id in `recipient` (`to` wins).
    let Some(to) = body
        .get("to")
        .or_else(|| body.get("recipient"))
        .and_then(Value::as_str)
    else {
        return err(
            400,
            131008,
            "Required parameter is missing",
            "Parameter 'to' or 'recipient' is required",
        );
    };
    let Some(kind) = body.get("type").and_then(Value::as_str) else {
        return err(
            400,
            131008,
            "Required parameter is missing",
            "Parameter 'type' is required",
        );
    };
    if body.get(kind).is_none() {
        return err(
            400,
            131008,
            "Required parameter is missing",
            &format!("Parameter '{kind}' is required for type {kind}"),
        );
    }
    let digits: String = to.chars().filter(char::is_ascii_digit).collect();
    if let Some(refusal) = enforce_limits(state, phone_id, &digits, trace) {
        return refusal;
    }
    let scenario = SCENARIOS
        .iter()
        .find(|s| s.recipient.trim_start_matches('+') == digits);
    let mut statuses = state.config.statuses;
    let mut delay = Duration::ZERO;
    match scenario.map(|s| s.behaviour).unwrap_or(Behaviour::Accept) {
        Behaviour::Accept => {}
        Behaviour::AcceptThen(script) => statuses = script,
        Behaviour::Error(status, code, title, details) => return err(status, code, title, details),
        Behaviour::HtmlOutage => {
            return Reply {
                status: 503,
                answer: Answer::Html(
                    "<html><body><h1>503 Service Unavailable</h1></body></html>".into(),
                ),
                delay,
                then: None,
                headers: Vec::new(),
            };
        }
        Behaviour::RateLimitedOnce => {
            let mut attempts = state.attempts.lock().unwrap_or_else(|p| p.into_inner());
            let n = attempts.entry(digits.clone()).or_insert(0);
            *n += 1;
            if *n == 1 {
                return err(
                    400,
                    130429,
                    "Rate limit hit",
                    "Cloud API message throughput has been reached.",
                );
            }
        }
        Behaviour::Slow(ms) => delay = Duration::from_millis(ms),
    }
    accepted(state, phone_id, body, kind, to, digits, statuses, delay)
}

/// Meta's 200 for a message, with the statuses to post after it.
#[allow(clippy::too_many_arguments)] // one answer's parts, each named at the one call
fn accepted(
    state: &State,
    phone_id: &str,
    body: &Value,
    kind: &str,
    to: &str,
    digits: String,
    statuses: &'static [(&'static str, Option<i64>)],
    delay: Duration,
) -> Reply {
    let id = format!(
        "wamid.MOCK{:012}",
        state.next_id.fetch_add(1, Ordering::Relaxed)
    );
    let mut message = json!({ "id": id });
    if kind == "template" {
        message["message_status"] = json!("accepted");
    }
    let callback = body
        .get("biz_opaque_callback_data")
        .and_then(Value::as_str)
        .map(str::to_string);
    Reply {
        status: 200,
        answer: Answer::Json(json!({"messaging_product": "whatsapp",
            "contacts": [contact(to, &digits)], "messages": [message]})),
        delay,
        then: Some(FollowUp::WhatsApp {
            id,
            phone_id: phone_id.to_string(),
            digits,
            callback,
            statuses,
        }),
        headers: Vec::new(),
    }
}

/// The answer's contact: `wa_id` for a phone number, `user_id` for a BSUID (Meta omits the
/// `wa_id` then).
fn contact(input: &str, digits: &str) -> Value {
    if input.starts_with('+') || input.chars().all(|c| c.is_ascii_digit()) {
        json!({"input": input, "wa_id": digits})
    } else {
        json!({"input": input, "user_id": input})
    }
}

/// Meta's throughput (per number per second) and pair rate (per customer) limits.
fn enforce_limits(state: &State, phone_id: &str, digits: &str, trace: u64) -> Option<Reply> {
    let limits = state.config.limits?;
    let now = host::services::now_ms();
    let mut c = state.counters.lock().unwrap_or_else(|p| p.into_inner());
    let key = (phone_id.to_string(), now / 1_000);
    let in_second = c.number_second.entry(key).or_default();
    *in_second += 1;
    // A sender pacing exactly at the rate sees its requests arrive with a few ms of jitter,
    // so a calendar second can catch one more; Meta's limiter is not millisecond-exact either.
    // 1% (at least one message) is allowed for that; the counters report the raw maximum.
    let tolerance = (limits.rate_per_number / 100).max(1);
    if *in_second > limits.rate_per_number + tolerance {
        return Some(graph_error(
            400,
            130429,
            "Rate limit hit",
            "Cloud API message throughput has been reached.",
            trace,
        ));
    }
    // Meta's pair limit is per (business number, customer).
    let pair = format!("{phone_id}:{digits}");
    let last = c.last_to_customer.get(&pair).copied();
    // Arrival times jitter by the network's few ms; a sender spacing its slots exactly by the
    // gap must not be punished for that.
    const ARRIVAL_JITTER_MS: u64 = 100;
    if last.is_some_and(|t| now.saturating_sub(t) + ARRIVAL_JITTER_MS < limits.pair_gap_ms) {
        return Some(graph_error(
            400,
            131056,
            "(Business Account, Consumer Account) pair rate limit hit",
            "Message failed to send because there were too many messages sent from this phone number to the same phone number in a short period of time.",
            trace,
        ));
    }
    c.last_to_customer.insert(pair, now);
    None
}

/// The mock SMS API: `POST /sms/v1/messages` (see `examples/sms-channel`).
fn sms_answer(state: &State, req: &Recorded, trace: u64) -> Reply {
    let error = |status: u16, code: &str, message: &str| {
        reply(status, json!({"error": {"code": code, "message": message}}))
    };
    if header(req, "authorization") != Some(format!("Bearer {}", state.config.sms_api_key).as_str())
    {
        return error(401, "unauthorized", "the API key is missing or wrong");
    }
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return error(400, "invalid_request", "the body is not JSON");
    };
    let to = body
        .get("to")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if !to.starts_with('+') || to.len() < 9 {
        return error(400, "invalid_number", "`to` must be an E.164 number");
    }
    if body
        .get("text")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return error(400, "invalid_request", "`text` is required");
    }
    let id = format!("sms-{trace:08}");
    let reference = body
        .get("reference")
        .and_then(Value::as_str)
        .map(str::to_string);
    Reply {
        status: 202,
        answer: Answer::Json(json!({"id": id, "status": "queued"})),
        delay: Duration::ZERO,
        then: Some(FollowUp::Sms { id, to, reference }),
        headers: Vec::new(),
    }
}

/// One status webhook to post: its route, signature header and secret, and body.
struct Outgoing {
    path: &'static str,
    header: &'static str,
    secret: String,
    message_id: String,
    status: String,
    body: String,
    /// A Twilio callback instead: the URL it was given (and signs) and its parameters.
    form: Option<(String, Vec<(String, String)>)>,
}

impl Outgoing {
    /// Posts to `base` (a node; `None`: where the provider was told), as its provider signs.
    async fn post(
        &self,
        http: &reqwest::Client,
        targets: &WebhookTargets,
        base: Option<&str>,
    ) -> u16 {
        if let Some((callback, params)) = &self.form {
            let to = match (base, url::Url::parse(callback)) {
                (Some(base), Ok(u)) => {
                    let query = u.query().map(|q| format!("?{q}")).unwrap_or_default();
                    format!("{base}{}{query}", u.path())
                }
                _ => callback.clone(),
            };
            return crate::mock_twilio::post_form(http, &to, callback, params, &self.secret).await;
        }
        let url = match (base, self.path) {
            (Some(base), path) => format!("{base}{path}"),
            (None, "/webhooks/sms") => targets.sms_url.clone(),
            (None, "/webhooks/email") => targets.email_url.clone(),
            (None, _) => targets.whatsapp_url.clone(),
        };
        if self.header == crate::mock_sendgrid::SIGNATURE_HEADER {
            return crate::mock_sendgrid::post_events(http, &url, self.body.clone()).await;
        }
        post_signed(http, &url, self.header, &self.secret, self.body.clone()).await
    }
}

/// Posts the statuses that follow an answer, each `step` after the previous one; a host that
/// is down simply misses them (Meta would retry; tests replay deliveries explicitly), unless
/// [`Deliveries`] says how Meta delivers them.
async fn post_statuses(
    state: Arc<State>,
    targets: WebhookTargets,
    follow: FollowUp,
    after: Duration,
) {
    tokio::time::sleep(after).await;
    let mut outgoing = statuses_of(&state, &targets, follow);
    let seed = state.next_id.fetch_add(1, Ordering::Relaxed);
    let chaos = targets.deliveries.clone();
    if let Some(d) = &chaos
        && d.reverse_one_in > 0
        && splitmix(seed).is_multiple_of(d.reverse_one_in)
    {
        outgoing.reverse();
    }
    for (i, out) in outgoing.into_iter().enumerate() {
        tokio::time::sleep(targets.step).await;
        let Some(d) = &chaos else {
            let _ = out.post(&state.http, &targets, None).await;
            continue;
        };
        let pick = splitmix(seed ^ ((i as u64) << 32));
        let twice = d.duplicate_one_in > 0 && (pick >> 8).is_multiple_of(d.duplicate_one_in);
        let out = Arc::new(out);
        if twice {
            tokio::spawn(deliver(
                state.clone(),
                targets.clone(),
                d.clone(),
                out.clone(),
                pick >> 16,
            ));
        }
        deliver(state.clone(), targets.clone(), d.clone(), out, pick).await;
    }
}

/// Delivers one status to a node picked by `pick`, again (to the next node, after a growing
/// pause) while it is not answered 200, logging every try.
async fn deliver(
    state: Arc<State>,
    targets: WebhookTargets,
    d: Deliveries,
    out: Arc<Outgoing>,
    pick: u64,
) {
    for attempt in 0..=d.retries {
        let node = ((pick + u64::from(attempt)) % d.nodes.len().max(1) as u64) as usize;
        let status = out.post(&state.http, &targets, Some(&d.nodes[node])).await;
        state
            .deliveries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Delivery {
                message_id: out.message_id.clone(),
                status: out.status.clone(),
                node,
                http_status: status,
            });
        if status == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500 << attempt.min(4))).await;
    }
}

fn statuses_of(state: &State, targets: &WebhookTargets, follow: FollowUp) -> Vec<Outgoing> {
    match follow {
        FollowUp::WhatsApp {
            id,
            phone_id,
            digits,
            callback,
            statuses,
        } => {
            let waba = {
                let businesses = state.businesses.lock().unwrap_or_else(|p| p.into_inner());
                crate::mock_businesses::waba_of_number(&businesses, &phone_id)
                    .unwrap_or_else(|| DEMO_WABA_ID.to_string())
            };
            statuses
                .iter()
                .map(|(status, code)| Outgoing {
                    path: "/webhooks/whatsapp",
                    header: "X-Hub-Signature-256",
                    secret: targets.whatsapp_app_secret.clone(),
                    message_id: id.clone(),
                    status: status.to_string(),
                    form: None,
                    body: whatsapp_status_body_of(
                        &waba,
                        &phone_id,
                        &id,
                        &digits,
                        status,
                        *code,
                        callback.as_deref(),
                    ),
                })
                .collect()
        }
        FollowUp::Sms { id, to, reference } => ["sent", "delivered"]
            .into_iter()
            .map(|status| Outgoing {
                path: "/webhooks/sms",
                header: "X-Signature",
                secret: targets.sms_secret.clone(),
                message_id: id.clone(),
                status: status.to_string(),
                body: json!({"id": id, "status": status, "reference": reference, "to": to,
                    "timestamp": host::services::now_ms() / 1000})
                .to_string(),
                form: None,
            })
            .collect(),
        FollowUp::SendGrid {
            message_id,
            email,
            correlation_id,
            events,
        } => events
            .iter()
            .enumerate()
            .map(|(i, event)| Outgoing {
                path: "/webhooks/email",
                header: crate::mock_sendgrid::SIGNATURE_HEADER,
                secret: String::new(),
                message_id: message_id.clone(),
                status: event.name.to_string(),
                body: crate::mock_sendgrid::event_body(
                    &message_id,
                    &email,
                    correlation_id.as_deref(),
                    event,
                    i,
                ),
                form: None,
            })
            .collect(),
        FollowUp::Twilio {
            account,
            sid,
            to,
            from,
            callback,
            statuses,
        } => twilio_callbacks(account, &sid, &to, &from, &callback, statuses),
    }
}

/// Twilio's status callbacks of one message, to its `StatusCallback`, each signed with the
/// token of the account that sent it.
fn twilio_callbacks(
    account: &str,
    sid: &str,
    to: &str,
    from: &str,
    callback: &str,
    statuses: &[(&str, Option<u32>)],
) -> Vec<Outgoing> {
    let token = crate::mock_twilio::auth_token_of(account).unwrap_or_default();
    statuses
        .iter()
        .map(|(status, code)| {
            let params =
                crate::mock_twilio::account_status_params(account, sid, to, from, status, *code);
            Outgoing {
                path: "/webhooks/sms",
                header: "X-Twilio-Signature",
                secret: token.to_string(),
                message_id: sid.to_string(),
                status: status.to_string(),
                body: String::new(),
                form: Some((callback.to_string(), params)),
            }
        })
        .collect()
}

/// Posts a signed body; the HTTP status, 0 without an answer.
async fn post_signed(
    http: &reqwest::Client,
    url: &str,
    header: &str,
    secret: &str,
    body: String,
) -> u16 {
    http.post(url)
        .header(header, signature(secret, body.as_bytes()))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// The WABA of the mock's single business (`MockConfig::phone_number_id`).
pub const DEMO_WABA_ID: &str = "102290129340398";

/// A status webhook as Meta posts it, from the single business's WABA.
pub fn whatsapp_status_body(
    phone_number_id: &str,
    id: &str,
    recipient_digits: &str,
    status: &str,
    code: Option<i64>,
    callback: Option<&str>,
) -> String {
    whatsapp_status_body_of(
        DEMO_WABA_ID,
        phone_number_id,
        id,
        recipient_digits,
        status,
        code,
        callback,
    )
}

/// A status webhook as Meta posts it, from `waba`'s number `phone_number_id`.
pub fn whatsapp_status_body_of(
    waba: &str,
    phone_number_id: &str,
    id: &str,
    recipient_digits: &str,
    status: &str,
    code: Option<i64>,
    callback: Option<&str>,
) -> String {
    let mut st = json!({"id": id, "status": status, "timestamp": (host::services::now_ms() / 1000).to_string(), "recipient_id": recipient_digits});
    if let Some(cb) = callback {
        st["biz_opaque_callback_data"] = json!(cb);
    }
    if let Some(code) = code {
        st["errors"] = json!([{"code": code, "title": "Message undeliverable.", "message": "Message undeliverable.", "error_data": {"details": "Message Undeliverable."}, "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"}]);
    }
    json!({"object": "whatsapp_business_account", "entry": [{"id": waba, "changes": [{"value": {
        "messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_number_id}, "statuses": [st]}, "field": "messages"}]}]})
    .to_string()
}

/// Host services for talking to the embedded mock.
pub fn mock_services(mock: &MockApi, log: Log) -> Result<HostServices> {
    let policy = HttpPolicy {
        response_timeout: Duration::from_secs(2),
        ..HttpPolicy::default()
    }
    .allowing([mock.base_url().as_str()])?;
    let mut secrets = Secrets::default();
    secrets.insert_for_hosts(
        ACCESS_TOKEN_NAME,
        crate::defaults::DEMO_ACCESS_TOKEN,
        [mock.base_url().as_str()],
    )?;
    Ok(HostServices::new(HttpClient::new(policy), secrets, log))
}
