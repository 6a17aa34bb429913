//! A message → SendGrid's `POST /v3/mail/send`, and every answer → one classification.
//!
//! One personalization per message: the recipient, the correlation id in `custom_args`
//! (SendGrid copies custom args into every event of the message, which is how a status finds
//! its flow), and `dynamic_template_data` for a dynamic template. The body is `content[]`
//! (text/plain first, then text/html, the order SendGrid requires) or a `template_id`. A
//! success is `202` with the message id in `X-Message-Id`; errors are
//! `{"errors": [{"message", "field", "help"}]}`.

use crate::address;
use crate::settings::{DEFAULT_API_BASE, Settings, field};
use channel_sdk::{
    ChannelConfig, Classification, Disposition, FieldError, Header, Host, HttpRequest,
    HttpResponse, MessageRequest, SendOutcome, reasons, transport_failure,
};
use serde_json::{Map, Value, json};

/// The custom arg carrying the correlation id (echoed in every event).
pub const CORRELATION_ARG: &str = "flow_correlation_id";
/// The longest subject (RFC 5322's line limit).
pub const SUBJECT_MAX_CHARS: usize = 998;
/// SendGrid's limit on a whole request (30 MB); a body is kept well under it.
pub const BODY_MAX_BYTES: usize = 1 << 20;

/// The message content (schema: `describe`'s message schema).
#[derive(Debug, Clone, PartialEq)]
pub struct Content {
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    pub template_id: Option<String>,
    pub dynamic_template_data: Option<Map<String, Value>>,
    /// An unsubscribe group (SendGrid's `asm.group_id`): a recipient who left that group is
    /// not sent this message.
    pub asm_group_id: Option<u64>,
}

const KNOWN: &[&str] = &[
    "subject",
    "text",
    "html",
    "template_id",
    "dynamic_template_data",
    "asm_group_id",
];

fn text_field(
    map: &Map<String, Value>,
    key: &str,
    max: usize,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    let path = format!("/content/{key}");
    match map.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => {
            errors.push(field(&path, "empty", format!("{key} is empty")));
            None
        }
        Some(Value::String(s)) => {
            let n = if key == "subject" {
                s.chars().count()
            } else {
                s.len()
            };
            if n > max {
                let unit = if key == "subject" {
                    "characters"
                } else {
                    "bytes"
                };
                errors.push(field(
                    &path,
                    "too_long",
                    format!("at most {max} {unit}, got {n}"),
                ));
            }
            Some(s.clone())
        }
        Some(other) => {
            errors.push(field(
                &path,
                "expected_string",
                format!("must be a string, got {other}"),
            ));
            None
        }
    }
}

