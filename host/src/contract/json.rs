//! The CLI's JSON formats, to and from the generated contract types.

use crate::contract::types::{
    ChannelInfo, Classification, Disposition, EventKind, FieldError, Header, HttpRequest,
    HttpResponse, MessageRequest, SendOutcome, TransportError, TransportErrorKind, WebhookEvent,
};
use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};

pub fn disposition_name(d: Disposition) -> &'static str {
    match d {
        Disposition::Accepted => "accepted",
        Disposition::Sent => "sent",
        Disposition::Delivered => "delivered",
        Disposition::Read => "read",
        Disposition::Retry => "retry",
        Disposition::Fallback => "fallback",
        Disposition::Failed => "failed",
        Disposition::Unknown => "unknown",
    }
}

pub fn event_kind_name(k: EventKind) -> &'static str {
    match k {
        EventKind::MessageStatus => "message_status",
        EventKind::InboundMessage => "inbound_message",
        EventKind::ChannelError => "channel_error",
        EventKind::RecipientPreference => "recipient_preference",
        EventKind::TemplateStatus => "template_status",
        EventKind::IdentityChange => "identity_change",
        EventKind::Handover => "handover",
        EventKind::Call => "call",
        EventKind::TemplateCategoryChange => "template_category_change",
        EventKind::TemplateQualityChange => "template_quality_change",
        EventKind::TemplateComponentsChange => "template_components_change",
        EventKind::AccountUpdate => "account_update",
        EventKind::SenderQualityChange => "sender_quality_change",
        EventKind::Other => "other",
    }
}

pub fn classification(c: &Classification) -> Value {
    json!({
        "disposition": disposition_name(c.disposition),
        "reason": c.reason,
        "provider_code": c.provider_code,
        "provider_title": c.provider_title,
        "provider_details": c.provider_details,
        "provider_trace_id": c.provider_trace_id,
        "retry_after_ms": c.retry_after_ms,
        "operator_action": c.operator_action,
        "provider_message_id": c.provider_message_id,
    })
}

pub fn field_errors(errors: &[FieldError]) -> Value {
    Value::Array(
        errors
            .iter()
            .map(|e| json!({"path": e.path, "code": e.code, "message": e.message}))
            .collect(),
    )
}

/// The request as JSON; a JSON body is shown as JSON, anything else as text.
pub fn http_request(r: &HttpRequest) -> Value {
    let mut headers = Map::new();
    for h in &r.headers {
        headers.insert(h.name.clone(), json!(h.value));
    }
    let body = serde_json::from_slice::<Value>(&r.body)
        .unwrap_or_else(|_| json!(String::from_utf8_lossy(&r.body)));
    json!({"method": r.method, "url": r.url, "headers": headers, "body": body})
}

pub fn webhook_event(e: &WebhookEvent) -> Value {
    json!({
        "kind": event_kind_name(e.kind),
        "provider_message_id": e.provider_message_id,
        "recipient": e.recipient,
        "correlation_id": e.correlation_id,
        "occurred_at_ms": e.occurred_at_ms,
        "precedence": e.precedence,
        "dedupe_key": e.dedupe_key,
        "service_window_ends_ms": e.service_window_ends_ms,
        "details": serde_json::from_str::<Value>(&e.details).unwrap_or(Value::Null),
        "classification": classification(&e.classification),
    })
}

pub fn channel_info(i: &ChannelInfo) -> Value {
    let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap_or(Value::Null);
    json!({
        "name": i.name,
        "plugin_version": i.plugin_version,
        "contract_version": i.contract_version,
        "capabilities": i.capabilities,
        "config_schema": parse(&i.config_schema),
        "message_schema": parse(&i.message_schema),
        "template_schema": parse(&i.template_schema),
    })
}

/// Reads the `classify` input: `{"http_status", "headers", "body"}` or
/// `{"transport_error", "request_sent"}`, optionally with `"attempt"`.
pub fn send_outcome(doc: &Value) -> Result<(SendOutcome, u32)> {
    let attempt = match doc.get("attempt") {
        None => 1,
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=u32::MAX as u64).contains(n))
            .context("`attempt` must be a positive integer")? as u32,
    };
    if let Some(kind) = doc.get("transport_error") {
        let kind = match kind.as_str() {
            Some("timeout") => TransportErrorKind::Timeout,
            Some("connect") => TransportErrorKind::Connect,
            Some("dns") => TransportErrorKind::Dns,
            Some("tls") => TransportErrorKind::Tls,
            Some("reset") => TransportErrorKind::Reset,
            Some("denied") => TransportErrorKind::Denied,
            Some("too_large") => TransportErrorKind::TooLarge,
            Some("other") => TransportErrorKind::Other,
            _ => bail!(
                "`transport_error` must be one of timeout, connect, dns, tls, reset, denied, too_large, other; got {kind}"
            ),
        };
        let request_sent = doc
            .get("request_sent")
            .and_then(Value::as_bool)
            .context("`request_sent` (true or false) is required with `transport_error`")?;
        let message = doc
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        return Ok((
            SendOutcome::TransportError(TransportError {
                kind,
                request_sent,
                message,
            }),
            attempt,
        ));
    }
    let status = doc
        .get("http_status")
        .and_then(Value::as_u64)
        .filter(|s| (100..=599).contains(s))
        .context("the input needs `http_status` (100–599) or `transport_error`")?
        as u16;
    let headers = match doc.get("headers") {
        None | Some(Value::Null) => vec![],
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                Ok(Header {
                    name: k.clone(),
                    value: v
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string()),
                })
            })
            .collect::<Result<_>>()?,
        Some(_) => bail!("`headers` must be an object of name → value"),
    };
    // The body is the provider's JSON, or text (an HTML error page) given as a string.
    let body = match doc.get("body") {
        None | Some(Value::Null) => vec![],
        Some(Value::String(s)) => s.as_bytes().to_vec(),
        Some(v) => serde_json::to_vec(v)?,
    };
    Ok((
        SendOutcome::Response(HttpResponse {
            status,
            headers,
            body,
        }),
        attempt,
    ))
}

