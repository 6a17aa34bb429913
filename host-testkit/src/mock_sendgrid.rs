//! SendGrid's v3 Mail Send API as the mock serves it: `POST /v3/mail/send` with a bearer API
//! key, the request checked as SendGrid checks it (`{"errors": [{message, field, help}]}`),
//! `202` with `X-Message-Id`; then the Event Webhook deliveries SendGrid posts to the
//! account's event URL, each a JSON array signed with ECDSA P-256 over timestamp + body
//! (`X-Twilio-Email-Event-Webhook-Signature`, `…-Timestamp`), the verification key's public
//! half being [`demo_event_public_key`].
//!
//! Scenario addresses ([`EMAIL_SCENARIOS`]) produce the common outcomes; any other valid
//! address is processed and delivered.

use crate::mock::{FollowUp, Recorded, Reply, header, reply};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::EncodePublicKey;
use serde_json::{Value, json};

/// The API key the mock accepts.
pub const DEMO_API_KEY: &str = "mock-sendgrid-key";
/// A second account's key, for a tenant that brings its own SendGrid account. The mock does
/// not know where that account's Event Webhook posts: a test signs its events itself
/// ([`sign_as_tenant`]).
pub const TENANT_API_KEY: &str = "mock-sendgrid-tenant-key";
/// The Event Webhook's signature header.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Email-Event-Webhook-Signature";
/// Its timestamp header.
pub const TIMESTAMP_HEADER: &str = "X-Twilio-Email-Event-Webhook-Timestamp";

/// The mock's signing key: a fixed test scalar (the one `channels/sendgrid-email`'s vectors
/// use), never a real key.
fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[0x1d; 32].into()).expect("a valid scalar")
}

/// The tenant account's signing key (another fixed test scalar).
fn tenant_signing_key() -> SigningKey {
    SigningKey::from_bytes(&[0x2e; 32].into()).expect("a valid scalar")
}

/// The Event Webhook's verification key, base64 of its DER SubjectPublicKeyInfo, as
/// SendGrid's settings show it.
pub fn demo_event_public_key() -> String {
    public_key_of(&signing_key())
}

/// The tenant account's verification key, as [`demo_event_public_key`].
pub fn tenant_event_public_key() -> String {
    public_key_of(&tenant_signing_key())
}

fn public_key_of(key: &SigningKey) -> String {
    let der = key
        .verifying_key()
        .to_public_key_der()
        .expect("a P-256 key encodes");
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, der.as_bytes())
}

/// One event the mock posts after accepting a message.
#[derive(Debug, Clone, Copy)]
pub struct MockEvent {
    pub name: &'static str,
    /// Extra fields (`type`, `status`, `reason`), as JSON text.
    pub extra: &'static str,
}

const fn ev(name: &'static str, extra: &'static str) -> MockEvent {
    MockEvent { name, extra }
}

