//! Pacing end to end: the mock enforces Meta's limits (130429 past the number's rate per
//! second, 131056 when one customer gets messages too close together) and counts what
//! arrives; the runtime must stay within them. And flow callbacks: signed, retried, at
//! least once.

use host::flow::RunnerOptions;
use host::flow::pacing::ChannelPacing;
use host::services::AllowRule;
use host::tenants::DEFAULT_TENANT;
use host_testkit::mock::MockLimits;
use host_testkit::stack::{DEMO_API_TOKEN, DEMO_CALLBACK_SECRET, Stack, StackConfig};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn db(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("pacing-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("flows.sqlite").to_string_lossy().into_owned()
}

fn flow(id: &str, recipient: &str) -> Value {
    json!({"id": id, "recipient": recipient, "steps": [
        {"channel": "whatsapp", "wait_for": "accepted", "content": {"type": "template",
            "template": {"name": "order_update", "language": "en_US"}}}]})
}

fn submit(stack: &Stack, flows: &[Value]) {
    let mut r = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent()
        .post(&format!("{}/flows", stack.url()))
        .header("authorization", &format!("Bearer {DEMO_API_TOKEN}"))
        .send(json!(flows).to_string().as_bytes())
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        201,
        "{}",
        r.body_mut().read_to_string().unwrap()
    );
}

fn wait_all_final(stack: &Stack, ids: &[String], limit: Duration) {
    let deadline = Instant::now() + limit;
    for id in ids {
        while !stack.runner.is_final(DEFAULT_TENANT, id).unwrap() {
            assert!(
                Instant::now() < deadline,
                "{id}: {}",
                host::server::flow_json(
                    &stack.runner.flow_view(DEFAULT_TENANT, id).unwrap().unwrap()
                )
                .unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn a_campaign_stays_within_the_number_rate_and_the_customer_gap() {
    let config = StackConfig {
        whatsapp_pacing: ChannelPacing {
            rate_per_second: 20.0,
            customer_gap_ms: 1_000,
        },
        mock_limits: Some(MockLimits {
            rate_per_number: 20,
            pair_gap_ms: 1_000,
        }),
        ..StackConfig::default()
    };
    let stack = Stack::start_config(&db("campaign"), config).unwrap();
    // 50 customers once, and one customer named 4 times.
    let mut flows: Vec<Value> = (0..50)
        .map(|i| flow(&format!("c-{i}"), &format!("+1555030{i:04}")))
        .collect();
    flows.extend((0..4).map(|i| flow(&format!("same-{i}"), "+15550309999")));
    let ids: Vec<String> = flows
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect();
    submit(&stack, &flows);
    wait_all_final(&stack, &ids, Duration::from_secs(30));
    let counters = stack.mock.counters();
    assert!(
        counters["max_per_second"].as_u64().unwrap() <= 20,
        "{counters}"
    );
    assert_eq!(counters["by_code"].get("130429"), None, "{counters}");
    assert_eq!(counters["by_code"].get("131056"), None, "{counters}");
    for id in &ids {
        assert_eq!(
            host::server::flow_json(&stack.runner.flow_view(DEFAULT_TENANT, id).unwrap().unwrap())
                .unwrap()["state"],
            "done"
        );
    }
}

/// Deliveries seen by the receiver: event id, signature header, body.
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

/// A callback receiver that refuses each event's first delivery.
fn receiver() -> (String, Seen) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let url = format!("http://{}/events", server.server_addr().to_ip().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        let mut refused = std::collections::HashSet::new();
        for mut req in server.incoming_requests() {
            let mut body = String::new();
            let _ = req.as_reader().read_to_string(&mut body);
            let header = |n: &str| {
                req.headers()
                    .iter()
                    .find(|h| h.field.to_string().eq_ignore_ascii_case(n))
                    .map(|h| h.value.to_string())
                    .unwrap_or_default()
            };
            let (id, sig) = (header("x-flow-event-id"), header("x-flow-signature"));
            log.lock().unwrap().push((id.clone(), sig, body));
            let status = if refused.insert(id) { 500 } else { 200 };
            let _ = req.respond(tiny_http::Response::empty(status));
        }
    });
    (url, seen)
}

#[test]
fn transitions_are_pushed_signed_and_redelivered_until_accepted() {
    let (url, seen) = receiver();
    let config = StackConfig {
        runner: RunnerOptions {
            callback_hosts: vec![AllowRule::parse("http://127.0.0.1").unwrap()],
            ..RunnerOptions::default()
        },
        ..StackConfig::default()
    };
    let stack = Stack::start_config(&db("callbacks"), config).unwrap();
    // Not on WhatsApp (by webhook) → SMS → delivered.
    let f = json!({"id": "cb-1", "recipient": "+15550100012", "callback_url": url, "steps": [
        {"channel": "whatsapp", "content": {"type": "template", "template": {"name": "order_update", "language": "en_US"}}},
        {"channel": "sms", "content": {"text": "Your order shipped."}}]});
    submit(&stack, &[f]);
    wait_all_final(&stack, &["cb-1".to_string()], Duration::from_secs(20));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let kinds: Vec<String> = delivered_kinds(&seen);
        if kinds.contains(&"done".to_string()) && kinds.contains(&"falling_back".to_string()) {
            break;
        }
        assert!(Instant::now() < deadline, "{kinds:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    for (id, sig, body) in seen.lock().unwrap().iter() {
        assert!(!id.is_empty());
        assert_eq!(
            sig,
            &host::services::signing::signature(DEMO_CALLBACK_SECRET, body.as_bytes())
        );
    }
}

/// Kinds of events delivered (answered 200: the second delivery of each id).
fn delivered_kinds(seen: &Seen) -> Vec<String> {
    let seen = seen.lock().unwrap();
    let mut count = std::collections::HashMap::new();
    let mut kinds = Vec::new();
    for (id, _, body) in seen.iter() {
        let n = count.entry(id.clone()).or_insert(0);
        *n += 1;
        if *n == 2 {
            let v: Value = serde_json::from_str(body).unwrap();
            kinds.push(v["kind"].as_str().unwrap().to_string());
        }
    }
    kinds
}

#[test]
fn a_callback_host_off_the_list_is_refused_at_submit() {
    let stack = Stack::start(&db("callback-denied"), Duration::from_millis(50)).unwrap();
    let mut r = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent()
        .post(&format!("{}/flows", stack.url()))
        .header("authorization", &format!("Bearer {DEMO_API_TOKEN}"))
        .send(
            json!({"recipient": "+15550100001", "callback_url": "http://169.254.169.254/latest", "steps": [
                {"channel": "sms", "content": {"text": "x"}}]})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap();
    assert_eq!(v["errors"][0]["code"], "callback_host_denied", "{v}");
}
