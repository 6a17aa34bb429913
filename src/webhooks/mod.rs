//! Webhooks as Meta sends them: the verification GET, and signed POSTs carrying batches of
//! statuses, inbound messages, errors, preference and template updates.
//!
//! Signatures are checked by the host (`hmac-sha256-verify`) over the raw body bytes, so the
//! app secret never enters the component, and are required whenever the settings name an app
//! secret (the default): a missing header is a rejection, never a skip.
//!
//! Ordering: Meta retries for days and does not order deliveries. Every event carries a
//! `dedupe-key` (equal for redeliveries) and, for statuses, a `precedence`
//! (sent 1 < failed 2 < delivered 3 < read 4 < played 5): a host applies a status only when
//! its precedence is higher than the one it holds for that message. So a `failed` after
//! `sent` counts, a `failed` from another device after `delivered` does not (the message
//! reached a device), and a late `sent` never undoes a `read`.

use crate::classify::{ProviderError, classify_error};
use crate::config::Settings;
use crate::field_errors::{Errors, excerpt, quoted};
use crate::host::Host;
use crate::phone::from_wa_id;
use crate::{
    ChannelConfig, Classification, Disposition, EventKind, SecretError, WebhookError, WebhookEvent,
    WebhookOutcome, WebhookRequest,
};
use serde_json::{Map, Value, json};

mod conversation;
mod platform;

/// The customer-service window an inbound message opens.
pub use crate::meta_limits::SERVICE_WINDOW_MS;
/// The header Meta signs POSTs with.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// Reads one webhook request.
pub fn parse(
    request: &WebhookRequest,
    config: &ChannelConfig,
    host: &dyn Host,
) -> Result<WebhookOutcome, WebhookError> {
    let settings = Settings::parse(config).map_err(WebhookError::Malformed)?;
    match request.method.to_ascii_uppercase().as_str() {
        "GET" => verify_subscription(request, &settings, host),
        "POST" => {
            if let Some(secret) = &settings.app_secret {
                check_signature(request, secret, host)?;
            }
            parse_body(&request.body)
                .map(WebhookOutcome::Events)
                .map_err(WebhookError::Malformed)
        }
        other => {
            let mut e = Errors::new();
            e.add(
                "",
                "invalid_method",
                format!(
                    "webhooks are GET (verification) or POST (events), got {}",
                    excerpt(other)
                ),
            );
            Err(WebhookError::Malformed(e.into_vec()))
        }
    }
}

fn secret_unavailable(name: &str, err: SecretError) -> WebhookError {
    WebhookError::SecretUnavailable(match err {
        SecretError::NotFound => format!("the host has no secret named {}", quoted(name)),
        SecretError::Denied => format!("this plugin may not use the secret {}", quoted(name)),
    })
}

