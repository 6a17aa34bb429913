//! `host-harness demo`: the demo messages to the embedded mock, then fallback flows.

use crate::commands::plugin::config;
use crate::common::{Outcome, demo_settings, load_plugin};
use anyhow::{Context, Result, anyhow};
use host::contract::types::Disposition;
use host::json;
use host::services::{Log, now_ms};
use host_testkit::defaults::DEMO_MESSAGES;
use host_testkit::mock::{MockApi, MockConfig, mock_services};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

/// `demo`: every demo message to the embedded mock, with retries where the classification
/// says so (bounded, honouring `retry_after_ms` up to 2 s so the demo stays short).
pub async fn demo(plugin_path: Option<&Path>, out: &mut dyn std::io::Write) -> Result<Outcome> {
    let mock = MockApi::spawn(0, MockConfig::default()).await?;
    let plugin = load_plugin(
        plugin_path,
        mock_services(&mock, Log::stderr(host::contract::types::LogLevel::Warn))?,
    )?;
    let messages: Vec<Value> =
        serde_json::from_str(DEMO_MESSAGES).context("the embedded demo messages")?;
    writeln!(
        out,
        "WhatsApp channel demo: {} messages to the embedded mock Cloud API at {}\n",
        messages.len(),
        mock.base_url()
    )?;
    let cfg = config(&demo_settings(), Some(mock.base_url()));
    for m in &messages {
        let scenario = m.get("scenario").and_then(Value::as_str).unwrap_or("");
        let mut doc = m.clone();
        doc.as_object_mut().map(|o| o.remove("scenario"));
        let request =
            json::message_request(&doc, now_ms()).map_err(|e| anyhow!("demo message: {e:?}"))?;
        writeln!(out, "▸ {scenario}  →  {}", request.recipient)?;
        for attempt in 1..=3u32 {
            match plugin.send(&request, &cfg, attempt).await? {
                Err(errors) => {
                    for e in errors {
                        writeln!(
                            out,
                            "    refused before sending: {} [{}] {}",
                            e.path, e.code, e.message
                        )?;
                    }
                    break;
                }
                Ok(c) => {
                    let code = c
                        .provider_code
                        .as_deref()
                        .map(|c| format!(" code {c}"))
                        .unwrap_or_default();
                    let id = c
                        .provider_message_id
                        .as_deref()
                        .map(|i| format!(" id {i}"))
                        .unwrap_or_default();
                    let wait = c
                        .retry_after_ms
                        .map(|ms| format!(" retry after {ms} ms"))
                        .unwrap_or_default();
                    let op = if c.operator_action {
                        " (operator action needed)"
                    } else {
                        ""
                    };
                    writeln!(
                        out,
                        "    attempt {attempt}: {} / {}{code}{id}{wait}{op}",
                        json::disposition_name(c.disposition),
                        c.reason
                    )?;
                    if c.disposition != Disposition::Retry
                        || attempt == 3
                        || c.retry_after_ms.unwrap_or(0) > 2_000
                    {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(c.retry_after_ms.unwrap_or(0))).await;
                }
            }
        }
    }
    let n = mock.requests().len();
    writeln!(
        out,
        "\nThe mock received {n} HTTP requests; the access token never entered the component."
    )?;
    demo_flows(out).await?;
    Ok(Outcome {
        code: 0,
        json: None,
        text: None,
    })
}

/// The demo's second part: fallback flows across WhatsApp, SMS (Twilio's API) and email
/// (SendGrid's), with signed webhooks, timers, and a recipient per step.
pub async fn demo_flows(out: &mut dyn std::io::Write) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("host-harness-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("flows.sqlite");
    let _ = std::fs::remove_file(&db);
    let stack =
        host_testkit::stack::Stack::spawn(&db.to_string_lossy(), Duration::from_millis(250))
            .await?;
    writeln!(
        out,
        "\nFallback flows: WhatsApp, then SMS, then email (serve at {}, signed webhooks from the mock's Meta, Twilio and SendGrid)\n",
        stack.url()
    )?;
    let ids = start_demo_flows(&stack, out)?;
    let started = Instant::now();
    loop {
        let done = ids
            .iter()
            .filter(|id| {
                stack
                    .runner
                    .is_final(host::tenants::DEFAULT_TENANT, id)
                    .unwrap_or(true)
            })
            .count();
        writeln!(
            out,
            "  … {done}/{} flows finished after {:.1} s",
            ids.len(),
            started.elapsed().as_secs_f64()
        )?;
        if done == ids.len() || started.elapsed() > Duration::from_secs(30) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    for id in &ids {
        if let Some(view) = stack.runner.flow_view(host::tenants::DEFAULT_TENANT, id)? {
            let status = host::server::flow_json(&view)?;
            writeln!(out, "\n{}", host::flow::render_timeline(&status).trim_end())?;
        }
    }
    writeln!(
        out,
        "\n(`host-harness flow status ID --db {}` prints a timeline again.)",
        db.display()
    )?;
    Ok(())
}

/// The demo's fallback flows, one per person, each WhatsApp → SMS → email: their ids.
fn start_demo_flows(
    stack: &host_testkit::stack::Stack,
    out: &mut dyn std::io::Write,
) -> Result<Vec<String>> {
    let template = json!({"type": "template", "template": {"name": "order_update", "language": "en_US", "components": [{"type": "body", "parameters": [{"type": "text", "text": "Pablo"}]}]}});
    // (what, the customer's phone, the SMS step's own number if another, their address)
    let scenarios = [
        (
            "delivered on WhatsApp",
            "+15550100001",
            None,
            "ana@example.com",
        ),
        (
            "not on WhatsApp (131026 by webhook) → SMS delivered",
            "+15550100012",
            None,
            "ben@example.com",
        ),
        (
            "not on WhatsApp (131026) → SMS undelivered (30003) → email delivered",
            "+15550100002",
            Some("+15550600003"),
            "carla@example.com",
        ),
        (
            "rate-limited, retried, delivered",
            "+15550100010",
            None,
            "dan@example.com",
        ),
        (
            "never delivered → timer → SMS",
            "+15550100013",
            None,
            "eve@example.com",
        ),
    ];
    let mut ids = Vec::new();
    for (i, (what, phone, sms_to, address)) in scenarios.iter().enumerate() {
        let mut sms = json!({"channel": "sms", "content": {"text": "Your order shipped.", "validity_period_s": 5},
            "wait_for": "delivered", "within_ms": 5_000});
        if let Some(to) = sms_to {
            sms["to"] = json!(to);
        }
        let spec: host::flow::FlowSpec = serde_json::from_value(json!({
            "id": format!("demo-{}", i + 1), "recipient": phone, "ttl_ms": 60_000, "unknown_wait_ms": 5_000,
            "steps": [
                {"channel": "whatsapp", "content": template, "wait_for": "delivered", "within_ms": 2_000},
                sms,
                {"channel": "email", "to": address, "wait_for": "delivered", "within_ms": 5_000,
                 "content": {"subject": "Your order shipped", "text": "Your order shipped.",
                             "html": "<p>Your order shipped.</p>"}}]}))?;
        let id = stack
            .runner
            .submit(host::tenants::DEFAULT_TENANT, vec![spec], now_ms())
            .map_err(|e| anyhow!("starting a demo flow: {e:?}"))?
            .remove(0)
            .id;
        writeln!(out, "  started {id}: {what} ({phone})")?;
        ids.push(id);
    }
    Ok(ids)
}
