//! Twilio's callbacks: message statuses (`StatusCallback`) and inbound messages, each checked
//! against `X-Twilio-Signature` before anything is read.
//!
//! The signature is HMAC-SHA1, keyed with the auth token, over the URL Twilio called and the
//! sorted form parameters ([`crate::signature`]); the host computes it (the channel never holds
//! the token), so the channel hands it each candidate text. A JSON body is signed through its
//! URL, whose `bodySHA256` must then be the body's SHA-256. Statuses carry no custom data: the
//! correlation id is in the callback URL's query, where [`crate::send`] put it.
//!
//! Inbound messages with Twilio's opt-out keywords (its `OptOutType`, or the keyword itself
//! when Advanced Opt-Out is off) become preference events: an SMS STOP stops everything from
//! the sender, so their category is `all`.

use crate::codes::rule_for;
use crate::send::CORRELATION_PARAM;
use crate::settings::Settings;
use channel_sdk::{
    ChannelConfig, Classification, Disposition, EventKind, FieldError, Host, SecretError,
    SignatureAlgorithm, WebhookError, WebhookEvent, WebhookOutcome, WebhookRequest,
};
use serde_json::{Value, json};

/// The category of an SMS opt-out: everything from the sender.
pub const ALL: &str = "all";
/// Twilio's default keywords (Advanced Opt-Out off), matched on the whole trimmed body.
const STOP_WORDS: &[&str] = &[
    "STOP",
    "STOPALL",
    "STOP ALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "OPTOUT",
    "REVOKE",
];
const START_WORDS: &[&str] = &["START", "YES", "UNSTOP"];
const HELP_WORDS: &[&str] = &["HELP", "INFO"];

fn malformed(path: &str, code: &str, message: impl Into<String>) -> WebhookError {
    WebhookError::Malformed(vec![FieldError {
        path: path.into(),
        code: code.into(),
        message: message.into(),
    }])
}

/// Reads a callback: verified, then its events.
pub fn parse(
    request: &WebhookRequest,
    config: &ChannelConfig,
    host: &dyn Host,
) -> Result<WebhookOutcome, WebhookError> {
    let settings = Settings::parse(&config.settings)
        .map_err(|errors| channel_sdk::settings_unusable("SMS", &errors))?;
    if request.method != "POST" {
        return Err(malformed(
            "",
            "method_not_allowed",
            format!("Twilio's callbacks are POSTs, got {}", request.method),
        ));
    }
    let params = Params(verified_params(request, &settings, host)?);
    let status = params.get("MessageStatus").or(params.get("SmsStatus"));
    let event = match status {
        Some(s) if s != "received" && s != "receiving" => status_event(&params, s, request)?,
        _ => inbound_event(&params)?,
    };
    Ok(WebhookOutcome::Events(vec![event]))
}

/// A callback's parameters, by name (the first of a repeated name).
struct Params(Vec<(String, String)>);

