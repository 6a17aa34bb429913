//! The body of `GET /flows/{id}` (and of `host-harness flow status --json`): a stored flow as
//! the flow engine reads it. The store gives typed rows ([`FlowView`]); the names and shapes
//! the API promises are decided here, once.

use crate::flow::spec::FlowSpec;
use crate::flow::store::{AttemptView, FlowView, TimelineEntry};
use anyhow::{Context, Result};
use serde_json::{Value, json};

/// The flow's state, its attempts and its timeline, as the flow API answers them.
pub fn flow_json(view: &FlowView) -> Result<Value> {
    let spec: FlowSpec = serde_json::from_str(&view.spec)
        .with_context(|| format!("flow {} holds a spec this host cannot read", view.id))?;
    Ok(json!({
        "id": view.id, "recipient": spec.recipient, "state": view.state, "step": view.step,
        "attempts": view.attempts.iter().map(attempt_json).collect::<Vec<_>>(),
        "timeline": view.timeline.iter().map(timeline_json).collect::<Vec<_>>(),
    }))
}

fn attempt_json(a: &AttemptView) -> Value {
    json!({
        "attempt_id": a.id, "channel": a.channel, "attempt": a.attempt,
        "provider_message_id": a.provider_message_id, "sent_ms": a.sent_ms,
        // No answer recorded yet: the send is in flight.
        "disposition": a.disposition.as_deref().unwrap_or("sending"),
        "reason": a.reason, "provider_code": a.provider_code,
        "last_status": a.status, "moved_on": a.closed,
        "possible_duplicate": a.possible_duplicate, "correlation_id": a.correlation_id,
        "phase": a.phase,
    })
}

fn timeline_json(t: &TimelineEntry) -> Value {
    json!({"at_ms": t.at_ms, "attempt_id": t.attempt_id, "entry": t.entry})
}
