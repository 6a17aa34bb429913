//! Fallback flows end to end over loopback HTTP: both components loaded, the mock posting
//! signed webhooks to `serve`, state in SQLite.

use host::tenants::DEFAULT_TENANT;
use host_testkit::stack::{DEMO_API_TOKEN, DEMO_APP_SECRET, Stack};
use host_testkit::{attempt_channels as channels_tried, timeline_text as timeline};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn db_path(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("flows-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("flows.sqlite").to_string_lossy().into_owned()
}

fn flow(id: &str, recipient: &str, within_ms: u64) -> Value {
    json!({"id": id, "recipient": recipient, "ttl_ms": 60_000, "unknown_wait_ms": 2_000, "steps": [
        {"channel": "whatsapp", "wait_for": "delivered", "within_ms": within_ms, "content": {"type": "template", "template": {"name": "order_update", "language": "en_US",
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "Pablo"}]}]}}},
        {"channel": "sms", "wait_for": "delivered", "within_ms": 5_000, "content": {"text": "Your order shipped."}}]})
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn start(stack: &Stack, spec: &Value) -> String {
    let agent = agent();
    let mut resp = agent
        .post(&format!("{}/flows", stack.url()))
        .header("authorization", &format!("Bearer {DEMO_API_TOKEN}"))
        .send(spec.to_string().as_bytes())
        .unwrap();
    let body: Value = serde_json::from_slice(&resp.body_mut().read_to_vec().unwrap()).unwrap();
    assert_eq!(resp.status().as_u16(), 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

fn status(stack: &Stack, id: &str) -> Value {
    let agent = agent();
    let mut resp = agent
        .get(&format!("{}/flows/{id}", stack.url()))
        .header("authorization", &format!("Bearer {DEMO_API_TOKEN}"))
        .call()
        .unwrap();
    serde_json::from_slice(&resp.body_mut().read_to_vec().unwrap()).unwrap()
}

fn wait_final(stack: &Stack, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if stack.runner.is_final(DEFAULT_TENANT, id).unwrap() {
            return status(stack, id);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("flow {id} did not finish: {}", status(stack, id));
}

fn delivered_on_whatsapp(db: &str) {
    let stack = Stack::start(db, Duration::from_millis(60)).unwrap();
    let id = start(&stack, &flow("f-delivered", "+15550100001", 5_000));
    let s = wait_final(&stack, &id);
    assert_eq!(s["state"], "done", "{}", timeline(&s));
    assert_eq!(channels_tried(&s), ["whatsapp"]);
    assert!(timeline(&s).contains("whatsapp status delivered"));
}

fn not_on_whatsapp_falls_back_to_sms(db: &str) {
    let stack = Stack::start(db, Duration::from_millis(60)).unwrap();
    let id = start(&stack, &flow("f-131026", "+15550100012", 5_000));
    let s = wait_final(&stack, &id);
    assert_eq!(s["state"], "done", "{}", timeline(&s));
    assert_eq!(channels_tried(&s), ["whatsapp", "sms"]);
    assert_eq!(s["attempts"][0]["last_status"], "failed");
    assert!(
        timeline(&s).contains("recipient_not_on_channel (code 131026)"),
        "{}",
        timeline(&s)
    );
    assert!(timeline(&s).contains("sms status delivered"));
}

fn rate_limited_then_delivered(db: &str) {
    let stack = Stack::start(db, Duration::from_millis(60)).unwrap();
    let id = start(&stack, &flow("f-retry", "+15550100010", 5_000));
    let s = wait_final(&stack, &id);
    assert_eq!(s["state"], "done", "{}", timeline(&s));
    assert_eq!(channels_tried(&s), ["whatsapp", "whatsapp"]);
    assert_eq!(s["attempts"][0]["reason"], "rate_limited");
}

fn never_delivered_falls_back_on_the_timer(db: &str) {
    let stack = Stack::start(db, Duration::from_millis(60)).unwrap();
    let id = start(&stack, &flow("f-timer", "+15550100013", 700));
    let s = wait_final(&stack, &id);
    assert_eq!(s["state"], "done", "{}", timeline(&s));
    assert_eq!(channels_tried(&s), ["whatsapp", "sms"]);
    assert!(
        timeline(&s).contains("timer: whatsapp not delivered within 700 ms"),
        "{}",
        timeline(&s)
    );
}

fn a_restart_mid_flow_loses_nothing(db: &str) {
    let mut stack = Stack::start(db, Duration::from_millis(60)).unwrap();
    let id = start(&stack, &flow("f-restart", "+15550100013", 1_500));
    // WhatsApp accepted it and the timer is armed; the host goes down and comes back.
    std::thread::sleep(Duration::from_millis(300));
    stack.stop_server();
    std::thread::sleep(Duration::from_millis(300));
    stack.restart_server().unwrap();
    let s = wait_final(&stack, &id);
    assert_eq!(s["state"], "done", "{}", timeline(&s));
    assert_eq!(
        channels_tried(&s),
        ["whatsapp", "sms"],
        "the timer survived the restart"
    );
}

fn replayed_and_out_of_order_webhooks_change_nothing(db: &str) {
    let stack = Stack::start(db, Duration::from_millis(60)).unwrap();
    let id = start(&stack, &flow("f-replay", "+15550100001", 5_000));
    wait_final(&stack, &id);
    // Let the mock's last status (read) land before replaying older ones.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut s = status(&stack, &id);
    while s["attempts"][0]["last_status"] != "read" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        s = status(&stack, &id);
    }
    assert_eq!(s["attempts"][0]["last_status"], "read");
    let wamid = s["attempts"][0]["provider_message_id"]
        .as_str()
        .unwrap()
        .to_string();
    let before = s["timeline"].as_array().unwrap().len();
    let agent = agent();
    let post = |status: &str, code: Option<i64>| {
        let body = host_testkit::mock::whatsapp_status_body(
            "106540352242922",
            &wamid,
            "15550100001",
            status,
            code,
            None,
        );
        let sig = host_testkit::mock::signature(DEMO_APP_SECRET, body.as_bytes());
        agent
            .post(&format!("{}/webhooks/whatsapp", stack.url()))
            .header("X-Hub-Signature-256", sig)
            .send(body.as_bytes())
            .unwrap()
            .status()
            .as_u16()
    };
    // A late `sent` and a `failed` from another device after `delivered`: stale.
    assert_eq!(post("sent", None), 200);
    assert_eq!(post("failed", Some(131026)), 200);
    let s = status(&stack, &id);
    assert_eq!(s["state"], "done");
    assert_eq!(s["attempts"].as_array().unwrap().len(), 1, "no new attempt");
    let entries: Vec<_> = s["timeline"].as_array().unwrap()[before..]
        .iter()
        .map(|t| t["entry"].as_str().unwrap().to_string())
        .collect();
    assert!(entries.iter().all(|e| e.contains("ignored")), "{entries:?}");
    // A forged one is refused and applies nothing.
    let body = host_testkit::mock::whatsapp_status_body(
        "106540352242922",
        &wamid,
        "15550100001",
        "read",
        None,
        None,
    );
    let forged = agent
        .post(&format!("{}/webhooks/whatsapp", stack.url()))
        .header(
            "X-Hub-Signature-256",
            host_testkit::mock::signature("guess", body.as_bytes()),
        )
        .send(body.as_bytes())
        .unwrap();
    assert_eq!(forged.status().as_u16(), 401);
}

fn a_late_delivery_after_fallback_is_reported_as_a_possible_duplicate(db: &str) {
    let stack = Stack::start(db, Duration::from_millis(60)).unwrap();
    let id = start(&stack, &flow("f-dup", "+15550100013", 500));
    let s = wait_final(&stack, &id);
    assert_eq!(channels_tried(&s), ["whatsapp", "sms"]);
    let wamid = s["attempts"][0]["provider_message_id"]
        .as_str()
        .unwrap()
        .to_string();
    let body = host_testkit::mock::whatsapp_status_body(
        "106540352242922",
        &wamid,
        "15550100013",
        "delivered",
        None,
        None,
    );
    let sig = host_testkit::mock::signature(DEMO_APP_SECRET, body.as_bytes());
    let agent = agent();
    assert_eq!(
        agent
            .post(&format!("{}/webhooks/whatsapp", stack.url()))
            .header("X-Hub-Signature-256", sig)
            .send(body.as_bytes())
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    let s = status(&stack, &id);
    assert_eq!(s["attempts"][0]["possible_duplicate"], true);
    assert!(timeline(&s).contains("POSSIBLE DUPLICATE"));
}

fn verification_handshake_through_serve(db: &str) {
    let stack = Stack::start(db, Duration::from_millis(60)).unwrap();
    let agent = agent();
    let url = |token: &str| {
        format!(
            "{}/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1158201444",
            stack.url()
        )
    };
    let mut ok = agent
        .get(&url(host_testkit::stack::DEMO_VERIFY_TOKEN))
        .call()
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    assert_eq!(ok.body_mut().read_to_string().unwrap(), "1158201444");
    assert_eq!(
        agent.get(&url("wrong")).call().unwrap().status().as_u16(),
        403
    );
}

fn an_unknown_outcome_waits_for_its_status_instead_of_resending(db: &str) {
    let stack = Stack::start(db, Duration::from_millis(60)).unwrap();
    let mut spec = flow("f-unknown", "+15550100011", 10_000);
    spec["unknown_wait_ms"] = json!(8_000);
    let id = start(&stack, &spec);
    let s = wait_final(&stack, &id);
    assert_eq!(s["state"], "done", "{}", timeline(&s));
    assert_eq!(
        channels_tried(&s),
        ["whatsapp"],
        "no resend and no fallback: {}",
        timeline(&s)
    );
    assert_eq!(s["attempts"][0]["disposition"], "unknown");
    assert!(
        timeline(&s).contains("the attempt did go out"),
        "{}",
        timeline(&s)
    );
    assert_eq!(stack.mock.requests().len(), 1, "sent once");
}

fn nothing_is_sent_after_the_ttl(db: &str) {
    let stack = Stack::start(db, Duration::from_millis(60)).unwrap();
    let mut spec = flow("f-ttl", "+15550100013", 5_000);
    spec["ttl_ms"] = json!(400);
    let id = start(&stack, &spec);
    let s = wait_final(&stack, &id);
    assert_eq!(s["state"], "expired", "{}", timeline(&s));
    assert_eq!(channels_tried(&s), ["whatsapp"], "no SMS after the TTL");
    assert!(timeline(&s).contains("TTL reached"));
}

fn bad_flow_files_are_refused_with_the_reason(db: &str) {
    let stack = Stack::start(db, Duration::from_millis(60)).unwrap();
    let agent = agent();
    for (spec, needle) in [
        (
            json!({"recipient": "+15550100001", "steps": []}),
            "at least one step",
        ),
        (
            json!({"recipient": "+15550100001", "steps": [{"channel": "sms", "content": {}, "wait_for": "seen"}]}),
            "/steps/0/wait_for",
        ),
        (json!({"recipient": "+15550100001", "stepz": []}), "stepz"),
        // Content its channel cannot send: refused now, not a silent SMS later.
        (
            json!({"recipient": "+15550100001", "steps": [
                {"channel": "whatsapp", "content": {"type": "textx"}},
                {"channel": "sms", "content": {"text": "hi"}}]}),
            "/steps/0/content/type",
        ),
    ] {
        let mut resp = agent
            .post(&format!("{}/flows", stack.url()))
            .header("authorization", &format!("Bearer {DEMO_API_TOKEN}"))
            .send(spec.to_string().as_bytes())
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400);
        let body = resp.body_mut().read_to_string().unwrap();
        assert!(body.contains(needle), "{body}");
    }
}

/// A batch refused for a conflicting id starts none of its flows: not the new one beside
/// it, not two flows sharing one id (a client that believes the 400 and resubmits under new
/// ids must not message anyone twice).
fn a_refused_batch_stores_and_sends_none_of_its_flows(db: &str) {
    let stack = Stack::start(db, Duration::from_millis(60)).unwrap();
    let taken = start(&stack, &flow("b-taken", "+15550100031", 5_000));
    wait_final(&stack, &taken);
    let sent_before = stack.mock.requests().len();
    let other_spec = flow("b-taken", "+15550100032", 5_000);
    let batches = [
        json!([flow("b-new", "+15550100033", 5_000), other_spec]),
        json!([
            flow("b-twice", "+15550100034", 5_000),
            flow("b-twice", "+15550100035", 5_000)
        ]),
    ];
    for batch in &batches {
        let (code, body) = stack.post_flows(batch).unwrap();
        assert_eq!(code, 400, "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("none was started"),
            "{body}"
        );
        assert_eq!(body["errors"][0]["code"], "id_in_use", "{body}");
    }
    std::thread::sleep(Duration::from_millis(500));
    for id in ["b-new", "b-twice"] {
        assert_eq!(
            status(&stack, id)["error"],
            "no_such_flow",
            "{id} was stored"
        );
    }
    assert_eq!(
        stack.mock.requests().len(),
        sent_before,
        "a refused batch sent"
    );
    // The same batch without the conflict goes through whole.
    let (code, body) = stack
        .post_flows(&json!([flow("b-new", "+15550100033", 5_000)]))
        .unwrap();
    assert_eq!((code, &body["created"]), (201, &json!(1)), "{body}");
}

/// `curl -d @flow.json` with a pretty-printed flow: one flow, not lines of NDJSON.
fn a_pretty_printed_flow_object_is_one_flow(db: &str) {
    let stack = Stack::start(db, Duration::from_millis(60)).unwrap();
    let pretty = serde_json::to_string_pretty(&flow("p-pretty", "+15550100036", 5_000)).unwrap();
    let mut resp = agent()
        .post(&format!("{}/flows", stack.url()))
        .header("authorization", &format!("Bearer {DEMO_API_TOKEN}"))
        .send(pretty.as_bytes())
        .unwrap();
    let body = resp.body_mut().read_to_string().unwrap();
    assert_eq!(resp.status().as_u16(), 201, "{body}");
    assert!(body.contains("\"p-pretty\""), "{body}");
    // A broken document names where: line and column of the whole body.
    let mut resp = agent()
        .post(&format!("{}/flows", stack.url()))
        .header("authorization", &format!("Bearer {DEMO_API_TOKEN}"))
        .send(&pretty.as_bytes()[..pretty.len() - 3])
        .unwrap();
    let body = resp.body_mut().read_to_string().unwrap();
    assert_eq!(resp.status().as_u16(), 400, "{body}");
    assert!(body.contains("line "), "{body}");
}

/// A text (free-form) flow: WhatsApp only inside the 24 h window, else SMS.
fn text_flow(id: &str, recipient: &str) -> Value {
    json!({"id": id, "recipient": recipient, "ttl_ms": 60_000, "steps": [
        {"channel": "whatsapp", "wait_for": "accepted", "content": {"type": "text", "text": {"body": "Your table is ready"}}},
        {"channel": "sms", "wait_for": "accepted", "content": {"text": "Your table is ready"}}]})
}

fn a_customer_who_wrote_gets_free_form_whatsapp_without_the_flow_saying_so(db: &str) {
    let stack = Stack::start(db, Duration::from_millis(60)).unwrap();
    // Nobody wrote yet: the window is closed, the text goes by SMS.
    let closed = wait_final(
        &stack,
        &start(&stack, &text_flow("w-closed", "+15550100021")),
    );
    assert_eq!(
        channels_tried(&closed),
        ["whatsapp", "sms"],
        "{}",
        timeline(&closed)
    );
    // The customer writes (a signed inbound webhook); the next text goes on WhatsApp.
    let mut doc: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/webhook-inbound-text-basic.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let now_s = host::services::now_ms() / 1000;
    let value = &mut doc["entry"][0]["changes"][0]["value"];
    value["messages"][0]["from"] = json!("15550100021");
    value["messages"][0]["timestamp"] = json!(now_s.to_string());
    value["contacts"][0]["wa_id"] = json!("15550100021");
    let body = doc.to_string();
    let status = agent()
        .post(&format!("{}/webhooks/whatsapp", stack.url()))
        .header(
            "X-Hub-Signature-256",
            host_testkit::mock::signature(DEMO_APP_SECRET, body.as_bytes()),
        )
        .send(body.as_bytes())
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(status, 200);
    let open = wait_final(&stack, &start(&stack, &text_flow("w-open", "+15550100021")));
    assert_eq!(channels_tried(&open), ["whatsapp"], "{}", timeline(&open));
    assert_eq!(open["state"], "done");
}

/// Every scenario runs on SQLite (the embedded default) and on PostgreSQL (the scale-out
/// store), through the same server.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { super::$name(&super::db_path(stringify!($name))) })*
        }
        mod postgres {
            $(#[test] fn $name() { super::$name(&host_testkit::postgres::fresh_database()) })*
        }
    };
}

on_both_stores!(
    delivered_on_whatsapp,
    not_on_whatsapp_falls_back_to_sms,
    rate_limited_then_delivered,
    never_delivered_falls_back_on_the_timer,
    a_restart_mid_flow_loses_nothing,
    replayed_and_out_of_order_webhooks_change_nothing,
    a_late_delivery_after_fallback_is_reported_as_a_possible_duplicate,
    verification_handshake_through_serve,
    an_unknown_outcome_waits_for_its_status_instead_of_resending,
    nothing_is_sent_after_the_ttl,
    bad_flow_files_are_refused_with_the_reason,
    a_customer_who_wrote_gets_free_form_whatsapp_without_the_flow_saying_so,
    a_refused_batch_stores_and_sends_none_of_its_flows,
    a_pretty_printed_flow_object_is_one_flow,
);
