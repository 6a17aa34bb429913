//! The channel's settings (`channel-config.settings`), read once per call into [`Settings`],
//! every problem a field error at its JSON pointer.
//!
//! ```json
//! {"account_sid": "AC…", "from": "+15005550006",
//!  "status_callback": "https://hooks.example.com/webhooks/sms"}
//! ```
//!
//! The account SID is an identifier, not a secret (Twilio puts it in every callback), and it
//! is part of the request path, so the settings carry it; the credentials are host secrets the
//! channel names: HTTP Basic over `username_secret` and `auth_token_secret` (an API key's SID
//! and secret fit the same two names), and the auth token also keys the callbacks' signature.

use channel_sdk::FieldError;
use serde_json::{Map, Value};

/// Twilio's API.
pub const DEFAULT_API_BASE: &str = "https://api.twilio.com";
/// The secret holding the Basic user name (the account SID, or an API key SID).
pub const DEFAULT_USERNAME_SECRET: &str = "sms/account-sid";
/// The secret holding the auth token: the Basic password and the callbacks' signing key.
pub const DEFAULT_AUTH_TOKEN_SECRET: &str = "sms/auth-token";

/// Where a message is sent from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender {
    /// A number, short code or alphanumeric sender id (`From`).
    From(String),
    /// A Messaging Service, which picks the number (`MessagingServiceSid`).
    MessagingService(String),
}

/// The settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub account_sid: String,
    pub sender: Sender,
    pub username_secret: String,
    pub auth_token_secret: String,
    /// The host's webhook URL for this channel; statuses come back there.
    pub status_callback: Option<String>,
}

fn field(path: &str, code: &str, message: String) -> FieldError {
    FieldError {
        path: path.into(),
        code: code.into(),
        message,
    }
}

/// A Twilio SID: two letters then 32 hex digits.
pub fn is_sid(value: &str, prefix: &str) -> bool {
    value.len() == 34
        && value.starts_with(prefix)
        && value[2..].chars().all(|c| c.is_ascii_hexdigit())
}

impl Settings {
    /// Reads the settings JSON; every problem at once.
    pub fn parse(text: &str) -> Result<Settings, Vec<FieldError>> {
        let map = channel_sdk::settings_object(text, "SMS")?;
        let mut errors = Vec::new();
        let account_sid = text_at(&map, "account_sid", &mut errors).unwrap_or_default();
        if !account_sid.is_empty() && !is_sid(&account_sid, "AC") {
            errors.push(field(
                "/account_sid",
                "invalid_sid",
                format!("must be \"AC\" and 32 hex digits, got {account_sid:?}"),
            ));
        }
        let sender = sender(&map, &mut errors);
        let secret = |key: &str, default: &str, errors: &mut Vec<FieldError>| match map.get(key) {
            None => default.to_string(),
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(other) => {
                errors.push(field(
                    &format!("/{key}"),
                    "expected_secret_name",
                    format!("must name a host secret, got {other}"),
                ));
                String::new()
            }
        };
        let username_secret = secret("username_secret", DEFAULT_USERNAME_SECRET, &mut errors);
        let auth_token_secret = secret("auth_token_secret", DEFAULT_AUTH_TOKEN_SECRET, &mut errors);
        let status_callback = status_callback(&map, &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Settings {
            account_sid,
            sender: sender.expect("no errors: a sender"),
            username_secret,
            auth_token_secret,
            status_callback,
        })
    }
}

/// A required non-empty string.
fn text_at(map: &Map<String, Value>, key: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    match map.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        None => {
            errors.push(field(
                &format!("/{key}"),
                "required",
                format!("{key} is required"),
            ));
            None
        }
        Some(other) => {
            errors.push(field(
                &format!("/{key}"),
                "expected_string",
                format!("must be a non-empty string, got {other}"),
            ));
            None
        }
    }
}

