//! Flow files: what a flow asks for, checked with every number range-bound.
//!
//! ```json
//! {"id": "order-4711", "recipient": "+15550100001", "ttl_ms": 600000, "max_attempts": 3,
//!  "callback_url": "https://engine.example/flow-events",
//!  "steps": [
//!    {"channel": "whatsapp", "content": {"type": "template", …}, "wait_for": "delivered", "within_ms": 60000},
//!    {"channel": "sms", "content": {"text": "Your order shipped"}, "wait_for": "delivered", "within_ms": 60000}]}
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Longest a flow may live, wait for a status or for an unknown outcome: 30 days.
pub const MAX_DURATION_MS: u64 = 30 * 24 * 3_600_000;
/// Most attempts per channel.
pub const MAX_ATTEMPTS: u32 = 10;
/// Most steps (channels) per flow.
pub const MAX_STEPS: usize = 10;
/// Longest flow id.
pub const MAX_ID_LEN: usize = 128;
/// Longest recipient.
pub const MAX_RECIPIENT_LEN: usize = 256;
/// Largest message content of one step, as JSON.
pub const MAX_CONTENT_BYTES: usize = 64 * 1024;

/// The status a step waits for, in the order statuses arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitFor {
    Accepted,
    Sent,
    Delivered,
    Read,
}

impl WaitFor {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitFor::Accepted => "accepted",
            WaitFor::Sent => "sent",
            WaitFor::Delivered => "delivered",
            WaitFor::Read => "read",
        }
    }
}

fn default_wait_for() -> WaitFor {
    WaitFor::Delivered
}
fn default_max_attempts() -> u32 {
    3
}
fn default_unknown_wait_ms() -> u64 {
    30_000
}

/// One channel's part of a flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// A channel name the runner knows (`whatsapp`, `sms`).
    pub channel: String,
    /// The message content for that channel.
    pub content: Value,
    /// The status that completes this step.
    #[serde(default = "default_wait_for")]
    pub wait_for: WaitFor,
    /// How long to wait for `wait_for` before trying the next channel.
    pub within_ms: Option<u64>,
    /// The tenant's sender to send from on this channel (a WhatsApp phone number id, or its
    /// display number); none: the account's default. Resolved to the sender's id when the
    /// flow is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// This step's recipient, when it is not the flow's (an email address for the email
    /// step of a flow whose recipient is a phone number); checked against the channel's
    /// recipient rules when the flow is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

impl Step {
    /// How long after the answer the step waits for its status: `within_ms`, when it waits
    /// for more than acceptance (an accepted send ends a step waiting for acceptance).
    pub fn status_within_ms(&self) -> Option<u64> {
        self.within_ms.filter(|_| self.wait_for > WaitFor::Accepted)
    }

    /// The lane the step waits in for its send: the channel, or `channel#sender` for a
    /// named sender (each number has its own pace).
    pub fn lane(&self) -> std::borrow::Cow<'_, str> {
        match &self.from {
            Some(sender) => std::borrow::Cow::Owned(format!("{}#{sender}", self.channel)),
            None => std::borrow::Cow::Borrowed(self.channel.as_str()),
        }
    }
}

impl FlowSpec {
    /// Whom step `step` sends to: its own `to`, else the flow's recipient.
    pub fn recipient_of(&self, step: usize) -> &str {
        self.steps
            .get(step)
            .and_then(|s| s.to.as_deref())
            .unwrap_or(&self.recipient)
    }
}

/// The channel a lane (`whatsapp`, `whatsapp#106540352242922`) sends on.
pub fn lane_channel(lane: &str) -> &str {
    lane.split_once('#').map_or(lane, |(channel, _)| channel)
}

/// A flow file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowSpec {
    /// Letters, digits and `._:-`; a collision-free UUIDv7 when absent.
    pub id: Option<String>,
    pub recipient: String,
    pub steps: Vec<Step>,
    /// Attempts per channel for retryable answers.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// After this long nothing more is sent (an OTP is worthless late).
    pub ttl_ms: Option<u64>,
    /// How long an attempt whose outcome is unknown waits for a status before moving on.
    #[serde(default = "default_unknown_wait_ms")]
    pub unknown_wait_ms: u64,
    /// When the customer last wrote (for the WhatsApp service window), ms since the epoch.
    pub last_inbound_ms: Option<u64>,
    /// Where each transition is POSTed, signed (see the runner's outbox).
    pub callback_url: Option<String>,
}

/// One problem with a flow file: a JSON Pointer, a stable code and a message with the limit
/// and the actual value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpecError {
    pub path: String,
    pub code: &'static str,
    pub message: String,
}

impl SpecError {
    fn new(path: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        SpecError {
            path: path.into(),
            code,
            message: message.into(),
        }
    }
}

