//! The SMS channel (Twilio) in flows: the mock's Twilio posts signed status callbacks to the
//! URL each message named, inbound STOP / START reach the runner's opt-outs, and a step's own
//! recipient (`to`) is checked by its channel when the flow is posted.

use host_testkit::mock_twilio::{DEMO_AUTH_TOKEN, form_body, inbound_params, signature};
use host_testkit::stack::Stack;
use host_testkit::{attempt_channels, timeline_text};
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

fn stack(name: &str) -> Stack {
    let dir = std::env::temp_dir().join(format!("sms-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("flows.sqlite");
    Stack::start(db.to_str().unwrap(), Duration::from_millis(40)).unwrap()
}

/// WhatsApp to `phone`, then SMS to `sms_to` (the flow's recipient when `None`).
fn flow(id: &str, phone: &str, sms_to: Option<&str>) -> Value {
    let mut sms = json!({"channel": "sms", "wait_for": "delivered", "within_ms": 5_000,
        "content": {"text": "Your order shipped.", "validity_period_s": 5}});
    if let Some(to) = sms_to {
        sms["to"] = json!(to);
    }
    json!({"id": id, "recipient": phone, "ttl_ms": 60_000, "steps": [
        {"channel": "whatsapp", "wait_for": "delivered", "within_ms": 5_000,
         "content": {"type": "text", "text": {"body": "Your order shipped."}}},
        sms]})
}

fn sms_sends(stack: &Stack) -> Vec<host_testkit::mock::Recorded> {
    stack
        .mock
        .requests()
        .into_iter()
        .filter(|r| r.is_sms_send())
        .collect()
}

/// An inbound SMS from `from`, signed as Twilio signs it, posted to serve: the HTTP status.
fn post_inbound(stack: &Stack, sid: &str, from: &str, body: &str, signed_by: &str) -> u16 {
    let url = format!("{}/webhooks/sms", stack.url());
    let params = inbound_params(sid, from, body);
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent()
        .post(&url)
        .header("X-Twilio-Signature", &signature(signed_by, &url, &params))
        .header("content-type", "application/x-www-form-urlencoded")
        .send(form_body(&params).as_bytes())
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn an_sms_step_to_its_own_number_is_delivered_through_signed_twilio_callbacks() {
    let stack = stack("delivered");
    // Not on WhatsApp (131026 by webhook): the SMS step goes to its own number.
    let (_, body) = stack
        .post_flows(&flow("s-1", "+15550100012", Some("+15550100001")))
        .unwrap();
    let done = stack
        .wait_final(body["id"].as_str().unwrap(), WAIT)
        .unwrap();
    assert_eq!(done["state"], "done", "{}", timeline_text(&done));
    assert_eq!(attempt_channels(&done), ["whatsapp", "sms"]);
    assert!(timeline_text(&done).contains("sms status delivered"));
    let sends = sms_sends(&stack);
    assert_eq!(sends.len(), 1);
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&sends[0].body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("To"), Some("+15550100001"));
    assert_eq!(get("ValidityPeriod"), Some("5"));
    let callback = get("StatusCallback").unwrap();
    assert!(
        callback.starts_with(&format!("{}/webhooks/sms?correlation_id=", stack.url())),
        "{callback}"
    );
}

#[test]
fn an_undelivered_sms_30003_ends_the_step_with_its_reason() {
    let stack = stack("undelivered");
    let (_, body) = stack
        .post_flows(&flow("s-2", "+15550100012", Some("+15550600003")))
        .unwrap();
    let done = stack
        .wait_final(body["id"].as_str().unwrap(), WAIT)
        .unwrap();
    let timeline = timeline_text(&done);
    assert_eq!(done["state"], "exhausted", "{timeline}");
    assert!(
        timeline.contains("recipient_unreachable (code 30003)"),
        "{timeline}"
    );
    assert_eq!(
        sms_sends(&stack).len(),
        1,
        "an undelivered SMS is not resent"
    );
}

/// The validity period each SMS send asked Twilio for, by recipient.
fn validity_periods(stack: &Stack) -> Vec<(String, Option<u64>)> {
    sms_sends(stack)
        .iter()
        .map(|r| {
            let form: Vec<(String, String)> = url::form_urlencoded::parse(&r.body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            let validity = get("ValidityPeriod").and_then(|v| v.parse().ok());
            (get("To").unwrap_or_default(), validity)
        })
        .collect()
}

/// The step's status deadline, or the flow's expiry when that comes first, is how long
/// Twilio may keep the SMS queued; one it drops unsent (30036) moves the flow on.
#[test]
fn the_flows_deadline_is_the_sms_validity_period_and_an_expired_sms_moves_the_flow_on() {
    let stack = stack("validity");
    let sms_step = |f: &mut Value, within_ms: u64| {
        f["steps"][1]["content"] = json!({"text": "Your order shipped."});
        f["steps"][1]["within_ms"] = json!(within_ms);
    };
    let mut expiring = flow("s-5", "+15550100012", Some("+15550600036"));
    sms_step(&mut expiring, 30_000);
    let mut capped = flow("s-6", "+15550100012", Some("+15550100001"));
    sms_step(&mut capped, 600_000); // past the flow's TTL of 60 s
    for f in [&expiring, &capped] {
        stack.post_flows(f).unwrap();
    }
    let expired = stack.wait_final("s-5", WAIT).unwrap();
    let timeline = timeline_text(&expired);
    assert_eq!(expired["state"], "exhausted", "{timeline}");
    assert!(
        timeline.contains("validity_expired (code 30036)"),
        "{timeline}"
    );
    let delivered = stack.wait_final("s-6", WAIT).unwrap();
    assert_eq!(delivered["state"], "done", "{}", timeline_text(&delivered));
    let mut asked = validity_periods(&stack);
    asked.sort();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert_eq!(asked[0].0, "+15550100001");
    // The TTL's end, less the time the WhatsApp step took (whole seconds, rounded down).
    assert!(
        asked[0].1.is_some_and(|s| (40..60).contains(&s)),
        "{asked:?}"
    );
    assert_eq!(asked[1], ("+15550600036".to_string(), Some(30)));
}

#[test]
fn a_stop_reply_stops_sms_to_that_number_until_start() {
    let stack = stack("stop");
    let customer = "+15550100001";
    assert_eq!(
        post_inbound(&stack, "SMstop1", customer, "STOP", "not-the-token"),
        401,
        "a forged callback changes nothing"
    );
    assert_eq!(
        post_inbound(&stack, "SMstop1", customer, "STOP", DEMO_AUTH_TOKEN),
        200
    );
    let sms_only = |id: &str| {
        json!({"id": id, "recipient": customer, "steps": [{"channel": "sms", "wait_for": "accepted",
            "content": {"text": "Sale today!"}}]})
    };
    let (_, body) = stack.post_flows(&sms_only("s-3")).unwrap();
    let done = stack
        .wait_final(body["id"].as_str().unwrap(), WAIT)
        .unwrap();
    assert_eq!(done["state"], "exhausted", "{}", timeline_text(&done));
    assert!(timeline_text(&done).contains("recipient_opted_out"));
    assert!(sms_sends(&stack).is_empty(), "nothing sent after STOP");

    assert_eq!(
        post_inbound(&stack, "SMstart1", customer, "start", DEMO_AUTH_TOKEN),
        200
    );
    let (_, body) = stack.post_flows(&sms_only("s-4")).unwrap();
    let done = stack
        .wait_final(body["id"].as_str().unwrap(), WAIT)
        .unwrap();
    assert_eq!(done["state"], "done", "{}", timeline_text(&done));
    assert_eq!(sms_sends(&stack).len(), 1);
}

#[test]
fn a_steps_recipient_is_checked_by_its_channel_when_the_flow_is_posted() {
    let stack = stack("to");
    let (status, body) = stack
        .post_flows(&flow("s-5", "+15550100012", Some("pablo@example.com")))
        .unwrap();
    assert_eq!(status, 400, "{body}");
    let errors = body["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e["path"] == "/steps/1/to" && e["code"] == "invalid_recipient"),
        "{body}"
    );
    assert!(sms_sends(&stack).is_empty());
}