/// The subscription handshake: echo `hub.challenge` when mode and token match. A GET carries
/// no signature, so none is asked for.
fn verify_subscription(
    request: &WebhookRequest,
    settings: &Settings,
    host: &dyn Host,
) -> Result<WebhookOutcome, WebhookError> {
    let param = |k: &str| {
        request
            .query
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    if param("hub.mode") != Some("subscribe") {
        return Err(WebhookError::VerificationRefused(format!(
            "hub.mode must be \"subscribe\", got {}",
            quoted(param("hub.mode").unwrap_or(""))
        )));
    }
    let Some(challenge) = param("hub.challenge") else {
        return Err(WebhookError::VerificationRefused(
            "hub.challenge is missing".into(),
        ));
    };
    let token = param("hub.verify_token").unwrap_or("");
    match host.secret_equals(&settings.verify_token_secret, token) {
        Ok(true) => Ok(WebhookOutcome::Verification(challenge.to_string())),
        Ok(false) => Err(WebhookError::VerificationRefused(
            "hub.verify_token does not match the configured verify token".into(),
        )),
        Err(e) => Err(secret_unavailable(&settings.verify_token_secret, e)),
    }
}

fn check_signature(
    request: &WebhookRequest,
    secret: &str,
    host: &dyn Host,
) -> Result<(), WebhookError> {
    let header = request
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(SIGNATURE_HEADER));
    let Some(header) = header else {
        return Err(WebhookError::SignatureMissing);
    };
    let value = header.value.trim();
    let Some(hex) = value.strip_prefix("sha256=") else {
        return Err(WebhookError::SignatureInvalid(format!(
            "X-Hub-Signature-256 must be \"sha256=<64 hex digits>\", got {}",
            excerpt(value)
        )));
    };
    let Some(mac) = decode_hex(hex).filter(|m| m.len() == 32) else {
        return Err(WebhookError::SignatureInvalid(format!(
            "X-Hub-Signature-256 must carry 64 hex digits after \"sha256=\", got {} characters",
            hex.len()
        )));
    };
    match host.hmac_sha256_verify(secret, &request.body, &mac) {
        Ok(true) => Ok(()),
        Ok(false) => Err(WebhookError::SignatureInvalid(
            "the signature does not match the body (wrong app secret, or the body was changed)"
                .into(),
        )),
        Err(e) => Err(secret_unavailable(secret, e)),
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Parses a notification body into events, one per status, message, error or update.
pub fn parse_body(body: &[u8]) -> Result<Vec<WebhookEvent>, Vec<crate::FieldError>> {
    let mut errors = Errors::new();
    let doc: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            errors.add(
                "",
                "invalid_json",
                format!("the webhook body is not valid JSON: {e}"),
            );
            return Err(errors.into_vec());
        }
    };
    let Some(entries) = doc.get("entry").and_then(Value::as_array) else {
        errors.add(
            "/entry",
            "missing",
            "a WhatsApp notification has an `entry` array",
        );
        return Err(errors.into_vec());
    };
    let mut events = Vec::new();
    for entry in entries {
        // The WhatsApp Business Account: template and account webhooks have no phone number id.
        let waba_id = str_of(entry, "id").unwrap_or_default();
        for change in array(entry, "changes") {
            let field = change.get("field").and_then(Value::as_str).unwrap_or("");
            if let Some(value) = change.get("value") {
                // Every event names the account and the number it belongs to, so a host
                // serving many businesses routes each to its own (one delivery may carry
                // several WABAs, and a WABA several numbers).
                let sender_id = value
                    .pointer("/metadata/phone_number_id")
                    .and_then(Value::as_str)
                    .filter(|id| !id.is_empty());
                events.extend(
                    change_events(field, value, waba_id)
                        .into_iter()
                        .map(|mut e| {
                            e.account_id = Some(waba_id.to_string()).filter(|id| !id.is_empty());
                            e.sender_id = sender_id.map(str::to_string);
                            e
                        }),
                );
            }
        }
    }
    Ok(events)
}

/// Reads one change value (with the WABA id of its entry) into events.
type FieldReader = fn(&Value, &str) -> Vec<WebhookEvent>;

/// How one webhook `field` is read: the event table of `docs/webhooks.md` is generated from this.
pub struct FieldRule {
    pub field: &'static str,
    /// The event kinds it yields, as `docs/webhooks.md` shows them.
    pub kinds: &'static str,
    read: FieldReader,
    pub meaning: &'static str,
}

#[rustfmt::skip]
pub const FIELDS: &[FieldRule] = &[
    FieldRule { field: "messages", kinds: "`message-status`, `inbound-message`, `identity-change`, `channel-error`", read: messages_events, meaning: "statuses of our messages; customer messages (open the window); `user_changed_number` / `user_changed_user_id` system messages (old and new ids); errors not tied to a message" },
    FieldRule { field: "smb_message_echoes", kinds: "`handover`", read: |v, _| conversation::echo_events(v), meaning: "a person answered the customer from the WhatsApp Business app: the host pauses the flow" },
    FieldRule { field: "standby", kinds: "`handover`", read: |v, _| conversation::standby_events(v), meaning: "another handler (e.g. Meta's Business Agent) owns the thread; the customer's message still opens the window" },
    FieldRule { field: "calls", kinds: "`call`", read: |v, _| conversation::call_events(v), meaning: "call events; a call the customer placed opens the window" },
    FieldRule { field: "message_template_status_update", kinds: "`template-status`", read: |v, _| vec![template_status_event(v)], meaning: "approved, rejected, paused, disabled…" },
    FieldRule { field: "template_category_update", kinds: "`template-category-change`", read: |v, w| vec![platform::category_event(v, w)], meaning: "Meta re-categorised a template (or announces it): previous and new category; the host updates its catalog" },
    FieldRule { field: "message_template_quality_update", kinds: "`template-quality-change`", read: |v, w| vec![platform::quality_event(v, w)], meaning: "previous and new quality score" },
    FieldRule { field: "message_template_components_update", kinds: "`template-components-change`", read: |v, w| vec![platform::components_event(v, w)], meaning: "an approved template's text or buttons changed" },
    FieldRule { field: "account_update", kinds: "`account-update`", read: |v, w| vec![platform::account_event(v, w)], meaning: "violations, restrictions, bans (operator action) and other account changes" },
    FieldRule { field: "phone_number_quality_update", kinds: "`sender-quality-change`", read: |v, w| vec![platform::sender_quality_event(v, w)], meaning: "the number was flagged or its messaging limit or throughput changed" },
    FieldRule { field: "user_preferences", kinds: "`recipient-preference`", read: |v, _| array(v, "user_preferences").iter().map(|p| preference_event(p, v)).collect(), meaning: "the customer stopped or resumed marketing messages (`details.category: marketing`)" },
];

