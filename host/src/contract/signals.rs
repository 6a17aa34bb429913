//! What the host acts on in a channel's answer, as types.
//!
//! Channels speak the shared reason vocabulary (`docs/reasons.md`) in `classification.reason`.
//! The host acts on a handful of those reasons — pacing, opt-outs, handovers — and reads them
//! here, once, into a [`Signal`]: nowhere else does the host compare a reason string. The
//! reasons the host gives itself, for sends it could not start or cannot know the outcome of,
//! are the [`HostReason`]s.

use crate::contract::types::Classification;

/// The wait before sending again when a sender rate limit comes without `retry_after_ms`.
pub const DEFAULT_SENDER_PAUSE_MS: u64 = 1_000;

/// What a classification asks of the host besides its disposition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// The sender (the business number) is over its rate: pause it for `wait_ms`.
    SenderRateLimited { wait_ms: u64 },
    /// Too many messages to one recipient in a short time: hold that pair.
    RecipientRateLimited,
    /// The customer stopped a kind of message (a preference event, or a send the provider
    /// refused because of an earlier stop).
    OptedOut,
    /// The customer resumed a kind of message.
    OptedIn,
    /// Someone else now handles the conversation: automatic sends to the customer stop.
    Handover(Handler),
    /// The provider refused the account's credentials (expired or revoked token, a missing
    /// permission): the account needs a new token.
    CredentialsRejected,
    /// The provider restricted or locked the account: it sends nothing until a person acts.
    AccountRestricted,
    /// Nothing beyond the disposition.
    None,
}

/// Who took a conversation over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// A person answered from the provider's own app (WhatsApp Business app).
    BusinessApp,
    /// Another application or inbox owns the thread.
    Other,
}

impl Handler {
    /// How the timeline says it.
    pub fn describe(self) -> &'static str {
        match self {
            Handler::BusinessApp => "a person answered from the Business app",
            Handler::Other => "another handler owns the conversation",
        }
    }
}

/// The reasons of the shared vocabulary the host acts on.
mod reason {
    pub const RATE_LIMITED: &str = "rate_limited";
    pub const PAIR_RATE_LIMITED: &str = "pair_rate_limited";
    pub const OPTED_OUT: &str = "recipient_opted_out";
    pub const OPTED_IN: &str = "recipient_opted_in";
    pub const BUSINESS_APP_REPLY: &str = "business_app_reply";
    pub const AUTH_ERROR: &str = "auth_error";
    pub const ACCOUNT_RESTRICTED: &str = "account_restricted";
}

impl Signal {
    /// The signal in a classification. `handover` events carry their reason (who took the
    /// thread) in the classification too; any reason other than the Business app's reply is
    /// another handler.
    pub fn of(c: &Classification) -> Signal {
        match c.reason.as_str() {
            reason::RATE_LIMITED => Signal::SenderRateLimited {
                wait_ms: c.retry_after_ms.unwrap_or(DEFAULT_SENDER_PAUSE_MS),
            },
            reason::PAIR_RATE_LIMITED => Signal::RecipientRateLimited,
            reason::OPTED_OUT => Signal::OptedOut,
            reason::OPTED_IN => Signal::OptedIn,
            reason::AUTH_ERROR => Signal::CredentialsRejected,
            reason::ACCOUNT_RESTRICTED => Signal::AccountRestricted,
            _ => Signal::None,
        }
    }

    /// The signal of a `handover` event's classification.
    pub fn of_handover(c: &Classification) -> Signal {
        Signal::Handover(if c.reason == reason::BUSINESS_APP_REPLY {
            Handler::BusinessApp
        } else {
            Handler::Other
        })
    }
}

/// The reasons the host records for sends it decided about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostReason {
    /// The host could not run the plugin now (its pool was full): tried again soon.
    HostBusy,
    /// The plugin refused the message before anything was sent.
    NotSent,
    /// The request may have reached the provider (cut off after it left): never resent blindly.
    OutcomeUnknown,
    /// The host stopped before the request left: sent again.
    NeverSent,
    /// The flow's tenant has no account on this channel (and must bring its own): the step
    /// falls back without reaching the provider.
    NoChannelAccount,
    /// The tenant's account needs a new token (the provider refused the last one): the step
    /// falls back without reaching the provider until the operator puts one.
    AccountNeedsReauth,
    /// The tenant's account is disabled (banned, restricted, removed): the step falls back.
    AccountDisabled,
    /// The tenant's portfolio reached its messaging limit (unique customers started per
    /// 24 h): a business-initiated send to a new customer falls back without reaching the
    /// provider.
    MessagingLimitReached,
}

impl HostReason {
    pub fn as_str(self) -> &'static str {
        match self {
            HostReason::HostBusy => "host_busy",
            HostReason::NotSent => "not_sent",
            HostReason::OutcomeUnknown => "outcome_unknown",
            HostReason::NeverSent => "never_sent",
            HostReason::NoChannelAccount => "no_channel_account",
            HostReason::AccountNeedsReauth => "account_needs_reauth",
            HostReason::AccountDisabled => "account_disabled",
            HostReason::MessagingLimitReached => "messaging_limit_reached",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::types::Disposition;

    fn classified(reason: &str, retry_after_ms: Option<u64>) -> Classification {
        Classification {
            disposition: Disposition::Retry,
            reason: reason.into(),
            provider_code: None,
            provider_title: None,
            provider_details: None,
            provider_trace_id: None,
            retry_after_ms,
            operator_action: false,
            provider_message_id: None,
        }
    }

    #[test]
    fn a_sender_rate_limit_carries_its_wait_or_the_default() {
        assert_eq!(
            Signal::of(&classified("rate_limited", Some(7_000))),
            Signal::SenderRateLimited { wait_ms: 7_000 }
        );
        assert_eq!(
            Signal::of(&classified("rate_limited", None)),
            Signal::SenderRateLimited {
                wait_ms: DEFAULT_SENDER_PAUSE_MS
            }
        );
    }

    #[test]
    fn the_reasons_the_host_acts_on_are_in_the_component_vocabulary() {
        let docs = include_str!("../../../docs/reasons.md");
        for r in [
            reason::RATE_LIMITED,
            reason::PAIR_RATE_LIMITED,
            reason::OPTED_OUT,
            reason::OPTED_IN,
            reason::BUSINESS_APP_REPLY,
        ] {
            assert!(
                docs.contains(&format!("| `{r}` |")),
                "{r} is not in docs/reasons.md"
            );
        }
    }

    #[test]
    fn any_handover_but_the_business_app_reply_is_another_handler() {
        assert_eq!(
            Signal::of_handover(&classified("business_app_reply", None)),
            Signal::Handover(Handler::BusinessApp)
        );
        assert_eq!(
            Signal::of_handover(&classified("thread_control_passed", None)),
            Signal::Handover(Handler::Other)
        );
        assert_eq!(
            Signal::of(&classified("recipient_not_on_channel", None)),
            Signal::None
        );
    }
}
