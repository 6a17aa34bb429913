//! The channels' bump allocator (`crates/bump-alloc`): a typical call fits in the initial
//! memory's headroom without `memory.grow`, and in a host that keeps one instance for many
//! calls, as jco or wasmtime-py may, the heap starts over once a call's results are taken back,
//! so thousands of calls need no more memory than the first few.

use crate::common::*;
use host::contract::since_v1_2::bindings::ChannelPlugin;
use host::contract::types::{ChannelConfig, HttpResponse, MessageRequest, SendOutcome};

/// Records every growth of a store's linear memory (the first is the instance's initial size).
#[derive(Default)]
struct GrowthLog(Vec<(usize, usize)>);

impl GrowthLog {
    /// The largest linear memory the guest has asked for.
    fn peak(&self) -> usize {
        self.0
            .iter()
            .map(|&(_, desired)| desired)
            .max()
            .unwrap_or(0)
    }
}

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
    use host_testkit::block_on;
    let recorded = Recorded::load(host_testkit::WHATSAPP_CHANNEL_WASM);
    let fresh = || {
        let mut store = recorded.store();
        let call =
            ChannelPlugin::instantiate_async(&mut store, &recorded.component, &recorded.linker);
        let plugin = block_on(call).unwrap();
        (store, plugin)
    };
    let body = fixture("error-response-130429-rate-limit.json").into_bytes();
    let outcome = SendOutcome::Response(HttpResponse {
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
    let (request, config) = (
        message("+16505551234", order_update_content()),
        demo_config(None),
    );
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
fn one_instance_serves_thousands_of_calls_without_growing() {
    let recorded = Recorded::load(host_testkit::WHATSAPP_CHANNEL_WASM);
    let mut store = recorded.store();
    let body = fixture("error-response-130429-rate-limit.json").into_bytes();
    let outcome = SendOutcome::Response(HttpResponse {
        status: 400,
        headers: vec![],
        body,
    });
    let request = MessageRequest {
        recipient: "+16505551234".into(),
        correlation_id: Some("flow-1/step-1".into()),
        content: r#"{"type":"text","text":{"body":"Your order shipped."}}"#.into(),
        last_inbound_ms: Some(1_750_000_000_000),
        now_ms: 1_750_000_000_000,
        opted_out: vec![],
        deadline_ms: None,
    };
    let config = ChannelConfig {
        api_base: None,
        settings: r#"{"phone_number_id":"106540352242922"}"#.into(),
    };
    let template = fixture("template-create-marketing-media-card-carousel.json");
    host_testkit::block_on(async {
        let plugin =
            ChannelPlugin::instantiate_async(&mut store, &recorded.component, &recorded.linker)
                .await
                .unwrap();
        let channel = plugin.flow_channel_channel();
        let mut peaks = Vec::new();
        for round in 0..3_000 {
            let c = channel
                .call_classify(&mut store, &outcome, 1)
                .await
                .unwrap();
            assert_eq!(c.reason, "rate_limited");
            channel
                .call_build_payload(&mut store, &request, &config)
                .await
                .unwrap()
                .unwrap();
            assert!(
                channel
                    .call_validate_template(&mut store, &template)
                    .await
                    .unwrap()
                    .is_ok()
            );
            if round == 10 || round == 2_999 {
                peaks.push(store.data().peak());
            }
        }
        assert_eq!(peaks[0], peaks[1], "memory after 10 rounds vs after 3,000");
    });
}

#[test]
fn the_sms_component_answers_within_its_initial_memory_too() {
    // Same allocator, same layout: the SMS channel (contract 1.0.0) does not grow memory to
    // build a send or classify its answer either.
    use host::contract::since_v1_0::bindings::{ChannelPlugin, flow::channel::types};
    use host_testkit::block_on;
    let recorded = Recorded::load(host_testkit::SMS_FIXTURE_V1_WASM);
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
