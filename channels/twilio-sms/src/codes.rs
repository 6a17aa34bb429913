//! Twilio's error codes, each with what the flow does about it: the one table for the REST
//! API's answers (`{code, message, more_info, status}`) and the status callbacks' `ErrorCode`.
//! Facts from Twilio's error dictionary (twilio.com/docs/api/errors/{code}). A code not listed
//! is classified by its HTTP status or its callback's `MessageStatus` instead.

use channel_sdk::Disposition;

/// What one code means for the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeRule {
    pub code: u32,
    pub disposition: Disposition,
    /// The normalised reason (see `docs/reasons.md`).
    pub reason: &'static str,
    /// A person must fix something before this channel works again.
    pub operator_action: bool,
    /// The recipient asked not to be messaged on this channel (the host keeps the opt-out).
    pub opts_out: bool,
}

const fn rule(
    code: u32,
    disposition: Disposition,
    reason: &'static str,
    operator_action: bool,
) -> CodeRule {
    CodeRule {
        code,
        disposition,
        reason,
        operator_action,
        opts_out: false,
    }
}

use Disposition::{Failed, Fallback, Retry};

/// Every code the channel knows, in code order.
pub const CODES: &[CodeRule] = &[
    rule(20003, Failed, "auth_error", true), // authentication: wrong SID or token
    rule(20404, Failed, "channel_misconfigured", true), // the account (or resource) does not exist
    rule(20429, Retry, "rate_limited", false), // too many requests
    rule(21211, Fallback, "invalid_recipient", false), // 'To' is not a valid number
    rule(21408, Fallback, "region_not_enabled", true), // geo permissions: region not enabled
    rule(21602, Failed, "invalid_request", true), // a body is required
    rule(21606, Failed, "channel_misconfigured", true), // 'From' cannot send SMS
    rule(21608, Fallback, "recipient_not_verified", true), // trial accounts: unverified number
    CodeRule {
        opts_out: true,
        ..rule(21610, Fallback, "recipient_opted_out", false) // the recipient replied STOP
    },
    rule(21612, Fallback, "recipient_unreachable", false), // not reachable from this sender
    rule(21614, Fallback, "recipient_not_on_channel", false), // not a mobile number
    rule(21617, Failed, "invalid_request", true),          // body over 1,600 characters
    rule(30001, Retry, "rate_limited", false),             // the sender's queue overflowed
    rule(30002, Failed, "account_restricted", true),
    rule(30003, Fallback, "recipient_unreachable", false), // handset off or out of coverage
    rule(30004, Fallback, "recipient_blocked", false),     // blocked by the recipient or carrier
    rule(30005, Fallback, "recipient_not_on_channel", false), // unknown or inactive number
    rule(30006, Fallback, "recipient_not_on_channel", false), // landline or unreachable carrier
    rule(30007, Fallback, "carrier_filtered", false),      // filtered as spam by the carrier
    rule(30008, Fallback, "undelivered", false),           // unknown error from the carrier
    rule(30034, Failed, "channel_misconfigured", true),    // US A2P 10DLC: unregistered number
    rule(30036, Fallback, "validity_expired", false), // queued past its ValidityPeriod: dropped unsent
    rule(90007, Failed, "invalid_request", true),     // a ValidityPeriod outside 1–36,000 s
];

/// The rule for `code`, if the channel knows it.
pub fn rule_for(code: u32) -> Option<&'static CodeRule> {
    CODES
        .binary_search_by_key(&code, |r| r.code)
        .ok()
        .map(|i| &CODES[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_code_order_with_one_rule_per_code() {
        assert!(CODES.windows(2).all(|w| w[0].code < w[1].code));
    }

    #[test]
    fn each_code_of_the_issue_has_its_disposition() {
        let expect = [
            (21211, Fallback),
            (21614, Fallback),
            (21610, Fallback),
            (21408, Fallback),
            (21612, Fallback),
            (20003, Failed),
            (20404, Failed),
            (20429, Retry),
            (30003, Fallback),
            (30005, Fallback),
            (30006, Fallback),
            (30007, Fallback),
            (30008, Fallback),
        ];
        for (code, disposition) in expect {
            assert_eq!(
                rule_for(code).map(|r| r.disposition),
                Some(disposition),
                "{code}"
            );
        }
        assert!(rule_for(21610).is_some_and(|r| r.opts_out));
        assert!(rule_for(20003).is_some_and(|r| r.operator_action));
        assert_eq!(rule_for(99999), None);
    }

    #[test]
    fn every_reason_is_in_the_reason_vocabulary() {
        let vocabulary = include_str!("../../../docs/reasons.md");
        for r in CODES {
            assert!(
                vocabulary.contains(&format!("| `{}` |", r.reason)),
                "{}: {}",
                r.code,
                r.reason
            );
        }
    }

    #[test]
    fn only_the_stop_reply_opts_the_recipient_out() {
        let opting: Vec<u32> = CODES
            .iter()
            .filter(|r| r.opts_out)
            .map(|r| r.code)
            .collect();
        assert_eq!(opting, [21610]);
    }
}
