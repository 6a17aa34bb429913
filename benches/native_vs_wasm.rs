//! The same domain functions called natively and through the component in wasmtime (a fresh
//! instance per call, pooling allocator), side by side in one run: the price of the sandbox.
//! `cargo bench -p whatsapp-channel --bench native_vs_wasm` (release build of both).
//!
//! For reference, the same calls in one instance kept across calls (not how our host runs
//! them: it gives every call a fresh instance, so nothing a plugin saw for one customer can
//! reach the next): the difference is the price of that isolation.

use host_testkit::Block;

use host::{HostServices, Limits, Runtime};
use serde_json::{Value, json};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ITERATIONS: usize = 2_000;
/// An epoch deadline no bench reaches (added to the current epoch: `u64::MAX` would wrap).
const NEVER: u64 = 1 << 40;

fn median_us(f: &mut dyn FnMut()) -> f64 {
    f();
    let mut samples: Vec<Duration> = (0..ITERATIONS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e6
}

/// The inputs, in the component's own types and in the host's.
struct Inputs {
    native_response: whatsapp_channel::HttpResponse,
    host_response: host::contract::types::SendOutcome,
    native_request: whatsapp_channel::MessageRequest,
    host_request: host::contract::types::MessageRequest,
    native_config: whatsapp_channel::ChannelConfig,
    host_config: host::contract::types::ChannelConfig,
    template: String,
}

fn inputs() -> Inputs {
    let body = include_bytes!("../tests/fixtures/error-response-130429-rate-limit.json").to_vec();
    let template: Value = serde_json::from_str(include_str!(
        "../tests/fixtures/template-create-marketing-media-card-carousel.json"
    ))
    .unwrap();
    let content = json!({"type": "template", "template": {"name": "order_update", "language": "en_US",
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "Pablo"}, {"type": "text", "text": "4711"}]}]}})
    .to_string();
    let settings = json!({"phone_number_id": "106540352242922"}).to_string();
    Inputs {
        native_response: whatsapp_channel::HttpResponse {
            status: 400,
            headers: vec![],
            body: body.clone(),
        },
        host_response: host::contract::types::SendOutcome::Response(
            host::contract::types::HttpResponse {
                status: 400,
                headers: vec![],
                body,
            },
        ),
        native_request: whatsapp_channel::MessageRequest {
            recipient: "+16505551234".into(),
            correlation_id: None,
            content: content.clone(),
            last_inbound_ms: None,
            now_ms: 1_750_000_000_000,
            opted_out: vec![],
            deadline_ms: None,
        },
        host_request: host::contract::types::MessageRequest {
            recipient: "+16505551234".into(),
            correlation_id: None,
            content,
            last_inbound_ms: None,
            now_ms: 1_750_000_000_000,
            opted_out: vec![],
            deadline_ms: None,
        },
        native_config: whatsapp_channel::ChannelConfig {
            api_base: None,
            settings: settings.clone(),
        },
        host_config: host::contract::types::ChannelConfig {
            api_base: None,
            settings,
        },
        template: template.to_string(),
    }
}

/// wasmtime's own instantiation, without the host's plumbing (timeout, host state, the
/// blocking bridge): a fresh `Store` and `InstancePre::instantiate_async` on the host's own
/// engine (same pooling and reset settings) and compiled component (µs).
fn bare_instantiate(plugin: &host::Plugin) -> f64 {
    use host_testkit::block_on;
    use wasmtime::component::Linker;
    let engine = plugin.engine();
    let mut linker = Linker::<()>::new(engine);
    linker
        .define_unknown_imports_as_traps(plugin.component())
        .unwrap();
    let pre = linker.instantiate_pre(plugin.component()).unwrap();
    block_on(async {
        let mut samples = Vec::with_capacity(ITERATIONS);
        for _ in 0..ITERATIONS {
            let t = Instant::now();
            let mut store = wasmtime::Store::new(engine, ());
            store.set_epoch_deadline(NEVER);
            black_box(pre.instantiate_async(&mut store).await.unwrap());
            drop(store);
            samples.push(t.elapsed());
        }
        samples.sort();
        samples[samples.len() / 2].as_secs_f64() * 1e6
    })
}

