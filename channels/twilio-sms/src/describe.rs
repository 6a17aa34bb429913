//! What the channel says about itself: its name, contract, capabilities and the JSON Schemas
//! of its settings and content (held to the code by the tests below).

use crate::send::{BODY_MAX_CHARS, VALIDITY_RANGE_S};
use crate::settings::{DEFAULT_AUTH_TOKEN_SECRET, DEFAULT_USERNAME_SECRET};
use channel_sdk::ChannelInfo;
use serde_json::json;

/// The channel's name in flows, and the prefix of its secrets.
pub const CHANNEL_NAME: &str = "sms";

pub fn describe() -> ChannelInfo {
    ChannelInfo {
        name: CHANNEL_NAME.into(),
        plugin_version: env!("CARGO_PKG_VERSION").into(),
        contract_version: channel_sdk::CONTRACT.into(),
        capabilities: [
            "text",
            "delivery-status",
            "webhook-signature",
            "correlation-id",
            "opt-out-keywords",
            "validity-period",
        ]
        .map(String::from)
        .to_vec(),
        config_schema: config_schema().to_string(),
        message_schema: message_schema().to_string(),
        template_schema: "{}".into(),
    }
}

fn config_schema() -> serde_json::Value {
    json!({
        "type": "object",
        "required": ["account_sid"],
        "properties": {
            "account_sid": {"type": "string", "pattern": "^AC[0-9a-fA-F]{32}$"},
            "from": {"type": "string", "maxLength": 32,
                     "description": "an E.164 number, short code or alphanumeric sender id"},
            "messaging_service_sid": {"type": "string", "pattern": "^MG[0-9a-fA-F]{32}$"},
            "username_secret": {"type": "string", "default": DEFAULT_USERNAME_SECRET},
            "auth_token_secret": {"type": "string", "default": DEFAULT_AUTH_TOKEN_SECRET,
                                  "description": "the Basic password and the callbacks' signing key"},
            "status_callback": {"type": ["string", "null"], "format": "uri",
                                "description": "the host's webhook URL for this channel"}
        },
        "oneOf": [{"required": ["from"]}, {"required": ["messaging_service_sid"]}]
    })
}

fn message_schema() -> serde_json::Value {
    json!({
        "type": "object",
        "required": ["text"],
        "additionalProperties": false,
        "properties": {
            "text": {"type": "string", "minLength": 1, "maxLength": BODY_MAX_CHARS},
            "validity_period_s": {"type": "integer",
                                  "minimum": VALIDITY_RANGE_S.start(),
                                  "maximum": VALIDITY_RANGE_S.end()}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schemas_carry_the_codes_limits() {
        let info = describe();
        assert_eq!(info.name, "sms");
        let m: serde_json::Value = serde_json::from_str(&info.message_schema).unwrap();
        assert_eq!(m["properties"]["text"]["maxLength"], BODY_MAX_CHARS);
        assert_eq!(m["properties"]["validity_period_s"]["maximum"], 36_000);
        let c: serde_json::Value = serde_json::from_str(&info.config_schema).unwrap();
        assert_eq!(
            c["properties"]["username_secret"]["default"],
            "sms/account-sid"
        );
    }
}
