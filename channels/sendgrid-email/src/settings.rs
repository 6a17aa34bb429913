//! The channel's settings (`channel-config.settings`), checked into [`Settings`].
//!
//! ```json
//! {"from": {"email": "orders@example.com", "name": "Example Shop"},
//!  "reply_to": "help@example.com", "event_max_age_s": 600}
//! ```
//!
//! The API key and the Event Webhook's verification key are host secrets the settings name
//! (`email/api-key`, `email/webhook-public-key` by default); the plugin never holds them.

use crate::address;
use channel_sdk::FieldError;
use serde_json::{Map, Value};

/// SendGrid's API.
pub const DEFAULT_API_BASE: &str = "https://api.sendgrid.com";
pub const DEFAULT_API_KEY_SECRET: &str = "email/api-key";
pub const DEFAULT_PUBLIC_KEY_SECRET: &str = "email/webhook-public-key";
/// How old an Event Webhook delivery may be (its signed timestamp), by default: SendGrid
/// retries for up to 72 hours, but a replayed old delivery must not pass.
pub const DEFAULT_EVENT_MAX_AGE_S: u64 = 600;

/// A sender or reply-to: an address and an optional display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub email: String,
    pub name: Option<String>,
}

impl Mailbox {
    pub fn json(&self) -> Value {
        let mut m = serde_json::json!({"email": self.email});
        if let Some(n) = &self.name {
            m["name"] = Value::String(n.clone());
        }
        m
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub from: Mailbox,
    pub reply_to: Option<Mailbox>,
    pub api_key_secret: String,
    pub public_key_secret: String,
    pub event_max_age_s: u64,
}

pub(crate) fn field(path: &str, code: &str, message: String) -> FieldError {
    FieldError {
        path: path.into(),
        code: code.into(),
        message,
    }
}

/// A mailbox given as `"a@b.c"` or `{"email": "a@b.c", "name": "…"}`.
pub(crate) fn mailbox(v: &Value, path: &str, errors: &mut Vec<FieldError>) -> Option<Mailbox> {
    let (email, name) = match v {
        Value::String(s) => (s.clone(), None),
        Value::Object(o) => (
            o.get("email")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            o.get("name").and_then(Value::as_str).map(str::to_string),
        ),
        other => {
            errors.push(field(
                path,
                "expected_mailbox",
                format!("must be an address or {{\"email\", \"name\"}}, got {other}"),
            ));
            return None;
        }
    };
    match address::check(&email) {
        Ok(()) => Some(Mailbox { email, name }),
        Err(why) => {
            errors.push(field(path, "invalid_address", why));
            None
        }
    }
}

fn secret_name(
    map: &Map<String, Value>,
    key: &str,
    default: &str,
    errors: &mut Vec<FieldError>,
) -> String {
    match map.get(key) {
        None => default.into(),
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(other) => {
            errors.push(field(
                &format!("/{key}"),
                "expected_secret_name",
                format!("must name a host secret, got {other}"),
            ));
            String::new()
        }
    }
}

impl Settings {
    pub fn parse(text: &str) -> Result<Settings, Vec<FieldError>> {
        let map = channel_sdk::settings_object(text, "email")?;
        let mut errors = Vec::new();
        let from = match map.get("from") {
            Some(v) => mailbox(v, "/from", &mut errors),
            None => {
                errors.push(field(
                    "/from",
                    "required",
                    "from (the sender's address) is required".into(),
                ));
                None
            }
        };
        let reply_to = map
            .get("reply_to")
            .filter(|v| !v.is_null())
            .and_then(|v| mailbox(v, "/reply_to", &mut errors));
        let api_key_secret =
            secret_name(&map, "api_key_secret", DEFAULT_API_KEY_SECRET, &mut errors);
        let public_key_secret = secret_name(
            &map,
            "webhook_public_key_secret",
            DEFAULT_PUBLIC_KEY_SECRET,
            &mut errors,
        );
        let event_max_age_s = match map.get("event_max_age_s") {
            None => DEFAULT_EVENT_MAX_AGE_S,
            Some(v) => match v.as_u64().filter(|s| (1..=259_200).contains(s)) {
                Some(s) => s,
                None => {
                    errors.push(field(
                        "/event_max_age_s",
                        "out_of_range",
                        format!("must be whole seconds between 1 and 259200 (72 h), got {v}"),
                    ));
                    0
                }
            },
        };
        match from {
            Some(from) if errors.is_empty() => Ok(Settings {
                from,
                reply_to,
                api_key_secret,
                public_key_secret,
                event_max_age_s,
            }),
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sender_and_the_default_secrets() {
        let s = Settings::parse(r#"{"from": {"email": "orders@example.com", "name": "Shop"}}"#)
            .unwrap();
        assert_eq!(s.from.name.as_deref(), Some("Shop"));
        assert_eq!(s.api_key_secret, "email/api-key");
        assert_eq!(s.public_key_secret, "email/webhook-public-key");
        assert_eq!(s.event_max_age_s, 600);
    }

    #[test]
    fn every_problem_at_its_pointer() {
        let errors = Settings::parse(r#"{"from": "nope", "reply_to": 3, "event_max_age_s": 0}"#)
            .unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["/from", "/reply_to", "/event_max_age_s"]);
        assert_eq!(Settings::parse("{}").unwrap_err()[0].code, "required");
    }
}
