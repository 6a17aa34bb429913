//! What the channel says about itself: its name, contract, capabilities and the JSON Schemas
//! of its settings and content.

use crate::send::{BODY_MAX_BYTES, SUBJECT_MAX_CHARS};
use crate::settings::{DEFAULT_API_KEY_SECRET, DEFAULT_EVENT_MAX_AGE_S, DEFAULT_PUBLIC_KEY_SECRET};
use channel_sdk::ChannelInfo;
use serde_json::json;

/// The channel's name in flows, and the prefix of its secrets.
pub const CHANNEL_NAME: &str = "email";

pub fn describe() -> ChannelInfo {
    let mailbox = json!({"oneOf": [
        {"type": "string", "format": "email", "maxLength": crate::address::MAX_LEN},
        {"type": "object", "required": ["email"], "properties": {
            "email": {"type": "string", "format": "email"}, "name": {"type": "string"}}}]});
    ChannelInfo {
        name: CHANNEL_NAME.into(),
        plugin_version: env!("CARGO_PKG_VERSION").into(),
        contract_version: channel_sdk::CONTRACT.into(),
        capabilities: [
            "text",
            "html",
            "template",
            "delivery-status",
            "webhook-signature",
            "correlation-id",
            "unsubscribe-groups",
        ]
        .map(String::from)
        .to_vec(),
        config_schema: json!({
            "type": "object",
            "required": ["from"],
            "properties": {
                "from": mailbox,
                "reply_to": mailbox,
                "api_key_secret": {"type": "string", "default": DEFAULT_API_KEY_SECRET},
                "webhook_public_key_secret": {"type": "string", "default": DEFAULT_PUBLIC_KEY_SECRET,
                    "description": "the Event Webhook's verification key (base64 SPKI or PEM)"},
                "event_max_age_s": {"type": "integer", "minimum": 1, "maximum": 259_200,
                    "default": DEFAULT_EVENT_MAX_AGE_S}
            }
        })
        .to_string(),
        message_schema: json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "subject": {"type": "string", "minLength": 1, "maxLength": SUBJECT_MAX_CHARS},
                "text": {"type": "string", "minLength": 1, "maxLength": BODY_MAX_BYTES},
                "html": {"type": "string", "minLength": 1, "maxLength": BODY_MAX_BYTES},
                "template_id": {"type": "string", "pattern": "^d-"},
                "dynamic_template_data": {"type": "object"},
                "asm_group_id": {"type": "integer", "minimum": 1}
            },
            "oneOf": [
                {"required": ["template_id"]},
                {"required": ["subject"], "anyOf": [{"required": ["text"]}, {"required": ["html"]}]}
            ]
        })
        .to_string(),
        template_schema: "{}".into(),
    }
}
