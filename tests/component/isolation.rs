//! A misbehaving call is an error, never a crash: the host keeps serving. Guest CPU, memory
//! and wall-clock time are budgeted separately, and a call that fails after its request left
//! says so.

use host_testkit::Block;

use crate::common::*;
use host::services::{HostServices, HttpClient, HttpPolicy, Log, Secrets};
use host::{CallError, Limits};
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn memory_cap_traps_the_call_and_the_host_keeps_serving() {
    let small = plugin().with_limits(Limits {
        memory_bytes: 4 << 20,
        ..Limits::default()
    });
    let huge = format!("{{\"name\":\"{}\"}}", "a".repeat(16 << 20));
    match small.validate_template(&huge).block() {
        Err(CallError::Trap { request_sent, .. }) => assert!(!request_sent),
        other => panic!("expected a trap, got {other:?}"),
    }
    // Same compiled component, next call (a fresh instance): fine.
    assert!(small.validate_template("{}").block().is_ok());
    assert_eq!(plugin().describe().block().unwrap().name, "whatsapp");
}

#[test]
fn the_cpu_budget_interrupts_the_guest() {
    let starved = plugin().with_limits(Limits {
        cpu_time: Duration::ZERO,
        ..Limits::default()
    });
    // (`describe` would answer from the host's cache: validating a template runs the guest.)
    let template = order_update_content().to_string();
    match starved.validate_template(&template).block() {
        Err(CallError::Trap { message, .. }) => {
            assert!(message.contains("CPU budget"), "{message}")
        }
        other => panic!("expected an interrupt, got {other:?}"),
    }
    assert!(
        plugin().validate_template(&template).block().is_ok(),
        "the next call runs"
    );
}

/// A provider that reads the request, then never answers.
fn silent_provider() -> (String, std::thread::JoinHandle<usize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 65536];
        let n = conn.read(&mut buf).unwrap_or(0);
        std::thread::sleep(Duration::from_secs(3));
        let _ = conn.write_all(b"");
        n
    });
    (base, handle)
}

#[test]
fn time_waiting_on_the_provider_costs_no_guest_cpu() {
    // The guest's CPU budget is small, but the provider takes a while: the call must not
    // trap for CPU, because waiting is not computing.
    let (base, provider) = silent_provider();
    let mut secrets = Secrets::default();
    secrets
        .insert_for_hosts("whatsapp/access-token", "t", [base.as_str()])
        .unwrap();
    let services = HostServices::new(
        HttpClient::new(HttpPolicy {
            response_timeout: Duration::from_millis(1_500),
            ..HttpPolicy::default().allowing([base.as_str()]).unwrap()
        }),
        secrets,
        Log::memory(),
    );
    let plugin = plugin()
        .with_services(Arc::new(services))
        .with_limits(Limits {
            cpu_time: Duration::from_millis(200),
            call_timeout: Duration::from_secs(10),
            ..Limits::default()
        });
    let c = plugin
        .send(
            &message("+15550100001", order_update_content()),
            &demo_config(Some(base)),
            1,
        )
        .block()
        .unwrap()
        .unwrap();
    assert_eq!(c.reason, "outcome_unknown", "{c:?}");
    assert!(
        provider.join().unwrap() > 0,
        "the request reached the provider"
    );
}

#[test]
fn the_wall_clock_deadline_covers_host_imports_and_reports_a_request_that_left() {
    let (base, provider) = silent_provider();
    let mut secrets = Secrets::default();
    secrets
        .insert_for_hosts("whatsapp/access-token", "t", [base.as_str()])
        .unwrap();
    let services = HostServices::new(
        HttpClient::new(HttpPolicy::default().allowing([base.as_str()]).unwrap()),
        secrets,
        Log::memory(),
    );
    let plugin = plugin()
        .with_services(Arc::new(services))
        .with_limits(Limits {
            call_timeout: Duration::from_millis(700),
            ..Limits::default()
        });
    let err = plugin
        .send(
            &message("+15550100001", order_update_content()),
            &demo_config(Some(base)),
            1,
        )
        .block()
        .unwrap_err();
    assert!(
        matches!(
            err,
            CallError::Deadline {
                request_sent: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(provider.join().unwrap() > 0);
}

#[test]
fn many_calls_in_a_row_each_get_a_fresh_instance() {
    for _ in 0..50 {
        assert!(plugin().validate_template("{}").block().unwrap().is_err());
    }
}

#[test]
fn json_nested_past_the_parser_limit_is_an_error_not_a_stack_overflow() {
    // The component's shadow stack is 256 KiB: the deepest input the parser accepts (128
    // levels) fits, and anything deeper is refused by the parser before the stack runs out.
    let deep = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    for depth in [127, 10_000] {
        let template = format!("{{\"name\":\"x\",\"components\":{}}}", deep(depth));
        let errors = plugin()
            .validate_template(&template)
            .block()
            .expect("no trap")
            .expect_err("not a valid template");
        assert!(!errors.is_empty());
        let request = message(
            "+16505551234",
            serde_json::from_str(&format!(
                "{{\"type\":\"text\",\"text\":{{\"body\":\"hi\"}},\"x\":{}}}",
                deep(depth.min(100))
            ))
            .unwrap(),
        );
        let _ = plugin()
            .build_payload(&request, &demo_config(None))
            .block()
            .expect("no trap");
        let outcome =
            host::contract::types::SendOutcome::Response(host::contract::types::HttpResponse {
                status: 400,
                headers: vec![],
                body: format!("{{\"error\":{}}}", deep(depth)).into_bytes(),
            });
        let c = plugin().classify(&outcome, 1).block().expect("no trap");
        assert!(!c.reason.is_empty(), "{c:?}");
    }
}
