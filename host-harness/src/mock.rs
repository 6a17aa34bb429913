//! An embedded mock of the WhatsApp Cloud API: a real HTTP server on loopback that checks the
//! bearer token and the request's shape and answers as Meta documents it.
//!
//! Scenario recipients produce each common answer (see [`SCENARIOS`]); any other valid
//! recipient is accepted. Every request is recorded for tests to inspect.

use anyhow::{Context, Result, anyhow};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

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
    /// Pause between an answer and each following status.
    pub step: Duration,
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
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            access_token: crate::cli::DEMO_ACCESS_TOKEN.into(),
            phone_number_id: crate::cli::DEMO_PHONE_NUMBER_ID.into(),
            sms_api_key: crate::cli::DEMO_SMS_API_KEY.into(),
            webhooks: None,
        }
    }
}

struct State {
    config: MockConfig,
    recorded: Mutex<Vec<Recorded>>,
    attempts: Mutex<HashMap<String, u32>>,
    next_id: AtomicU64,
}

/// A running mock; stops when dropped.
pub struct MockApi {
    addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    workers: Vec<JoinHandle<()>>,
    state: Arc<State>,
}

const WORKERS: usize = 4;

impl MockApi {
    /// Starts on `127.0.0.1:port` (0 picks a free port).
    pub fn start(port: u16, config: MockConfig) -> Result<MockApi> {
        let server = tiny_http::Server::http(("127.0.0.1", port))
            .map_err(|e| anyhow!("starting the mock Cloud API on port {port}: {e}"))?;
        let addr = server
            .server_addr()
            .to_ip()
            .context("the mock listens on an IP address")?;
        let server = Arc::new(server);
        let state = Arc::new(State {
            config,
            recorded: Mutex::default(),
            attempts: Mutex::default(),
            next_id: AtomicU64::new(1),
        });
        let workers = (0..WORKERS)
            .map(|i| {
                let server = server.clone();
                let state = state.clone();
                std::thread::Builder::new()
                    .name(format!("mock-api-{i}"))
                    .spawn(move || {
                        while let Ok(request) = server.recv() {
                            handle(&state, request);
                        }
                    })
                    .expect("spawning a mock worker")
            })
            .collect();
        Ok(MockApi {
            addr,
            server,
            workers,
            state,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state
            .recorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Blocks until the process is stopped (for `mock-api`).
    pub fn wait(mut self) {
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl Drop for MockApi {
    fn drop(&mut self) {
        for _ in 0..WORKERS {
            self.server.unblock();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn graph_error(status: u16, code: i64, title: &str, details: &str, trace: u64) -> (u16, Value) {
    (
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

fn handle(state: &State, mut request: tiny_http::Request) {
    let mut body = Vec::new();
    let _ = std::io::Read::read_to_end(&mut request.as_reader().take(4 << 20), &mut body);
    let recorded = Recorded {
        method: request.method().to_string(),
        path: request.url().to_string(),
        headers: request
            .headers()
            .iter()
            .map(|h| (h.field.to_string(), h.value.to_string()))
            .collect(),
        body,
    };
    let (status, answer) = answer(state, &recorded);
    state
        .recorded
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(recorded);
    let response = match answer {
        Answer::Json(v) => tiny_http::Response::from_string(v.to_string()).with_header(
            "Content-Type: application/json"
                .parse::<tiny_http::Header>()
                .expect("static header"),
        ),
        Answer::Html(s) => tiny_http::Response::from_string(s).with_header(
            "Content-Type: text/html"
                .parse::<tiny_http::Header>()
                .expect("static header"),
        ),
    };
    let _ = request.respond(response.with_status_code(status));
}

enum Answer {
    Json(Value),
    Html(String),
}

use std::io::Read as _;

fn answer(state: &State, req: &Recorded) -> (u16, Answer) {
    let trace = state.next_id.fetch_add(1, Ordering::Relaxed);
    let err = |status, code, title: &str, details: &str| {
        let (s, v) = graph_error(status, code, title, details, trace);
        (s, Answer::Json(v))
    };
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };

    if req.path.split('?').next() == Some("/sms/v1/messages") {
        return sms_answer(state, req, trace);
    }
    // POST /{version}/{phone-number-id}/messages
    let parts: Vec<&str> = req
        .path
        .split('?')
        .next()
        .unwrap_or("")
        .trim_matches('/')
        .split('/')
        .collect();
    let [version, phone_id, "messages"] = parts.as_slice() else {
        return err(
            400,
            100,
            "Unsupported post request",
            &format!("unknown path {}", req.path),
        );
    };
    if !version.starts_with('v') {
        return err(
            400,
            100,
            "Invalid parameter",
            &format!("{version} is not a Graph API version"),
        );
    }
    if header("authorization") != Some(format!("Bearer {}", state.config.access_token).as_str()) {
        return err(
            401,
            190,
            "Invalid OAuth access token - Cannot parse access token",
            "the bearer token is missing or wrong",
        );
    }
    if *phone_id != state.config.phone_number_id {
        return err(
            400,
            100,
            "Invalid parameter",
            &format!("Unsupported post request. Object with ID '{phone_id}' does not exist"),
        );
    }
    if req.method != "POST" {
        return err(400, 100, "Invalid parameter", "messages are sent with POST");
    }
    if !header("content-type").is_some_and(|c| c.starts_with("application/json")) {
        return err(
            400,
            100,
            "Invalid parameter",
            "Content-Type must be application/json",
        );
    }
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return err(
            400,
            100,
            "Invalid parameter",
            "the request body is not JSON",
        );
    };
    if body.get("messaging_product").and_then(Value::as_str) != Some("whatsapp") {
        return err(
            400,
            100,
            "Invalid parameter",
            "messaging_product must be \"whatsapp\"",
        );
    }
    // Mark as read.
    if body.get("status").and_then(Value::as_str) == Some("read") {
        return (200, Answer::Json(json!({"success": true})));
    }
    let Some(to) = body.get("to").and_then(Value::as_str) else {
        return err(
            400,
            131008,
            "Required parameter is missing",
            "Parameter 'to' is required",
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
    let scenario = SCENARIOS
        .iter()
        .find(|s| s.recipient.trim_start_matches('+') == digits);
    let mut statuses = DEFAULT_STATUSES;
    match scenario.map(|s| s.behaviour).unwrap_or(Behaviour::Accept) {
        Behaviour::Accept => {}
        Behaviour::AcceptThen(script) => statuses = script,
        Behaviour::Error(status, code, title, details) => return err(status, code, title, details),
        Behaviour::HtmlOutage => {
            return (
                503,
                Answer::Html("<html><body><h1>503 Service Unavailable</h1></body></html>".into()),
            );
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
        Behaviour::Slow(ms) => std::thread::sleep(Duration::from_millis(ms)),
    }
    let id = format!(
        "wamid.MOCK{:012}",
        state.next_id.fetch_add(1, Ordering::Relaxed)
    );
    let mut message = json!({ "id": id });
    if kind == "template" {
        message["message_status"] = json!("accepted");
    }
    if let Some(targets) = &state.config.webhooks {
        let callback = body
            .get("biz_opaque_callback_data")
            .and_then(Value::as_str)
            .map(str::to_string);
        post_whatsapp_statuses(
            targets.clone(),
            state.config.phone_number_id.clone(),
            id.clone(),
            digits.clone(),
            callback,
            statuses,
        );
    }
    (
        200,
        Answer::Json(
            json!({"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": digits}], "messages": [message]}),
        ),
    )
}

/// The mock SMS API: `POST /sms/v1/messages` (see `examples/sms-channel`).
fn sms_answer(state: &State, req: &Recorded, trace: u64) -> (u16, Answer) {
    let error = |status: u16, code: &str, message: &str| {
        (
            status,
            Answer::Json(json!({"error": {"code": code, "message": message}})),
        )
    };
    let auth = req
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.as_str());
    if auth != Some(format!("Bearer {}", state.config.sms_api_key).as_str()) {
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
    if let Some(targets) = state.config.webhooks.clone() {
        let reference = body
            .get("reference")
            .and_then(Value::as_str)
            .map(str::to_string);
        let id = id.clone();
        std::thread::spawn(move || {
            for status in ["sent", "delivered"] {
                std::thread::sleep(targets.step);
                let payload = json!({"id": id, "status": status, "reference": reference, "to": to, "timestamp": crate::services::now_ms() / 1000}).to_string();
                post_signed(
                    &targets.sms_url,
                    "X-Signature",
                    &targets.sms_secret,
                    payload,
                );
            }
        });
    }
    (202, Answer::Json(json!({"id": id, "status": "queued"})))
}

/// `sha256=<hex HMAC-SHA256>` of a body.
pub fn signature(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Posts a signed webhook; a host that is down simply misses it (Meta would retry; tests
/// replay deliveries explicitly).
fn post_signed(url: &str, header: &str, secret: &str, body: String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into();
    let _ = agent
        .post(url)
        .header(header, signature(secret, body.as_bytes()))
        .header("content-type", "application/json")
        .send(body.as_bytes());
}

/// A status webhook as Meta posts it.
pub fn whatsapp_status_body(
    phone_number_id: &str,
    id: &str,
    recipient_digits: &str,
    status: &str,
    code: Option<i64>,
    callback: Option<&str>,
) -> String {
    let mut st = json!({"id": id, "status": status, "timestamp": (crate::services::now_ms() / 1000).to_string(), "recipient_id": recipient_digits});
    if let Some(cb) = callback {
        st["biz_opaque_callback_data"] = json!(cb);
    }
    if let Some(code) = code {
        st["errors"] = json!([{"code": code, "title": "Message undeliverable.", "message": "Message undeliverable.", "error_data": {"details": "Message Undeliverable."}, "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"}]);
    }
    json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{"value": {
        "messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_number_id}, "statuses": [st]}, "field": "messages"}]}]})
    .to_string()
}

fn post_whatsapp_statuses(
    targets: WebhookTargets,
    phone_number_id: String,
    id: String,
    digits: String,
    callback: Option<String>,
    statuses: &'static [(&'static str, Option<i64>)],
) {
    std::thread::spawn(move || {
        for (status, code) in statuses {
            std::thread::sleep(targets.step);
            let body = whatsapp_status_body(
                &phone_number_id,
                &id,
                &digits,
                status,
                *code,
                callback.as_deref(),
            );
            post_signed(
                &targets.whatsapp_url,
                "X-Hub-Signature-256",
                &targets.whatsapp_app_secret,
                body,
            );
        }
    });
}
