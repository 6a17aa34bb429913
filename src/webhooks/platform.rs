//! Events about templates and the account rather than one message: category, quality and
//! component changes of templates, account updates, and the sending number's quality and
//! messaging limit. Template webhooks carry no `metadata.phone_number_id`: they are about the
//! WhatsApp Business Account (`entry.id`), which the details carry as `waba_id`.

use super::{event, str_of};
use crate::{Classification, Disposition, EventKind, WebhookEvent};
use serde_json::{Map, Value, json};

/// The fields naming a template in every template webhook, plus its send-form language.
fn template_identity(value: &Value, waba_id: &str) -> Map<String, Value> {
    let mut details = Map::new();
    for key in [
        "message_template_id",
        "message_template_name",
        "message_template_language",
    ] {
        if let Some(v) = value.get(key) {
            details.insert(key.into(), v.clone());
        }
    }
    // Webhooks report languages as `en-US`; sends use `en_US`.
    if let Some(lang) = str_of(value, "message_template_language") {
        details.insert("language_code".into(), json!(lang.replace('-', "_")));
    }
    if !waba_id.is_empty() {
        details.insert("waba_id".into(), json!(waba_id));
    }
    details
}

fn template_id(value: &Value) -> String {
    value
        .get("message_template_id")
        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
        .unwrap_or_default()
}

fn upper(value: &Value, key: &str) -> Option<String> {
    str_of(value, key).map(str::to_ascii_uppercase)
}

/// `template_category_update`: Meta re-categorised a template (at review or in a later
/// sweep), or announces that it will (`correct_category`). A change into MARKETING brings
/// marketing pricing, opt-outs and per-user limits, so it asks for an operator's look.
pub(super) fn category_event(value: &Value, waba_id: &str) -> WebhookEvent {
    let previous = upper(value, "previous_category");
    let new = upper(value, "new_category");
    let announced = upper(value, "correct_category");
    let mut details = template_identity(value, waba_id);
    details.insert("previous_category".into(), json!(previous));
    details.insert("new_category".into(), json!(new));
    if let Some(c) = &announced {
        details.insert("correct_category".into(), json!(c));
    }
    if let Some(t) = value.get("category_update_timestamp") {
        details.insert("category_update_timestamp".into(), t.clone());
    }
    let becomes = new.as_deref().or(announced.as_deref()).unwrap_or_default();
    let mut c = Classification::new(Disposition::Accepted, "template_category_changed");
    c.operator_action = becomes == "MARKETING";
    c.provider_details = Some(format!(
        "category {} -> {}",
        previous.as_deref().unwrap_or("?"),
        if becomes.is_empty() { "?" } else { becomes }
    ));
    event(
        EventKind::TemplateCategoryChange,
        c,
        format!(
            "template-category:{}:{}:{becomes}",
            template_id(value),
            previous.as_deref().unwrap_or("")
        ),
        Value::Object(details),
    )
}

/// `message_template_quality_update`: a template's quality score changed; RED asks for an
/// operator (Meta pauses low-quality templates).
pub(super) fn quality_event(value: &Value, waba_id: &str) -> WebhookEvent {
    let previous = upper(value, "previous_quality_score");
    let new = upper(value, "new_quality_score");
    let mut details = template_identity(value, waba_id);
    details.insert("previous_quality_score".into(), json!(previous));
    details.insert("new_quality_score".into(), json!(new));
    let mut c = Classification::new(Disposition::Accepted, "template_quality_changed");
    c.operator_action = new.as_deref() == Some("RED");
    event(
        EventKind::TemplateQualityChange,
        c,
        format!(
            "template-quality:{}:{}:{}",
            template_id(value),
            previous.unwrap_or_default(),
            new.unwrap_or_default()
        ),
        Value::Object(details),
    )
}

/// `message_template_components_update`: an approved template's text or buttons changed; a
/// host's cached copy is stale until refetched.
pub(super) fn components_event(value: &Value, waba_id: &str) -> WebhookEvent {
    let mut details = template_identity(value, waba_id);
    for key in [
        "message_template_element",
        "message_template_title",
        "message_template_footer",
        "message_template_buttons",
    ] {
        if let Some(v) = value.get(key) {
            details.insert(key.into(), v.clone());
        }
    }
    event(
        EventKind::TemplateComponentsChange,
        Classification::new(Disposition::Accepted, "template_components_changed"),
        format!("template-components:{}:{value}", template_id(value)),
        Value::Object(details),
    )
}

