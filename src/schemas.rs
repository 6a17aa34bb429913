//! `describe`: the channel's identity and the JSON Schemas of what it accepts.

use crate::{CHANNEL_NAME, CONTRACT, ChannelInfo, PLUGIN_VERSION};
use serde_json::Value;

/// The schemas as `describe` returns them: checked-in JSON (data, not code: the component
/// stays small), kept equal to what the rules in the code say by `schemas_match_the_code`,
/// which regenerates them (`UPDATE_SCHEMAS=1 cargo test -p whatsapp-channel schemas`).
pub const CONFIG_SCHEMA: &str = include_str!("schemas/config.json");
pub const MESSAGE_SCHEMA: &str = include_str!("schemas/message.json");
pub const TEMPLATE_SCHEMA: &str = include_str!("schemas/template.json");

/// What this channel can do, for hosts that route on capabilities.
pub const CAPABILITIES: &[&str] = &[
    "template",
    "text",
    "image",
    "video",
    "audio",
    "document",
    "sticker",
    "interactive",
    "location",
    "contacts",
    "reaction",
    "read-receipt",
    "contextual-reply",
    "template-validation",
    "template-send-check",
    "service-window",
    "webhook-verification",
    "webhook-signature",
    "delivery-status",
    "inbound-messages",
    "correlation-id",
];

pub fn describe() -> ChannelInfo {
    ChannelInfo {
        name: CHANNEL_NAME.into(),
        plugin_version: PLUGIN_VERSION.into(),
        contract_version: CONTRACT.into(),
        capabilities: CAPABILITIES.iter().map(|c| c.to_string()).collect(),
        config_schema: CONFIG_SCHEMA.into(),
        message_schema: MESSAGE_SCHEMA.into(),
        template_schema: TEMPLATE_SCHEMA.into(),
    }
}

fn parse(schema: &str) -> Value {
    // Not `expect`: that would bring `Debug` for the error into the component.
    serde_json::from_slice(schema.as_bytes())
        .unwrap_or_else(|_| unreachable!("the checked-in schemas are JSON (tested)"))
}

/// JSON Schema of the channel settings.
pub fn config_schema() -> Value {
    parse(CONFIG_SCHEMA)
}

/// JSON Schema of message content.
pub fn message_schema() -> Value {
    parse(MESSAGE_SCHEMA)
}