impl Content {
    /// Reads the content; every problem at once.
    pub fn parse(text: &str) -> Result<Content, Vec<FieldError>> {
        let map = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map,
            Ok(other) => {
                return Err(vec![field(
                    "/content",
                    "expected_object",
                    format!("the content must be an object, got {other}"),
                )]);
            }
            Err(e) => {
                return Err(vec![field(
                    "/content",
                    "invalid_json",
                    format!("the content is not JSON: {e}"),
                )]);
            }
        };
        let mut errors: Vec<FieldError> = map
            .keys()
            .filter(|k| !KNOWN.contains(&k.as_str()))
            .map(|k| {
                field(
                    &format!("/content/{k}"),
                    "unknown_field",
                    format!(
                        "the email content has no field {k:?} ({})",
                        KNOWN.join(", ")
                    ),
                )
            })
            .collect();
        let content = Content {
            subject: text_field(&map, "subject", SUBJECT_MAX_CHARS, &mut errors),
            text: text_field(&map, "text", BODY_MAX_BYTES, &mut errors),
            html: text_field(&map, "html", BODY_MAX_BYTES, &mut errors),
            template_id: text_field(&map, "template_id", 64, &mut errors),
            dynamic_template_data: match map.get("dynamic_template_data") {
                None | Some(Value::Null) => None,
                Some(Value::Object(o)) => Some(o.clone()),
                Some(other) => {
                    errors.push(field(
                        "/content/dynamic_template_data",
                        "expected_object",
                        format!("must be an object, got {other}"),
                    ));
                    None
                }
            },
            asm_group_id: match map.get("asm_group_id") {
                None | Some(Value::Null) => None,
                Some(v) => match v.as_u64().filter(|g| *g > 0) {
                    Some(g) => Some(g),
                    None => {
                        errors.push(field(
                            "/content/asm_group_id",
                            "expected_group",
                            format!("must be a positive whole number, got {v}"),
                        ));
                        None
                    }
                },
            },
        };
        content.check_shape(&mut errors);
        if errors.is_empty() {
            Ok(content)
        } else {
            Err(errors)
        }
    }

    /// A template, or a subject with a text or HTML body; template data only with a template.
    fn check_shape(&self, errors: &mut Vec<FieldError>) {
        match &self.template_id {
            Some(id) => {
                if !id.starts_with("d-") {
                    errors.push(field(
                        "/content/template_id",
                        "invalid_template_id",
                        format!("a dynamic template's id starts with \"d-\", got {id:?}"),
                    ));
                }
            }
            None => {
                if self.subject.is_none() {
                    errors.push(field(
                        "/content/subject",
                        "required",
                        "a subject is required without a template_id".into(),
                    ));
                }
                if self.text.is_none() && self.html.is_none() {
                    errors.push(field(
                        "/content/text",
                        "required",
                        "text or html is required without a template_id".into(),
                    ));
                }
                if self.dynamic_template_data.is_some() {
                    errors.push(field(
                        "/content/dynamic_template_data",
                        "needs_template",
                        "dynamic_template_data needs a template_id".into(),
                    ));
                }
            }
        }
    }

    /// The opt-out kind this message falls under: its unsubscribe group's.
    pub fn opt_out_kind(&self) -> Option<String> {
        self.asm_group_id.map(|g| format!("group:{g}"))
    }
}

/// The settings, with their errors under `/settings`.
pub(crate) fn settings(config: &ChannelConfig) -> Result<Settings, Vec<FieldError>> {
    Settings::parse(&config.settings).map_err(|errors| {
        errors
            .into_iter()
            .map(|e| FieldError {
                path: format!("/settings{}", e.path),
                ..e
            })
            .collect()
    })
}

/// The HTTP request for a message.
pub fn build(
    request: &MessageRequest,
    config: &ChannelConfig,
) -> Result<HttpRequest, Vec<FieldError>> {
    let settings = settings(config)?;
    let to = address::check(&request.recipient)
        .map_err(|why| field("/recipient", "invalid_recipient", why));
    let (to, content) = match (to, Content::parse(&request.content)) {
        (Ok(()), Ok(content)) => (request.recipient.clone(), content),
        (to, content) => {
            let mut errors: Vec<FieldError> = to.err().into_iter().collect();
            errors.extend(content.err().unwrap_or_default());
            return Err(errors);
        }
    };
    let mut personalization = json!({"to": [{"email": to}]});
    if let Some(id) = &request.correlation_id {
        personalization["custom_args"] = json!({ CORRELATION_ARG: id });
    }
    if let Some(data) = &content.dynamic_template_data {
        personalization["dynamic_template_data"] = Value::Object(data.clone());
    }
    let mut body = json!({"personalizations": [personalization], "from": settings.from.json()});
    if let Some(r) = &settings.reply_to {
        body["reply_to"] = r.json();
    }
    if let Some(subject) = &content.subject {
        body["subject"] = json!(subject);
    }
    let parts: Vec<Value> = [("text/plain", &content.text), ("text/html", &content.html)]
        .into_iter()
        .filter_map(|(kind, v)| v.as_ref().map(|v| json!({"type": kind, "value": v})))
        .collect();
    if !parts.is_empty() {
        body["content"] = Value::Array(parts);
    }
    if let Some(id) = &content.template_id {
        body["template_id"] = json!(id);
    }
    if let Some(g) = content.asm_group_id {
        body["asm"] = json!({"group_id": g});
    }
    let base = config.api_base.as_deref().unwrap_or(DEFAULT_API_BASE);
    Ok(HttpRequest {
        method: "POST".into(),
        url: format!("{}/v3/mail/send", base.trim_end_matches('/')),
        headers: vec![
            Header::new(
                "authorization",
                &format!("Bearer ${{secret:{}}}", settings.api_key_secret),
            ),
            Header::new("content-type", "application/json"),
        ],
        body: body.to_string().into_bytes(),
    })
}

