//! What the demo and the tests stand on: the mock provider APIs ([`mock`]), the whole stack
//! on loopback ([`stack`]) and the one signing helper ([`signing`]).

pub mod defaults;
pub mod mock;
pub mod oci;
pub mod postgres;
pub mod process;
pub mod signing;
pub mod stack;

use serde_json::Value;

/// The channels a flow's attempts went to, in order (from `GET /flows/{id}`).
pub fn attempt_channels(status: &Value) -> Vec<String> {
    status["attempts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["channel"].as_str().map(str::to_string))
        .collect()
}

/// A flow's timeline entries, one per line (from `GET /flows/{id}`).
pub fn timeline_text(status: &Value) -> String {
    status["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["entry"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}
