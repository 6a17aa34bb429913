//! `host-harness bench`: compile once, then instantiate (+ call) many times, pooled and on
//! demand.

use crate::cli::{Outcome, demo_settings, usage};
use crate::commands::bench_floor;
use crate::commands::plugin::config;
use crate::json;
use crate::runtime::{Limits, Runtime};
use crate::services::{HostServices, now_ms};
use crate::testkit::defaults::DEMO_MESSAGES;
use anyhow::{Context, Result, anyhow};
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
fn floor(runtime: &Runtime, iterations: usize) -> Result<(f64, f64)> {
    let median = |text: &str| -> Result<f64> {
        let floor = bench_floor::Floor::new(runtime.engine(), text)?;
        Ok(floor.median_instantiate(iterations)?.as_secs_f64() * 1e6)
    };
    Ok((
        median(bench_floor::ONE_MODULE)?,
        median(bench_floor::WITH_IMPORT_SHIM)?,
    ))
}

/// `bench`: compile once, then instantiate (+ call) many times, pooled and on demand.
pub fn bench(plugin_path: Option<&Path>, iterations: usize) -> Result<Outcome> {
    if iterations == 0 {
        return usage("--iterations must be at least 1");
    }
    let path = plugin_path
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(crate::WHATSAPP_CHANNEL_WASM));
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let classify_input = crate::json::send_outcome(&json!({"http_status": 400, "body": serde_json::from_str::<Value>(include_str!("../../../tests/fixtures/error-response-130429-rate-limit.json"))?}))?.0;
    let mut doc = serde_json::from_str::<Vec<Value>>(DEMO_MESSAGES)?[1].clone();
    doc.as_object_mut().map(|o| o.remove("scenario"));
    let message =
        json::message_request(&doc, now_ms()).map_err(|e| anyhow!("bench message: {e:?}"))?;
    let cfg = config(&demo_settings(), None);
    let mut report = serde_json::Map::new();
    let mut lines = vec![format!(
        "{} iterations, component {} ({} bytes)",
        iterations,
        path.display(),
        bytes.len()
    )];
    let mut medians = std::collections::HashMap::new();
    for pooling in [true, false] {
        let runtime = match Runtime::with_options(pooling, false) {
            Ok(r) => r,
            Err(e) => {
                lines.push(format!("pooling={pooling}: unavailable ({e:#})"));
                continue;
            }
        };
        let t = Instant::now();
        let plugin = runtime.load(
            &bytes,
            Arc::new(HostServices::locked_down()),
            Limits::default(),
        )?;
        let compile_ms = t.elapsed().as_secs_f64() * 1e3;
        let mut measure = |name: &str, f: &dyn Fn() -> Result<()>| -> Result<f64> {
            f()?; // warm-up
            let samples = (0..iterations)
                .map(|_| {
                    let t = Instant::now();
                    f().map(|_| t.elapsed())
                })
                .collect::<Result<Vec<_>>>()?;
            let m = median_us(samples);
            medians.insert((pooling, name.to_string()), m);
            Ok(m)
        };
        let inst = measure("instantiate", &|| {
            plugin.instantiate().map_err(|e| anyhow!("{e}"))
        })?;
        let describe = measure("instantiate+describe", &|| {
            crate::runtime::block_on(plugin.describe_uncached())
                .map(|_| ())
                .map_err(|e| anyhow!("{e}"))
        })?;
        let classify = measure("instantiate+classify", &|| {
            plugin
                .classify(&classify_input, 1)
                .map(|_| ())
                .map_err(|e| anyhow!("{e}"))
        })?;
        let build = measure("instantiate+build-payload", &|| {
            plugin
                .build_payload(&message, &cfg)
                .map(|_| ())
                .map_err(|e| anyhow!("{e}"))
        })?;
        let key = if pooling { "pooling" } else { "on_demand" };
        let (one_module, with_shim) = floor(&runtime, iterations)?;
        lines.push(format!(
            "{key:>9}: the engine's floor: instantiate a one-module component {one_module:.1} µs | with one import shimmed as wit-component does {with_shim:.1} µs | this plugin {inst:.1} µs"
        ));
        let (compile, load) = runtime.compile_and_load_times(&bytes)?;
        let (precompile_ms, load_ms) = (compile.as_secs_f64() * 1e3, load.as_secs_f64() * 1e3);
        lines.push(format!(
            "{key:>9}: compile {precompile_ms:.1} ms vs load the precompiled artifact {load_ms:.2} ms ({:.0}×)",
            precompile_ms / load_ms.max(1e-6)
        ));
        report.insert(key.into(), json!({"compile_ms": compile_ms, "precompiled_load_ms": load_ms, "floor_median_us": {"one_module": one_module, "with_import_shim": with_shim}, "median_us": {"instantiate": inst, "instantiate+describe": describe, "instantiate+classify": classify, "instantiate+build-payload": build}}));
        lines.push(format!(
            "{key:>9}: compile {compile_ms:.1} ms | median instantiate {inst:.1} µs | +describe {describe:.1} µs | +classify {classify:.1} µs | +build-payload {build:.1} µs"
        ));
    }
    if let (Some(p), Some(o)) = (
        medians.get(&(true, "instantiate+classify".to_string())),
        medians.get(&(false, "instantiate+classify".to_string())),
    ) {
        lines.push(format!(
            "on-demand / pooling (instantiate+classify): {:.2}×",
            o / p
        ));
        report.insert("on_demand_over_pooling".into(), json!(o / p));
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