/// The wait before retry `attempt` (1-based) when SendGrid names none.
pub use channel_sdk::doubling_backoff_ms as backoff_ms;

/// Any outcome of a send.
pub fn classify(outcome: &SendOutcome, attempt: u32, now_ms: u64) -> Classification {
    match outcome {
        SendOutcome::TransportError(e) => transport_failure(e, Some(backoff_ms(attempt))),
        SendOutcome::Response(r) => classify_response(r, attempt, now_ms),
    }
}

/// An HTTP answer.
pub fn classify_response(r: &HttpResponse, attempt: u32, now_ms: u64) -> Classification {
    if (200..300).contains(&r.status) {
        return match channel_sdk::header_value(&r.headers, "x-message-id")
            .filter(|id| !id.is_empty())
        {
            Some(id) => {
                Classification::new(Disposition::Accepted, reasons::ACCEPTED).with_message_id(id)
            }
            // It may have been sent: never resent blindly.
            None => Classification::new(Disposition::Unknown, reasons::UNEXPECTED_RESPONSE)
                .with_details(format!("HTTP {} without X-Message-Id", r.status)),
        };
    }
    let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    let first = body.pointer("/errors/0");
    let message = first.and_then(|e| e.get("message")).and_then(Value::as_str);
    let field_name = first.and_then(|e| e.get("field")).and_then(Value::as_str);
    let mut c = match r.status {
        429 => {
            // X-RateLimit-Reset: when the window resets, in Unix seconds.
            let reset = channel_sdk::header_value(&r.headers, "x-ratelimit-reset")
                .and_then(|v| v.parse::<u64>().ok())
                .map(|s| s.saturating_mul(1_000).saturating_sub(now_ms).max(1_000));
            Classification::retry("rate_limited", reset.or(Some(backoff_ms(attempt))))
        }
        401 | 403 => Classification::needs_operator(Disposition::Failed, "auth_error"),
        413 => Classification::needs_operator(Disposition::Failed, "invalid_request")
            .with_details("the request is larger than SendGrid accepts (30 MB)"),
        400..=499 => Classification::needs_operator(Disposition::Failed, "invalid_request"),
        500..=599 => Classification::retry("provider_unavailable", Some(backoff_ms(attempt))),
        _ => Classification::needs_operator(Disposition::Failed, "unknown_error"),
    }
    .with_provider_code(r.status.to_string());
    if let Some(m) = message {
        c = c.with_provider_title(m);
    }
    if let Some(f) = field_name {
        c = c.with_details(format!("field {f}"));
    }
    c
}

/// Declines a message the recipient unsubscribed from (everything, or its group), else
/// builds, sends and classifies it.
pub fn send(
    request: &MessageRequest,
    config: &ChannelConfig,
    attempt: u32,
    now_ms: u64,
    host: &dyn Host,
) -> Result<Classification, Vec<FieldError>> {
    let http = build(request, config)?;
    let kind = Content::parse(&request.content)
        .ok()
        .and_then(|c| c.opt_out_kind());
    let stopped = request
        .opted_out
        .iter()
        .find(|k| k.as_str() == crate::events::ALL || Some(k.as_str()) == kind.as_deref());
    if let Some(k) = stopped {
        return Ok(
            Classification::new(Disposition::Fallback, "recipient_opted_out")
                .with_details(format!("the recipient unsubscribed ({k})")),
        );
    }
    let outcome = match host.http_send(&http) {
        Ok(r) => SendOutcome::Response(r),
        Err(e) => SendOutcome::TransportError(e),
    };
    Ok(classify(&outcome, attempt, now_ms))
}