/// Exactly one of `from` and `messaging_service_sid`.
fn sender(map: &Map<String, Value>, errors: &mut Vec<FieldError>) -> Option<Sender> {
    match (map.get("from"), map.get("messaging_service_sid")) {
        (Some(_), Some(_)) => {
            errors.push(field(
                "/messaging_service_sid",
                "conflicting_sender",
                "name either from or messaging_service_sid, not both".into(),
            ));
            None
        }
        (None, None) => {
            errors.push(field(
                "/from",
                "required",
                "from (a number, short code or sender id) or messaging_service_sid is required"
                    .into(),
            ));
            None
        }
        (Some(_), None) => {
            let from = text_at(map, "from", errors)?;
            if from.chars().count() > 32 || from.chars().any(char::is_control) {
                errors.push(field(
                    "/from",
                    "invalid_sender",
                    format!("must be a number, short code or sender id of at most 32 characters, got {from:?}"),
                ));
                return None;
            }
            Some(Sender::From(from))
        }
        (None, Some(_)) => {
            let sid = text_at(map, "messaging_service_sid", errors)?;
            if !is_sid(&sid, "MG") {
                errors.push(field(
                    "/messaging_service_sid",
                    "invalid_sid",
                    format!("must be \"MG\" and 32 hex digits, got {sid:?}"),
                ));
                return None;
            }
            Some(Sender::MessagingService(sid))
        }
    }
}

/// An absolute http(s) URL without a fragment, if given.
fn status_callback(map: &Map<String, Value>, errors: &mut Vec<FieldError>) -> Option<String> {
    let url = match map.get("status_callback") {
        None | Some(Value::Null) => return None,
        Some(Value::String(url)) => url,
        Some(other) => {
            errors.push(field(
                "/status_callback",
                "expected_string",
                format!("must be a URL, got {other}"),
            ));
            return None;
        }
    };
    let ok = (url.starts_with("https://") || url.starts_with("http://"))
        && !url.contains('#')
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
        && url.len() <= 2_048;
    if !ok {
        errors.push(field(
            "/status_callback",
            "invalid_url",
            format!("must be an absolute http(s) URL without a fragment, at most 2048 bytes, got {url:?}"),
        ));
        return None;
    }
    Some(url.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "AC0123456789abcdef0123456789abcdef";

    #[test]
    fn a_number_and_the_default_secrets() {
        let s = Settings::parse(&format!(
            r#"{{"account_sid":"{SID}","from":"+15005550006"}}"#
        ))
        .unwrap();
        assert_eq!(s.sender, Sender::From("+15005550006".into()));
        assert_eq!(s.username_secret, DEFAULT_USERNAME_SECRET);
        assert_eq!(s.auth_token_secret, DEFAULT_AUTH_TOKEN_SECRET);
        assert_eq!(s.status_callback, None);
    }

    #[test]
    fn a_messaging_service_instead_of_a_number() {
        let text = format!(
            r#"{{"account_sid":"{SID}","messaging_service_sid":"MG0123456789abcdef0123456789abcdef","status_callback":"https://h.example/webhooks/sms"}}"#
        );
        let s = Settings::parse(&text).unwrap();
        assert!(matches!(s.sender, Sender::MessagingService(_)));
        assert_eq!(
            s.status_callback.as_deref(),
            Some("https://h.example/webhooks/sms")
        );
    }

    #[test]
    fn every_problem_at_its_pointer() {
        let errors = Settings::parse(
            r#"{"account_sid":"AC12","from":"+1","messaging_service_sid":"MG1","status_callback":"ftp://x","auth_token_secret":3}"#,
        )
        .unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/account_sid",
                "/messaging_service_sid",
                "/auth_token_secret",
                "/status_callback"
            ]
        );
        assert!(errors[0].message.contains("AC12"), "{}", errors[0].message);
        let errors = Settings::parse("[]").unwrap_err();
        assert_eq!(errors[0].code, "expected_object");
        let errors = Settings::parse("{").unwrap_err();
        assert_eq!(errors[0].code, "invalid_json");
        let errors = Settings::parse("{}").unwrap_err();
        assert_eq!(errors.len(), 2);
    }
}
