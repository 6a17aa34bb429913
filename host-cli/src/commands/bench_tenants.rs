//! `bench load --tenants T --numbers N`: the campaign spread over T tenants, each its own
//! business on the mock (a WABA with N numbers, its own token, unlimited tier), put and
//! connected through the operator API as an operator would; each flow names its number
//! (`from`), so every number is its own pacing lane at `--rate`. With `--fairness`: one
//! tenant's backlog and another tenant's 100 flows, the latter's p99 beside the same 100 alone.

use anyhow::{Context, Result, bail};
use host_testkit::mock_businesses::{MockBusiness, template_json};
use host_testkit::process::FlowClient;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The operator API's token in the bench's serve.
pub const ADMIN_TOKEN: &str = "bench-admin-token";
/// The master key sealing the tenants' tokens.
pub const MASTER_KEY: &str = "6161616161616161616161616161616161616161616161616161616161616161";

/// Tenant `t`'s WABA id (digits, as Meta's).
pub fn waba(t: usize) -> String {
    format!("{}", 7_000 + t)
}

/// Tenant `t`'s id.
pub fn tenant(t: usize) -> String {
    format!("bench-{t}")
}

/// The mock's businesses: one per tenant, `numbers` numbers each, `order_update` approved,
/// no messaging limit (the bench measures pace, not the budget).
pub fn businesses(tenants: usize, numbers: usize) -> Vec<MockBusiness> {
    (0..tenants)
        .map(|t| {
            let mut b = MockBusiness::new(&waba(t), numbers, 0);
            b.tier = "TIER_UNLIMITED".into();
            b.templates = vec![template_json(
                "order_update",
                "en_US",
                "APPROVED",
                &format!("{}001", waba(t)),
            )];
            b
        })
        .collect()
}

/// Every number id of every tenant, for `serve --sender-rate`.
pub fn number_ids(tenants: &[MockBusiness]) -> Vec<String> {
    tenants
        .iter()
        .flat_map(|b| b.numbers.iter().map(|n| n.id.clone()))
        .collect()
}

/// Creates each tenant, issues its token, puts its account and connects every number;
/// each tenant's flow API token.
pub fn set_up(base: &str, businesses: &[MockBusiness]) -> Result<Vec<String>> {
    let http = reqwest::blocking::Client::new();
    let call = |method: reqwest::Method, path: &str, body: Value| -> Result<Value> {
        let r = http
            .request(method, format!("{base}{path}"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .with_context(|| format!("reaching {base}"))?;
        let status = r.status();
        let body: Value = r.json().unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{path}: {status} {body}");
        }
        Ok(body)
    };
    let mut tokens = Vec::new();
    for (t, b) in businesses.iter().enumerate() {
        let id = tenant(t);
        call(reqwest::Method::POST, "/admin/tenants", json!({"id": id}))?;
        let token = call(
            reqwest::Method::POST,
            &format!("/admin/tenants/{id}/tokens"),
            json!({}),
        )?;
        tokens.push(token["token"].as_str().unwrap_or_default().to_string());
        call(
            reqwest::Method::PUT,
            &format!("/admin/tenants/{id}/channels/whatsapp"),
            json!({"account_id": b.waba_id, "settings": {"phone_number_id": b.numbers[0].id},
                "secrets": {"access-token": b.access_token}}),
        )?;
        let senders: Vec<&str> = b.numbers.iter().map(|n| n.id.as_str()).collect();
        call(
            reqwest::Method::POST,
            &format!("/admin/tenants/{id}/channels/whatsapp/connect"),
            json!({ "sender_ids": senders }),
        )?;
    }
    Ok(tokens)
}

/// One tenant flow: the template from number `from`.
pub fn flow(id: &str, recipient: &str, from: &str, wait_for: &str) -> String {
    json!({"id": id, "recipient": recipient, "unknown_wait_ms": 60_000, "steps": [
        {"channel": "whatsapp", "wait_for": wait_for, "from": from, "content": {"type": "template",
            "template": {"name": "order_update", "language": "en_US",
                "components": [{"type": "body", "parameters": [{"type": "text", "text": "A-1"}]}]}}}]})
    .to_string()
}

/// POST→accepted of each flow as its own timeline shows it (first entry to the recorded
/// answer), read through the tenant's API once all are final; the p50 and p99 in ms.
pub fn latencies(port: u16, token: &str, ids: &[String], within: Duration) -> Result<Value> {
    let client = FlowClient::new(port, token);
    let deadline = Instant::now() + within;
    let mut ms = Vec::new();
    for id in ids {
        let flow = loop {
            match client.status(id) {
                Some(f)
                    if f["state"] != "ready"
                        && f["state"] != "sending"
                        && f["state"] != "waiting_retry" =>
                {
                    break f;
                }
                _ if Instant::now() > deadline => bail!("flow {id} not final after {within:?}"),
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        let timeline = flow["timeline"].as_array().cloned().unwrap_or_default();
        let start = timeline.first().and_then(|t| t["at_ms"].as_i64());
        let answered = timeline
            .iter()
            .find(|t| {
                t["entry"]
                    .as_str()
                    .is_some_and(|e| e.contains("attempt 1: accepted"))
            })
            .and_then(|t| t["at_ms"].as_i64());
        if let (Some(s), Some(a)) = (start, answered) {
            ms.push(a - s);
        }
    }
    ms.sort_unstable();
    let pct = |p: f64| {
        ms.get(((ms.len() as f64 * p) as usize).min(ms.len().saturating_sub(1)))
            .copied()
    };
    Ok(json!({"flows": ids.len(), "accepted": ms.len(), "p50_ms": pct(0.5), "p99_ms": pct(0.99)}))
}

/// CPU seconds this process (the mock, the client) has used, from `/proc/self/stat`.
pub fn own_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name's closing parenthesis: utime is the 12th, stime 13th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}
