//! The flow policy: a pure function from a flow's position, what just happened and the time
//! to what the flow does next. No I/O, no clock: the store applies the answer in the same
//! transaction that read the position, and tests drive it with any `now`.
//!
//! | what happened | next |
//! |---|---|
//! | the step's `wait_for` status (or a later one) reached | done |
//! | accepted / sent below the target | wait for a status until `within_ms` (or the TTL) |
//! | `retry`, attempts left | send again on the same channel after `retry_after_ms` |
//! | `retry`, attempts used up; `fallback`; `failed` | move on to the next channel |
//! | `unknown` (the request may have left) | wait `unknown_wait_ms` for a status; never resend |
//! | a status timer fires | move on |
//! | the TTL passes, whatever the state | expired: nothing more is sent |

#[cfg(doc)]
use super::spec::Step;
use super::spec::{FlowSpec, WaitFor};
use crate::contract::types::Disposition;

/// Default wait before retrying when the channel gives no `retry_after_ms`.
pub const DEFAULT_RETRY_MS: u64 = 1_000;

/// Where a flow is. Stored as text; never compared as text elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowState {
    /// Due to send its current step and attempt (possibly waiting for pacing).
    Ready,
    /// Claimed: an attempt is being sent (crash recovery turns it into `WaitingUnknown`).
    Sending,
    WaitingStatus,
    WaitingRetry,
    WaitingUnknown,
    Done,
    Exhausted,
    Expired,
    /// A person (or another handler) took the conversation over: nothing more is sent.
    HandedOver,
}

impl FlowState {
    pub const ALL: [FlowState; 9] = [
        FlowState::Ready,
        FlowState::Sending,
        FlowState::WaitingStatus,
        FlowState::WaitingRetry,
        FlowState::WaitingUnknown,
        FlowState::Done,
        FlowState::Exhausted,
        FlowState::Expired,
        FlowState::HandedOver,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FlowState::Ready => "ready",
            FlowState::Sending => "sending",
            FlowState::WaitingStatus => "waiting_status",
            FlowState::WaitingRetry => "waiting_retry",
            FlowState::WaitingUnknown => "waiting_unknown",
            FlowState::Done => "done",
            FlowState::Exhausted => "exhausted",
            FlowState::Expired => "expired",
            FlowState::HandedOver => "handed_over",
        }
    }

    pub fn parse(s: &str) -> Option<FlowState> {
        FlowState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            FlowState::Done | FlowState::Exhausted | FlowState::Expired | FlowState::HandedOver
        )
    }
}

/// A flow's position: what the policy reads.
#[derive(Debug, Clone, Copy)]
pub struct Position<'a> {
    pub spec: &'a FlowSpec,
    pub step: usize,
    pub attempt: u32,
    pub expires_ms: Option<u64>,
}

/// What the flow does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// The step's target status was reached.
    Done,
    /// Wait in `state` (a waiting state) until `until` (none: until a status arrives).
    Wait {
        state: FlowState,
        until: Option<u64>,
    },
    /// Send the same step again as attempt `attempt`, at `at`.
    Retry { attempt: u32, at: u64 },
    /// Send the current step and attempt now.
    Send,
    /// Leave this channel for the next step (or exhaust the flow).
    MoveOn { why: MoveOnReason },
    /// The TTL passed.
    Expire,
}

/// Why a flow leaves a channel: said in its timeline and in the `falling_back` or `exhausted`
/// callback (as the text `Display` gives).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoveOnReason {
    /// The flow's position names a step its spec does not have.
    NoSuchStep,
    /// `retry` answers used every attempt.
    AttemptsUsed { attempts: u32, channel: String },
    /// `fallback` or `failed`: this channel cannot deliver this message.
    CannotDeliver { channel: String },
    /// The step's `wait_for` status did not come within `within_ms`.
    StatusTimedOut {
        channel: String,
        /// `None` when the position names no step.
        wait_for: Option<WaitFor>,
        within_ms: u64,
    },
    /// No status came for an attempt whose outcome was unknown.
    UnknownUnresolved { waited_ms: u64 },
    /// The plugin refused the message before anything was sent.
    RefusedBeforeSending { channel: String, why: String },
}