/// The events of one `entry[].changes[]` item, by its `field`; unknown fields are `other`.
fn change_events(field: &str, value: &Value, waba_id: &str) -> Vec<WebhookEvent> {
    match FIELDS.iter().find(|rule| rule.field == field) {
        Some(rule) => (rule.read)(value, waba_id),
        None => vec![other_event(field, value)],
    }
}

fn messages_events(value: &Value, _waba_id: &str) -> Vec<WebhookEvent> {
    let statuses = array(value, "statuses")
        .iter()
        .map(|s| status_event(s, value));
    let messages = array(value, "messages").iter().map(|m| {
        conversation::identity_change_event(m, value).unwrap_or_else(|| inbound_event(m, value))
    });
    let errors = array(value, "errors")
        .iter()
        .map(|e| channel_error_event(e, value));
    statuses.chain(messages).chain(errors).collect()
}

fn array<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Meta's timestamps are Unix seconds, as a string in `messages` and a number elsewhere.
fn timestamp_ms(v: &Value, key: &str) -> Option<u64> {
    let secs = match v.get(key)? {
        Value::String(s) => s.trim().parse::<u64>().ok()?,
        Value::Number(n) => n.as_u64()?,
        _ => return None,
    };
    secs.checked_mul(1000)
}

fn event(
    kind: EventKind,
    classification: Classification,
    dedupe_key: String,
    details: Value,
) -> WebhookEvent {
    WebhookEvent {
        kind,
        provider_message_id: classification.provider_message_id.clone(),
        recipient: None,
        correlation_id: None,
        occurred_at_ms: None,
        classification,
        precedence: 0,
        dedupe_key,
        service_window_ends_ms: None,
        details: details.to_string(),
        account_id: None,
        sender_id: None,
    }
}

/// Precedence of a status (see the module docs); 0 for anything unknown.
pub fn status_precedence(status: &str) -> u8 {
    match status {
        "sent" => 1,
        "failed" => 2,
        "delivered" => 3,
        "read" => 4,
        "played" => 5,
        _ => 0,
    }
}

/// Who a status or inbound message is about. Since June 2026 Meta leaves the phone number
/// out for customers with a username and no recent exchange, and always adds their
/// business-scoped user id: the event names the customer by phone when it has one (the host
/// needs it for SMS), else by BSUID, and its details carry every identifier present.
struct Customer {
    phone: Option<String>,
    user_id: Option<String>,
    parent_user_id: Option<String>,
    username: Option<String>,
}

impl Customer {
    /// From an event's own fields and the matching `contacts[]` entry of its change value.
    fn read(phone_field: Option<&str>, user_id_field: Option<&str>, value: &Value) -> Customer {
        let contacts = array(value, "contacts");
        let contact = contacts
            .iter()
            .find(|c| {
                phone_field.is_some_and(|p| str_of(c, "wa_id") == Some(p))
                    || user_id_field.is_some_and(|u| str_of(c, "user_id") == Some(u))
            })
            .or(if contacts.len() == 1 {
                contacts.first()
            } else {
                None
            });
        let from_contact = |key: &str| contact.and_then(|c| str_of(c, key)).map(str::to_string);
        Customer {
            phone: phone_field
                .filter(|p| !p.is_empty())
                .map(from_wa_id)
                .or_else(|| from_contact("wa_id").map(|w| from_wa_id(&w))),
            user_id: user_id_field
                .filter(|u| !u.is_empty())
                .map(str::to_string)
                .or_else(|| from_contact("user_id")),
            parent_user_id: from_contact("parent_user_id"),
            username: contact
                .and_then(|c| c.pointer("/profile/username").or_else(|| c.get("username")))
                .and_then(Value::as_str)
                .map(str::to_string),
        }
    }