/// The three calls in one kept instance (µs each): classify, build-payload, validate-template.
/// Same code as the host's (epoch checks compiled in), no pooling needed for one instance.
fn kept_instance(i: &Inputs) -> [f64; 3] {
    use host::contract::since_v1_2::bindings::ChannelPlugin;
    use host_testkit::block_on;
    use wasmtime::component::{Component, Linker};
    let mut config = wasmtime::Config::new();
    config.epoch_interruption(true);
    let engine = wasmtime::Engine::new(&config).unwrap();
    let component = Component::from_file(&engine, host_testkit::WHATSAPP_CHANNEL_WASM).unwrap();
    let mut linker = Linker::<()>::new(&engine);
    // These calls use no host function.
    linker.define_unknown_imports_as_traps(&component).unwrap();
    let mut store = wasmtime::Store::new(&engine, ());
    store.set_epoch_deadline(NEVER);
    let plugin = block_on(ChannelPlugin::instantiate_async(
        &mut store, &component, &linker,
    ))
    .unwrap();
    let channel = plugin.flow_channel_channel();
    [
        median_us(&mut || {
            black_box(block_on(channel.call_classify(&mut store, &i.host_response, 1)).unwrap());
        }),
        median_us(&mut || {
            let call = channel.call_build_payload(&mut store, &i.host_request, &i.host_config);
            black_box(block_on(call).unwrap().unwrap());
        }),
        median_us(&mut || {
            let call = channel.call_validate_template(&mut store, &i.template);
            assert!(black_box(block_on(call).unwrap()).is_ok());
        }),
    ]
}

fn main() {
    let runtime = Runtime::with_options(true, true).expect("pooling engine");
    let plugin = runtime
        .load_file(
            std::path::Path::new(host_testkit::WHATSAPP_CHANNEL_WASM),
            Arc::new(HostServices::locked_down()),
            Limits::default(),
        )
        .unwrap();
    let i = inputs();
    let instantiate = median_us(&mut || plugin.instantiate().block().unwrap());
    let rows = [
        (
            "classify (Meta's 130429 body)",
            median_us(&mut || {
                black_box(whatsapp_channel::classify::classify_response(
                    &i.native_response,
                    1,
                ));
            }),
            median_us(&mut || {
                black_box(plugin.classify(&i.host_response, 1).block().unwrap());
            }),
        ),
        (
            "build-payload (template)",
            median_us(&mut || {
                black_box(
                    whatsapp_channel::payloads::build(&i.native_request, &i.native_config).unwrap(),
                );
            }),
            median_us(&mut || {
                black_box(
                    plugin
                        .build_payload(&i.host_request, &i.host_config)
                        .block()
                        .unwrap()
                        .unwrap(),
                );
            }),
        ),
        (
            "validate-template (carousel)",
            median_us(&mut || {
                assert!(black_box(whatsapp_channel::templates::validate_json(&i.template)).is_ok());
            }),
            median_us(&mut || {
                assert!(black_box(plugin.validate_template(&i.template).block().unwrap()).is_ok());
            }),
        ),
    ];
    let kept = kept_instance(&i);
    let bare = bare_instantiate(&plugin);
    println!(
        "median of {ITERATIONS}; wasm = a fresh instance per call (instantiate alone: {instantiate:.1} µs through the host, {bare:.1} µs bare wasmtime); kept = one instance for every call (reference)"
    );
    println!(
        "| call | native | instantiate + call in wasm | ratio | call in a kept instance | ratio |"
    );
    println!("|---|---|---|---|---|---|");
    for ((name, native, wasm), kept) in rows.into_iter().zip(kept) {
        println!(
            "| {name} | {native:.1} µs | {wasm:.1} µs | {:.1}× | {kept:.1} µs | {:.1}× |",
            wasm / native,
            kept / native
        );
    }
}
