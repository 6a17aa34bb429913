//! The 2026 webhook fields, each a typed event, through the built component: echoes and
//! standby (handover), calls, identity changes, template category/quality/components
//! updates, account and number quality updates, call-permission replies.

use host_testkit::Block;

use crate::common::*;
use host::contract::types::{
    Disposition, EventKind, Header, WebhookEvent, WebhookOutcome, WebhookRequest,
};
use serde_json::{Value, json};

const WABA: &str = "102290129340398";
const CUSTOMER: &str = "16505551234";
const BSUID: &str = "US.13491208655302741918";

/// A signed notification carrying one change, in Meta's envelope.
fn events(field: &str, value: Value) -> Vec<WebhookEvent> {
    let doc = json!({"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": [{"value": value, "field": field}]}]});
    let body = doc.to_string().into_bytes();
    let request = WebhookRequest {
        method: "POST".into(),
        url: None,
        headers: vec![Header {
            name: "X-Hub-Signature-256".into(),
            value: sign(APP_SECRET, &body),
        }],
        query: vec![],
        body,
    };
    let config = host::contract::types::ChannelConfig {
        api_base: None,
        settings: json!({"app_secret": "whatsapp/app-secret"}).to_string(),
    };
    match plugin()
        .parse_webhook(&request, &config)
        .block()
        .unwrap()
        .unwrap()
    {
        WebhookOutcome::Events(events) => events,
        other => panic!("events expected, got {other:?}"),
    }
}

fn details(e: &WebhookEvent) -> Value {
    serde_json::from_str(&e.details).unwrap()
}

fn metadata() -> Value {
    json!({"display_phone_number": "15550783881", "phone_number_id": "106540352242922"})
}

#[test]
fn a_business_app_echo_is_a_handover_for_that_customer() {
    let e = &events(
        "smb_message_echoes",
        json!({"messaging_product": "whatsapp", "metadata": metadata(),
            "message_echoes": [{"from": "15550783881", "to": CUSTOMER, "id": "wamid.ECHO1",
                "timestamp": "1750000000", "type": "text", "text": {"body": "I'll call you back"}}]}),
    )[0];
    assert_eq!(e.kind, EventKind::Handover);
    assert_eq!(e.classification.reason, "business_app_reply");
    assert_eq!(e.recipient.as_deref(), Some("+16505551234"));
    assert_eq!(
        e.service_window_ends_ms, None,
        "the business wrote, not the customer"
    );
    assert_eq!(details(e)["text"]["body"], "I'll call you back");
    assert_eq!(e.dedupe_key, "echo:wamid.ECHO1");
}

#[test]
fn a_standby_message_is_a_handover_that_still_opens_the_window() {
    let e = &events(
        "standby",
        json!({"messaging_product": "whatsapp", "metadata": metadata(),
            "contacts": [{"profile": {"name": "Kerry"}, "wa_id": CUSTOMER, "user_id": BSUID}],
            "messages": [{"from": CUSTOMER, "from_user_id": BSUID, "id": "wamid.SB1",
                "timestamp": "1750000000", "type": "text", "text": {"body": "still there?"}}]}),
    )[0];
    assert_eq!(e.kind, EventKind::Handover);
    assert_eq!(e.classification.reason, "handled_by_another_app");
    assert_eq!(e.recipient.as_deref(), Some("+16505551234"));
    assert_eq!(
        e.service_window_ends_ms,
        Some(1_750_000_000_000 + 24 * 3_600_000)
    );
    assert_eq!(details(e)["source"], "standby");
    assert_eq!(details(e)["customer"]["user_id"], BSUID);
}