    /// Phone first, BSUID otherwise.
    fn key(&self) -> Option<String> {
        self.phone.clone().or_else(|| self.user_id.clone())
    }

    fn insert_into(&self, details: &mut Map<String, Value>) {
        details.insert(
            "customer".into(),
            json!({"phone": self.phone, "user_id": self.user_id,
                "parent_user_id": self.parent_user_id, "username": self.username}),
        );
    }
}

/// Meta's `pricing` in one shape: `billable` (absent in v24+: derived as `type == "regular"`),
/// `category` (`marketing`, `marketing_lite`, `utility`, `authentication`, `service`,
/// `group_*`, `general_purpose_ai`, … passed through lower-cased), `type` (also sent as
/// `pricing_type`) and `model`.
fn normalised_pricing(p: &Value) -> Value {
    let kind = str_of(p, "type").or_else(|| str_of(p, "pricing_type"));
    let billable = p
        .get("billable")
        .and_then(Value::as_bool)
        .or_else(|| kind.map(|t| t.eq_ignore_ascii_case("regular")));
    json!({
        "billable": billable,
        "category": str_of(p, "category").map(str::to_ascii_lowercase),
        "type": kind.map(str::to_ascii_lowercase),
        "model": str_of(p, "pricing_model"),
    })
}

fn status_event(s: &Value, value: &Value) -> WebhookEvent {
    let id = str_of(s, "id").unwrap_or_default();
    let status = str_of(s, "status").unwrap_or_default();
    let mut c = match status {
        "sent" => Classification::new(Disposition::Sent, "sent"),
        "delivered" => Classification::new(Disposition::Delivered, "delivered"),
        "read" => Classification::new(Disposition::Read, "read"),
        "played" => Classification::new(Disposition::Read, "played"),
        "failed" => match s.get("errors").and_then(|e| e.get(0)) {
            Some(err) => classify_error(&ProviderError::from_json(err), None, 1),
            // Failed without a reason: the recipient was not reached; nobody can fix that.
            None => Classification::new(Disposition::Fallback, "unknown_error"),
        },
        _ => Classification::new(Disposition::Unknown, "unknown_status"),
    };
    c.provider_message_id = Some(id.to_string());
    let mut details = Map::new();
    details.insert("status".into(), json!(status));
    for key in [
        "conversation",
        "pricing",
        "errors",
        "recipient_type",
        "recipient_participant_id",
    ] {
        if let Some(v) = s.get(key) {
            details.insert(key.into(), v.clone());
        }
    }
    if let Some(p) = s.get("pricing") {
        details.insert("cost".into(), normalised_pricing(p));
    }
    let customer = Customer::read(
        str_of(s, "recipient_id"),
        str_of(s, "recipient_user_id"),
        value,
    );
    customer.insert_into(&mut details);
    let mut e = event(
        EventKind::MessageStatus,
        c,
        format!("status:{id}:{status}"),
        Value::Object(details),
    );
    e.recipient = customer.key();
    e.correlation_id = str_of(s, "biz_opaque_callback_data").map(str::to_string);
    e.occurred_at_ms = timestamp_ms(s, "timestamp");
    e.precedence = status_precedence(status);
    e
}