/// JSON Schema of template definitions.
pub fn template_schema() -> Value {
    parse(TEMPLATE_SCHEMA)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    /// The schemas as the code's rules and tables say they are.
    mod generate {
        use serde_json::{Value, json};

        pub fn config_schema() -> Value {
            json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "title": "WhatsApp channel settings",
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "phone_number_id": {"type": "string", "pattern": "^[0-9]+$", "description": "The business phone number's id (not the number)."},
                    "api_version": {"type": "string", "pattern": "^v[0-9]+\\.[0-9]+$", "default": crate::config::DEFAULT_API_VERSION},
                    "access_token_secret": {"type": "string", "default": crate::config::DEFAULT_ACCESS_TOKEN_SECRET, "description": "Host secret holding the access token."},
                    "app_secret": {"type": ["string", "null"], "default": crate::config::DEFAULT_APP_SECRET, "description": "Host secret holding the app secret that signs webhooks; null turns signature checks off (development only)."},
                    "verify_token_secret": {"type": "string", "default": crate::config::DEFAULT_VERIFY_TOKEN_SECRET},
                    "templates": {"description": "Approved templates for the send-time check: GET /{waba-id}/message_templates pages, definitions or message_template_status_update webhook bodies (one, or an array applied in order).", "type": ["object", "array"]},
                    "marketing_messages_api": {"type": "boolean", "default": false, "description": "Send templates whose approved category is MARKETING to POST /{phone-number-id}/marketing_messages (Meta's Marketing Messages API; needed when Meta answers 131063)."},
                    "app_id": {"type": "string", "pattern": "^[0-9]+$", "description": "The Meta app's id, for exchanging Embedded Signup codes (exchange-code)."},
                    "oauth_client_secret": {"type": "string", "default": crate::config::DEFAULT_OAUTH_CLIENT_SECRET, "description": "Host secret holding the app secret as the code exchange's client_secret (an outbound credential, granted to Meta's host only)."}
                }
            })
        }

        fn media(caption: bool) -> Value {
            let mut props = json!({"id": {"type": "string"}, "link": {"type": "string", "pattern": "^https?://"}, "filename": {"type": "string"}, "voice": {"type": "boolean"}});
            if caption {
                props["caption"] = json!({"type": "string", "maxLength": 1024});
            }
            json!({"type": "object", "properties": props, "oneOf": [{"required": ["id"]}, {"required": ["link"]}]})
        }

        pub fn message_schema() -> Value {
            let parameter = json!({
                "type": "object",
                "required": ["type"],
                "properties": {
                    "type": {"enum": ["text", "currency", "date_time", "image", "video", "document", "location", "product", "payload", "coupon_code", "action", "limited_time_offer"]},
                    "parameter_name": {"type": "string", "pattern": "^[a-z0-9_]+$"}
                }
            });
            json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "title": "WhatsApp message content (Meta's message object without messaging_product, recipient_type and to)",
                "type": "object",
                "required": ["type"],
                "properties": {
                    "type": {"enum": crate::payloads::SUPPORTED_TYPES},
                    "context": {"type": "object", "properties": {"message_id": {"type": "string"}}, "required": ["message_id"]},
                    "template_definition": {"description": "The approved template this message names (as GET /{waba-id}/message_templates returns it), for the send-time check.", "type": "object"},
                    "outside_window_template": {"description": "For free-form types: the template (as under `template`) to send instead when the 24 h service window is closed.", "type": "object"},
                    "text": {"type": "object", "required": ["body"], "properties": {"body": {"type": "string", "maxLength": 4096}, "preview_url": {"type": "boolean"}}},
                    "image": media(true),
                    "video": media(true),
                    "document": media(true),
                    "audio": media(false),
                    "sticker": media(false),
                    "location": {"type": "object", "required": ["latitude", "longitude"], "properties": {"latitude": {"type": ["number", "string"]}, "longitude": {"type": ["number", "string"]}, "name": {"type": "string"}, "address": {"type": "string"}}},
                    "contacts": {"type": "array", "minItems": 1, "maxItems": 257, "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "object", "required": ["formatted_name"]}, "birthday": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}}}},
                    "reaction": {"type": "object", "required": ["message_id", "emoji"], "properties": {"message_id": {"type": "string"}, "emoji": {"type": "string"}}},
                    "message_id": {"description": "For types `read` and `typing`: the wamid of the customer's message to mark as read (and answer with a typing indicator).", "type": "string"},
                    "interactive": {
                        "type": "object",
                        "required": ["type", "body", "action"],
                        "properties": {
                            "type": {"enum": ["button", "list", "cta_url", "flow", "carousel", "call_permission_request"]},
                            "header": {"type": "object", "required": ["type"], "properties": {"type": {"enum": ["text", "image", "video", "document"]}, "text": {"type": "string", "maxLength": 60}}},
                            "body": {"type": "object", "required": ["text"], "properties": {"text": {"type": "string", "maxLength": 4096, "description": "≤ 1,024 except for lists"}}},
                            "footer": {"type": "object", "required": ["text"], "properties": {"text": {"type": "string", "maxLength": 60}}},
                            "action": {"type": "object"}
                        }
                    },
                    "template": {
                        "type": "object",
                        "required": ["name", "language"],
                        "properties": {
                            "name": {"type": "string", "pattern": "^[a-z0-9_]{1,512}$"},
                            "language": {"oneOf": [{"type": "string"}, {"type": "object", "required": ["code"], "properties": {"code": {"type": "string"}}}]},
                            "components": {"type": "array", "items": {
                                "type": "object",
                                "required": ["type"],
                                "properties": {
                                    "type": {"enum": ["header", "body", "button", "limited_time_offer", "carousel"]},
                                    "cards": {"description": "For `carousel`: exactly the approved number of cards, each {card_index, components}.", "type": "array", "minItems": 2, "maxItems": 10, "items": {"type": "object", "required": ["card_index", "components"], "properties": {"card_index": {"type": "integer", "minimum": 0, "maximum": 9}, "components": {"type": "array"}}}},
                                    "sub_type": {"enum": crate::payloads::template_button_sub_types()},
                                    "index": {"oneOf": [{"type": "string", "pattern": "^[0-9]$"}, {"type": "integer", "minimum": 0, "maximum": 9}]},
                                    "parameters": {"type": "array", "items": parameter}
                                }
                            }}
                        }
                    }
                }
            })
        }

        pub fn template_schema() -> Value {
            json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "title": "WhatsApp template definition (POST /{waba-id}/message_templates body)",
                "type": "object",
                "required": ["name", "category", "language", "components"],
                "properties": {
                    "name": {"type": "string", "pattern": "^[a-z0-9_]{1,512}$"},
                    "category": {"enum": ["AUTHENTICATION", "MARKETING", "UTILITY", "authentication", "marketing", "utility"]},
                    "language": {"enum": crate::templates::LANGUAGES},
                    "parameter_format": {"enum": ["positional", "named"], "default": "positional"},
                    "message_send_ttl_seconds": {"type": "integer"},
                    "components": {"type": "array", "items": {"type": "object", "required": ["type"], "properties": {"type": {"enum": ["HEADER", "BODY", "FOOTER", "BUTTONS", "CAROUSEL", "LIMITED_TIME_OFFER", "header", "body", "footer", "buttons", "carousel", "limited_time_offer"]}}}}
                }
            })
        }
    }

    #[test]
    fn schemas_match_the_code() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/schemas");
        for (file, generated, checked_in) in [
            (
                "config.json",
                generate::config_schema(),
                super::CONFIG_SCHEMA,
            ),
            (
                "message.json",
                generate::message_schema(),
                super::MESSAGE_SCHEMA,
            ),
            (
                "template.json",
                generate::template_schema(),
                super::TEMPLATE_SCHEMA,
            ),
        ] {
            // Compact: they ship inside the component (`jq . src/schemas/*.json` reads them).
            let text = serde_json::to_string(&generated).unwrap() + "\n";
            if std::env::var_os("UPDATE_SCHEMAS").is_some() {
                std::fs::write(format!("{dir}/{file}"), &text).unwrap();
                continue;
            }
            assert_eq!(
                serde_json::from_str::<Value>(checked_in).unwrap(),
                generated,
                "src/schemas/{file} is stale: run UPDATE_SCHEMAS=1 cargo test -p whatsapp-channel schemas"
            );
        }
    }
    #[test]
    fn describe_names_the_contract() {
        let info = super::describe();
        assert_eq!(info.contract_version, "flow:channel@1.2.0");
        for schema in [
            &info.config_schema,
            &info.message_schema,
            &info.template_schema,
        ] {
            let v: serde_json::Value = serde_json::from_str(schema).unwrap();
            assert_eq!(v["type"], "object");
        }
    }
}
