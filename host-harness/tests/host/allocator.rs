//! The component's bump allocator (`src/bump.rs`) in a host that keeps one instance for many
//! calls, as jco or wasmtime-py may: once a call's results are taken back, the heap starts
//! over, so thousands of calls need no more memory than the first few.

use host_harness::bindings::ChannelPlugin;
use host_harness::types::{ChannelConfig, HttpResponse, MessageRequest, SendOutcome};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, ResourceLimiter, Store};

/// Remembers the largest linear memory the guest asked for.
#[derive(Default)]
struct PeakMemory {
    bytes: usize,
}

impl ResourceLimiter for PeakMemory {
    fn memory_growing(
        &mut self,
        _: usize,
        desired: usize,
        _: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.bytes = self.bytes.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _: usize, _: usize, _: Option<usize>) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

#[test]
fn one_instance_serves_thousands_of_calls_without_growing() {
    let mut config = Config::new();
    config.wasm_component_model(true);
    let engine = Engine::new(&config).unwrap();
    let component = Component::from_file(&engine, host_harness::WHATSAPP_CHANNEL_WASM).unwrap();
    let mut linker = Linker::<PeakMemory>::new(&engine);
    // These calls use no host function: any import would trap.
    linker.define_unknown_imports_as_traps(&component).unwrap();
    let mut store = Store::new(&engine, PeakMemory::default());
    store.limiter(|s| s);
    let body = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/error-response-130429-rate-limit.json"
    ))
    .unwrap();
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
    };
    let config = ChannelConfig {
        api_base: None,
        settings: r#"{"phone_number_id":"106540352242922"}"#.into(),
    };
    let template = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/template-create-marketing-media-card-carousel.json"
    ))
    .unwrap();
    host_harness::runtime::block_on(async {
        let plugin = ChannelPlugin::instantiate_async(&mut store, &component, &linker)
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
                peaks.push(store.data().bytes);
            }
        }
        assert_eq!(peaks[0], peaks[1], "memory after 10 rounds vs after 3,000");
    });
}
