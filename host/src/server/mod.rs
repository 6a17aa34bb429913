//! `serve`: the flow runner behind HTTP (axum on hyper, tokio).
//!
//! | route | auth | what |
//! |---|---|---|
//! | `GET /webhooks/{channel}` | the provider's verify token | the verification handshake, through the channel's `parse-webhook` |
//! | `POST /webhooks/{channel}` | the provider's signature | status webhooks → the runner (401 on a bad signature, nothing applied) |
//! | `GET`/`POST /webhooks/{channel}/{tenant}` | the signature, checked with the tenant's own account's secrets | as above, for a tenant with its own account on the channel (Twilio, SendGrid); its events are its own (404 without such an account) |
//! | `POST /flows` | `Authorization: Bearer <a tenant's token>` | one flow (JSON object), or a batch (JSON array or NDJSON, ≤ 10,000) → 201 `{"id"}` / `{"ids"}` |
//! | `GET /flows/{id}` | a tenant's token | the tenant's flow: state, attempts and timeline (another tenant's is 404) |
//! | `POST /admin/tenants`, `GET /admin/tenants`, `GET`/`PATCH /admin/tenants/{id}` | `Bearer <flow/admin-token>` | tenants: create, list, show (with its tokens), rename |
//! | `POST /admin/tenants/{id}/tokens`, `DELETE /admin/tenants/{id}/tokens/{token}` | admin | issue a flow API token (shown once), revoke one |
//! | `GET /health` | none | `{"ok": true}` |
//!
//! Limits: bodies (413 past [`ServerOptions::max_body_bytes`], webhooks past
//! [`ServerOptions::max_webhook_body_bytes`]), header read time, body read time (408),
//! connections (further ones wait in the kernel's backlog), webhooks in flight and their
//! bytes (503 with `Retry-After`, connection closed: unauthenticated traffic never starves
//! the API), in-flight sends and queued flows (429 with `Retry-After`). Error bodies carry a code and a message, never
//! internals; a 500 logs its details under an id it returns. SIGTERM / ctrl-c stop accepting,
//! finish the requests and sends in flight, then exit.

mod accounts;
mod admin;
mod auth;
mod routes;
mod status;

pub use status::flow_json;

use crate::flow::Runner;
use anyhow::{Context, Result};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// Limits of the HTTP server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Largest request body (a batch of 10,000 flows fits; Meta's webhooks are ≤ 3 MB).
    pub max_body_bytes: usize,
    /// Most flows in one `POST /flows`.
    pub max_batch: usize,
    /// Time a client has to send the request headers.
    pub header_read_timeout: Duration,
    /// Time a client has to send the body.
    pub body_read_timeout: Duration,
    /// Connections served at once. Large, because a connection is cheap and, before its
    /// headers arrive, cannot be told apart: the unauthenticated routes get their own
    /// admission below instead of sharing a small pool with the API.
    pub max_connections: usize,
    /// Largest webhook body: providers send a few MB at most (Meta: up to 3 MB).
    pub max_webhook_body_bytes: usize,
    /// Webhook requests (unauthenticated until their signature is checked) in flight at
    /// once; past it they are answered 503 at once and their connection closed.
    pub max_webhooks_in_flight: usize,
    /// Bytes of webhook bodies being read or checked at once (each counts its declared
    /// length, or the largest allowed when it declares none); past it, 503.
    pub webhook_body_budget_bytes: usize,
    /// A bearer token of the flow API for the default tenant (the host secret
    /// `flow/api-token`); each tenant's own tokens are in the store.
    pub api_token: String,
    /// The bearer token of the operator API (`/admin/…`, the host secret `flow/admin-token`);
    /// without one the operator API answers 401 to everyone.
    pub admin_token: Option<String>,
    /// The base URL providers call this server at (scheme and authority, maybe a path
    /// prefix; `serve --public-url`): behind a proxy the server cannot know it, and providers
    /// that sign the URL they called (Twilio) need it. Webhook requests carry it plus the
    /// path and query as received; without it they carry no URL.
    pub public_url: Option<String>,
}

impl ServerOptions {
    pub fn new(api_token: impl Into<String>) -> Self {
        ServerOptions {
            max_body_bytes: 32 << 20,
            max_batch: 10_000,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            max_webhook_body_bytes: 4 << 20,
            max_webhooks_in_flight: 256,
            webhook_body_budget_bytes: 128 << 20,
            api_token: api_token.into(),
            public_url: None,
            admin_token: None,
        }
    }
}

/// A running server with its runner: a task of the caller's runtime. [`Server::stop`] stops it
/// gracefully; dropping it asks it to stop without waiting.
pub struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<Result<()>>>,
}

/// Binds first (so others can learn the URL), serves later.
pub fn bind(port: u16) -> Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))
        .with_context(|| format!("binding 127.0.0.1:{port}"))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

impl Server {
    /// Serves as a task of the current tokio runtime until stopped.
    pub async fn start(
        listener: std::net::TcpListener,
        runner: Arc<Runner>,
        options: ServerOptions,
    ) -> Result<Server> {
        let addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(serve(listener, runner, options, stopped));
        Ok(Server {
            addr,
            stop,
            task: Some(task),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, finishes what is in flight, and returns.
    pub async fn stop(mut self) -> Result<()> {
        let _ = self.stop.send(true);
        match self.task.take() {
            Some(task) => task
                .await
                .map_err(|e| anyhow::anyhow!("the server task failed: {e}"))?,
            None => Ok(()),
        }
    }

    /// Serves until SIGTERM or ctrl-c, then stops gracefully.
    pub async fn run_until_signal(self) -> Result<()> {
        shutdown_signal().await;
        tracing::info!("stopping: finishing requests and sends in flight");
        self.stop().await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// The accept loop: one task per connection, at most `max_connections`, each under the
/// header read timeout; on stop, connections finish their request and close.
async fn serve(
    listener: std::net::TcpListener,
    runner: Arc<Runner>,
    options: ServerOptions,
    mut stopped: watch::Receiver<bool>,
) -> Result<()> {
    let listener = TcpListener::from_std(listener)?;
    let dispatcher = tokio::spawn(runner.clone().run(stopped.clone()));
    let app = routes::router(runner, options.clone());
    let connections = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .keep_alive(true);
    loop {
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => p?,
            _ = stopped.changed() => break,
        };
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = stopped.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let conn = http.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    // Requests in flight get a while to finish; then the dispatcher drains its sends.
    let _ = tokio::time::timeout(Duration::from_secs(30), graceful.shutdown()).await;
    dispatcher.await.context("the dispatcher task")??;
    Ok(())
}