/// `account_update`: the account's standing. Violations, restrictions, bans and disabling
/// stop or limit sending until a person acts; the rest (verification, partner changes…) is
/// information.
pub(super) fn account_event(value: &Value, waba_id: &str) -> WebhookEvent {
    let what = upper(value, "event").unwrap_or_default();
    let blocking = matches!(
        what.as_str(),
        "ACCOUNT_VIOLATION"
            | "ACCOUNT_RESTRICTION"
            | "DISABLED_UPDATE"
            | "ACCOUNT_DELETED"
            // The business removed us as its partner: we may no longer send for it.
            | "PARTNER_REMOVED"
            | "PARTNER_APP_UNINSTALLED"
    ) || value.get("ban_info").is_some();
    let c = if blocking {
        let mut c = Classification::new(Disposition::Failed, "account_restricted");
        c.operator_action = true;
        c
    } else {
        Classification::new(Disposition::Accepted, "account_updated")
    };
    let mut details = Map::new();
    details.insert("event".into(), json!(what));
    for key in [
        "phone_number",
        "violation_info",
        "restriction_info",
        "ban_info",
        "lock_info",
        "partner_client_certification_info",
    ] {
        if let Some(v) = value.get(key) {
            details.insert(key.into(), v.clone());
        }
    }
    if !waba_id.is_empty() {
        details.insert("waba_id".into(), json!(waba_id));
    }
    event(
        EventKind::AccountUpdate,
        with_details(c, &what),
        format!("account:{waba_id}:{what}:{value}"),
        Value::Object(details),
    )
}

/// `phone_number_quality_update`: the number was flagged or its messaging limit or
/// throughput changed. A flag or a downgrade asks for an operator; the new limit is in
/// `details.current_limit`, and as a number of customers in `details.recipient_limit`.
pub(super) fn sender_quality_event(value: &Value, waba_id: &str) -> WebhookEvent {
    let what = upper(value, "event").unwrap_or_default();
    let (reason, operator_action) = match what.as_str() {
        "FLAGGED" => ("sender_quality_flagged", true),
        "DOWNGRADE" => ("sender_limit_downgraded", true),
        "UNFLAGGED" => ("sender_quality_restored", false),
        "UPGRADE" | "THROUGHPUT_UPGRADE" => ("sender_limit_upgraded", false),
        _ => ("sender_quality_changed", false),
    };
    let mut c = Classification::new(Disposition::Accepted, reason);
    c.operator_action = operator_action;
    let mut details = Map::new();
    details.insert("event".into(), json!(what));
    for key in [
        "display_phone_number",
        "current_limit",
        "old_limit",
        "max_daily_conversation_per_phone",
        "max_daily_conversations_per_business",
    ] {
        if let Some(v) = value.get(key) {
            details.insert(key.into(), v.clone());
        }
    }
    // The limit as a number of customers per 24 h (`null`: unlimited), for hosts that keep
    // the portfolio's budget; absent when the event names no limit this channel knows.
    let limit = value
        .get("current_limit")
        .and_then(Value::as_str)
        .and_then(crate::accounts::tier_limit)
        .or_else(|| {
            value
                .get("max_daily_conversations_per_business")
                .and_then(Value::as_u64)
                .map(Some)
        });
    if let Some(limit) = limit {
        details.insert("recipient_limit".into(), json!(limit));
    }
    if !waba_id.is_empty() {
        details.insert("waba_id".into(), json!(waba_id));
    }
    event(
        EventKind::SenderQualityChange,
        with_details(c, &what),
        format!(
            "sender-quality:{}:{what}:{}",
            str_of(value, "display_phone_number").unwrap_or_default(),
            value
        ),
        Value::Object(details),
    )
}

fn with_details(mut c: Classification, what: &str) -> Classification {
    if !what.is_empty() {
        c.provider_details = Some(what.to_string());
    }
    c
}