#[test]
fn a_customer_call_opens_the_window_and_a_business_call_does_not() {
    let calls = events(
        "calls",
        json!({"messaging_product": "whatsapp", "metadata": metadata(),
        "contacts": [{"profile": {"name": "Kerry"}, "wa_id": CUSTOMER}],
        "calls": [
            {"id": "wacid.IN", "from": CUSTOMER, "to": "15550783881", "event": "connect",
             "timestamp": "1750000100", "direction": "USER_INITIATED"},
            {"id": "wacid.OUT", "from": "15550783881", "to": CUSTOMER, "event": "terminate",
             "timestamp": "1750000200", "direction": "BUSINESS_INITIATED", "status": "COMPLETED", "duration": 42}
        ]}),
    );
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|e| e.kind == EventKind::Call));
    assert_eq!(calls[0].classification.reason, "customer_call");
    assert_eq!(
        calls[0].service_window_ends_ms,
        Some(1_750_000_100_000 + 24 * 3_600_000)
    );
    assert_eq!(calls[1].classification.reason, "business_call");
    assert_eq!(calls[1].service_window_ends_ms, None);
    assert_eq!(calls[1].recipient.as_deref(), Some("+16505551234"));
    assert_eq!(details(&calls[1])["duration"], 42);
}

#[test]
fn system_messages_announce_a_new_phone_or_user_id() {
    let changed = events(
        "messages",
        json!({"messaging_product": "whatsapp", "metadata": metadata(),
        "messages": [
            {"from": CUSTOMER, "id": "wamid.SYS1", "timestamp": "1750000000", "type": "system",
             "system": {"body": "Kerry changed from 16505551234 to 16505559999", "new_wa_id": "16505559999", "type": "user_changed_number"}},
            {"from_user_id": BSUID, "id": "wamid.SYS2", "timestamp": "1750000001", "type": "system",
             "system": {"body": "User changed", "user_id": "US.99", "type": "user_changed_user_id"}}
        ]}),
    );
    let (phone, user) = (&changed[0], &changed[1]);
    assert_eq!(phone.kind, EventKind::IdentityChange);
    assert_eq!(
        phone.recipient.as_deref(),
        Some("+16505551234"),
        "the old id"
    );
    assert_eq!(details(phone)["new"]["phone"], "+16505559999");
    assert_eq!(details(phone)["change"], "phone");
    assert_eq!(phone.service_window_ends_ms, None);
    assert_eq!(user.kind, EventKind::IdentityChange);
    assert_eq!(user.recipient.as_deref(), Some(BSUID));
    assert_eq!(details(user)["new"]["user_id"], "US.99");
    assert_eq!(details(user)["old"]["user_id"], BSUID);
}

#[test]
fn a_category_change_into_marketing_asks_for_an_operator() {
    let e = &events(
        "template_category_update",
        json!({"message_template_id": 1689556908129832u64, "message_template_name": "order_update",
            "message_template_language": "en-US", "previous_category": "UTILITY", "new_category": "MARKETING"}),
    )[0];
    assert_eq!(e.kind, EventKind::TemplateCategoryChange);
    assert_eq!(e.classification.reason, "template_category_changed");
    assert!(e.classification.operator_action);
    let d = details(e);
    assert_eq!(
        (d["previous_category"].as_str(), d["new_category"].as_str()),
        (Some("UTILITY"), Some("MARKETING"))
    );
    assert_eq!(d["language_code"], "en_US");
    assert_eq!(d["waba_id"], WABA);
}

#[test]
fn template_quality_and_components_updates_are_typed() {
    let q = &events(
        "message_template_quality_update",
        json!({"previous_quality_score": "GREEN", "new_quality_score": "RED",
            "message_template_id": 9, "message_template_name": "promo", "message_template_language": "en"}),
    )[0];
    assert_eq!(q.kind, EventKind::TemplateQualityChange);
    assert!(q.classification.operator_action, "RED");
    let c = &events(
        "message_template_components_update",
        json!({"message_template_id": 9, "message_template_name": "promo", "message_template_language": "en",
            "message_template_element": "Hi {{1}}, new stock", "message_template_footer": "Reply STOP"}),
    )[0];
    assert_eq!(c.kind, EventKind::TemplateComponentsChange);
    assert_eq!(
        details(c)["message_template_element"],
        "Hi {{1}}, new stock"
    );
}

