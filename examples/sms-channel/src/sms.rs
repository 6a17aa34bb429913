//! The SMS domain: payload, classification and status callbacks.

use crate::glue::types::*;
use serde_json::{Value, json};

/// Longest text accepted (10 concatenated GSM segments).
pub const TEXT_MAX: usize = 1600;
pub const DEFAULT_API_KEY_SECRET: &str = "sms/api-key";
pub const DEFAULT_WEBHOOK_SECRET: &str = "sms/webhook-secret";

fn err(path: &str, code: &str, message: String) -> FieldError {
    FieldError {
        path: path.into(),
        code: code.into(),
        message,
    }
}

fn classification(disposition: Disposition, reason: &str) -> Classification {
    Classification {
        disposition,
        reason: reason.into(),
        provider_code: None,
        provider_title: None,
        provider_details: None,
        provider_trace_id: None,
        retry_after_ms: None,
        operator_action: false,
        provider_message_id: None,
    }
}

pub fn describe() -> ChannelInfo {
    ChannelInfo {
        name: "sms".into(),
        plugin_version: env!("CARGO_PKG_VERSION").into(),
        contract_version: "flow:channel@1.0.0".into(),
        capabilities: vec!["text".into(), "delivery-status".into(), "webhook-signature".into(), "correlation-id".into()],
        config_schema: json!({"type": "object", "properties": {"api_key_secret": {"type": "string"}, "webhook_secret": {"type": ["string", "null"]}}}).to_string(),
        message_schema: json!({"type": "object", "required": ["text"], "properties": {"text": {"type": "string", "maxLength": TEXT_MAX}}}).to_string(),
        template_schema: "{}".into(),
    }
}

fn settings(config: &ChannelConfig) -> Result<Value, Vec<FieldError>> {
    let text = if config.settings.trim().is_empty() {
        "{}"
    } else {
        &config.settings
    };
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(vec![err(
            "/settings",
            "expected_object",
            "the SMS settings must be a JSON object".into(),
        )]),
    }
}

pub fn build(
    request: &MessageRequest,
    config: &ChannelConfig,
) -> Result<HttpRequest, Vec<FieldError>> {
    let mut errors = Vec::new();
    let s = settings(config)?;
    let digits: String = request
        .recipient
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')'))
        .collect();
    let valid = digits.strip_prefix('+').is_some_and(|d| {
        (8..=15).contains(&d.len()) && d.chars().all(|c| c.is_ascii_digit()) && !d.starts_with('0')
    });
    if !valid {
        errors.push(err(
            "/recipient",
            "invalid_recipient",
            format!(
                "{:?} is not an E.164 number with a leading '+'",
                request.recipient
            ),
        ));
    }
    let content: Value = serde_json::from_str(&request.content).unwrap_or(Value::Null);
    let text = content.get("text").and_then(Value::as_str).unwrap_or("");
    if text.trim().is_empty() {
        errors.push(err(
            "/content/text",
            "missing",
            "an SMS needs a non-empty `text`".into(),
        ));
    }
    let n = text.chars().count();
    if n > TEXT_MAX {
        errors.push(err(
            "/content/text",
            "too_long",
            format!("text is {n} characters long; the limit is {TEXT_MAX}"),
        ));
    }
    let Some(base) = config.api_base.as_deref().filter(|b| b.starts_with("http")) else {
        errors.push(err(
            "/api_base",
            "missing",
            "the SMS channel needs the SMS API's base URL".into(),
        ));
        return Err(errors);
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let key = s
        .get("api_key_secret")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_API_KEY_SECRET);
    let body = json!({"to": digits, "text": text, "reference": request.correlation_id});
    Ok(HttpRequest {
        method: "POST".into(),
        url: format!("{}/sms/v1/messages", base.trim_end_matches('/')),
        headers: vec![
            Header {
                name: "authorization".into(),
                value: format!("Bearer ${{secret:{key}}}"),
            },
            Header {
                name: "content-type".into(),
                value: "application/json".into(),
            },
        ],
        body: body.to_string().into_bytes(),
    })
}

pub fn classify(outcome: &SendOutcome, attempt: u32) -> Classification {
    let backoff = 1_000u64 << attempt.clamp(1, 10).saturating_sub(1);
    match outcome {
        SendOutcome::TransportError(e) if e.kind == TransportErrorKind::Denied => {
            let mut c = classification(Disposition::Failed, "host_policy_denied");
            c.operator_action = true;
            c
        }
        SendOutcome::TransportError(e) if e.request_sent => {
            classification(Disposition::Unknown, "outcome_unknown")
        }
        SendOutcome::TransportError(_) => {
            let mut c = classification(Disposition::Retry, "transport_error");
            c.retry_after_ms = Some(backoff);
            c
        }
        SendOutcome::Response(r) => {
            let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            let code = body
                .pointer("/error/code")
                .and_then(Value::as_str)
                .map(str::to_string);
            let mut c = match (r.status, code.as_deref()) {
                (200..=299, _) => match body.get("id").and_then(Value::as_str) {
                    Some(id) => {
                        let mut c = classification(Disposition::Accepted, "accepted");
                        c.provider_message_id = Some(id.into());
                        c
                    }
                    None => classification(Disposition::Unknown, "unexpected_response"),
                },
                (_, Some("invalid_number")) => {
                    classification(Disposition::Fallback, "recipient_not_on_channel")
                }
                (401 | 403, _) => classification(Disposition::Failed, "auth_error"),
                (429, _) => classification(Disposition::Retry, "rate_limited"),
                (500..=599, _) => classification(Disposition::Retry, "provider_unavailable"),
                _ => classification(Disposition::Failed, "invalid_request"),
            };
            c.operator_action = c.disposition == Disposition::Failed;
            if c.disposition == Disposition::Retry {
                let hint = r
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("retry-after"))
                    .and_then(|h| h.value.trim().parse::<u64>().ok());
                c.retry_after_ms = Some(hint.map(|s| s * 1000).unwrap_or(0).max(backoff));
            }
            c.provider_code = code;
            c.provider_details = body
                .pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_string);
            c
        }
    }
}