impl Params {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The signed parameters (a form body's, none for a JSON body), once the signature matched.
fn verified_params(
    request: &WebhookRequest,
    settings: &Settings,
    host: &dyn Host,
) -> Result<Vec<(String, String)>, WebhookError> {
    let signature = channel_sdk::header_value(&request.headers, "x-twilio-signature")
        .ok_or(WebhookError::SignatureMissing)?;
    let mac = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, signature.trim())
        .ok()
        .filter(|m| m.len() == 20)
        .ok_or_else(|| {
            WebhookError::SignatureInvalid(
                "X-Twilio-Signature must be the base64 of a 20-byte HMAC-SHA1".into(),
            )
        })?;
    let url = request.url.as_deref().ok_or_else(|| {
        WebhookError::SecretUnavailable(
            "Twilio signs the URL it called, and the host has no public URL to rebuild it (serve --public-url)".into(),
        )
    })?;
    let body_sha = request
        .query
        .iter()
        .find(|(k, _)| k == "bodySHA256")
        .map(|(_, v)| v.clone());
    let params: Vec<(String, String)> = match &body_sha {
        Some(_) => Vec::new(),
        None => form_urlencoded::parse(&request.body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
    };
    let secret = &settings.auth_token_secret;
    let mut matched = false;
    for text in crate::signature::candidates(url, &params) {
        match host.signature_verify(SignatureAlgorithm::HmacSha1, secret, text.as_bytes(), &mac) {
            Ok(true) => {
                matched = true;
                break;
            }
            Ok(false) => {}
            Err(SecretError::NotFound) => {
                return Err(WebhookError::SecretUnavailable(format!(
                    "the host has no secret named {secret:?}"
                )));
            }
            Err(SecretError::Denied) => {
                return Err(WebhookError::SecretUnavailable(format!(
                    "the secret {secret:?} is not granted to this channel for verification"
                )));
            }
        }
    }
    if !matched {
        return Err(WebhookError::SignatureInvalid(
            "X-Twilio-Signature does not match the URL and parameters".into(),
        ));
    }
    if let Some(expected) = body_sha {
        use sha2::Digest;
        let actual = hex_lower(&sha2::Sha256::digest(&request.body));
        if !actual.eq_ignore_ascii_case(expected.trim()) {
            return Err(WebhookError::SignatureInvalid(
                "bodySHA256 is not the SHA-256 of the body".into(),
            ));
        }
        return json_params(&request.body);
    }
    Ok(params)
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A JSON body's top-level string and number fields, as parameters.
fn json_params(body: &[u8]) -> Result<Vec<(String, String)>, WebhookError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| malformed("", "invalid_json", format!("the body is not JSON: {e}")))?;
    let Value::Object(map) = v else {
        return Err(malformed(
            "",
            "expected_object",
            "the body must be an object",
        ));
    };
    Ok(map
        .into_iter()
        .filter_map(|(k, v)| match v {
            Value::String(s) => Some((k, s)),
            Value::Number(n) => Some((k, n.to_string())),
            _ => None,
        })
        .collect())
}

/// Ordering of statuses of one message (see the contract's `precedence`): a failure outranks
/// every step before delivery, and delivery outranks a later failure.
pub fn status_precedence(status: &str) -> u8 {
    match status {
        "accepted" | "scheduled" | "queued" => 1,
        "sending" => 2,
        "sent" => 3,
        "undelivered" | "failed" | "canceled" => 4,
        "delivered" => 5,
        "read" => 6,
        _ => 0,
    }
}

/// A status with no error code, or one the table does not know.
fn status_classification(status: &str) -> Classification {
    match status {
        "accepted" | "scheduled" | "queued" | "sending" => {
            Classification::new(Disposition::Accepted, "accepted")
        }
        "sent" => Classification::new(Disposition::Sent, "sent"),
        "delivered" => Classification::new(Disposition::Delivered, "delivered"),
        "read" => Classification::new(Disposition::Read, "read"),
        "undelivered" | "failed" | "canceled" => {
            Classification::new(Disposition::Fallback, "undelivered")
        }
        _ => Classification::new(Disposition::Unknown, "unknown_status"),
    }
}

fn status_event(
    params: &Params,
    status: &str,
    request: &WebhookRequest,
) -> Result<WebhookEvent, WebhookError> {
    let get = |name| params.get(name);
    let sid = get("MessageSid")
        .or(get("SmsSid"))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| malformed("/MessageSid", "required", "a status names its MessageSid"))?;
    let error_code = get("ErrorCode").filter(|c| !c.is_empty() && *c != "0");
    let failed = status_precedence(status) == 4;
    let mut c = match error_code
        .and_then(|c| c.parse::<u32>().ok())
        .and_then(rule_for)
    {
        Some(rule) if failed => {
            let c = Classification::new(rule.disposition, rule.reason);
            if rule.operator_action {
                c.with_operator_action()
            } else {
                c
            }
        }
        _ => status_classification(status),
    };
    if let Some(code) = error_code.filter(|_| failed) {
        c = c.with_provider_code(code);
    }
    c = c.with_provider_title(status).with_message_id(sid);
    let correlation_id = request
        .query
        .iter()
        .find(|(k, _)| k == CORRELATION_PARAM)
        .map(|(_, v)| v.clone());
    let details = json!({
        "status": status,
        "error_code": error_code,
        "account_sid": get("AccountSid"),
        "from": get("From"),
    });
    Ok(WebhookEvent {
        kind: EventKind::MessageStatus,
        provider_message_id: Some(sid.to_string()),
        recipient: get("To").map(str::to_string),
        correlation_id,
        occurred_at_ms: None,
        classification: c,
        precedence: status_precedence(status),
        dedupe_key: format!("twilio:{sid}:{status}"),
        service_window_ends_ms: None,
        details: details.to_string(),
        // Unnamed: a status is its attempt's, whichever tenant sent it through this account.
        account_id: None,
        sender_id: None,
    })
}

