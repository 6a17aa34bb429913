//! SendGrid's signed Event Webhook: a JSON array of events, each mapped to one webhook event.
//!
//! The signature (`X-Twilio-Email-Event-Webhook-Signature`, base64 of a DER ECDSA P-256
//! signature) covers the timestamp header's text followed by the raw body; the host checks it
//! with the public key from its secrets. A signed delivery whose timestamp is further than the
//! settings' window from now is refused too, so a captured delivery cannot be replayed later.
//!
//! `processed` → accepted, `deferred` → accepted (still trying: wait), `delivered`,
//! `open`/`click` → read, `bounce` (`type` `blocked` too) / `blocked` / `dropped` → fallback
//! with the reason, `spamreport` / `unsubscribe` → a stop of everything, `group_unsubscribe` /
//! `group_resubscribe` → a stop / resume of that group. Each is deduplicated by
//! `sg_event_id` and finds its flow by the correlation id in its custom args.

use crate::send::CORRELATION_ARG;
use crate::settings::Settings;
use channel_sdk::{
    Classification, Disposition, EventKind, FieldError, Host, SecretError, SignatureAlgorithm,
    WebhookError, WebhookEvent, WebhookOutcome, WebhookRequest,
};
use serde_json::{Value, json};

/// The opt-out kind of an unsubscribe from everything (a spam report, a global unsubscribe).
pub const ALL: &str = "all";
const SIGNATURE_HEADER: &str = "x-twilio-email-event-webhook-signature";
const TIMESTAMP_HEADER: &str = "x-twilio-email-event-webhook-timestamp";

fn malformed(path: &str, code: &str, message: impl Into<String>) -> WebhookError {
    WebhookError::Malformed(vec![FieldError {
        path: path.into(),
        code: code.into(),
        message: message.into(),
    }])
}

/// Checks the signature and the timestamp's age.
fn verify(
    request: &WebhookRequest,
    settings: &Settings,
    now_ms: u64,
    host: &dyn Host,
) -> Result<(), WebhookError> {
    let (Some(signature), Some(timestamp)) = (
        channel_sdk::header_value(&request.headers, SIGNATURE_HEADER),
        channel_sdk::header_value(&request.headers, TIMESTAMP_HEADER),
    ) else {
        return Err(WebhookError::SignatureMissing);
    };
    let der = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, signature)
        .map_err(|_| {
            WebhookError::SignatureInvalid("the event webhook signature is not base64".into())
        })?;
    let seconds: u64 = timestamp.parse().map_err(|_| {
        WebhookError::SignatureInvalid(format!(
            "the event webhook timestamp must be Unix seconds, got {timestamp:?}"
        ))
    })?;
    let mut signed = timestamp.as_bytes().to_vec();
    signed.extend_from_slice(&request.body);
    let secret = &settings.public_key_secret;
    match host.signature_verify(SignatureAlgorithm::EcdsaP256Sha256, secret, &signed, &der) {
        // Signed by SendGrid, but when? A captured delivery replayed later is refused.
        Ok(true) => {
            let age_s = (now_ms / 1_000).abs_diff(seconds);
            if age_s > settings.event_max_age_s {
                return Err(WebhookError::SignatureInvalid(format!(
                    "the delivery is signed {age_s} s away from now; at most {} s is accepted",
                    settings.event_max_age_s
                )));
            }
            Ok(())
        }
        Ok(false) => Err(WebhookError::SignatureInvalid(
            "the event webhook signature does not match the timestamp and body".into(),
        )),
        Err(SecretError::NotFound) => Err(WebhookError::SecretUnavailable(format!(
            "the host has no secret named {secret:?} (the Event Webhook's public key)"
        ))),
        Err(SecretError::Denied) => Err(WebhookError::SecretUnavailable(format!(
            "the secret {secret:?} is not granted to this channel for verification"
        ))),
    }
}

/// Reads a delivery: verified, then every event in it.
pub fn parse(
    request: &WebhookRequest,
    config: &channel_sdk::ChannelConfig,
    now_ms: u64,
    host: &dyn Host,
) -> Result<WebhookOutcome, WebhookError> {
    let settings = Settings::parse(&config.settings)
        .map_err(|errors| channel_sdk::settings_unusable("email", &errors))?;
    if request.method != "POST" {
        return Err(malformed(
            "",
            "method_not_allowed",
            format!("the Event Webhook POSTs, got {}", request.method),
        ));
    }
    verify(request, &settings, now_ms, host)?;
    let body: Value = serde_json::from_slice(&request.body)
        .map_err(|e| malformed("", "invalid_json", format!("the body is not JSON: {e}")))?;
    let Value::Array(items) = body else {
        return Err(malformed(
            "",
            "expected_array",
            "the Event Webhook posts a JSON array of events",
        ));
    };
    let events = items
        .iter()
        .enumerate()
        .map(|(i, item)| event(i, item))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(WebhookOutcome::Events(events))
}

