//! A message → Twilio's `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, and every
//! answer → one classification.
//!
//! The request is form-encoded (`To`, `From` or `MessagingServiceSid`, `Body`,
//! `StatusCallback`, `ValidityPeriod`), authenticated with HTTP Basic composed by the host from
//! two secrets. Twilio echoes no custom data in its callbacks, so the correlation id rides in
//! the `StatusCallback` URL's query. A success is `201` with the message's `sid`; an error is
//! `{code, message, more_info, status}`, classified by [`crate::codes`] first, by the HTTP
//! status when the code is not in the table.

use crate::codes::rule_for;
use crate::segments::{self, Cost};
use crate::settings::{DEFAULT_API_BASE, Sender, Settings};
use channel_sdk::{
    ChannelConfig, Classification, Disposition, FieldError, Header, Host, HttpRequest,
    HttpResponse, MessageRequest, SendOutcome, reasons, transport_failure,
};
use serde_json::Value;

/// Twilio's longest body, in characters.
pub const BODY_MAX_CHARS: usize = 1_600;
/// Twilio's `ValidityPeriod` range, in seconds.
pub const VALIDITY_RANGE_S: std::ops::RangeInclusive<u64> = 1..=36_000;
/// The query parameter of the status callback URL carrying the correlation id.
pub const CORRELATION_PARAM: &str = "correlation_id";

/// The message content (schema: `describe`'s message schema).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    pub text: String,
    /// Seconds Twilio may keep trying before it drops the message: past the step's deadline a
    /// late SMS would arrive after the flow moved on to the next channel.
    pub validity_period_s: Option<u64>,
}

fn field(path: &str, code: &str, message: String) -> FieldError {
    FieldError {
        path: path.into(),
        code: code.into(),
        message,
    }
}

impl Content {
    /// Reads `{"text": "…", "validity_period_s": 600}`; every problem at once.
    pub fn parse(text: &str) -> Result<Content, Vec<FieldError>> {
        let v: Value = serde_json::from_str(text).map_err(|e| {
            vec![field(
                "/content",
                "invalid_json",
                format!("the content is not JSON: {e}"),
            )]
        })?;
        let Value::Object(map) = v else {
            return Err(vec![field(
                "/content",
                "expected_object",
                format!("the content must be an object, got {v}"),
            )]);
        };
        let mut errors = Vec::new();
        for key in map.keys() {
            if !matches!(key.as_str(), "text" | "validity_period_s") {
                errors.push(field(
                    &format!("/content/{key}"),
                    "unknown_field",
                    format!("the SMS content has no field {key:?} (text, validity_period_s)"),
                ));
            }
        }
        let text = match map.get("text") {
            Some(Value::String(s)) if s.trim().is_empty() => {
                errors.push(field("/content/text", "empty", "the text is empty".into()));
                String::new()
            }
            Some(Value::String(s)) => {
                let n = s.chars().count();
                if n > BODY_MAX_CHARS {
                    errors.push(field(
                        "/content/text",
                        "too_long",
                        format!("at most {BODY_MAX_CHARS} characters, got {n}"),
                    ));
                }
                s.clone()
            }
            None => {
                errors.push(field(
                    "/content/text",
                    "required",
                    "text is required".into(),
                ));
                String::new()
            }
            Some(other) => {
                errors.push(field(
                    "/content/text",
                    "expected_string",
                    format!("must be a string, got {other}"),
                ));
                String::new()
            }
        };
        let validity_period_s = match map.get("validity_period_s") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64().filter(|s| VALIDITY_RANGE_S.contains(s)) {
                Some(s) => Some(s),
                None => {
                    errors.push(field(
                        "/content/validity_period_s",
                        "out_of_range",
                        format!(
                            "must be whole seconds between {} and {}, got {v}",
                            VALIDITY_RANGE_S.start(),
                            VALIDITY_RANGE_S.end()
                        ),
                    ));
                    None
                }
            },
        };
        if errors.is_empty() {
            Ok(Content {
                text,
                validity_period_s,
            })
        } else {
            Err(errors)
        }
    }
}