#[test]
fn account_restrictions_fail_the_channel_and_quality_flags_ask_for_a_look() {
    let a = &events(
        "account_update",
        json!({"phone_number": "15550783881", "event": "ACCOUNT_RESTRICTION",
            "restriction_info": [{"restriction_type": "RESTRICTED_BIZ_INITIATED_MESSAGING", "expiration": 1750600000}]}),
    )[0];
    assert_eq!(a.kind, EventKind::AccountUpdate);
    assert_eq!(
        (
            a.classification.disposition,
            a.classification.reason.as_str()
        ),
        (Disposition::Failed, "account_restricted")
    );
    assert!(a.classification.operator_action);
    let ok = &events(
        "account_update",
        json!({"phone_number": "15550783881", "event": "VERIFIED_ACCOUNT"}),
    )[0];
    assert_eq!(ok.classification.reason, "account_updated");
    let q = &events(
        "phone_number_quality_update",
        json!({"display_phone_number": "15550783881", "event": "FLAGGED", "current_limit": "TIER_1K"}),
    )[0];
    assert_eq!(q.kind, EventKind::SenderQualityChange);
    assert_eq!(q.classification.reason, "sender_quality_flagged");
    assert_eq!(details(q)["current_limit"], "TIER_1K");
    // The limit as customers per 24 h, for the host's budget; unlimited is null.
    assert_eq!(details(q)["recipient_limit"], 1_000);
    let unlimited = &events(
        "phone_number_quality_update",
        json!({"display_phone_number": "15550783881", "event": "UPGRADE", "current_limit": "TIER_UNLIMITED"}),
    )[0];
    assert_eq!(details(unlimited)["recipient_limit"], Value::Null);
    assert!(details(unlimited).get("recipient_limit").is_some());
    // Every event names its WABA and number, so a host serving many routes it.
    assert_eq!(q.account_id.as_deref(), Some(WABA));
    let up = &events(
        "phone_number_quality_update",
        json!({"display_phone_number": "15550783881", "event": "THROUGHPUT_UPGRADE"}),
    )[0];
    assert_eq!(up.classification.reason, "sender_limit_upgraded");
    assert!(!up.classification.operator_action);
}

#[test]
fn a_call_permission_reply_is_an_inbound_message_with_the_answer() {
    let e = &events(
        "messages",
        json!({"messaging_product": "whatsapp", "metadata": metadata(),
            "contacts": [{"profile": {"name": "Kerry"}, "wa_id": CUSTOMER}],
            "messages": [{"from": CUSTOMER, "id": "wamid.CPR", "timestamp": "1750000000", "type": "interactive",
                "interactive": {"type": "call_permission_reply",
                    "call_permission_reply": {"response": "accept", "is_permanent": true, "response_source": "user_action"}}}]}),
    )[0];
    assert_eq!(e.kind, EventKind::InboundMessage);
    assert_eq!(details(e)["call_permission"]["response"], "accept");
    assert!(e.service_window_ends_ms.is_some());
}

#[test]
fn a_marketing_stop_names_the_contract_category() {
    let e = &events(
        "user_preferences",
        json!({"messaging_product": "whatsapp", "metadata": metadata(),
            "contacts": [{"wa_id": CUSTOMER, "profile": {"name": "Kerry"}}],
            "user_preferences": [{"wa_id": CUSTOMER, "detail": "User requested to stop marketing messages",
                "category": "marketing_messages", "value": "stop", "timestamp": 1750000000}]}),
    )[0];
    assert_eq!(e.kind, EventKind::RecipientPreference);
    assert_eq!(e.classification.reason, "recipient_opted_out");
    assert_eq!(details(e)["category"], "marketing");
    assert_eq!(details(e)["provider_category"], "marketing_messages");
}

#[test]
fn fields_still_unknown_stay_other_events() {
    let e = &events("history", json!({"history": []}))[0];
    assert_eq!(e.kind, EventKind::Other);
    assert_eq!(e.classification.reason, "other_event");
}