/// A problem in a message file, as a field error.
fn problem(path: &str, code: &str, message: &str) -> FieldError {
    FieldError {
        path: path.into(),
        code: code.into(),
        message: message.into(),
    }
}

/// The fields of a message file: the one list the reader accepts and its errors name.
const MESSAGE_FILE_FIELDS: [&str; 6] = [
    "recipient",
    "correlation_id",
    "last_inbound_ms",
    "opted_out",
    "deadline_ms",
    "content",
];

/// An optional time in ms since the Unix epoch, or a field error naming it.
fn optional_ms(obj: &Map<String, Value>, key: &str, errors: &mut Vec<FieldError>) -> Option<u64> {
    let v = obj.get(key).filter(|v| !v.is_null())?;
    if v.as_u64().is_none() {
        errors.push(problem(
            &format!("/{key}"),
            "expected_integer",
            &format!("`{key}` is milliseconds since the Unix epoch, got {v}"),
        ));
    }
    v.as_u64()
}

/// Reads a message file: `{"recipient", "correlation_id"?, "last_inbound_ms"?, "opted_out"?,
/// "deadline_ms"?, "content": {…}}`; every problem is a field error.
pub fn message_request(doc: &Value, now_ms: u64) -> Result<MessageRequest, Vec<FieldError>> {
    let Some(obj) = doc.as_object() else {
        return Err(vec![problem(
            "",
            "expected_object",
            "a message file is a JSON object with `recipient` and `content`",
        )]);
    };
    let mut errors = Vec::new();
    for key in obj.keys() {
        if !MESSAGE_FILE_FIELDS.contains(&key.as_str()) {
            let known = MESSAGE_FILE_FIELDS.join(", ");
            errors.push(problem(
                &format!("/{key}"),
                "unknown_field",
                &format!("`{key}` is not a field of a message file; it has {known}"),
            ));
        }
    }
    let recipient = match obj.get("recipient") {
        Some(Value::String(s)) => s.clone(),
        None => {
            errors.push(problem(
                "/recipient",
                "missing",
                "`recipient` is required (E.164, e.g. \"+16505551234\")",
            ));
            String::new()
        }
        Some(_) => {
            errors.push(problem(
                "/recipient",
                "expected_string",
                "`recipient` must be a string",
            ));
            String::new()
        }
    };
    let correlation_id = match obj.get("correlation_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            errors.push(problem(
                "/correlation_id",
                "expected_string",
                "`correlation_id` must be a string",
            ));
            None
        }
    };
    let last_inbound_ms = optional_ms(obj, "last_inbound_ms", &mut errors);
    let deadline_ms = optional_ms(obj, "deadline_ms", &mut errors);
    let opted_out = match obj.get("opted_out") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Some(v) => {
            errors.push(problem(
                "/opted_out",
                "expected_array",
                &format!("`opted_out` is a list of message kinds (e.g. [\"marketing\"]), got {v}"),
            ));
            Vec::new()
        }
    };
    let content = match obj.get("content") {
        Some(c) => c.to_string(),
        None => {
            errors.push(problem("/content", "missing", "`content` (the message, e.g. {\"type\": \"text\", \"text\": {\"body\": \"hi\"}}) is required"));
            String::new()
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(MessageRequest {
        recipient,
        correlation_id,
        content,
        last_inbound_ms,
        now_ms,
        opted_out,
        deadline_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message file of `docs/cli.md` names `opted_out`: the reader takes it (issue 20: it was
    /// read, yet refused as an unknown field).
    #[test]
    fn a_message_file_with_opted_out_is_read() {
        let doc = serde_json::json!({"recipient": "+15550100001", "opted_out": ["marketing"],
            "content": {"type": "text", "text": {"body": "hi"}}});
        let m = message_request(&doc, 0).unwrap();
        assert_eq!(m.opted_out, ["marketing"]);
        let errors = message_request(
            &serde_json::json!({"recipient": "+1", "content": {}, "x": 1}),
            0,
        )
        .unwrap_err();
        assert_eq!(errors[0].path, "/x");
        assert!(
            errors[0].message.contains("opted_out"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn a_message_files_deadline_is_read_and_a_bad_one_is_a_field_error() {
        let doc = serde_json::json!({"recipient": "+15550100001", "deadline_ms": 1_750_000_060_000u64,
            "content": {"text": "hi"}});
        assert_eq!(
            message_request(&doc, 0).unwrap().deadline_ms,
            Some(1_750_000_060_000)
        );
        let errors = message_request(
            &serde_json::json!({"recipient": "+1", "content": {}, "deadline_ms": -1}),
            0,
        )
        .unwrap_err();
        assert_eq!(
            (errors[0].path.as_str(), errors[0].code.as_str()),
            ("/deadline_ms", "expected_integer")
        );
        assert!(errors[0].message.contains("-1"), "{}", errors[0].message);
    }
}