/// An E.164 number: `+`, then 8 to 15 digits not starting with 0 (spaces, dashes and
/// parentheses are dropped). The normalised number, or the field error.
pub fn e164(recipient: &str) -> Result<String, FieldError> {
    let digits: String = recipient
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.'))
        .collect();
    let ok = digits.strip_prefix('+').is_some_and(|d| {
        (8..=15).contains(&d.len()) && d.chars().all(|c| c.is_ascii_digit()) && !d.starts_with('0')
    });
    if ok {
        Ok(digits)
    } else {
        Err(field(
            "/recipient",
            "invalid_recipient",
            format!("{recipient:?} is not an E.164 number (+, then 8 to 15 digits)"),
        ))
    }
}

/// How long Twilio may keep the message queued: the content's `validity_period_s` or the
/// whole seconds left until the flow's deadline, whichever is shorter (at least 1 s, Twilio's
/// least). None when neither bounds it below Twilio's own default of 36,000 s.
pub fn validity_period_s(content: &Content, request: &MessageRequest) -> Option<u64> {
    let until_deadline = request
        .deadline_ms
        .map(|d| (d.saturating_sub(request.now_ms) / 1_000).max(*VALIDITY_RANGE_S.start()))
        .filter(|s| s < VALIDITY_RANGE_S.end());
    match (content.validity_period_s, until_deadline) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The status callback with the correlation id in its query.
fn status_callback(base: &str, correlation_id: &str) -> String {
    let separator = if base.contains('?') { '&' } else { '?' };
    let id: String = form_urlencoded::byte_serialize(correlation_id.as_bytes()).collect();
    format!("{base}{separator}{CORRELATION_PARAM}={id}")
}

/// The HTTP request for a message.
pub fn build(
    request: &MessageRequest,
    config: &ChannelConfig,
) -> Result<HttpRequest, Vec<FieldError>> {
    let settings = Settings::parse(&config.settings).map_err(|errors| {
        errors
            .into_iter()
            .map(|e| FieldError {
                path: format!("/settings{}", e.path),
                ..e
            })
            .collect::<Vec<_>>()
    })?;
    let to = e164(&request.recipient);
    let content = Content::parse(&request.content);
    let (to, content) = match (to, content) {
        (Ok(to), Ok(content)) => (to, content),
        (to, content) => {
            let mut errors: Vec<FieldError> = to.err().into_iter().collect();
            errors.extend(content.err().unwrap_or_default());
            return Err(errors);
        }
    };
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("To", &to);
    match &settings.sender {
        Sender::From(from) => form.append_pair("From", from),
        Sender::MessagingService(sid) => form.append_pair("MessagingServiceSid", sid),
    };
    form.append_pair("Body", &content.text);
    if let (Some(base), Some(id)) = (&settings.status_callback, &request.correlation_id) {
        form.append_pair("StatusCallback", &status_callback(base, id));
    } else if let Some(base) = &settings.status_callback {
        form.append_pair("StatusCallback", base);
    }
    if let Some(s) = validity_period_s(&content, request) {
        form.append_pair("ValidityPeriod", &s.to_string());
    }
    let base = config.api_base.as_deref().unwrap_or(DEFAULT_API_BASE);
    Ok(HttpRequest {
        method: "POST".into(),
        url: format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            base.trim_end_matches('/'),
            settings.account_sid
        ),
        headers: vec![
            Header::new(
                "authorization",
                &format!(
                    "Basic ${{basic:{}:{}}}",
                    settings.username_secret, settings.auth_token_secret
                ),
            ),
            Header::new("content-type", "application/x-www-form-urlencoded"),
            Header::new("accept", "application/json"),
        ],
        body: form.finish().into_bytes(),
    })
}

/// The wait before retry `attempt` (1-based) when Twilio names none.
pub use channel_sdk::doubling_backoff_ms as backoff_ms;

/// `Retry-After` in seconds, if the answer carries one.
fn retry_after_ms(headers: &[Header]) -> Option<u64> {
    channel_sdk::header_value(headers, "retry-after")
        .and_then(|v| v.parse::<u64>().ok())
        .map(|s| s.saturating_mul(1_000))
}

