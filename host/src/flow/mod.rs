//! Flows: one message tried channel by channel, with retries, timers, a TTL, pacing and a
//! per-attempt timeline, its state in SQLite so a crash loses nothing and sends nothing twice.
//!
//! - [`spec`]: the flow file, every number range-checked;
//! - [`policy`]: a pure function from position + what happened + time to the next transition;
//! - [`store`]: transactions that read a position, apply the policy and write the answer;
//! - [`pacing`]: per-number rate, per-customer gap, provider back-offs;
//! - [`runner`]: the dispatcher (claim → send with no lock held → record), webhooks, callbacks.

pub mod accounts;
pub mod pacing;
pub mod policy;
pub mod runner;
pub mod spec;
pub mod store;
mod writes;

pub use policy::FlowState;
pub use runner::{Accepted, Channel, Runner, RunnerOptions, SubmitError};
pub use spec::{FlowSpec, Step, WaitFor};

/// A flow's timeline as readable text.
pub fn render_timeline(status: &serde_json::Value) -> String {
    let mut out = format!(
        "flow {} → {}: {}\n",
        status["id"].as_str().unwrap_or(""),
        status["recipient"].as_str().unwrap_or(""),
        status["state"].as_str().unwrap_or("")
    );
    let start = status["timeline"][0]["at_ms"].as_i64().unwrap_or(0);
    for t in status["timeline"].as_array().into_iter().flatten() {
        let dt = t["at_ms"].as_i64().unwrap_or(0) - start;
        out.push_str(&format!(
            "  +{:>6} ms  {}\n",
            dt,
            t["entry"].as_str().unwrap_or("")
        ));
    }
    out
}
