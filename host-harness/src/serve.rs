//! `host-harness serve`: the flow runner behind HTTP.
//!
//! | route | what |
//! |---|---|
//! | `GET /webhooks/{channel}` | the provider's verification handshake, through the channel's `parse-webhook` |
//! | `POST /webhooks/{channel}` | signed status webhooks → the runner (401 on a bad signature, nothing applied) |
//! | `POST /flows` | start a flow (a flow file as the body) → `{"id"}` |
//! | `GET /flows/{id}` | the flow's state, attempts and timeline |
//!
//! A ticker fires timers every 50 ms. State is in the runner's SQLite file, so a restarted
//! server carries on where the last one stopped.

use crate::flow::{FlowSpec, Runner};
use crate::services::now_ms;
use crate::types::{Header, WebhookError, WebhookOutcome, WebhookRequest};
use anyhow::{Result, anyhow};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

const WORKERS: usize = 4;

/// A running server; stops when dropped.
pub struct Server {
    addr: SocketAddr,
    http: Arc<tiny_http::Server>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// Binds first (so others can learn the URL), serves later.
pub fn bind(port: u16) -> Result<tiny_http::Server> {
    tiny_http::Server::http(("127.0.0.1", port))
        .map_err(|e| anyhow!("binding 127.0.0.1:{port}: {e}"))
}

impl Server {
    pub fn start(http: tiny_http::Server, runner: Arc<Runner>) -> Result<Server> {
        let addr = http
            .server_addr()
            .to_ip()
            .ok_or_else(|| anyhow!("the server listens on an IP address"))?;
        let http = Arc::new(http);
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for i in 0..WORKERS {
            let (http, runner) = (http.clone(), runner.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("serve-{i}"))
                    .spawn(move || {
                        while let Ok(request) = http.recv() {
                            handle(&runner, request);
                        }
                    })?,
            );
        }
        let (ticker_runner, ticker_stop) = (runner.clone(), stop.clone());
        threads.push(
            std::thread::Builder::new()
                .name("flow-timers".into())
                .spawn(move || {
                    while !ticker_stop.load(Ordering::Relaxed) {
                        if let Err(e) = ticker_runner.tick(now_ms()) {
                            eprintln!("flow timers: {e:#}");
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                })?,
        );
        Ok(Server {
            addr,
            http,
            stop,
            threads,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for _ in 0..WORKERS {
            self.http.unblock();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn respond(request: tiny_http::Request, status: u16, body: String, content_type: &str) {
    let header = format!("Content-Type: {content_type}")
        .parse::<tiny_http::Header>()
        .expect("static header");
    let _ = request.respond(
        tiny_http::Response::from_string(body)
            .with_status_code(status)
            .with_header(header),
    );
}

fn handle(runner: &Runner, mut request: tiny_http::Request) {
    let mut body = Vec::new();
    // Meta's payloads are at most 3 MB.
    let _ = std::io::Read::read_to_end(
        &mut std::io::Read::take(request.as_reader(), 4 << 20),
        &mut body,
    );
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    let method = request.method().to_string().to_ascii_uppercase();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method.as_str(), parts.as_slice()) {
        (_, ["webhooks", channel]) => {
            let Some(ch) = runner.channel(channel) else {
                return respond(
                    request,
                    404,
                    format!("no channel {channel:?}"),
                    "text/plain",
                );
            };
            let headers = request
                .headers()
                .iter()
                .map(|h| Header {
                    name: h.field.to_string(),
                    value: h.value.to_string(),
                })
                .collect();
            let query = query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect();
            let hook = WebhookRequest {
                method: method.clone(),
                headers,
                query,
                body,
            };
            match ch.plugin.parse_webhook(&hook, &ch.config) {
                Ok(Ok(WebhookOutcome::Verification(challenge))) => {
                    respond(request, 200, challenge, "text/plain")
                }
                Ok(Ok(WebhookOutcome::Events(events))) => {
                    match runner.on_events(channel, &events, now_ms()) {
                        Ok(()) => respond(request, 200, "ok".into(), "text/plain"),
                        // A 500 makes the provider redeliver later; dedupe keys make that safe.
                        Err(e) => respond(request, 500, format!("{e:#}"), "text/plain"),
                    }
                }
                Ok(Err(WebhookError::SignatureMissing)) => {
                    respond(request, 401, "signature missing".into(), "text/plain")
                }
                Ok(Err(WebhookError::SignatureInvalid(m))) => {
                    respond(request, 401, m, "text/plain")
                }
                Ok(Err(WebhookError::VerificationRefused(m))) => {
                    respond(request, 403, m, "text/plain")
                }
                Ok(Err(WebhookError::SecretUnavailable(m))) => {
                    respond(request, 500, m, "text/plain")
                }
                Ok(Err(WebhookError::Malformed(errors))) => respond(
                    request,
                    400,
                    crate::json::field_errors(&errors).to_string(),
                    "application/json",
                ),
                Err(trap) => respond(request, 500, trap.to_string(), "text/plain"),
            }
        }
        ("POST", ["flows"]) => {
            let spec: Result<FlowSpec, _> = serde_json::from_slice(&body);
            match spec
                .map_err(anyhow::Error::from)
                .and_then(|s| runner.start(s, now_ms()))
            {
                Ok(id) => respond(
                    request,
                    201,
                    json!({"id": id}).to_string(),
                    "application/json",
                ),
                Err(e) => respond(
                    request,
                    400,
                    json!({"error": format!("{e:#}")}).to_string(),
                    "application/json",
                ),
            }
        }
        ("GET", ["flows", id]) => match runner.status(id) {
            Ok(Some(v)) => respond(request, 200, v.to_string(), "application/json"),
            Ok(None) => respond(
                request,
                404,
                json!({"error": "no such flow"}).to_string(),
                "application/json",
            ),
            Err(e) => respond(
                request,
                500,
                json!({"error": format!("{e:#}")}).to_string(),
                "application/json",
            ),
        },
        _ => respond(request, 404, Value::Null.to_string(), "application/json"),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(b)) => {
                out.push(b);
                i += 2;
            }
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