fn inbound_event(m: &Value, value: &Value) -> WebhookEvent {
    let id = str_of(m, "id").unwrap_or_default();
    let kind = str_of(m, "type").unwrap_or_default();
    let mut details = Map::new();
    details.insert("type".into(), json!(kind));
    match kind {
        "text" => {
            details.insert("text".into(), json!(m.pointer("/text/body")));
        }
        // A template's quick-reply button: its payload is what the flow branches on.
        "button" => {
            details.insert("button_payload".into(), json!(m.pointer("/button/payload")));
            details.insert("button_text".into(), json!(m.pointer("/button/text")));
        }
        "interactive" => {
            // The customer's answer to a call-permission request (accept/reject, permanent?).
            if let Some(answer) = m.pointer("/interactive/call_permission_reply") {
                details.insert("call_permission".into(), answer.clone());
            }
            let reply = m
                .pointer("/interactive/button_reply")
                .or_else(|| m.pointer("/interactive/list_reply"));
            details.insert("reply_id".into(), json!(reply.and_then(|r| r.get("id"))));
            details.insert(
                "reply_title".into(),
                json!(reply.and_then(|r| r.get("title"))),
            );
        }
        _ => {
            if let Some(v) = m.get(kind) {
                details.insert(kind.to_string(), v.clone());
            }
        }
    }
    if let Some(ctx) = m.pointer("/context/id") {
        details.insert("context_message_id".into(), ctx.clone());
    }
    if let Some(name) = array(value, "contacts")
        .first()
        .and_then(|c| c.pointer("/profile/name"))
    {
        details.insert("profile_name".into(), name.clone());
    }
    let mut c = match m.get("errors").and_then(|e| e.get(0)) {
        Some(err) => {
            let mut c = classify_error(&ProviderError::from_json(err), None, 1);
            c.disposition = Disposition::Accepted;
            c
        }
        None => Classification::new(Disposition::Accepted, "inbound_message"),
    };
    c.provider_message_id = Some(id.to_string());
    let customer = Customer::read(str_of(m, "from"), str_of(m, "from_user_id"), value);
    customer.insert_into(&mut details);
    let mut e = event(
        EventKind::InboundMessage,
        c,
        format!("inbound:{id}"),
        Value::Object(details),
    );
    e.recipient = customer.key();
    e.occurred_at_ms = timestamp_ms(m, "timestamp");
    e.service_window_ends_ms = e.occurred_at_ms.map(|t| t + SERVICE_WINDOW_MS);
    e
}

fn channel_error_event(err: &Value, value: &Value) -> WebhookEvent {
    let c = classify_error(&ProviderError::from_json(err), None, 1);
    let phone = value
        .pointer("/metadata/phone_number_id")
        .and_then(Value::as_str)
        .unwrap_or("");
    let key = format!(
        "error:{phone}:{}:{}",
        c.provider_code.clone().unwrap_or_default(),
        str_of(err, "message").unwrap_or("")
    );
    event(
        EventKind::ChannelError,
        c,
        key,
        json!({ "error": err, "phone_number_id": phone }),
    )
}

fn template_status_event(value: &Value) -> WebhookEvent {
    let status = str_of(value, "event").unwrap_or_default();
    let mut c = match status {
        "APPROVED" | "REINSTATED" => {
            Classification::new(Disposition::Accepted, "template_approved")
        }
        "PAUSED" => Classification::new(Disposition::Fallback, "template_paused"),
        "PENDING" | "IN_APPEAL" => Classification::new(Disposition::Unknown, "template_pending"),
        _ => {
            let mut c = Classification::new(Disposition::Failed, "template_error");
            c.operator_action = true;
            c
        }
    };
    c.provider_details = str_of(value, "reason").map(str::to_string);
    let id = value
        .get("message_template_id")
        .map(|v| v.to_string())
        .unwrap_or_default();
    let mut details = Map::new();
    for key in [
        "event",
        "message_template_id",
        "message_template_name",
        "message_template_language",
        "message_template_category",
        "reason",
        "rejection_info",
    ] {
        if let Some(v) = value.get(key) {
            details.insert(key.into(), v.clone());
        }
    }
    // Webhooks report languages as `en-US`; sends use `en_US`.
    if let Some(lang) = str_of(value, "message_template_language") {
        details.insert("language_code".into(), json!(lang.replace('-', "_")));
    }
    event(
        EventKind::TemplateStatus,
        c,
        format!("template:{id}:{status}"),
        Value::Object(details),
    )
}

