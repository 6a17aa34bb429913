//! The runtime acting on what webhooks say about a customer, end to end through `serve`:
//! a person answering from the Business app stops the customer's flows, a marketing stop
//! suppresses MARKETING templates until a resume, a category change reaches the cached
//! catalog, and a customer's call opens the service window.

use host_testkit::stack::{Stack, StackConfig};
use host_testkit::{attempt_channels, timeline_text};
use serde_json::{Value, json};
use std::time::Duration;

const WABA: &str = "102290129340398";
const WAIT: Duration = Duration::from_secs(20);

fn db_path(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("customers-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("flows.sqlite").to_string_lossy().into_owned()
}

/// `order_update` as Meta lists it, in the given category.
fn catalog(category: &str) -> Value {
    json!({"data": [{"name": "order_update", "language": "en_US", "status": "APPROVED", "category": category,
        "id": "1689556908129832", "components": [{"type": "BODY", "text": "Hi {{1}}, your order shipped."}]}]})
}

fn stack(name: &str, category: Option<&str>) -> Stack {
    Stack::start_config(
        &db_path(name),
        StackConfig {
            whatsapp_templates: category.map(catalog),
            ..StackConfig::default()
        },
    )
    .unwrap()
}

fn template_flow(id: &str, recipient: &str, wait_for: &str) -> Value {
    json!({"id": id, "recipient": recipient, "ttl_ms": 60_000, "steps": [
        {"channel": "whatsapp", "wait_for": wait_for, "within_ms": 30_000, "content": {"type": "template",
            "template": {"name": "order_update", "language": "en_US",
                "components": [{"type": "body", "parameters": [{"type": "text", "text": "Pablo"}]}]}}},
        {"channel": "sms", "wait_for": "accepted", "content": {"text": "Your order shipped."}}]})
}

fn start(stack: &Stack, spec: &Value) -> String {
    let (status, body) = stack.post_flows(spec).unwrap();
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

/// One change in Meta's envelope.
fn notification(field: &str, value: Value) -> Value {
    json!({"object": "whatsapp_business_account",
        "entry": [{"id": WABA, "changes": [{"field": field, "value": value}]}]})
}

fn metadata() -> Value {
    json!({"display_phone_number": "15550783881", "phone_number_id": "106540352242922"})
}

fn now_s() -> String {
    (host::services::now_ms() / 1000).to_string()
}

fn preference(digits: &str, value: &str) -> Value {
    notification(
        "user_preferences",
        json!({"messaging_product": "whatsapp", "metadata": metadata(),
            "contacts": [{"wa_id": digits, "profile": {"name": "Pablo"}}],
            "user_preferences": [{"wa_id": digits, "detail": format!("User requested to {value} marketing messages"),
                "category": "marketing_messages", "value": value, "timestamp": host::services::now_ms() / 1000}]}),
    )
}

fn post(stack: &Stack, doc: &Value) {
    assert_eq!(stack.post_whatsapp_webhook(doc).unwrap(), 200);
}

fn sms_requests(stack: &Stack) -> usize {
    stack
        .mock
        .requests()
        .iter()
        .filter(|r| r.is_sms_send())
        .count()
}

#[test]
fn a_person_answering_from_the_business_app_stops_the_flow() {
    let stack = stack("handover", None);
    // +15550100013 never gets `delivered`: the flow waits on WhatsApp, SMS would follow.
    let id = start(&stack, &template_flow("h-1", "+15550100013", "delivered"));
    let deadline = std::time::Instant::now() + WAIT;
    while stack.flow_status(&id).unwrap()["state"] != "waiting_status" {
        assert!(std::time::Instant::now() < deadline, "never waited");
        std::thread::sleep(Duration::from_millis(50));
    }
    post(
        &stack,
        &notification(
            "smb_message_echoes",
            json!({"messaging_product": "whatsapp", "metadata": metadata(),
            "message_echoes": [{"from": "15550783881", "to": "15550100013", "id": "wamid.ECHO-h1",
                "timestamp": now_s(), "type": "text", "text": {"body": "Hi Pablo, I'm on it"}}]}),
        ),
    );
    let done = stack.wait_final(&id, WAIT).unwrap();
    assert_eq!(done["state"], "handed_over", "{}", timeline_text(&done));
    assert!(timeline_text(&done).contains("handed_over"));
    assert_eq!(attempt_channels(&done), ["whatsapp"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        sms_requests(&stack),
        0,
        "no automatic send after the handover"
    );
}

#[test]
fn a_marketing_stop_suppresses_marketing_templates_until_the_customer_resumes() {
    let stack = stack("marketing-stop", Some("MARKETING"));
    post(&stack, &preference("15550100031", "stop"));
    let stopped = stack
        .wait_final(
            &start(&stack, &template_flow("m-1", "+15550100031", "accepted")),
            WAIT,
        )
        .unwrap();
    assert_eq!(attempt_channels(&stopped), ["whatsapp", "sms"]);
    assert!(
        timeline_text(&stopped).contains("recipient_opted_out"),
        "{}",
        timeline_text(&stopped)
    );
    let wamids = |s: &Value| s["attempts"][0]["provider_message_id"].clone();
    assert_eq!(wamids(&stopped), Value::Null, "nothing went to Meta");
    post(&stack, &preference("15550100031", "resume"));
    let resumed = stack
        .wait_final(
            &start(&stack, &template_flow("m-2", "+15550100031", "accepted")),
            WAIT,
        )
        .unwrap();
    assert_eq!(
        attempt_channels(&resumed),
        ["whatsapp"],
        "{}",
        timeline_text(&resumed)
    );
}

#[test]
fn a_category_change_reaches_the_cached_catalog() {
    let stack = stack("category", Some("UTILITY"));
    post(&stack, &preference("15550100032", "stop"));
    // UTILITY is not marketing: it goes on WhatsApp.
    let utility = stack
        .wait_final(
            &start(&stack, &template_flow("c-1", "+15550100032", "accepted")),
            WAIT,
        )
        .unwrap();
    assert_eq!(attempt_channels(&utility), ["whatsapp"]);
    post(
        &stack,
        &notification(
            "template_category_update",
            json!({"message_template_id": 1689556908129832u64, "message_template_name": "order_update",
            "message_template_language": "en_US", "previous_category": "UTILITY", "new_category": "MARKETING"}),
        ),
    );
    let marketing = stack
        .wait_final(
            &start(&stack, &template_flow("c-2", "+15550100032", "accepted")),
            WAIT,
        )
        .unwrap();
    assert_eq!(
        attempt_channels(&marketing),
        ["whatsapp", "sms"],
        "{}",
        timeline_text(&marketing)
    );
}

#[test]
fn a_customer_call_opens_the_window_for_free_form_messages() {
    let stack = stack("call", None);
    post(
        &stack,
        &notification(
            "calls",
            json!({"messaging_product": "whatsapp", "metadata": metadata(),
            "contacts": [{"profile": {"name": "Pablo"}, "wa_id": "15550100033"}],
            "calls": [{"id": "wacid.1", "from": "15550100033", "to": "15550783881", "event": "connect",
                "timestamp": now_s(), "direction": "USER_INITIATED"}]}),
        ),
    );
    let text = json!({"id": "call-1", "recipient": "+15550100033", "ttl_ms": 60_000, "steps": [
        {"channel": "whatsapp", "wait_for": "accepted", "content": {"type": "text", "text": {"body": "Thanks for calling"}}},
        {"channel": "sms", "wait_for": "accepted", "content": {"text": "Thanks for calling"}}]});
    let done = stack.wait_final(&start(&stack, &text), WAIT).unwrap();
    assert_eq!(
        attempt_channels(&done),
        ["whatsapp"],
        "{}",
        timeline_text(&done)
    );
}

/// A template status webhook is kept in the store: a restarted `serve` (or another node)
/// rebuilds the catalog from it, so a template Meta paused stays paused after a restart and
/// the send falls back before reaching Meta.
#[test]
fn a_template_status_change_survives_a_restart() {
    let db = db_path("catalog-restart");
    let config = || StackConfig {
        whatsapp_templates: Some(catalog("UTILITY")),
        ..StackConfig::default()
    };
    {
        let stack = Stack::start_config(&db, config()).unwrap();
        post(
            &stack,
            &notification(
                "message_template_status_update",
                json!({"event": "PAUSED", "message_template_id": 1689556908129832u64,
                    "message_template_name": "order_update", "message_template_language": "en_US",
                    "reason": "LOW_QUALITY"}),
            ),
        );
    }
    let stack = Stack::start_config(&db, config()).unwrap();
    let paused = stack
        .wait_final(
            &start(&stack, &template_flow("p-1", "+15550100034", "accepted")),
            WAIT,
        )
        .unwrap();
    assert_eq!(
        attempt_channels(&paused),
        ["whatsapp", "sms"],
        "{}",
        timeline_text(&paused)
    );
    assert!(
        timeline_text(&paused).contains("[template_paused]"),
        "{}",
        timeline_text(&paused)
    );
    // Refused before Meta: the mock saw no WhatsApp request for it.
    let whatsapp = stack
        .mock
        .requests()
        .iter()
        .filter(|r| r.correlation_id().is_some_and(|c| c.starts_with("p-1/0/")))
        .count();
    assert_eq!(whatsapp, 0);
}
