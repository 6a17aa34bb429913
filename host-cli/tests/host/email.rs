//! Flows across three channels: WhatsApp, then SMS (the mock's Twilio), then email (the mock's
//! SendGrid, whose Event Webhook deliveries are signed with ECDSA P-256 as SendGrid signs
//! them); each step to its own recipient.

use host_testkit::mock_sendgrid::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
use host_testkit::stack::Stack;
use host_testkit::{attempt_channels, timeline_text};
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

fn stack(name: &str) -> Stack {
    let dir = std::env::temp_dir().join(format!("email-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("flows.sqlite");
    Stack::start(db.to_str().unwrap(), Duration::from_millis(40)).unwrap()
}

/// WhatsApp to a number not on WhatsApp, SMS to `sms_to`, email to `email_to`.
fn three_channels(id: &str, sms_to: &str, email_to: &str) -> Value {
    json!({"id": id, "recipient": "+15550100012", "ttl_ms": 60_000, "steps": [
        {"channel": "whatsapp", "wait_for": "delivered", "within_ms": 5_000,
         "content": {"type": "text", "text": {"body": "Your order shipped."}}},
        {"channel": "sms", "to": sms_to, "wait_for": "delivered", "within_ms": 5_000,
         "content": {"text": "Your order shipped."}},
        {"channel": "email", "to": email_to, "wait_for": "delivered", "within_ms": 5_000,
         "content": {"subject": "Your order shipped", "text": "Your order shipped.",
                     "html": "<p>Your order shipped.</p>"}}]})
}

fn email_sends(stack: &Stack) -> usize {
    stack
        .mock
        .requests()
        .iter()
        .filter(|r| r.is_email_send())
        .count()
}

fn run(stack: &Stack, spec: &Value) -> Value {
    let (status, body) = stack.post_flows(spec).unwrap();
    assert_eq!(status, 201, "{body}");
    stack
        .wait_final(body["id"].as_str().unwrap(), WAIT)
        .unwrap()
}

#[test]
fn an_undelivered_sms_falls_back_to_email_which_is_delivered() {
    let stack = stack("three");
    let done = run(
        &stack,
        &three_channels("e-1", "+15550600003", "pablo@example.com"),
    );
    let timeline = timeline_text(&done);
    assert_eq!(done["state"], "done", "{timeline}");
    assert_eq!(attempt_channels(&done), ["whatsapp", "sms", "email"]);
    assert!(
        timeline.contains("recipient_unreachable (code 30003)"),
        "{timeline}"
    );
    assert!(timeline.contains("email status delivered"), "{timeline}");
    assert_eq!(email_sends(&stack), 1);
    let sent = stack
        .mock
        .requests()
        .into_iter()
        .find(|r| r.is_email_send())
        .unwrap();
    let body: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(
        body["personalizations"][0]["to"][0]["email"],
        "pablo@example.com"
    );
    assert_eq!(body["from"]["email"], "orders@example.com");
}

#[test]
fn a_bounced_email_ends_the_flow_with_its_reason() {
    let stack = stack("bounce");
    let done = run(
        &stack,
        &three_channels("e-2", "+15550600003", "bounce@example.com"),
    );
    let timeline = timeline_text(&done);
    assert_eq!(done["state"], "exhausted", "{timeline}");
    assert!(timeline.contains("bounced"), "{timeline}");
    assert_eq!(email_sends(&stack), 1, "a bounce is not retried");
}

/// A delivery to `/webhooks/email` with the given signature headers: the HTTP status.
fn post_events(stack: &Stack, body: &str, timestamp: &str, signature: &str) -> u16 {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent()
        .post(&format!("{}/webhooks/email", stack.url()))
        .header(SIGNATURE_HEADER, signature)
        .header(TIMESTAMP_HEADER, timestamp)
        .header("content-type", "application/json")
        .send(body.as_bytes())
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn an_unsubscribe_stops_email_and_forged_or_replayed_deliveries_change_nothing() {
    let stack = stack("unsubscribe");
    let body = json!([{"email": "pablo@example.com", "event": "unsubscribe", "timestamp": 1,
        "sg_event_id": "unsub-1", "sg_message_id": "x.filter"}])
    .to_string();
    let (timestamp, signature) = sign(&body);
    let forged = post_events(&stack, &body, &timestamp, "MEUCIQDxxx");
    assert_eq!(forged, 401);
    let old = (timestamp.parse::<u64>().unwrap() - 3_600).to_string();
    assert_eq!(
        post_events(&stack, &body, &old, &signature),
        401,
        "a replay"
    );
    assert_eq!(post_events(&stack, &body, &timestamp, &signature), 200);
    let email_only = json!({"id": "e-3", "recipient": "pablo@example.com", "steps": [
        {"channel": "email", "wait_for": "accepted", "content": {"subject": "Sale", "text": "Sale today"}}]});
    let done = run(&stack, &email_only);
    assert_eq!(done["state"], "exhausted", "{}", timeline_text(&done));
    assert!(timeline_text(&done).contains("recipient_opted_out"));
    assert_eq!(email_sends(&stack), 0, "nothing sent after the unsubscribe");
}
