//! `host-harness bench`: compile once, then instantiate (+ call) many times, pooled and on
//! demand.

use crate::commands::bench_floor;
use crate::commands::plugin::config;
use crate::common::{Outcome, demo_settings, usage};
use anyhow::{Context, Result, anyhow};
use host::contract::types;
use host::json;
use host::runtime::{CallError, Limits, Plugin, Runtime};
use host::services::{HostServices, now_ms};
use host_testkit::defaults::DEMO_MESSAGES;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn median_us(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e6
}

/// The medians (µs) of instantiating [`bench_floor::ONE_MODULE`] and
/// [`bench_floor::WITH_IMPORT_SHIM`] on `runtime`'s engine.
async fn floor(runtime: &Runtime, iterations: usize) -> Result<(f64, f64)> {
    let one = bench_floor::Floor::new(runtime.engine(), bench_floor::ONE_MODULE)?;
    let shim = bench_floor::Floor::new(runtime.engine(), bench_floor::WITH_IMPORT_SHIM)?;
    Ok((
        median_of(iterations, || one.instantiate()).await?,
        median_of(iterations, || shim.instantiate()).await?,
    ))
}

/// What `bench` calls the plugin with: Meta's 130429 answer to classify, and the demo's
/// named-template message with the demo's settings to build.
struct CallInputs {
    outcome: types::SendOutcome,
    message: types::MessageRequest,
    config: types::ChannelConfig,
}

impl CallInputs {
    fn new() -> Result<CallInputs> {
        let body: Value = serde_json::from_str(include_str!(
            "../../../tests/fixtures/error-response-130429-rate-limit.json"
        ))?;
        let outcome = json::send_outcome(&json!({"http_status": 400, "body": body}))?.0;
        let mut doc = serde_json::from_str::<Vec<Value>>(DEMO_MESSAGES)?[1].clone();
        doc.as_object_mut().map(|o| o.remove("scenario"));
        let message =
            json::message_request(&doc, now_ms()).map_err(|e| anyhow!("bench message: {e:?}"))?;
        Ok(CallInputs {
            outcome,
            message,
            config: config(&demo_settings(), None),
        })
    }
}

/// The median (µs) of `iterations` runs of `f`, after one to warm up.
async fn median_of<F, Fut>(iterations: usize, f: F) -> Result<f64>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    f().await?;
    let mut samples = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        f().await?;
        samples.push(t.elapsed());
    }
    Ok(median_us(samples))
}

/// The medians (µs) of a fresh instance alone and with each call.
struct CallMedians {
    instantiate: f64,
    describe: f64,
    classify: f64,
    build_payload: f64,
}

impl CallMedians {
    async fn measure(
        plugin: &Plugin,
        inputs: &CallInputs,
        iterations: usize,
    ) -> Result<CallMedians> {
        let failed = |e: CallError| anyhow!("{e}");
        Ok(CallMedians {
            instantiate: median_of(iterations, || async {
                plugin.instantiate().await.map_err(failed)
            })
            .await?,
            describe: median_of(iterations, || async {
                plugin.describe_uncached().await.map(|_| ()).map_err(failed)
            })
            .await?,
            classify: median_of(iterations, || async {
                plugin
                    .classify(&inputs.outcome, 1)
                    .await
                    .map(|_| ())
                    .map_err(failed)
            })
            .await?,
            build_payload: median_of(iterations, || async {
                plugin
                    .build_payload(&inputs.message, &inputs.config)
                    .await
                    .map(|_| ())
                    .map_err(failed)
            })
            .await?,
        })
    }
}

/// One allocator's figures: its lines of the report and its JSON.
struct AllocatorReport {
    lines: Vec<String>,
    json: Value,
    classify_us: f64,
}

/// Compiles `bytes` on `runtime`, then measures instantiation and the calls, the engine's
/// floor, and compiling against loading from the compilation cache.
async fn bench_allocator(
    runtime: &Runtime,
    key: &str,
    bytes: &[u8],
    inputs: &CallInputs,
    iterations: usize,
) -> Result<AllocatorReport> {
    let t = Instant::now();
    let plugin = runtime.load(
        bytes,
        Arc::new(HostServices::locked_down()),
        Limits::default(),
    )?;
    let compile_ms = t.elapsed().as_secs_f64() * 1e3;
    let m = CallMedians::measure(&plugin, inputs, iterations).await?;
    let (one_module, with_shim) = floor(runtime, iterations).await?;
    let (compile, load) = runtime.compile_and_load_times(bytes)?;
    let (precompile_ms, load_ms) = (compile.as_secs_f64() * 1e3, load.as_secs_f64() * 1e3);
    let lines = vec![
        format!(
            "{key:>9}: the engine's floor: instantiate a one-module component {one_module:.1} µs | with one import shimmed as wit-component does {with_shim:.1} µs | this plugin {:.1} µs",
            m.instantiate
        ),
        format!(
            "{key:>9}: compile {precompile_ms:.1} ms vs load it from the compilation cache {load_ms:.2} ms ({:.0}×)",
            precompile_ms / load_ms.max(1e-6)
        ),
        format!(
            "{key:>9}: compile {compile_ms:.1} ms | median instantiate {:.1} µs | +describe {:.1} µs | +classify {:.1} µs | +build-payload {:.1} µs",
            m.instantiate, m.describe, m.classify, m.build_payload
        ),
    ];
    let json = json!({
        "compile_ms": compile_ms,
        "precompiled_load_ms": load_ms,
        "floor_median_us": {"one_module": one_module, "with_import_shim": with_shim},
        "median_us": {
            "instantiate": m.instantiate,
            "instantiate+describe": m.describe,
            "instantiate+classify": m.classify,
            "instantiate+build-payload": m.build_payload,
        },
    });
    Ok(AllocatorReport {
        lines,
        json,
        classify_us: m.classify,
    })
}

/// `bench`: compile once, then instantiate (+ call) many times, pooled and on demand.
pub async fn bench(plugin_path: Option<&Path>, iterations: usize) -> Result<Outcome> {
    if iterations == 0 {
        return usage("--iterations must be at least 1");
    }
    let path = plugin_path
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(host_testkit::WHATSAPP_CHANNEL_WASM));
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let inputs = CallInputs::new()?;
    let mut report = serde_json::Map::new();
    let mut lines = vec![format!(
        "{} iterations, component {} ({} bytes)",
        iterations,
        path.display(),
        bytes.len()
    )];
    let mut classify_us = [None, None];
    for (pooling, key) in [(true, "pooling"), (false, "on_demand")] {
        let runtime = match Runtime::with_options(pooling, false) {
            Ok(r) => r,
            Err(e) => {
                lines.push(format!("pooling={pooling}: unavailable ({e:#})"));
                continue;
            }
        };
        let measured = bench_allocator(&runtime, key, &bytes, &inputs, iterations).await?;
        lines.extend(measured.lines);
        report.insert(key.into(), measured.json);
        classify_us[usize::from(!pooling)] = Some(measured.classify_us);
    }
    if let [Some(pooled), Some(on_demand)] = classify_us {
        lines.push(format!(
            "on-demand / pooling (instantiate+classify): {:.2}×",
            on_demand / pooled
        ));
        report.insert("on_demand_over_pooling".into(), json!(on_demand / pooled));
    }
    Ok(Outcome {
        code: 0,
        json: None,
        text: Some(format!(
            "{}\n{}",
            lines.join("\n"),
            serde_json::to_string_pretty(&Value::Object(report))?
        )),
    })
}