impl std::fmt::Display for MoveOnReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MoveOnReason::NoSuchStep => f.write_str("no such step"),
            MoveOnReason::AttemptsUsed { attempts, channel } => {
                write!(f, "{attempts} attempts used on {channel}")
            }
            MoveOnReason::CannotDeliver { channel } => {
                write!(f, "{channel} cannot deliver this message")
            }
            MoveOnReason::StatusTimedOut {
                channel,
                wait_for,
                within_ms,
            } => write!(
                f,
                "timer: {channel} not {} within {within_ms} ms",
                wait_for.map_or("?", WaitFor::as_str)
            ),
            MoveOnReason::UnknownUnresolved { waited_ms } => write!(
                f,
                "no status within {waited_ms} ms after an unknown outcome"
            ),
            MoveOnReason::RefusedBeforeSending { channel, why } => {
                write!(f, "{channel} refused the message before sending: {why}")
            }
        }
    }
}

/// How far a disposition got, on the `wait_for` scale; `None` for non-progress.
pub fn reached(d: Disposition) -> Option<WaitFor> {
    match d {
        Disposition::Accepted => Some(WaitFor::Accepted),
        Disposition::Sent => Some(WaitFor::Sent),
        Disposition::Delivered => Some(WaitFor::Delivered),
        Disposition::Read => Some(WaitFor::Read),
        _ => None,
    }
}

impl Position<'_> {
    fn expired(&self, now: u64) -> bool {
        self.expires_ms.is_some_and(|e| now >= e)
    }

    /// The earlier of a deadline and the TTL.
    fn until(&self, deadline: Option<u64>) -> Option<u64> {
        earlier(deadline, self.expires_ms)
    }
}