/// Field errors as the API answers them.
pub fn errors_json(errors: &[SpecError]) -> Value {
    json!({
        "error": errors.first().map(|e| format!("{}: {}", e.path, e.message)).unwrap_or_default(),
        "errors": errors,
    })
}

/// A serde path as a JSON Pointer (`/steps/0/wait_for`).
/// Where a JSON text fails to parse, as a JSON Pointer (`/steps/0/ttl_ms` for a number past
/// f64's range such as `1e400`), with serde_json's message (line and column). Reads one value
/// from the start of `text`, ignoring what follows.
pub fn locate_json_error(text: &str) -> Option<(String, String)> {
    let mut de = serde_json::Deserializer::from_str(text);
    match serde_path_to_error::deserialize::<_, Value>(&mut de) {
        Ok(_) => None,
        Err(e) => Some((pointer(e.path()), e.into_inner().to_string())),
    }
}

/// A serde path as a JSON Pointer (`/steps/0/channel`).
pub fn pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|seg| match seg {
            Segment::Seq { index } => Some(format!("/{index}")),
            Segment::Map { key } => Some(format!("/{}", key.replace('~', "~0").replace('/', "~1"))),
            Segment::Enum { .. } | Segment::Unknown => None,
        })
        .collect()
}

fn check_range(errors: &mut Vec<SpecError>, path: &str, value: u64, min: u64, max: u64) {
    if value < min || value > max {
        errors.push(SpecError::new(
            path,
            "out_of_range",
            format!("must be between {min} and {max}, got {value}"),
        ));
    }
}

/// Whether a flow id is acceptable: it travels in correlation ids and URLs.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
}

impl FlowSpec {
    /// Parses a flow document; a type error becomes a field error at its JSON Pointer.
    pub fn from_value(v: Value) -> Result<FlowSpec, Vec<SpecError>> {
        serde_path_to_error::deserialize(v).map_err(|e| {
            let path = pointer(e.path());
            let message = e.into_inner().to_string();
            vec![SpecError::new(path, "invalid_flow", message)]
        })
    }

    /// Every problem, so a client fixes them all at once.
    pub fn check(&self, channels: &[&str]) -> Vec<SpecError> {
        let mut errors = Vec::new();
        if let Some(id) = &self.id
            && !valid_id(id)
        {
            errors.push(SpecError::new(
                "/id",
                "invalid_id",
                format!(
                    "must be 1 to {MAX_ID_LEN} letters, digits or . _ : -, got {} characters: {:?}",
                    id.chars().count(),
                    id.chars().take(40).collect::<String>()
                ),
            ));
        }
        let r = self.recipient.trim();
        if r.is_empty() || self.recipient.len() > MAX_RECIPIENT_LEN {
            errors.push(SpecError::new(
                "/recipient",
                "invalid_recipient",
                format!(
                    "must be 1 to {MAX_RECIPIENT_LEN} bytes, got {}",
                    self.recipient.len()
                ),
            ));
        }
        if self.steps.is_empty() || self.steps.len() > MAX_STEPS {
            errors.push(SpecError::new(
                "/steps",
                "invalid_steps",
                format!(
                    "a flow needs at least one step and at most {MAX_STEPS}, got {}",
                    self.steps.len()
                ),
            ));
        }
        self.check_steps(channels, &mut errors);
        self.check_numbers(&mut errors);
        if let Some(url) = &self.callback_url {
            let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
            if !scheme_ok || url.len() > 2_000 {
                errors.push(SpecError::new(
                    "/callback_url",
                    "invalid_url",
                    format!(
                        "must be an http(s) URL of at most 2000 characters, got {} characters",
                        url.len()
                    ),
                ));
            }
        }
        errors
    }