/// What a body costs, for the classification's details.
pub fn cost_details(cost: Cost) -> String {
    serde_json::json!({
        "encoding": cost.encoding.name(),
        "segments": cost.segments,
        "characters": cost.characters,
    })
    .to_string()
}

/// Any outcome of a send.
pub fn classify(outcome: &SendOutcome, attempt: u32) -> Classification {
    match outcome {
        SendOutcome::TransportError(e) => transport_failure(e, Some(backoff_ms(attempt))),
        SendOutcome::Response(r) => classify_response(r, attempt),
    }
}

/// An HTTP answer.
pub fn classify_response(r: &HttpResponse, attempt: u32) -> Classification {
    let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    if (200..300).contains(&r.status) {
        return match body.get("sid").and_then(Value::as_str) {
            Some(sid) if !sid.is_empty() => {
                let mut c = Classification::new(Disposition::Accepted, reasons::ACCEPTED)
                    .with_message_id(sid);
                if let Some(text) = body.get("body").and_then(Value::as_str) {
                    c = c.with_details(cost_details(segments::cost(text)));
                }
                c
            }
            // It may have been sent: never resent blindly.
            _ => Classification::new(Disposition::Unknown, reasons::UNEXPECTED_RESPONSE)
                .with_details(format!("HTTP {} without a message sid", r.status)),
        };
    }
    let code = body.get("code").and_then(Value::as_u64);
    let by_code = code.and_then(|c| u32::try_from(c).ok()).and_then(rule_for);
    let mut c = match by_code {
        Some(rule) => {
            let c = Classification::new(rule.disposition, rule.reason);
            if rule.operator_action {
                c.with_operator_action()
            } else {
                c
            }
        }
        None => by_status(r.status),
    };
    if c.disposition == Disposition::Retry {
        c.retry_after_ms = retry_after_ms(&r.headers).or(Some(backoff_ms(attempt)));
    }
    if let Some(code) = code {
        c = c.with_provider_code(code.to_string());
    }
    if let Some(message) = body.get("message").and_then(Value::as_str) {
        c = c.with_provider_title(message);
    }
    if let Some(more) = body.get("more_info").and_then(Value::as_str) {
        c = c.with_details(more);
    }
    c
}

/// An answer whose code the table does not know.
fn by_status(status: u16) -> Classification {
    match status {
        429 => Classification::new(Disposition::Retry, "rate_limited"),
        401 | 403 => Classification::needs_operator(Disposition::Failed, "auth_error"),
        404 => Classification::needs_operator(Disposition::Failed, "channel_misconfigured"),
        400 | 413 | 422 => Classification::needs_operator(Disposition::Failed, "invalid_request"),
        500..=599 => Classification::new(Disposition::Retry, "provider_unavailable"),
        _ => Classification::needs_operator(Disposition::Failed, "unknown_error"),
    }
    .with_provider_title(format!("HTTP {status}"))
}

/// Declines a message the recipient stopped (any kind: an SMS STOP stops everything from the
/// sender), else builds, sends and classifies it; the details say what it cost.
pub fn send(
    request: &MessageRequest,
    config: &ChannelConfig,
    attempt: u32,
    host: &dyn Host,
) -> Result<Classification, Vec<FieldError>> {
    let http = build(request, config)?;
    if !request.opted_out.is_empty() {
        return Ok(
            Classification::new(Disposition::Fallback, "recipient_opted_out").with_details(
                format!(
                    "the recipient replied STOP on this channel (stopped: {})",
                    request.opted_out.join(", ")
                ),
            ),
        );
    }
    let outcome = match host.http_send(&http) {
        Ok(r) => SendOutcome::Response(r),
        Err(e) => SendOutcome::TransportError(e),
    };
    let mut c = classify(&outcome, attempt);
    if c.disposition == Disposition::Accepted
        && let Ok(content) = Content::parse(&request.content)
    {
        c.provider_details = Some(cost_details(segments::cost(&content.text)));
    }
    Ok(c)
}