/// What an accepted message to an unscripted address goes through.
pub const DEFAULT_EMAIL_EVENTS: &[MockEvent] = &[
    ev("processed", "{}"),
    ev("delivered", r#"{"response": "250 OK"}"#),
];

/// An address with a scripted outcome.
#[derive(Debug, Clone, Copy)]
pub struct EmailScenario {
    pub address: &'static str,
    pub description: &'static str,
    pub events: &'static [MockEvent],
}

/// The scripted addresses.
pub const EMAIL_SCENARIOS: &[EmailScenario] = &[
    EmailScenario {
        address: "bounce@example.com",
        description: "hard bounce (550 5.1.1)",
        events: &[
            ev("processed", "{}"),
            ev(
                "bounce",
                r#"{"type": "bounce", "status": "5.1.1", "reason": "550 5.1.1 The email account that you tried to reach does not exist"}"#,
            ),
        ],
    },
    EmailScenario {
        address: "blocked@example.com",
        description: "blocked by the receiving server",
        events: &[
            ev("processed", "{}"),
            ev(
                "bounce",
                r#"{"type": "blocked", "status": "5.7.1", "reason": "550 5.7.1 blocked"}"#,
            ),
        ],
    },
    EmailScenario {
        address: "dropped@example.com",
        description: "dropped: a suppressed address",
        events: &[ev("dropped", r#"{"reason": "Bounced Address"}"#)],
    },
    EmailScenario {
        address: "slow@example.com",
        description: "deferred, then delivered",
        events: &[
            ev("processed", "{}"),
            ev(
                "deferred",
                r#"{"response": "421 try again later", "attempt": "1"}"#,
            ),
            ev("delivered", r#"{"response": "250 OK"}"#),
        ],
    },
];

fn errors(status: u16, message: &str, field: Option<&str>) -> Reply {
    reply(
        status,
        json!({"errors": [{"message": message, "field": field, "help": Value::Null}]}),
    )
}

/// The answer to a SendGrid request, or `None` when the path is not SendGrid's.
pub(crate) fn answer(req: &Recorded, trace: u64) -> Option<Reply> {
    let path = req.path.split('?').next().unwrap_or("");
    if path != "/v3/mail/send" {
        return None;
    }
    if req.method != "POST" {
        return Some(errors(405, "method not allowed", None));
    }
    let key = header(req, "authorization").and_then(|v| v.strip_prefix("Bearer "));
    if !matches!(key, Some(DEMO_API_KEY | TENANT_API_KEY)) {
        return Some(errors(
            401,
            "The provided authorization grant is invalid, expired, or revoked",
            None,
        ));
    }
    let posts_events = key == Some(DEMO_API_KEY);
    let body: Value = match serde_json::from_slice(&req.body) {
        Ok(v) => v,
        Err(_) => return Some(errors(400, "Bad Request", None)),
    };
    Some(match checked(&body) {
        Err(refusal) => *refusal,
        Ok((email, correlation_id)) => {
            let message_id = format!("mockMsg{trace:015}");
            let events = EMAIL_SCENARIOS
                .iter()
                .find(|s| s.address == email)
                .map_or(DEFAULT_EMAIL_EVENTS, |s| s.events);
            Reply {
                headers: vec![("x-message-id", message_id.clone())],
                then: posts_events.then_some(FollowUp::SendGrid {
                    message_id,
                    email,
                    correlation_id,
                    events,
                }),
                ..reply(202, Value::Null)
            }
        }
    })
}

/// SendGrid's checks of a request; the (first) recipient and its correlation id.
fn checked(body: &Value) -> Result<(String, Option<String>), Box<Reply>> {
    let refuse = |message: &str, field: &str| Err(Box::new(errors(400, message, Some(field))));
    let Some(p) = body.pointer("/personalizations/0") else {
        return refuse(
            "The personalizations field is required and must have at least one personalization.",
            "personalizations",
        );
    };
    let Some(email) = p.pointer("/to/0/email").and_then(Value::as_str) else {
        return refuse(
            "The to array is required for all personalization objects, and must have at least one email object with a valid email address.",
            "personalizations.0.to",
        );
    };
    if !email.contains('@') {
        return refuse(
            "Does not contain a valid address.",
            "personalizations.0.to.0.email",
        );
    }
    if body
        .pointer("/from/email")
        .and_then(Value::as_str)
        .is_none()
    {
        return refuse(
            "The from object must be provided for every email send.",
            "from",
        );
    }
    let template = body.get("template_id").is_some();
    if !template && body.get("subject").and_then(Value::as_str).is_none() {
        return refuse("The subject is required.", "subject");
    }
    if !template
        && body
            .get("content")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
    {
        return refuse(
            "Unless a valid template_id is provided, the content parameter is required.",
            "content",
        );
    }
    let correlation_id = p
        .pointer("/custom_args/flow_correlation_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok((email.to_string(), correlation_id))
}

/// One Event Webhook delivery (a JSON array of one event), as SendGrid posts it: the custom
/// args copied in, the message id with its filter suffix.
pub fn event_body(
    message_id: &str,
    email: &str,
    correlation_id: Option<&str>,
    event: &MockEvent,
    index: usize,
) -> String {
    let now = host::services::now_ms() / 1_000;
    let mut item = json!({
        "email": email,
        "event": event.name,
        "timestamp": now,
        "smtp-id": format!("<{message_id}@ismtpd-mock>"),
        "sg_event_id": format!("{message_id}-{index}-{}", event.name),
        "sg_message_id": format!("{message_id}.filterdrecv-mock-1.0"),
    });
    if let Some(id) = correlation_id {
        item["flow_correlation_id"] = json!(id);
    }
    if let Ok(Value::Object(extra)) = serde_json::from_str::<Value>(event.extra) {
        for (k, v) in extra {
            item[k] = v;
        }
    }
    format!("{}\r\n", json!([item]))
}

/// Posts a delivery to `url`, signed now: the HTTP status, 0 for none.
pub(crate) async fn post_events(http: &reqwest::Client, url: &str, body: String) -> u16 {
    let (timestamp, signature) = sign(&body);
    http.post(url)
        .header(SIGNATURE_HEADER, signature)
        .header(TIMESTAMP_HEADER, timestamp)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// The timestamp (Unix seconds, now) and the base64 DER signature over timestamp + body.
pub fn sign(body: &str) -> (String, String) {
    sign_with(&signing_key(), body)
}

/// [`sign`] with the tenant account's key.
pub fn sign_as_tenant(body: &str) -> (String, String) {
    sign_with(&tenant_signing_key(), body)
}

fn sign_with(key: &SigningKey, body: &str) -> (String, String) {
    let timestamp = (host::services::now_ms() / 1_000).to_string();
    let signature: DerSignature = key.sign(format!("{timestamp}{body}").as_bytes());
    let encoded = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        signature.as_bytes(),
    );
    (timestamp, encoded)
}

/// The correlation id a Mail Send request carries.
pub(crate) fn correlation_of(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.pointer("/personalizations/0/custom_args/flow_correlation_id")
        .and_then(Value::as_str)
        .map(str::to_string)
}