fn preference_event(p: &Value, change: &Value) -> WebhookEvent {
    let value = str_of(p, "value").unwrap_or_default();
    let c = match value {
        "stop" => Classification::new(Disposition::Fallback, "recipient_opted_out"),
        _ => Classification::new(Disposition::Accepted, "recipient_opted_in"),
    };
    let wa_id = str_of(p, "wa_id").unwrap_or_default();
    // The kind of message the customer stopped or resumed, in the contract's words
    // (`marketing` for Meta's `marketing_messages`); Meta's own value stays alongside.
    let mut details = p.as_object().cloned().unwrap_or_default();
    if let Some(provider) = str_of(p, "category") {
        let category = provider.strip_suffix("_messages").unwrap_or(provider);
        details.insert("provider_category".into(), json!(provider));
        details.insert("category".into(), json!(category));
    }
    let mut e = event(
        EventKind::RecipientPreference,
        c,
        format!(
            "preference:{wa_id}:{}:{value}:{}",
            str_of(p, "category").unwrap_or(""),
            p.get("timestamp")
                .map(|t| t.to_string())
                .unwrap_or_default()
        ),
        Value::Object(details),
    );
    // By phone, or by BSUID for a customer Meta names only that way.
    let customer = Customer::read(str_of(p, "wa_id"), str_of(p, "user_id"), change);
    e.recipient = customer.key();
    e.occurred_at_ms = timestamp_ms(p, "timestamp");
    e
}

