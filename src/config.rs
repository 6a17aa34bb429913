//! The WhatsApp channel's settings (`channel-config.settings`).

use crate::catalog::Catalog;
use crate::field_errors::{Errors, Fields, parse_json, quoted};
use crate::{ChannelConfig, FieldError};

/// Meta's Graph API host.
pub const DEFAULT_API_BASE: &str = "https://graph.facebook.com";
/// The Graph API version used when the settings do not pin one.
pub const DEFAULT_API_VERSION: &str = crate::graph_versions::NEWEST;
/// Default host secret names.
pub const DEFAULT_ACCESS_TOKEN_SECRET: &str = "whatsapp/access-token";
pub const DEFAULT_APP_SECRET: &str = "whatsapp/app-secret";
pub const DEFAULT_VERIFY_TOKEN_SECRET: &str = "whatsapp/verify-token";
/// The app secret again, as the credential the code exchange sends to Meta (a secret that
/// verifies webhooks never leaves the host, so the same value is granted under a second name).
pub const DEFAULT_OAUTH_CLIENT_SECRET: &str = "whatsapp/oauth-client-secret";

/// Parsed settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Base URL without a trailing slash.
    pub api_base: String,
    /// The business phone number's id (not the phone number).
    pub phone_number_id: Option<String>,
    /// Graph API version, `vNN.N`.
    pub api_version: String,
    /// Host secret holding the access token.
    pub access_token_secret: String,
    /// Host secret holding the app secret that signs webhooks; `None` turns signature checks
    /// off, which only a development setup should do.
    pub app_secret: Option<String>,
    /// Host secret holding the webhook verify token.
    pub verify_token_secret: String,
    /// Approved templates for the send-time check (empty: not checked).
    pub catalog: Catalog,
    /// Send MARKETING templates through the Marketing Messages API
    /// (`/{phone-number-id}/marketing_messages`) instead of `/messages`.
    pub marketing_messages_api: bool,
    /// The Meta app's id, for exchanging Embedded Signup codes.
    pub app_id: Option<String>,
    /// Host secret holding the app secret as the code exchange's `client_secret`.
    pub oauth_client_secret: String,
}

const KNOWN: &[&str] = &[
    "phone_number_id",
    "api_version",
    "access_token_secret",
    "app_secret",
    "verify_token_secret",
    "templates",
    "marketing_messages_api",
    "app_id",
    "oauth_client_secret",
];

impl Settings {
    /// Reads the settings; `phone_number_id` is checked only by the operations that need it.
    pub fn parse(config: &ChannelConfig) -> Result<Settings, Vec<FieldError>> {
        let mut errors = Errors::new();
        let text = if config.settings.trim().is_empty() {
            "{}"
        } else {
            config.settings.as_str()
        };
        let doc = parse_json(text, "channel settings")?;
        let Some(f) = Fields::of(&doc, "/settings", "channel settings", &mut errors) else {
            return Err(errors.into_vec());
        };
        f.reject_unknown(KNOWN, &mut errors);

        let api_base = match config.api_base.as_deref().map(str::trim) {
            None | Some("") => DEFAULT_API_BASE.to_string(),
            Some(base) => {
                if !(base.starts_with("https://") || base.starts_with("http://")) {
                    errors.add(
                        "/api_base",
                        "invalid_url",
                        format!(
                            "api-base must start with https:// or http://, got {}",
                            quoted(base)
                        ),
                    );
                }
                base.trim_end_matches('/').to_string()
            }
        };

        let phone_number_id = f
            .text("phone_number_id", false, &mut errors)
            .map(str::to_string);
        if let Some(id) = &phone_number_id
            && !id.chars().all(|c| c.is_ascii_digit())
        {
            errors.add(
                "/settings/phone_number_id",
                "invalid_format",
                format!(
                    "phone_number_id is the numeric id of the business phone number (not the number itself), got {}",
                    quoted(id)
                ),
            );
        }

        let api_version = f
            .text("api_version", false, &mut errors)
            .unwrap_or(DEFAULT_API_VERSION)
            .to_string();
        if !is_api_version(&api_version) {
            errors.add(
                "/settings/api_version",
                "invalid_format",
                format!(
                    "api_version must look like \"v26.0\", got {}",
                    quoted(&api_version)
                ),
            );
        }

        let secret_name = |key: &str, default: &str, errors: &mut Errors| -> String {
            f.text(key, false, errors).unwrap_or(default).to_string()
        };
        let access_token_secret = secret_name(
            "access_token_secret",
            DEFAULT_ACCESS_TOKEN_SECRET,
            &mut errors,
        );
        let verify_token_secret = secret_name(
            "verify_token_secret",
            DEFAULT_VERIFY_TOKEN_SECRET,
            &mut errors,
        );
        // `app_secret` is on by default; only an explicit `null` turns signature checks off.
        let app_secret = match f.obj.get("app_secret") {
            None => Some(DEFAULT_APP_SECRET.to_string()),
            Some(serde_json::Value::Null) => None,
            Some(_) => f.text("app_secret", false, &mut errors).map(str::to_string),
        };

        let app_id = f.text("app_id", false, &mut errors).map(str::to_string);
        if let Some(id) = &app_id
            && !id.chars().all(|c| c.is_ascii_digit())
        {
            errors.add(
                "/settings/app_id",
                "invalid_format",
                format!("app_id is the Meta app's numeric id, got {}", quoted(id)),
            );
        }
        let oauth_client_secret = secret_name(
            "oauth_client_secret",
            DEFAULT_OAUTH_CLIENT_SECRET,
            &mut errors,
        );

        let mut catalog = Catalog::default();
        if let Some(templates) = f.get("templates") {
            catalog.apply(templates, "/settings/templates", &mut errors);
        }
        let marketing_messages_api = f
            .bool("marketing_messages_api", &mut errors)
            .unwrap_or(false);

        errors.finish(Settings {
            api_base,
            phone_number_id,
            api_version,
            access_token_secret,
            app_secret,
            verify_token_secret,
            catalog,
            marketing_messages_api,
            app_id,
            oauth_client_secret,
        })
    }

