//! The flow API under hostile or careless clients: authentication, size and number limits,
//! wrong methods, slow clients, idle connections, floods of flows, concurrent id generation,
//! and error bodies that reveal nothing.

use host::flow::RunnerOptions;
use host::tenants::DEFAULT_TENANT;
use host_testkit::stack::{DEMO_API_TOKEN, Stack, StackConfig};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn db(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("limits-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("flows.sqlite").to_string_lossy().into_owned()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

fn flow(id: Option<&str>) -> Value {
    let mut f = json!({"recipient": "+15550100013", "steps": [
        {"channel": "sms", "wait_for": "accepted", "content": {"text": "hi"}}]});
    if let Some(id) = id {
        f["id"] = json!(id);
    }
    f
}

fn post(stack: &Stack, token: Option<&str>, body: &str) -> (u16, Value, Option<String>) {
    let mut req = agent().post(&format!("{}/flows", stack.url()));
    if let Some(t) = token {
        req = req.header("authorization", &format!("Bearer {t}"));
    }
    let mut r = req.send(body.as_bytes()).unwrap();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let v = serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap_or(Value::Null);
    (r.status().as_u16(), v, retry)
}

#[test]
fn the_flow_api_needs_the_bearer_token() {
    let stack = Stack::start(&db("auth"), Duration::from_millis(50)).unwrap();
    let body = flow(Some("auth-1")).to_string();
    assert_eq!(post(&stack, None, &body).0, 401);
    assert_eq!(post(&stack, Some("guess"), &body).0, 401);
    let r = agent()
        .get(&format!("{}/flows/auth-1", stack.url()))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(
        stack
            .runner
            .flow_view(DEFAULT_TENANT, "auth-1")
            .unwrap()
            .is_none(),
        "nothing started"
    );
    assert_eq!(post(&stack, Some(DEMO_API_TOKEN), &body).0, 201);
}

#[test]
fn huge_numbers_are_field_errors_and_the_server_keeps_serving() {
    let stack = Stack::start(&db("numbers"), Duration::from_millis(50)).unwrap();
    for (field, value) in [
        ("ttl_ms", json!(u64::MAX)),
        ("ttl_ms", json!(1u64 << 63)),
        ("unknown_wait_ms", json!(u64::MAX)),
        ("max_attempts", json!(u64::MAX)),
        ("last_inbound_ms", json!(u64::MAX)),
    ] {
        for _ in 0..4 {
            let mut f = flow(None);
            f[field] = value.clone();
            let (status, v, _) = post(&stack, Some(DEMO_API_TOKEN), &f.to_string());
            assert_eq!(status, 400, "{field}={value}: {v}");
            assert_eq!(v["errors"][0]["path"], format!("/{field}"), "{v}");
        }
    }
    // Past f64's range: not JSON serde_json reads, but the answer still says where.
    for (body, path) in [
        (
            r#"{"recipient": "+15550100013", "ttl_ms": 1e400, "steps": []}"#.to_string(),
            "/ttl_ms",
        ),
        (
            format!(
                "[{}, {{\"recipient\": \"+1\", \"steps\": [{{\"within_ms\": -1e400}}]}}]",
                flow(None)
            ),
            "/1/steps/0/within_ms",
        ),
    ] {
        let (status, v, _) = post(&stack, Some(DEMO_API_TOKEN), &body);
        assert_eq!((status, &v["error"]), (400, &json!("invalid_json")), "{v}");
        assert_eq!(v["path"], path, "{v}");
        assert!(
            v["message"].as_str().unwrap().contains("out of range"),
            "{v}"
        );
    }
    let mut f = flow(None);
    f["steps"][0]["within_ms"] = json!(u64::MAX);
    let (status, v, _) = post(&stack, Some(DEMO_API_TOKEN), &f.to_string());
    assert_eq!(
        (status, v["errors"][0]["path"].as_str()),
        (400, Some("/steps/0/within_ms"))
    );
    assert_eq!(
        post(&stack, Some(DEMO_API_TOKEN), &flow(None).to_string()).0,
        201
    );
}

#[test]
fn oversized_bodies_get_413_and_wrong_methods_405() {
    let stack = Stack::start(&db("sizes"), Duration::from_millis(50)).unwrap();
    // Declared too large: refused before the body is read.
    let mut stream = TcpStream::connect(stack.url().trim_start_matches("http://")).unwrap();
    write!(
        stream,
        "POST /flows HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {DEMO_API_TOKEN}\r\nContent-Length: {}\r\n\r\n",
        40u64 << 20
    )
    .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = stream.read(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("body_too_large"), "{answer}");
    // Chunked, so the size shows only while reading: cut at the limit, never truncated.
    let mut stream = TcpStream::connect(stack.url().trim_start_matches("http://")).unwrap();
    write!(
        stream,
        "POST /flows HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {DEMO_API_TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .unwrap();
    let chunk = vec![b' '; 1 << 20];
    for _ in 0..40 {
        if write!(stream, "{:x}\r\n", chunk.len()).is_err()
            || stream.write_all(&chunk).is_err()
            || stream.write_all(b"\r\n").is_err()
        {
            break;
        }
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "{}",
        &answer[..answer.len().min(300)]
    );
    let mut r = agent()
        .put(&format!("{}/flows", stack.url()))
        .send(b"{}".as_slice())
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let body: Value = serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap();
    assert_eq!(body["error"], "method_not_allowed", "{body}");
    assert!(body["message"].as_str().unwrap().contains("PUT"), "{body}");
    let mut r = agent()
        .delete(&format!("{}/webhooks/whatsapp", stack.url()))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let body: Value = serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap();
    assert_eq!(body["error"], "method_not_allowed", "{body}");
}

#[test]
fn batches_start_all_or_nothing_and_a_full_queue_answers_429() {
    let options = RunnerOptions {
        max_open_flows: 5,
        ..RunnerOptions::default()
    };
    let stack = Stack::start_with(&db("batch"), Duration::from_millis(50), options).unwrap();
    // One bad flow in a batch: none starts, the error names its index.
    let batch = json!([flow(Some("b-1")), {"recipient": "+1555", "steps": []}]);
    let (status, v, _) = post(&stack, Some(DEMO_API_TOKEN), &batch.to_string());
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["errors"][0]["path"], "/1/steps");
    assert!(
        stack
            .runner
            .flow_view(DEFAULT_TENANT, "b-1")
            .unwrap()
            .is_none()
    );
    // NDJSON of three: all start.
    let ndjson = (1..=3)
        .map(|i| flow(Some(&format!("n-{i}"))).to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let (status, v, _) = post(&stack, Some(DEMO_API_TOKEN), &ndjson);
    assert_eq!((status, v["created"].as_u64()), (201, Some(3)), "{v}");
    // The same flow again is the same flow (a client retry), not an error.
    let (status, v, _) = post(&stack, Some(DEMO_API_TOKEN), &flow(Some("n-1")).to_string());
    assert_eq!((status, v["created"].as_bool()), (200, Some(false)), "{v}");
    let mut other = flow(Some("n-1"));
    other["recipient"] = json!("+15550100001");
    assert_eq!(
        post(&stack, Some(DEMO_API_TOKEN), &other.to_string()).0,
        400
    );
    // Past the bound of open flows: 429 with Retry-After.
    let many = (0..10).map(|_| flow(None)).collect::<Vec<_>>();
    let (status, v, retry) = post(&stack, Some(DEMO_API_TOKEN), &json!(many).to_string());
    assert_eq!(status, 429, "{v}");
    assert!(retry.is_some());
}

#[test]
fn generated_ids_never_collide_under_concurrency() {
    let stack = Stack::start(&db("ids"), Duration::from_millis(50)).unwrap();
    let url = stack.url();
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    (0..25)
                        .map(|_| {
                            let mut r = agent()
                                .post(&format!("{url}/flows"))
                                .header("authorization", &format!("Bearer {DEMO_API_TOKEN}"))
                                .send(flow(None).to_string().as_bytes())
                                .unwrap();
                            assert_eq!(r.status().as_u16(), 201);
                            let v: Value =
                                serde_json::from_slice(&r.body_mut().read_to_vec().unwrap())
                                    .unwrap();
                            v["id"].as_str().unwrap().to_string()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), 200);
}

fn threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn slow_and_idle_clients_hold_no_threads_and_block_nobody() {
    let stack = Stack::start(&db("slow"), Duration::from_millis(50)).unwrap();
    let addr = stack.url().trim_start_matches("http://").to_string();
    let before = threads();
    // 500 idle connections and 8 clients sending their headers one byte at a time.
    let idle: Vec<TcpStream> = (0..500)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    let slow: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.write_all(b"POST /flows HTTP/1.1\r\nHo").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let (status, _, _) = post(&stack, Some(DEMO_API_TOKEN), &flow(None).to_string());
    assert_eq!(status, 201);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a normal request waited behind slow clients"
    );
    let after = threads();
    assert!(after < before + 20, "threads grew from {before} to {after}");
    drop(idle);
    drop(slow);
}

/// Without a token, nobody holds up the API: 1,500 idle sockets and 1,100 connections
/// trickling webhook bodies (issue 20: one shared connection limit stalled `/health`, the
/// flow API and webhooks for ~27 s a wave). Past the webhook slots, webhooks are refused at
/// once (503, `Retry-After`, connection closed), and the API keeps answering.
#[test]
fn unauthenticated_floods_never_starve_the_api() {
    let stack = Stack::start(&db("flood"), Duration::from_millis(50)).unwrap();
    let addr = stack.url().trim_start_matches("http://").to_string();
    // The flood opens on a thread of its own: the API is asked while it is held, whether or
    // not the server has accepted all of it yet.
    let flood = std::thread::spawn(move || {
        let idle: Vec<TcpStream> = (0..1_500)
            .map(|_| TcpStream::connect(&addr).unwrap())
            .collect();
        let trickling: Vec<TcpStream> = (0..1_100)
            .map(|_| {
                let mut s = TcpStream::connect(&addr).unwrap();
                s.write_all(
                    b"POST /webhooks/whatsapp HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n{\"ob",
                )
                .unwrap();
                s
            })
            .collect();
        (idle, trickling)
    });
    std::thread::sleep(Duration::from_millis(1_500));
    let quick = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build();
    let quick: ureq::Agent = quick.into();
    for _ in 0..3 {
        let r = quick
            .get(&format!("{}/flows/nobody", stack.url()))
            .header("authorization", &format!("Bearer {DEMO_API_TOKEN}"))
            .call()
            .expect("the API answers while unauthenticated clients flood the server");
        assert_eq!(r.status().as_u16(), 404);
        let r = quick
            .get(&format!("{}/health", stack.url()))
            .call()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    let (idle, trickling) = flood.join().unwrap();
    // The webhooks past the slots were answered 503 and closed, not left waiting.
    let mut refused = 0;
    for mut s in trickling {
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let mut head = [0u8; 64];
        if let Ok(n) = s.read(&mut head)
            && head[..n].starts_with(b"HTTP/1.1 503")
        {
            refused += 1;
        }
    }
    assert!(refused >= 1_100 - 256, "only {refused} of 1,100 refused");
    drop(idle);
}

/// A webhook body larger than a provider sends is refused before a byte of it is read; a
/// chunked one is cut off at the same limit.
#[test]
fn webhook_bodies_are_capped_at_what_a_provider_sends() {
    let stack = Stack::start(&db("webhook-cap"), Duration::from_millis(50)).unwrap();
    let addr = stack.url().trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(b"POST /webhooks/whatsapp HTTP/1.1\r\nHost: x\r\nContent-Length: 31457280\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("4194304"), "{answer}");
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(
        b"POST /webhooks/whatsapp HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .unwrap();
    let chunk = vec![b'a'; 1 << 20];
    let mut answer = Vec::new();
    for _ in 0..8 {
        if s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .is_err()
            || s.write_all(&chunk).is_err()
            || s.write_all(b"\r\n").is_err()
        {
            break;
        }
    }
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[test]
fn a_failure_answer_reveals_no_internals() {
    let stack = Stack::start(&db("internals"), Duration::from_millis(50)).unwrap();
    // Malformed JSON and an unknown route answer with a code and a message only.
    let (status, v, _) = post(&stack, Some(DEMO_API_TOKEN), "{not json");
    assert_eq!(status, 400);
    assert!(v["error"].is_string() && v["message"].is_string(), "{v}");
    let mut r = agent()
        .get(&format!("{}/nowhere", stack.url()))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let text = r.body_mut().read_to_string().unwrap();
    assert!(
        !text.contains("wasm") && !text.contains("backtrace"),
        "{text}"
    );
    // A webhook whose body makes the plugin fail is a plain 4xx/5xx without a backtrace.
    let mut stream = TcpStream::connect(stack.url().trim_start_matches("http://")).unwrap();
    stream
        .write_all(b"POST /webhooks/whatsapp HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\n{{{")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    assert!(!answer.contains("wasm backtrace"), "{answer}");
}

#[test]
fn clients_too_slow_to_send_are_cut_off() {
    let config = StackConfig {
        header_read_timeout: Duration::from_millis(500),
        body_read_timeout: Duration::from_millis(500),
        ..StackConfig::default()
    };
    let stack = Stack::start_config(&db("timeouts"), config).unwrap();
    let addr = stack.url().trim_start_matches("http://").to_string();
    // Headers that never end: the connection is closed.
    let mut headers = TcpStream::connect(&addr).unwrap();
    headers
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    headers
        .write_all(b"POST /flows HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let _ = headers.read_to_end(&mut buf);
    assert!(
        !String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 2"),
        "{buf:?}"
    );
    // A body that stops half-way: 408.
    let mut body = TcpStream::connect(&addr).unwrap();
    body.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        body,
        "POST /flows HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {DEMO_API_TOKEN}\r\nContent-Length: 100\r\n\r\n{{\"recip"
    )
    .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = body.read(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}