fn other_event(field: &str, value: &Value) -> WebhookEvent {
    event(
        EventKind::Other,
        Classification::new(Disposition::Unknown, "other_event"),
        format!("other:{field}:{value}"),
        json!({ "field": field, "value": value }),
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{Header, HttpRequest, HttpResponse, LogLevel, TransportError};
    use hmac::{Hmac, Mac};

    /// A real host for native tests: HMAC-SHA256 with a known secret, exact comparisons.
    pub struct TestHost {
        pub app_secret: Option<&'static str>,
        pub verify_token: &'static str,
    }

    impl Host for TestHost {
        fn http_send(&self, _: &HttpRequest) -> Result<HttpResponse, TransportError> {
            unreachable!("webhook parsing never sends")
        }
        fn hmac_sha256_verify(
            &self,
            _: &str,
            data: &[u8],
            mac: &[u8],
        ) -> Result<bool, SecretError> {
            let secret = self.app_secret.ok_or(SecretError::NotFound)?;
            let mut m = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
            m.update(data);
            Ok(m.verify_slice(mac).is_ok())
        }
        fn signature_verify(
            &self,
            algorithm: channel_sdk::SignatureAlgorithm,
            secret: &str,
            data: &[u8],
            signature: &[u8],
        ) -> Result<bool, SecretError> {
            assert_eq!(algorithm, channel_sdk::SignatureAlgorithm::HmacSha256);
            self.hmac_sha256_verify(secret, data, signature)
        }
        fn secret_equals(&self, _: &str, candidate: &str) -> Result<bool, SecretError> {
            Ok(candidate == self.verify_token)
        }
        fn log(&self, _: LogLevel, _: &str) {}
    }

    pub fn sign(secret: &str, body: &[u8]) -> String {
        let mut m = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        m.update(body);
        let bytes = m.finalize().into_bytes();
        format!(
            "sha256={}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    }

    const HOST: TestHost = TestHost {
        app_secret: Some("s3cret"),
        verify_token: "tok",
    };

    fn post(body: &[u8], signature: Option<String>) -> WebhookRequest {
        WebhookRequest {
            method: "POST".into(),
            url: None,
            headers: signature
                .map(|s| Header {
                    name: "X-Hub-Signature-256".into(),
                    value: s,
                })
                .into_iter()
                .collect(),
            query: vec![],
            body: body.to_vec(),
        }
    }

    fn cfg() -> ChannelConfig {
        ChannelConfig {
            api_base: None,
            settings: "{}".into(),
        }
    }

    fn events(body: &str) -> Vec<WebhookEvent> {
        parse_body(body.as_bytes()).unwrap()
    }

    #[test]
    fn verification_echoes_the_challenge_only_for_the_right_token() {
        let get = |token: &str| WebhookRequest {
            method: "GET".into(),
            url: None,
            headers: vec![],
            query: vec![
                ("hub.mode".into(), "subscribe".into()),
                ("hub.challenge".into(), "1158201444".into()),
                ("hub.verify_token".into(), token.into()),
            ],
            body: vec![],
        };
        assert_eq!(
            parse(&get("tok"), &cfg(), &HOST),
            Ok(WebhookOutcome::Verification("1158201444".into()))
        );
        assert!(matches!(
            parse(&get("nope"), &cfg(), &HOST),
            Err(WebhookError::VerificationRefused(_))
        ));
    }

    #[test]
    fn signatures_are_required_and_checked_over_raw_bytes() {
        let body = include_bytes!("../../tests/fixtures/webhook-status-failed-131049.json");
        assert!(matches!(
            parse(&post(body, Some(sign("s3cret", body))), &cfg(), &HOST),
            Ok(WebhookOutcome::Events(_))
        ));
        assert_eq!(
            parse(&post(body, None), &cfg(), &HOST),
            Err(WebhookError::SignatureMissing)
        );
        assert!(matches!(
            parse(&post(body, Some(sign("wrong", body))), &cfg(), &HOST),
            Err(WebhookError::SignatureInvalid(_))
        ));
        assert!(matches!(
            parse(&post(body, Some("sha256=zz".into())), &cfg(), &HOST),
            Err(WebhookError::SignatureInvalid(_))
        ));
        let mut tampered = body.to_vec();
        tampered[10] ^= 1;
        assert!(matches!(
            parse(&post(&tampered, Some(sign("s3cret", body))), &cfg(), &HOST),
            Err(WebhookError::SignatureInvalid(_))
        ));
        // Explicitly switched off: no signature needed.
        let off = ChannelConfig {
            api_base: None,
            settings: r#"{"app_secret":null}"#.into(),
        };
        assert!(parse(&post(body, None), &off, &HOST).is_ok());
    }

    #[test]
    fn failed_status_is_classified_by_its_code() {
        let e = &events(include_str!(
            "../../tests/fixtures/webhook-status-failed-131049.json"
        ))[0];
        assert_eq!(e.kind, EventKind::MessageStatus);
        assert_eq!(e.classification.disposition, Disposition::Fallback);
        assert_eq!(e.classification.provider_code.as_deref(), Some("131049"));
        assert_eq!(e.classification.retry_after_ms, Some(24 * 3600 * 1000));
        assert_eq!(e.recipient.as_deref(), Some("+16505551234"));
        assert_eq!(e.occurred_at_ms, Some(1_751_142_888_000));
        assert_eq!(e.precedence, 2);
    }

    #[test]
    fn sent_status_samples() {
        for sample in [
            include_str!(
                "../../tests/fixtures/webhook-status-sent-marketing-pmp-with-conversation.json"
            ),
            include_str!("../../tests/fixtures/webhook-status-sent-v24-no-conversation.json"),
        ] {
            let e = &events(sample)[0];
            assert_eq!(
                (e.classification.disposition, e.precedence),
                (Disposition::Sent, 1)
            );
            assert_eq!(
                e.provider_message_id.as_deref(),
                Some("wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA=")
            );
        }
    }

    #[test]
    fn delivered_outranks_a_later_failed() {
        assert!(status_precedence("delivered") > status_precedence("failed"));
        assert!(status_precedence("failed") > status_precedence("sent"));
        assert!(status_precedence("read") > status_precedence("delivered"));
    }

    #[test]
    fn inbound_message_opens_the_window() {
        let e = &events(include_str!(
            "../../tests/fixtures/webhook-inbound-text-basic.json"
        ))[0];
        assert_eq!(e.kind, EventKind::InboundMessage);
        assert_eq!(
            e.service_window_ends_ms,
            Some(1_749_416_383_000 + SERVICE_WINDOW_MS)
        );
        let button = &events(include_str!(
            "../../tests/fixtures/webhook-inbound-template-quick-reply-button.json"
        ))[0];
        assert!(
            button
                .details
                .contains("\"button_payload\":\"Unsubscribe\"")
        );
    }

    #[test]
    fn the_docs_event_table_matches_the_code() {
        let mut table =
            String::from("| webhook field | event kinds | what it means |\n|---|---|---|\n");
        for rule in FIELDS {
            table.push_str(&format!(
                "| `{}` | {} | {} |\n",
                rule.field, rule.kinds, rule.meaning
            ));
        }
        table.push_str(
            "| any other field | `other` | passed through in `details` (`other_event`) |\n",
        );
        assert!(
            include_str!("../../docs/webhooks.md").contains(&table),
            "docs/webhooks.md's event table is stale; replace it with:\n{table}"
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse_body(b"\xff\xfe").is_err());
        assert!(parse_body(b"[]").is_err());
        assert_eq!(
            parse_body(
                br#"{"entry":[{"changes":[{"field":"messages","value":{"statuses":[{}]}}]}]}"#
            )
            .unwrap()
            .len(),
            1
        );
    }
}