/// The earlier of two optional times; either alone when the other is `None`.
fn earlier(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// After a send's answer or a status for the attempt the flow is on.
pub fn after_outcome(
    pos: Position<'_>,
    disposition: Disposition,
    retry_after_ms: Option<u64>,
    now: u64,
) -> Next {
    let Some(step) = pos.spec.steps.get(pos.step) else {
        return Next::MoveOn {
            why: MoveOnReason::NoSuchStep,
        };
    };
    if let Some(got) = reached(disposition) {
        if got >= step.wait_for {
            return Next::Done;
        }
        let deadline = step.within_ms.map(|w| now.saturating_add(w));
        return Next::Wait {
            state: FlowState::WaitingStatus,
            until: pos.until(deadline),
        };
    }
    match disposition {
        Disposition::Retry if pos.attempt < pos.spec.max_attempts => Next::Retry {
            attempt: pos.attempt + 1,
            at: now.saturating_add(retry_after_ms.unwrap_or(DEFAULT_RETRY_MS)),
        },
        Disposition::Retry => Next::MoveOn {
            why: MoveOnReason::AttemptsUsed {
                attempts: pos.spec.max_attempts,
                channel: step.channel.clone(),
            },
        },
        Disposition::Unknown => Next::Wait {
            state: FlowState::WaitingUnknown,
            until: pos.until(Some(now.saturating_add(pos.spec.unknown_wait_ms))),
        },
        _ => Next::MoveOn {
            why: MoveOnReason::CannotDeliver {
                channel: step.channel.clone(),
            },
        },
    }
}

/// When the flow stops waiting for a send that leaves at `now`: the step's status deadline
/// ([`status_within_ms`](super::spec::Step::status_within_ms) after the answer, which comes
/// at about `now`) or the flow's expiry, whichever is earlier. The channel hands it to a
/// provider that can drop a message still queued after a time, so nothing arrives once the
/// flow has moved on.
pub fn send_deadline(
    status_within_ms: Option<u64>,
    expires_ms: Option<u64>,
    now: u64,
) -> Option<u64> {
    earlier(status_within_ms.map(|w| now.saturating_add(w)), expires_ms)
}

/// When a flow's wake-up time has come.
pub fn on_timer(state: FlowState, pos: Position<'_>, now: u64) -> Option<Next> {
    if state.is_final() || state == FlowState::Sending {
        return None;
    }
    if pos.expired(now) {
        return Some(Next::Expire);
    }
    let step = pos.spec.steps.get(pos.step);
    let channel = step.map(|s| s.channel.as_str()).unwrap_or("?");
    Some(match state {
        FlowState::Ready | FlowState::WaitingRetry => Next::Send,
        FlowState::WaitingStatus => Next::MoveOn {
            why: MoveOnReason::StatusTimedOut {
                channel: channel.to_string(),
                wait_for: step.map(|s| s.wait_for),
                within_ms: step.and_then(|s| s.within_ms).unwrap_or(0),
            },
        },
        FlowState::WaitingUnknown => Next::MoveOn {
            why: MoveOnReason::UnknownUnresolved {
                waited_ms: pos.spec.unknown_wait_ms,
            },
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> FlowSpec {
        FlowSpec::from_value(
            json!({"recipient": "+15550100001", "ttl_ms": 60_000, "max_attempts": 2,
            "unknown_wait_ms": 5_000, "steps": [
            {"channel": "whatsapp", "content": {}, "wait_for": "delivered", "within_ms": 10_000},
            {"channel": "sms", "content": {}, "wait_for": "accepted"}]}),
        )
        .unwrap()
    }

    fn at(spec: &FlowSpec, step: usize, attempt: u32) -> Position<'_> {
        Position {
            spec,
            step,
            attempt,
            expires_ms: Some(1_000 + 60_000),
        }
    }

    #[test]
    fn accepted_below_the_target_waits_until_the_step_deadline() {
        let s = spec();
        assert_eq!(
            after_outcome(at(&s, 0, 1), Disposition::Accepted, None, 1_000),
            Next::Wait {
                state: FlowState::WaitingStatus,
                until: Some(11_000)
            }
        );
        assert_eq!(
            after_outcome(at(&s, 0, 1), Disposition::Delivered, None, 2_000),
            Next::Done
        );
        assert_eq!(
            after_outcome(at(&s, 1, 1), Disposition::Accepted, None, 2_000),
            Next::Done
        );
    }

    #[test]
    fn the_ttl_caps_every_wait() {
        let s = spec();
        assert_eq!(
            after_outcome(at(&s, 0, 1), Disposition::Sent, None, 58_000),
            Next::Wait {
                state: FlowState::WaitingStatus,
                until: Some(61_000)
            }
        );
        assert_eq!(
            on_timer(FlowState::WaitingStatus, at(&s, 0, 1), 61_000),
            Some(Next::Expire)
        );
        assert_eq!(
            on_timer(FlowState::WaitingRetry, at(&s, 0, 1), 61_000),
            Some(Next::Expire)
        );
    }

    #[test]
    fn retries_count_attempts_then_move_on() {
        let s = spec();
        assert_eq!(
            after_outcome(at(&s, 0, 1), Disposition::Retry, Some(4_000), 1_000),
            Next::Retry {
                attempt: 2,
                at: 5_000
            }
        );
        assert!(matches!(
            after_outcome(at(&s, 0, 2), Disposition::Retry, None, 1_000),
            Next::MoveOn { .. }
        ));
    }

    #[test]
    fn a_sends_deadline_is_the_status_deadline_or_the_expiry_whichever_is_first() {
        let now = 1_000_000;
        assert_eq!(send_deadline(Some(30_000), None, now), Some(1_030_000));
        assert_eq!(
            send_deadline(Some(30_000), Some(1_010_000), now),
            Some(1_010_000)
        );
        assert_eq!(send_deadline(None, Some(1_010_000), now), Some(1_010_000));
        assert_eq!(send_deadline(None, None, now), None);
        assert_eq!(send_deadline(Some(u64::MAX), None, now), Some(u64::MAX));
        let step = |wait_for: &str| -> crate::flow::spec::Step {
            serde_json::from_value(json!({"channel": "sms", "content": {},
                "wait_for": wait_for, "within_ms": 30_000}))
            .unwrap()
        };
        // A step done at acceptance has no status to wait for: only the TTL bounds it.
        assert_eq!(step("accepted").status_within_ms(), None);
        assert_eq!(step("delivered").status_within_ms(), Some(30_000));
    }

    #[test]
    fn an_unknown_outcome_waits_and_is_never_resent() {
        let s = spec();
        let next = after_outcome(at(&s, 0, 1), Disposition::Unknown, None, 1_000);
        assert_eq!(
            next,
            Next::Wait {
                state: FlowState::WaitingUnknown,
                until: Some(6_000)
            }
        );
        assert!(matches!(
            on_timer(FlowState::WaitingUnknown, at(&s, 0, 1), 6_000),
            Some(Next::MoveOn { .. })
        ));
    }

    #[test]
    fn huge_numbers_saturate_instead_of_overflowing() {
        let mut s = spec();
        s.steps[0].within_ms = Some(u64::MAX);
        let pos = Position {
            expires_ms: None,
            ..at(&s, 0, 1)
        };
        assert_eq!(
            after_outcome(pos, Disposition::Accepted, Some(u64::MAX), u64::MAX - 1),
            Next::Wait {
                state: FlowState::WaitingStatus,
                until: Some(u64::MAX)
            }
        );
    }

    #[test]
    fn final_and_sending_flows_ignore_timers() {
        let s = spec();
        for st in [
            FlowState::Done,
            FlowState::Exhausted,
            FlowState::Expired,
            FlowState::HandedOver,
            FlowState::Sending,
        ] {
            assert_eq!(on_timer(st, at(&s, 0, 1), 100_000), None);
        }
        for st in FlowState::ALL {
            assert_eq!(FlowState::parse(st.as_str()), Some(st));
        }
    }
}
