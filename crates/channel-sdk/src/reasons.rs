//! Reasons every channel gives for the same facts, whatever its provider. (A channel's own
//! reasons, one per provider error, live in its crate; the host acts on typed signals, never
//! on these strings, and shows them to people.)

/// The host's allowlist refused the request: nothing left, and a person must change a grant.
pub const HOST_POLICY_DENIED: &str = "host_policy_denied";
/// The request may have reached the provider and no answer came: never resend blindly.
pub const OUTCOME_UNKNOWN: &str = "outcome_unknown";
/// The request never left (DNS, connect, TLS): safe to try again.
pub const TRANSPORT_ERROR: &str = "transport_error";
/// The provider accepted the message.
pub const ACCEPTED: &str = "accepted";
/// A 2xx answer without what a success carries (a message id).
pub const UNEXPECTED_RESPONSE: &str = "unexpected_response";
