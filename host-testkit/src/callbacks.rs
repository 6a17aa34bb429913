//! A flow-callback receiver, as a flow engine runs one: it checks each event's
//! `X-Flow-Signature` and counts what arrived (for `bench load --callbacks` and the tests).

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Counts {
    verified: u64,
    refused: u64,
    /// Distinct `X-Flow-Event-Id`s among the verified (a redelivery repeats one).
    event_ids: HashSet<String>,
    /// The first verified bodies, for the tests to read.
    bodies: Vec<Value>,
}

/// Verified bodies kept for [`CallbackReceiver::verified_bodies`].
const BODIES_KEPT: usize = 1_000;

struct Receiver {
    secret: String,
    counts: Mutex<Counts>,
}

/// A running receiver on loopback; stops when dropped.
pub struct CallbackReceiver {
    url: String,
    receiver: Arc<Receiver>,
    task: tokio::task::JoinHandle<()>,
}

impl CallbackReceiver {
    /// Listens on a free loopback port as a task of the caller's runtime; answers 200 to a
    /// correctly signed event, 401 to anything else.
    pub async fn spawn(secret: &str) -> Result<CallbackReceiver> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("starting the callback receiver")?;
        let url = format!("http://{}/callbacks", listener.local_addr()?);
        let receiver = Arc::new(Receiver {
            secret: secret.to_string(),
            counts: Mutex::default(),
        });
        let app = axum::Router::new()
            .route("/callbacks", axum::routing::post(receive))
            .with_state(receiver.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(CallbackReceiver {
            url,
            receiver,
            task,
        })
    }

    /// The URL flows name as `callback_url`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `{"verified", "refused", "distinct_events"}` so far.
    pub fn counts(&self) -> Value {
        let c = self
            .receiver
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        json!({"verified": c.verified, "refused": c.refused, "distinct_events": c.event_ids.len()})
    }
}

impl CallbackReceiver {
    /// The bodies of the first verified events, in arrival order.
    pub fn verified_bodies(&self) -> Vec<Value> {
        let c = self
            .receiver
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        c.bodies.clone()
    }
}

impl Drop for CallbackReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signed = header("x-flow-signature")
        .is_some_and(|sig| host::services::signing::verify(&receiver.secret, &body, sig));
    let mut counts = receiver.counts.lock().unwrap_or_else(|p| p.into_inner());
    if !signed {
        counts.refused += 1;
        return StatusCode::UNAUTHORIZED;
    }
    counts.verified += 1;
    if counts.bodies.len() < BODIES_KEPT
        && let Ok(v) = serde_json::from_slice(&body)
    {
        counts.bodies.push(v);
    }
    if let Some(id) = header("x-flow-event-id") {
        counts.event_ids.insert(id.to_string());
    }
    StatusCode::OK
}