    fn check_steps(&self, channels: &[&str], errors: &mut Vec<SpecError>) {
        for (i, s) in self.steps.iter().enumerate() {
            if !channels.is_empty() && !channels.contains(&s.channel.as_str()) {
                errors.push(SpecError::new(
                    format!("/steps/{i}/channel"),
                    "unknown_channel",
                    format!("must be one of {channels:?}, got {:?}", s.channel),
                ));
            }
            if let Some(from) = &s.from {
                let ok = !from.is_empty()
                    && from.len() <= 64
                    && from.chars().all(|c| {
                        c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | ' ' | '.' | '_')
                    });
                if !ok {
                    errors.push(SpecError::new(
                        format!("/steps/{i}/from"),
                        "invalid_sender",
                        format!(
                            "a sender is 1 to 64 letters, digits or '+-._ ' (a phone number id or its display number), got {from:?}"
                        ),
                    ));
                }
            }
            if let Some(to) = &s.to
                && (to.trim().is_empty() || to.len() > MAX_RECIPIENT_LEN)
            {
                errors.push(SpecError::new(
                    format!("/steps/{i}/to"),
                    "invalid_recipient",
                    format!("must be 1 to {MAX_RECIPIENT_LEN} bytes, got {}", to.len()),
                ));
            }
            if let Some(w) = s.within_ms {
                check_range(
                    errors,
                    &format!("/steps/{i}/within_ms"),
                    w,
                    1,
                    MAX_DURATION_MS,
                );
            }
            let size = s.content.to_string().len();
            if size > MAX_CONTENT_BYTES {
                errors.push(SpecError::new(
                    format!("/steps/{i}/content"),
                    "too_large",
                    format!("at most {MAX_CONTENT_BYTES} bytes of JSON, got {size}"),
                ));
            }
        }
    }

    fn check_numbers(&self, errors: &mut Vec<SpecError>) {
        check_range(
            errors,
            "/max_attempts",
            self.max_attempts.into(),
            1,
            MAX_ATTEMPTS.into(),
        );
        if let Some(t) = self.ttl_ms {
            check_range(errors, "/ttl_ms", t, 1, MAX_DURATION_MS);
        }
        check_range(
            errors,
            "/unknown_wait_ms",
            self.unknown_wait_ms,
            0,
            MAX_DURATION_MS,
        );
        if let Some(t) = self.last_inbound_ms {
            // Any real timestamp fits i64 milliseconds; larger ones are nonsense.
            check_range(errors, "/last_inbound_ms", t, 0, i64::MAX as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Value {
        json!({"recipient": "+15550100001", "steps": [{"channel": "sms", "content": {"text": "hi"}}]})
    }

    fn errors_of(v: Value) -> Vec<SpecError> {
        match FlowSpec::from_value(v) {
            Ok(spec) => spec.check(&["sms", "whatsapp"]),
            Err(e) => e,
        }
    }

    #[test]
    fn a_minimal_flow_is_valid_with_defaults() {
        let spec = FlowSpec::from_value(base()).unwrap();
        assert!(spec.check(&["sms"]).is_empty());
        assert_eq!(spec.steps[0].wait_for, WaitFor::Delivered);
        assert_eq!(spec.max_attempts, 3);
    }

    #[test]
    fn huge_durations_are_field_errors_not_overflows() {
        for (field, value) in [
            ("/ttl_ms", json!(u64::MAX)),
            ("/ttl_ms", json!(1u64 << 63)),
            ("/unknown_wait_ms", json!(u64::MAX)),
            ("/max_attempts", json!(u32::MAX)),
            ("/max_attempts", json!(0)),
            ("/last_inbound_ms", json!(u64::MAX)),
        ] {
            let mut v = base();
            v[&field[1..]] = value.clone();
            let errors = errors_of(v);
            assert_eq!(errors.len(), 1, "{field}={value}: {errors:?}");
            assert_eq!(errors[0].path, field);
            assert!(errors[0].message.contains(&value.to_string()), "{errors:?}");
        }
        let mut v = base();
        v["steps"][0]["within_ms"] = json!(u64::MAX);
        assert_eq!(errors_of(v)[0].path, "/steps/0/within_ms");
    }

    #[test]
    fn ids_are_restricted_to_what_travels_safely() {
        for bad in ["", "a/b", "has space", &"x".repeat(129)] {
            let mut v = base();
            v["id"] = json!(bad);
            assert_eq!(errors_of(v)[0].code, "invalid_id", "{bad:?}");
        }
        assert!(valid_id("order-4711:retry.2_b"));
    }

    #[test]
    fn unknown_channels_and_wait_targets_are_named() {
        let mut v = base();
        v["steps"][0]["channel"] = json!("fax");
        assert_eq!(errors_of(v)[0].path, "/steps/0/channel");
        let mut v = base();
        v["steps"][0]["wait_for"] = json!("seen");
        let e = &errors_of(v)[0];
        assert_eq!(e.path, "/steps/0/wait_for");
        assert!(e.message.contains("seen"));
        let mut v = base();
        v["ttl_ms"] = json!(-1);
        assert_eq!(errors_of(v)[0].path, "/ttl_ms");
    }

    #[test]
    fn a_step_may_name_its_own_recipient() {
        let mut v = base();
        v["steps"][0]["to"] = json!("pablo@example.com");
        let spec = FlowSpec::from_value(v.clone()).unwrap();
        assert!(spec.check(&["sms"]).is_empty());
        assert_eq!(spec.recipient_of(0), "pablo@example.com");
        assert_eq!(spec.recipient_of(9), "+15550100001");
        v["steps"][0]["to"] = json!("x".repeat(MAX_RECIPIENT_LEN + 1));
        let e = &errors_of(v)[0];
        assert_eq!(
            (e.path.as_str(), e.code),
            ("/steps/0/to", "invalid_recipient")
        );
        assert!(e.message.contains("257"), "{}", e.message);
    }
}
