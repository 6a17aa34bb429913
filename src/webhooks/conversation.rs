//! Events about who handles a conversation and who the customer is: echoes of what a person
//! sent from the WhatsApp Business app (`smb_message_echoes`), traffic for threads another
//! handler owns (`standby`), voice calls (`calls`), and the system messages that announce a
//! new phone number or business-scoped user id.

use super::{Customer, SERVICE_WINDOW_MS, array, event, inbound_event, str_of, timestamp_ms};
use crate::phone::from_wa_id;
use crate::{Classification, Disposition, EventKind, WebhookEvent};
use serde_json::{Map, Value, json};

/// `smb_message_echoes`: a person answered this customer from the Business app or a linked
/// device (coexistence). The automated flow should stand back.
pub(super) fn echo_events(value: &Value) -> Vec<WebhookEvent> {
    array(value, "message_echoes")
        .iter()
        .map(|m| {
            let id = str_of(m, "id").unwrap_or_default();
            let kind = str_of(m, "type").unwrap_or_default();
            let customer = Customer::read(str_of(m, "to"), str_of(m, "to_user_id"), value);
            let mut c = Classification::new(Disposition::Accepted, "business_app_reply");
            c.provider_message_id = Some(id.to_string());
            let mut details = Map::new();
            details.insert("source".into(), json!("business_app"));
            details.insert("type".into(), json!(kind));
            if let Some(content) = m.get(kind) {
                details.insert(kind.to_string(), content.clone());
            }
            customer.insert_into(&mut details);
            let mut e = event(
                EventKind::Handover,
                c,
                format!("echo:{id}"),
                Value::Object(details),
            );
            e.recipient = customer.key();
            e.occurred_at_ms = timestamp_ms(m, "timestamp");
            e
        })
        .collect()
}

/// `standby`: another handler (e.g. Meta's Business Agent) owns the thread, and the customer's
/// messages arrive here instead of on `messages`. Each still opens the service window, so it
/// carries `service-window-ends-ms` like an inbound message, as a `handover`.
pub(super) fn standby_events(value: &Value) -> Vec<WebhookEvent> {
    array(value, "messages")
        .iter()
        .map(|m| {
            let mut e = inbound_event(m, value);
            e.kind = EventKind::Handover;
            e.classification.reason = "handled_by_another_app".into();
            e.dedupe_key = format!("standby:{}", str_of(m, "id").unwrap_or_default());
            if let Ok(Value::Object(mut details)) =
                serde_json::from_slice::<Value>(e.details.as_bytes())
            {
                details.insert("source".into(), json!("standby"));
                e.details = Value::Object(details).to_string();
            }
            e
        })
        .collect()
}

/// `calls`: call lifecycle events. A call the customer placed opens or refreshes the service
/// window as a message does.
pub(super) fn call_events(value: &Value) -> Vec<WebhookEvent> {
    array(value, "calls")
        .iter()
        .map(|call| {
            let id = str_of(call, "id").unwrap_or_default();
            let stage = str_of(call, "event").unwrap_or_default();
            let direction = str_of(call, "direction").unwrap_or_default();
            let from_customer = direction.eq_ignore_ascii_case("USER_INITIATED");
            let customer = if from_customer {
                Customer::read(str_of(call, "from"), str_of(call, "from_user_id"), value)
            } else {
                Customer::read(str_of(call, "to"), str_of(call, "to_user_id"), value)
            };
            let reason = if from_customer {
                "customer_call"
            } else {
                "business_call"
            };
            let mut details = Map::new();
            details.insert("call_id".into(), json!(id));
            details.insert("event".into(), json!(stage));
            details.insert("direction".into(), json!(direction));
            for key in ["status", "duration", "start_time", "end_time"] {
                if let Some(v) = call.get(key) {
                    details.insert(key.into(), v.clone());
                }
            }
            customer.insert_into(&mut details);
            let mut e = event(
                EventKind::Call,
                Classification::new(Disposition::Accepted, reason),
                format!("call:{id}:{stage}"),
                Value::Object(details),
            );
            e.recipient = customer.key();
            e.occurred_at_ms = timestamp_ms(call, "timestamp");
            if from_customer {
                e.service_window_ends_ms = e.occurred_at_ms.map(|t| t + SERVICE_WINDOW_MS);
            }
            e
        })
        .collect()
}

/// A `system` message announcing a new identifier, or `None` for other system messages.
/// `user_changed_number` carries the new phone (`new_wa_id`); `user_changed_user_id` the new
/// business-scoped user id. The event names the customer by the old identifier, so the host
/// finds what it keeps, and gives both in `details`. It opens no window: the customer wrote
/// nothing.
pub(super) fn identity_change_event(m: &Value, value: &Value) -> Option<WebhookEvent> {
    let system = m.get("system")?;
    let change = str_of(system, "type")?;
    let (what, new_phone, new_user_id) = match change {
        "user_changed_number" => (
            "phone",
            str_of(system, "new_wa_id").or_else(|| str_of(system, "wa_id")),
            None,
        ),
        "user_changed_user_id" => (
            "user_id",
            None,
            str_of(system, "new_user_id").or_else(|| str_of(system, "user_id")),
        ),
        _ => return None,
    };
    let old = Customer::read(str_of(m, "from"), str_of(m, "from_user_id"), value);
    let id = str_of(m, "id").unwrap_or_default();
    let mut c = Classification::new(Disposition::Accepted, "customer_identity_changed");
    c.provider_message_id = Some(id.to_string());
    let details = json!({
        "change": what,
        "system_type": change,
        "body": system.get("body"),
        "old": {"phone": old.phone, "user_id": old.user_id},
        "new": {
            "phone": new_phone.map(from_wa_id),
            "user_id": new_user_id,
            "parent_user_id": str_of(system, "parent_user_id"),
        },
    });
    let mut e = event(
        EventKind::IdentityChange,
        c,
        format!("identity:{id}"),
        details,
    );
    e.recipient = old.key();
    e.occurred_at_ms = timestamp_ms(m, "timestamp");
    Some(e)
}