/// Ordering among a message's statuses: a failure outranks every step before delivery, and
/// delivery and opening outrank a late failure.
pub fn precedence(event: &str) -> u8 {
    match event {
        "processed" => 1,
        "deferred" => 2,
        "bounce" | "blocked" | "dropped" => 3,
        "delivered" => 4,
        "open" | "click" => 5,
        _ => 0,
    }
}

fn status_classification(name: &str, item: &Value) -> Option<Classification> {
    let reason = item.get("reason").and_then(Value::as_str);
    let bounce_type = item.get("type").and_then(Value::as_str);
    let c = match name {
        "processed" => Classification::new(Disposition::Accepted, "accepted"),
        "deferred" => Classification::new(Disposition::Accepted, "deferred"),
        "delivered" => Classification::new(Disposition::Delivered, "delivered"),
        "open" | "click" => Classification::new(Disposition::Read, "read"),
        "bounce" if bounce_type == Some("blocked") => {
            Classification::new(Disposition::Fallback, "recipient_blocked")
        }
        "blocked" => Classification::new(Disposition::Fallback, "recipient_blocked"),
        "bounce" => Classification::new(Disposition::Fallback, "bounced"),
        "dropped" => Classification::new(Disposition::Fallback, "dropped"),
        _ => return None,
    };
    let mut c = c.with_provider_title(name);
    if let Some(status) = item.get("status").and_then(Value::as_str) {
        c = c.with_provider_code(status);
    }
    if let Some(r) = reason {
        c = c.with_details(r);
    }
    Some(c)
}

/// A preference event: (stop?, kind).
fn preference(name: &str, item: &Value) -> Option<(bool, String)> {
    let group = || {
        item.get("asm_group_id")
            .and_then(Value::as_u64)
            .map(|g| format!("group:{g}"))
    };
    match name {
        "spamreport" | "unsubscribe" => Some((true, ALL.into())),
        "group_unsubscribe" => Some((true, group()?)),
        "group_resubscribe" => Some((false, group()?)),
        _ => None,
    }
}

fn event(index: usize, item: &Value) -> Result<WebhookEvent, WebhookError> {
    let name = item.get("event").and_then(Value::as_str).ok_or_else(|| {
        malformed(
            &format!("/{index}/event"),
            "required",
            "each event names its event",
        )
    })?;
    let event_id = item
        .get("sg_event_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            malformed(
                &format!("/{index}/sg_event_id"),
                "required",
                "each event carries its sg_event_id",
            )
        })?;
    // `sg_message_id` is the X-Message-Id the send was answered with, then a filter suffix.
    let message_id = item
        .get("sg_message_id")
        .and_then(Value::as_str)
        .map(|m| m.split('.').next().unwrap_or(m).to_string());
    let (kind, classification, precedence) =
        match (status_classification(name, item), preference(name, item)) {
            (Some(c), _) => (EventKind::MessageStatus, c, precedence(name)),
            (None, Some((true, _))) => (
                EventKind::RecipientPreference,
                Classification::new(Disposition::Fallback, "recipient_opted_out"),
                0,
            ),
            (None, Some((false, _))) => (
                EventKind::RecipientPreference,
                Classification::new(Disposition::Accepted, "recipient_opted_in"),
                0,
            ),
            (None, None) => (
                EventKind::Other,
                Classification::new(Disposition::Unknown, "other_event"),
                0,
            ),
        };
    let mut details = json!({"event": name, "sg_event_id": event_id});
    for key in [
        "reason",
        "status",
        "type",
        "response",
        "attempt",
        "url",
        "asm_group_id",
    ] {
        if let Some(v) = item.get(key) {
            details[key] = v.clone();
        }
    }
    if let Some((_, category)) = preference(name, item) {
        details["category"] = json!(category);
    }
    Ok(WebhookEvent {
        kind,
        provider_message_id: message_id.clone(),
        recipient: item
            .get("email")
            .and_then(Value::as_str)
            .map(str::to_string),
        correlation_id: item
            .get(CORRELATION_ARG)
            .and_then(Value::as_str)
            .map(str::to_string),
        occurred_at_ms: item
            .get("timestamp")
            .and_then(Value::as_u64)
            .map(|s| s.saturating_mul(1_000)),
        classification: match message_id {
            Some(id) => classification.with_message_id(id),
            None => classification,
        },
        precedence,
        dedupe_key: format!("sendgrid:{event_id}"),
        service_window_ends_ms: None,
        details: details.to_string(),
        account_id: None,
        sender_id: None,
    })
}