/// The host's `hmac-sha256-verify(secret, data, mac)`.
pub type VerifyMac = dyn Fn(&str, &[u8], &[u8]) -> Result<bool, SecretError>;

/// Verifies with the host (`verify(secret, data, mac)`), then reads one status callback.
pub fn parse_webhook(
    request: &WebhookRequest,
    config: &ChannelConfig,
    verify: &VerifyMac,
) -> Result<WebhookOutcome, WebhookError> {
    let s = settings(config).map_err(WebhookError::Malformed)?;
    let secret = match s.get("webhook_secret") {
        Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name.clone()),
        _ => Some(DEFAULT_WEBHOOK_SECRET.to_string()),
    };
    if let Some(secret) = secret {
        let header = request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("x-signature"))
            .ok_or(WebhookError::SignatureMissing)?;
        let hex = header.value.trim().strip_prefix("sha256=").ok_or_else(|| {
            WebhookError::SignatureInvalid("X-Signature must be sha256=<hex>".into())
        })?;
        let mac: Option<Vec<u8>> = (0..hex.len())
            .step_by(2)
            .map(|i| {
                hex.get(i..i + 2)
                    .and_then(|b| u8::from_str_radix(b, 16).ok())
            })
            .collect();
        let mac = mac.filter(|m| m.len() == 32).ok_or_else(|| {
            WebhookError::SignatureInvalid("X-Signature must carry 64 hex digits".into())
        })?;
        match verify(&secret, &request.body, &mac) {
            Ok(true) => {}
            Ok(false) => {
                return Err(WebhookError::SignatureInvalid(
                    "the signature does not match the body".into(),
                ));
            }
            Err(_) => {
                return Err(WebhookError::SecretUnavailable(format!(
                    "the host has no secret named {secret:?}"
                )));
            }
        }
    }
    let body: Value = serde_json::from_slice(&request.body).map_err(|e| {
        WebhookError::Malformed(vec![err(
            "",
            "invalid_json",
            format!("the callback is not JSON: {e}"),
        )])
    })?;
    let id = body
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let status = body
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (mut c, precedence) = match status {
        "queued" | "sent" => (classification(Disposition::Sent, "sent"), 1),
        "delivered" => (classification(Disposition::Delivered, "delivered"), 3),
        "failed" => match body.get("error_code").and_then(Value::as_str) {
            Some("unreachable" | "invalid_number") => (
                classification(Disposition::Fallback, "recipient_not_on_channel"),
                2,
            ),
            _ => (classification(Disposition::Fallback, "unknown_error"), 2),
        },
        _ => (classification(Disposition::Unknown, "unknown_status"), 0),
    };
    c.provider_message_id = Some(id.clone());
    c.provider_code = body
        .get("error_code")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(WebhookOutcome::Events(vec![WebhookEvent {
        kind: EventKind::MessageStatus,
        provider_message_id: Some(id.clone()),
        recipient: body.get("to").and_then(Value::as_str).map(str::to_string),
        correlation_id: body
            .get("reference")
            .and_then(Value::as_str)
            .map(str::to_string),
        occurred_at_ms: body
            .get("timestamp")
            .and_then(Value::as_u64)
            .map(|t| t * 1000),
        classification: c,
        precedence,
        dedupe_key: format!("sms:{id}:{status}"),
        service_window_ends_ms: None,
        details: json!({"status": status}).to_string(),
    }]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(to: &str, text: &str) -> MessageRequest {
        MessageRequest {
            recipient: to.into(),
            correlation_id: Some("f-1".into()),
            content: json!({"text": text}).to_string(),
            last_inbound_ms: None,
            now_ms: 0,
        }
    }

    fn cfg() -> ChannelConfig {
        ChannelConfig {
            api_base: Some("http://127.0.0.1:9".into()),
            settings: "{}".into(),
        }
    }

    #[test]
    fn builds_and_limits() {
        let r = build(&req("+15550100001", "hi"), &cfg()).unwrap();
        assert_eq!(r.url, "http://127.0.0.1:9/sms/v1/messages");
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            body,
            json!({"to": "+15550100001", "text": "hi", "reference": "f-1"})
        );
        assert!(build(&req("+15550100001", &"a".repeat(1600)), &cfg()).is_ok());
        assert_eq!(
            build(&req("+15550100001", &"a".repeat(1601)), &cfg()).unwrap_err()[0].code,
            "too_long"
        );
        assert_eq!(
            build(&req("5550100001", "hi"), &cfg()).unwrap_err()[0].path,
            "/recipient"
        );
    }

    #[test]
    fn classifies() {
        let resp = |status, body: Value| {
            SendOutcome::Response(HttpResponse {
                status,
                headers: vec![],
                body: body.to_string().into_bytes(),
            })
        };
        assert_eq!(
            classify(&resp(202, json!({"id": "sms-1"})), 1).disposition,
            Disposition::Accepted
        );
        assert_eq!(
            classify(&resp(400, json!({"error": {"code": "invalid_number"}})), 1).disposition,
            Disposition::Fallback
        );
        assert_eq!(
            classify(&resp(429, json!({"error": {"code": "rate_limited"}})), 1).disposition,
            Disposition::Retry
        );
        assert!(
            classify(&resp(401, json!({"error": {"code": "unauthorized"}})), 1).operator_action
        );
    }
}