    /// The endpoint for a message: `/marketing_messages` for a MARKETING template when the
    /// Marketing Messages API is on, `/messages` otherwise.
    pub fn endpoint_url(&self, template_category: Option<&str>) -> Result<String, Vec<FieldError>> {
        let url = self.messages_url()?;
        if self.marketing_messages_api && template_category == Some("MARKETING") {
            let base = url.strip_suffix("/messages").unwrap_or(&url);
            return Ok(format!("{base}/marketing_messages"));
        }
        Ok(url)
    }

    /// A Graph API URL for `path` (no leading slash) in the configured version.
    pub fn graph_url(&self, path: &str) -> String {
        format!("{}/{}/{path}", self.api_base, self.api_version)
    }

    /// The messages endpoint, once a phone number id is configured.
    pub fn messages_url(&self) -> Result<String, Vec<FieldError>> {
        match &self.phone_number_id {
            Some(id) => Ok(format!("{}/{}/{}/messages", self.api_base, self.api_version, id)),
            None => Err(vec![FieldError {
                path: "/settings/phone_number_id".into(),
                code: "missing".into(),
                message: "channel settings need `phone_number_id` (the business phone number's id) to send".into(),
            }]),
        }
    }
}

fn is_api_version(v: &str) -> bool {
    let Some(rest) = v.strip_prefix('v') else {
        return false;
    };
    let mut parts = rest.split('.');
    let (Some(major), Some(minor), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    !major.is_empty()
        && !minor.is_empty()
        && major.chars().all(|c| c.is_ascii_digit())
        && minor.chars().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(settings: &str) -> ChannelConfig {
        ChannelConfig {
            api_base: None,
            settings: settings.into(),
        }
    }

    #[test]
    fn defaults_apply() {
        let s = Settings::parse(&cfg(r#"{"phone_number_id":"106540352242922"}"#)).unwrap();
        assert_eq!(s.api_version, "v26.0");
        assert_eq!(s.app_secret.as_deref(), Some("whatsapp/app-secret"));
        assert_eq!(
            s.messages_url().unwrap(),
            "https://graph.facebook.com/v26.0/106540352242922/messages"
        );
    }

    #[test]
    fn explicit_null_disables_signature_secret() {
        let s = Settings::parse(&cfg(r#"{"app_secret":null}"#)).unwrap();
        assert_eq!(s.app_secret, None);
    }

    #[test]
    fn bad_values_are_all_reported() {
        let errs = Settings::parse(&ChannelConfig {
            api_base: Some("ftp://x".into()),
            settings: r#"{"phone_number_id":"+1 650","api_version":"23","colour":1}"#.into(),
        })
        .unwrap_err();
        let codes: Vec<_> = errs
            .iter()
            .map(|e| (e.path.as_str(), e.code.as_str()))
            .collect();
        assert!(codes.contains(&("/settings/colour", "unknown_field")));
        assert!(codes.contains(&("/api_base", "invalid_url")));
        assert!(codes.contains(&("/settings/phone_number_id", "invalid_format")));
        assert!(codes.contains(&("/settings/api_version", "invalid_format")));
    }

    #[test]
    fn missing_phone_number_id_is_reported_when_sending() {
        let s = Settings::parse(&cfg("")).unwrap();
        assert_eq!(
            s.messages_url().unwrap_err()[0].path,
            "/settings/phone_number_id"
        );
    }
}
