//! A misbehaving call is an error, never a crash: the host keeps serving. Guest CPU, memory
//! and wall-clock time are budgeted separately, and a call that fails after its request left
//! says so.

use crate::common::*;
use host_harness::services::{HostServices, HttpClient, HttpPolicy, Log, Secrets};
use host_harness::{CallError, Limits};
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
    match small.validate_template(&huge) {
        Err(CallError::Trap { request_sent, .. }) => assert!(!request_sent),
        other => panic!("expected a trap, got {other:?}"),
    }
    // Same compiled component, next call (a fresh instance): fine.
    assert!(small.validate_template("{}").is_ok());
    assert_eq!(plugin().describe().unwrap().name, "whatsapp");
}

#[test]
fn the_cpu_budget_interrupts_the_guest() {
    let starved = plugin().with_limits(Limits {
        cpu_time: Duration::ZERO,
        ..Limits::default()
    });
    // (`describe` would answer from the host's cache: validating a template runs the guest.)
    let template = template().to_string();
    match starved.validate_template(&template) {
        Err(CallError::Trap { message, .. }) => {
            assert!(message.contains("CPU budget"), "{message}")
        }
        other => panic!("expected an interrupt, got {other:?}"),
    }
    assert!(
        plugin().validate_template(&template).is_ok(),
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
            &message("+15550100001", template()),
            &demo_config(Some(base)),
            1,
        )
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
            &message("+15550100001", template()),
            &demo_config(Some(base)),
            1,
        )
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
        assert!(plugin().validate_template("{}").unwrap().is_err());
    }
}

fn template() -> serde_json::Value {
    serde_json::json!({"type": "template", "template": {"name": "order_update", "language": "en_US",
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "Pablo"}]}]}})
}

/// Records every growth of a store's linear memory (the first is the instance's initial size).
#[derive(Default)]
struct GrowthLog(Vec<(usize, usize)>);

impl wasmtime::ResourceLimiter for GrowthLog {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.0.push((current, desired));
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

/// A component loaded for stores that record their memory's growth.
struct Recorded {
    engine: wasmtime::Engine,
    component: wasmtime::component::Component,
    linker: wasmtime::component::Linker<GrowthLog>,
}

impl Recorded {
    fn load(wasm: &str) -> Recorded {
        let engine = wasmtime::Engine::default();
        let component = wasmtime::component::Component::from_file(&engine, wasm).unwrap();
        let mut linker = wasmtime::component::Linker::new(&engine);
        // The calls measured use no host function.
        linker.define_unknown_imports_as_traps(&component).unwrap();
        Recorded {
            engine,
            component,
            linker,
        }
    }

    fn store(&self) -> wasmtime::Store<GrowthLog> {
        let mut store = wasmtime::Store::new(&self.engine, GrowthLog::default());
        store.limiter(|log| log);
        store
    }
}

/// `growth` is the instance's initial memory alone: nothing grew.
fn assert_no_growth(call: &str, growth: &[(usize, usize)]) {
    assert!(
        growth.len() == 1 && growth[0].0 == 0,
        "{call}: only the initial memory is set up, no growth: {growth:?}"
    );
}

#[test]
fn typical_calls_fit_in_the_initial_memory_without_growing_it() {
    // A `memory.grow` costs the host two `mprotect`s per call (the pool closes the pages
    // again for the slot's next instance): the component's heap starts in the headroom of its
    // initial memory, which a typical call does not outgrow.
    use host_harness::bindings::ChannelPlugin;
    use host_harness::runtime::block_on;
    let recorded = Recorded::load(host_harness::WHATSAPP_CHANNEL_WASM);
    let fresh = || {
        let mut store = recorded.store();
        let call =
            ChannelPlugin::instantiate_async(&mut store, &recorded.component, &recorded.linker);
        let plugin = block_on(call).unwrap();
        (store, plugin)
    };
    let body = fixture("error-response-130429-rate-limit.json").into_bytes();
    let outcome = host_harness::types::SendOutcome::Response(host_harness::types::HttpResponse {
        status: 400,
        headers: vec![],
        body,
    });
    let (mut store, plugin) = fresh();
    let c = block_on(
        plugin
            .flow_channel_channel()
            .call_classify(&mut store, &outcome, 1),
    )
    .unwrap();
    assert_eq!(c.reason, "rate_limited", "{c:?}");
    let classify_growth = std::mem::take(&mut store.data_mut().0);

    let (mut store, plugin) = fresh();
    let (request, config) = (message("+16505551234", template()), demo_config(None));
    let call = plugin
        .flow_channel_channel()
        .call_build_payload(&mut store, &request, &config);
    block_on(call).unwrap().unwrap();
    let build_growth = std::mem::take(&mut store.data_mut().0);

    let (mut store, plugin) = fresh();
    let carousel = fixture("template-create-marketing-media-card-carousel.json");
    let call = plugin
        .flow_channel_channel()
        .call_validate_template(&mut store, &carousel);
    block_on(call).unwrap().unwrap();
    let validate_growth = std::mem::take(&mut store.data_mut().0);

    for (call, growth) in [
        ("classify", classify_growth),
        ("build-payload", build_growth),
        ("validate-template", validate_growth),
    ] {
        assert_no_growth(call, &growth);
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
            .expect("no trap");
        let outcome =
            host_harness::types::SendOutcome::Response(host_harness::types::HttpResponse {
                status: 400,
                headers: vec![],
                body: format!("{{\"error\":{}}}", deep(depth)).into_bytes(),
            });
        let c = plugin().classify(&outcome, 1).expect("no trap");
        assert!(!c.reason.is_empty(), "{c:?}");
    }
}

#[test]
fn the_sms_component_answers_within_its_initial_memory_too() {
    // Same allocator, same layout: the SMS channel (contract 1.0.0) does not grow memory to
    // build a send or classify its answer either.
    use host_harness::contract::since_v1_0::bindings::{ChannelPlugin, flow::channel::types};
    use host_harness::runtime::block_on;
    let recorded = Recorded::load(host_harness::SMS_CHANNEL_WASM);
    let mut store = recorded.store();
    let call = ChannelPlugin::instantiate_async(&mut store, &recorded.component, &recorded.linker);
    let plugin = block_on(call).unwrap();
    let request = types::MessageRequest {
        recipient: "+15550100001".into(),
        correlation_id: Some("c-1".into()),
        content: r#"{"text": "hi"}"#.into(),
        last_inbound_ms: None,
        now_ms: 1_750_000_000_000,
    };
    let config = types::ChannelConfig {
        api_base: Some("https://sms.example.test".into()),
        settings: "{}".into(),
    };
    let channel = plugin.flow_channel_channel();
    block_on(channel.call_build_payload(&mut store, &request, &config))
        .unwrap()
        .unwrap();
    let outcome = types::SendOutcome::Response(types::HttpResponse {
        status: 202,
        headers: vec![],
        body: br#"{"id": "sms-1", "status": "queued"}"#.to_vec(),
    });
    block_on(channel.call_classify(&mut store, &outcome, 1)).unwrap();
    assert_no_growth("build-payload and classify", &store.data().0);
}