/// What an inbound message's keyword asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    Stop,
    Start,
    Help,
}

/// The keyword of an inbound message: Twilio's `OptOutType` when it sent one, else the whole
/// trimmed body, case-insensitively.
pub fn keyword(opt_out_type: Option<&str>, body: &str) -> Option<Keyword> {
    let word = match opt_out_type.filter(|t| !t.is_empty()) {
        Some(t) => t.trim().to_ascii_uppercase(),
        None => body.trim().to_uppercase(),
    };
    if STOP_WORDS.contains(&word.as_str()) {
        Some(Keyword::Stop)
    } else if START_WORDS.contains(&word.as_str()) {
        Some(Keyword::Start)
    } else if HELP_WORDS.contains(&word.as_str()) {
        Some(Keyword::Help)
    } else {
        None
    }
}

fn inbound_event(params: &Params) -> Result<WebhookEvent, WebhookError> {
    let get = |name| params.get(name);
    let sid = get("MessageSid")
        .or(get("SmsSid"))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            malformed(
                "/MessageSid",
                "required",
                "a callback names its MessageSid (a status also its MessageStatus)",
            )
        })?;
    let from = get("From")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| malformed("/From", "required", "an inbound message names its From"))?;
    let body = get("Body").unwrap_or_default();
    let keyword = keyword(get("OptOutType"), body);
    let (kind, c, word) = match keyword {
        Some(Keyword::Stop) => (
            EventKind::RecipientPreference,
            Classification::new(Disposition::Fallback, "recipient_opted_out"),
            Some("stop"),
        ),
        Some(Keyword::Start) => (
            EventKind::RecipientPreference,
            Classification::new(Disposition::Accepted, "recipient_opted_in"),
            Some("start"),
        ),
        Some(Keyword::Help) => (
            EventKind::InboundMessage,
            Classification::new(Disposition::Accepted, "inbound_message"),
            Some("help"),
        ),
        None => (
            EventKind::InboundMessage,
            Classification::new(Disposition::Accepted, "inbound_message"),
            None,
        ),
    };
    let mut details = json!({
        "text": body,
        "from": from,
        "to": get("To"),
        "account_sid": get("AccountSid"),
        "num_media": get("NumMedia"),
    });
    if let Some(word) = word {
        details["keyword"] = json!(word);
    }
    if kind == EventKind::RecipientPreference {
        details["category"] = json!(ALL);
    }
    Ok(WebhookEvent {
        kind,
        provider_message_id: Some(sid.to_string()),
        recipient: Some(from.to_string()),
        correlation_id: None,
        occurred_at_ms: None,
        classification: c.with_message_id(sid),
        precedence: 0,
        dedupe_key: format!("twilio:{sid}:inbound"),
        service_window_ends_ms: None,
        details: details.to_string(),
        account_id: None,
        sender_id: None,
    })
}
