//! Classification of every result into one [`Classification`]: the synchronous Cloud API
//! answer, a transport failure, or the error carried by a status webhook.
//!
//! Decisions are made on Meta's error `code` (Meta: "build handling on code, not on HTTP
//! status or title"); the HTTP status is used only when the body carries no code (an HTML 503,
//! an empty 502). The raw code, title, details and `fbtrace_id` are always kept.

use crate::{Classification, Disposition, Header, HttpResponse, SendOutcome, TransportError};
use serde_json::Value;

/// How long to wait before the next attempt on the same channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    /// No wait suggested.
    None,
    /// A fixed wait.
    Fixed(u64),
    /// `base × 2^(attempt-1)`, at most `cap`.
    Exponential { base: u64, cap: u64 },
    /// Meta's pair-rate-limit advice: `4^(attempt-1)` s, never under 6 s (one message per
    /// 6 s per recipient), at most 4^8 s.
    PairRate,
}

const SECOND: u64 = 1_000;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;

impl Backoff {
    /// The wait in ms before attempt `attempt + 1`, `attempt` counting from 1.
    pub fn after(self, attempt: u32) -> Option<u64> {
        let n = attempt.max(1) - 1;
        match self {
            Backoff::None => None,
            Backoff::Fixed(ms) => Some(ms),
            Backoff::Exponential { base, cap } => {
                Some(base.saturating_mul(1u64 << n.min(32)).min(cap))
            }
            Backoff::PairRate => Some((4u64.pow(n.min(8)) * SECOND).max(6 * SECOND)),
        }
    }
}

/// What a provider error code means for the flow.
#[derive(Debug, Clone, Copy)]
pub struct CodeRule {
    /// First and last code the rule covers.
    pub codes: (i64, i64),
    /// Meta's title, for the docs.
    pub title: &'static str,
    pub disposition: Disposition,
    pub reason: &'static str,
    pub operator_action: bool,
    pub backoff: Backoff,
}

const fn rule(
    code: i64,
    title: &'static str,
    disposition: Disposition,
    reason: &'static str,
    operator_action: bool,
    backoff: Backoff,
) -> CodeRule {
    CodeRule {
        codes: (code, code),
        title,
        disposition,
        reason,
        operator_action,
        backoff,
    }
}

/// A rule covering a block of codes.
const fn range(
    first: i64,
    last: i64,
    title: &'static str,
    disposition: Disposition,
    reason: &'static str,
    operator_action: bool,
    backoff: Backoff,
) -> CodeRule {
    CodeRule {
        codes: (first, last),
        title,
        disposition,
        reason,
        operator_action,
        backoff,
    }
}

use Backoff as B;
use Disposition::{Failed as FAILED, Fallback as FALLBACK, Retry as RETRY, Unknown as UNKNOWN};

const THROUGHPUT: Backoff = B::Exponential {
    base: SECOND,
    cap: MINUTE,
};
const APP_RATE: Backoff = B::Exponential {
    base: MINUTE,
    cap: 15 * MINUTE,
};
const OUTAGE: Backoff = B::Exponential {
    base: 5 * SECOND,
    cap: 5 * MINUTE,
};

/// Every Cloud API error code in Meta's table (and those seen in SDKs and the changelog),
/// with what it means for a flow. The table in `docs/error-codes.md` is tested against this one.
#[rustfmt::skip]
pub const CODE_TABLE: &[CodeRule] = &[
    // Authorization: a person must renew or grant something.
    rule(0, "AuthException", FAILED, "auth_error", true, B::None),
    rule(3, "API Method", FAILED, "auth_error", true, B::None),
    rule(10, "Permission Denied", FAILED, "auth_error", true, B::None),
    rule(190, "Access token has expired", FAILED, "auth_error", true, B::None),
    range(200, 299, "API Permission", FAILED, "auth_error", true, B::None),
    rule(131005, "Access denied", FAILED, "auth_error", true, B::None),
    // Integrity.
    rule(368, "Temporarily blocked for policies violations", FAILED, "account_restricted", true, B::None),
    rule(131031, "Account has been locked", FAILED, "account_restricted", true, B::None),
    rule(130497, "Business account is restricted from messaging users in this country", FALLBACK, "policy_blocked", false, B::None),
    // Throttling.
    rule(4, "API Too Many Calls", RETRY, "rate_limited", false, APP_RATE),
    rule(80007, "Rate limit issues", RETRY, "rate_limited", false, APP_RATE),
    rule(130429, "Rate limit hit", RETRY, "rate_limited", false, THROUGHPUT),
    rule(131048, "Spam rate limit hit", FAILED, "policy_blocked", true, B::Fixed(HOUR)),
    rule(131056, "(Business Account, Consumer Account) pair rate limit hit", RETRY, "pair_rate_limited", false, B::PairRate),
    rule(133016, "Account register deregister rate limit exceeded", FAILED, "channel_misconfigured", true, B::None),
    // Other errors.
    rule(1, "API Unknown", RETRY, "provider_unavailable", false, OUTAGE),
    rule(2, "API Service", RETRY, "provider_unavailable", false, OUTAGE),
    rule(33, "Parameter value is not valid (business phone number deleted)", FAILED, "channel_misconfigured", true, B::None),
    rule(100, "Invalid parameter", FAILED, "invalid_request", true, B::None),
    rule(130472, "User's number is part of an experiment", FALLBACK, "policy_blocked", false, B::None),
    rule(131000, "Something went wrong", RETRY, "provider_unavailable", false, OUTAGE),
    rule(131008, "Required parameter is missing", FAILED, "invalid_request", true, B::None),
    rule(131009, "Parameter value is not valid", FAILED, "invalid_request", true, B::None),
    rule(131016, "Service unavailable", RETRY, "provider_unavailable", false, OUTAGE),
    rule(131021, "Recipient cannot be sender", FAILED, "invalid_request", true, B::None),
    rule(131026, "Message Undeliverable", FALLBACK, "recipient_not_on_channel", false, B::None),
    rule(131030, "Recipient phone number not in allowed list", FAILED, "channel_misconfigured", true, B::None),
    rule(131037, "Display name approval needed", FAILED, "channel_misconfigured", true, B::None),
    rule(131042, "Business eligibility payment issue", FAILED, "payment_required", true, B::None),
    rule(131044, "Payment issue", FAILED, "payment_required", true, B::None),
    rule(131045, "Incorrect certificate", FAILED, "channel_misconfigured", true, B::None),
    rule(131047, "Re-engagement message", FALLBACK, "outside_service_window", false, B::None),
    // Meta: earlier retries fail again; wait at least 24 h before resending on WhatsApp.
    rule(131049, "Meta chose not to deliver", FALLBACK, "marketing_limit_reached", false, B::Fixed(24 * HOUR)),
    rule(131050, "User stopped marketing messages", FALLBACK, "recipient_opted_out", false, B::None),
    rule(131051, "Unsupported message type", FAILED, "invalid_request", true, B::None),
    rule(131052, "Media download error", FAILED, "media_error", false, B::None),
    rule(131053, "Media upload error", FAILED, "media_error", true, B::None),
    rule(131055, "Method not allowed", FAILED, "invalid_request", true, B::None),
    rule(131057, "Account in maintenance mode", RETRY, "provider_unavailable", false, B::Exponential { base: 15 * SECOND, cap: 2 * MINUTE }),
    rule(131059, "Invalid pagination cursor", FAILED, "invalid_request", true, B::None),
    // Authentication templates still need a phone number: another channel (with the
    // customer's phone from elsewhere) is the way on, nobody has to fix anything.
    rule(131062, "Business-scoped user ID recipients not supported", FALLBACK, "bsuid_not_supported", false, B::None),
    rule(131063, "Marketing templates disabled for Cloud API", FAILED, "marketing_messages_api_required", true, B::None),
    // Meta restricts the account's business-initiated messaging until its template
    // categories are reviewed: like a restriction, a host stops the account's sends (they
    // fall back) and tells the operator, once.
    rule(131064, "Messaging limit reached due to template classification violations", FAILED, "account_restricted", true, B::None),
    rule(132000, "Template Param Count Mismatch", FAILED, "template_error", true, B::None),
    rule(132001, "Template does not exist", FAILED, "template_error", true, B::None),
    rule(132005, "Template Hydrated Text Too Long", FAILED, "template_error", true, B::None),
    rule(132007, "Template Format Character Policy Violated", FAILED, "template_error", true, B::None),
    rule(132012, "Template Parameter Format Mismatch", FAILED, "template_error", true, B::None),
    // Paused for 3 h (then 6 h): this message falls back now; the template comes back by itself.
    rule(132015, "Template is Paused", FALLBACK, "template_paused", false, B::Fixed(3 * HOUR)),
    rule(132016, "Template is Disabled", FAILED, "template_error", true, B::None),
    rule(132018, "Template parameter issue", FAILED, "template_error", true, B::None),
    rule(132068, "Flow is blocked", FAILED, "flow_error", true, B::None),
    rule(132069, "Flow is throttled", RETRY, "rate_limited", false, B::Fixed(HOUR)),
    rule(133000, "Incomplete Deregistration", FAILED, "channel_misconfigured", true, B::None),
    rule(133004, "Server Temporarily Unavailable", RETRY, "provider_unavailable", false, OUTAGE),
    rule(133005, "Two step verification PIN Mismatch", FAILED, "channel_misconfigured", true, B::None),
    rule(133006, "Phone number re-verification needed", FAILED, "channel_misconfigured", true, B::None),
    rule(133008, "Too Many two step verification PIN Guesses", FAILED, "channel_misconfigured", true, B::None),
    rule(133009, "Two step verification PIN Guessed Too Fast", FAILED, "channel_misconfigured", true, B::None),
    rule(133010, "Phone number Not Registered", FAILED, "channel_misconfigured", true, B::None),
    rule(133015, "Please wait a few minutes before attempting to register this phone number", FAILED, "channel_misconfigured", true, B::None),
    rule(134011, "WhatsApp Payments Terms of Service not accepted", FAILED, "channel_misconfigured", true, B::None),
    rule(134100, "Only marketing messages supported", FAILED, "invalid_request", true, B::None),
    rule(134101, "Your template is still syncing", RETRY, "template_error", false, B::Fixed(MINUTE)),
    rule(134102, "Template unavailable for use", RETRY, "provider_unavailable", false, OUTAGE),
    rule(135000, "Generic user error", FAILED, "invalid_request", true, B::None),
    rule(137000, "Recipient identity key hash mismatch", FALLBACK, "recipient_identity_changed", false, B::None),
    // The request was a duplicate of one Meta already has: never send it again.
    rule(1752041, "Duplicate Request", UNKNOWN, "duplicate_request", false, B::None),
    rule(2494100, "Account in maintenance mode (phone-number migration)", RETRY, "provider_unavailable", false, OUTAGE),
    // Template management errors (creation), inside the 2388xxx block.
    rule(2388019, "Message template count limit reached", FAILED, "template_error", true, B::None),
    rule(2388040, "Field over character limit", FAILED, "template_error", true, B::None),
    rule(2388047, "Header format invalid", FAILED, "template_error", true, B::None),
    rule(2388072, "Body format invalid", FAILED, "template_error", true, B::None),
    rule(2388073, "Footer format invalid", FAILED, "template_error", true, B::None),
    rule(2388293, "Too many variables for the length", FAILED, "template_error", true, B::None),
    rule(2388299, "Template starts or ends with a variable", FAILED, "template_error", true, B::None),
    range(2388001, 2388103, "Phone-number migration error", FAILED, "channel_misconfigured", true, B::None),
    rule(132008, "Template parameter value formatted incorrectly", FAILED, "template_error", true, B::None),
    // Calling (a call step, or a call-permission request): permission and limits are the
    // customer's side, the rest the business's.
    rule(138000, "Calling not enabled on the business number", FAILED, "channel_misconfigured", true, B::None),
    rule(138001, "Receiver unable to receive calls", FALLBACK, "recipient_not_on_channel", false, B::None),
    rule(138002, "Concurrent call limit reached for the number", RETRY, "rate_limited", false, THROUGHPUT),
    rule(138003, "A call with the receiver is already ongoing", RETRY, "recipient_busy", false, B::Fixed(MINUTE)),
    rule(138004, "Error while connecting the call", RETRY, "provider_unavailable", false, OUTAGE),
    rule(138005, "Call initiation limit reached for the number", RETRY, "rate_limited", false, APP_RATE),
    rule(138006, "No approved call permission from the receiver", FALLBACK, "call_permission_missing", false, B::None),
    rule(138007, "Call connection timed out (answer SDP not applied in time)", RETRY, "provider_unavailable", false, OUTAGE),
    rule(138009, "Call permission request limit reached for this customer", FALLBACK, "call_limit_reached", false, B::Fixed(24 * HOUR)),
    rule(138012, "Business-initiated call limit reached for 24 h", FALLBACK, "call_limit_reached", false, B::Fixed(24 * HOUR)),
    rule(138013, "Fetch call permission status limit reached (now 613)", RETRY, "rate_limited", false, APP_RATE),
    rule(613, "Call rate limit exceeded (fetch call permission status)", RETRY, "rate_limited", false, APP_RATE),
    rule(138018, "Calling cannot be enabled: prerequisites not met", FAILED, "channel_misconfigured", true, B::None),
    // Groups API.
    rule(131020, "Cannot send to a single-member group", FAILED, "invalid_request", true, B::None),
    rule(131041, "Group unknown (missing, or not a member)", FAILED, "invalid_request", true, B::None),
    rule(131201, "Group request partially succeeded", FAILED, "invalid_request", true, B::None),
    rule(131202, "Duplicate group participants", FAILED, "invalid_request", true, B::None),
    rule(131204, "Group participant count over the limit", FAILED, "invalid_request", true, B::None),
    rule(131207, "Group suspended for policy violations", FAILED, "policy_blocked", true, B::None),
    rule(131208, "Group operation rate limit hit", RETRY, "rate_limited", false, APP_RATE),
    rule(131209, "Group picture not square", FAILED, "media_error", true, B::None),
    rule(131210, "Group picture smaller than 192 px", FAILED, "media_error", true, B::None),
    rule(131211, "Group creation limit reached for the number", FAILED, "policy_blocked", true, B::None),
    rule(131212, "Participant is not in the group", FAILED, "invalid_request", true, B::None),
    rule(131213, "Group join request does not exist", FAILED, "invalid_request", true, B::None),
    rule(131214, "Group creation temporarily disabled (marketing volume)", FAILED, "policy_blocked", true, B::None),
    rule(131215, "Number not eligible for the Groups API", FAILED, "channel_misconfigured", true, B::None),
    // Flows management.
    rule(139000, "Flow blocked by integrity", FAILED, "flow_error", true, B::None),
    rule(139001, "Flow failed to update", FAILED, "flow_error", true, B::None),
    rule(139002, "Flow failed to publish", FAILED, "flow_error", true, B::None),
    rule(139003, "Flow failed to deprecate", FAILED, "flow_error", true, B::None),
    rule(139004, "Flow failed to delete", FAILED, "flow_error", true, B::None),
    // Block Users API.
    rule(139100, "Bulk blocking failed for some users", FAILED, "invalid_request", true, B::None),
    rule(139101, "Block list limit (64k) reached", FAILED, "channel_misconfigured", true, B::None),
    rule(139102, "Block list changed during pagination", RETRY, "rate_limited", false, THROUGHPUT),
    rule(139103, "Block Users API internal error", RETRY, "provider_unavailable", false, OUTAGE),
    // Business usernames.
    rule(147001, "Username not available", FAILED, "channel_misconfigured", true, B::None),
    rule(147002, "Account not eligible to request a username", FAILED, "channel_misconfigured", true, B::None),
    rule(147003, "Facebook Page with that username not linked", FAILED, "channel_misconfigured", true, B::None),
    rule(147004, "Instagram account with that username not linked", FAILED, "channel_misconfigured", true, B::None),
    rule(147005, "Username in use on another number: transfer required", FAILED, "channel_misconfigured", true, B::None),
    // In-app signup.
    rule(2494164, "Signup entity not found", FAILED, "channel_misconfigured", true, B::None),
    rule(2494165, "In-app signup API not enabled for the account", FAILED, "channel_misconfigured", true, B::None),
    rule(2494166, "Unknown placeholder in the confirmation message", FAILED, "invalid_request", true, B::None),
    rule(2494167, "Promo code placeholder without a value", FAILED, "invalid_request", true, B::None),
    rule(2494168, "Signup terms of service not accepted", FAILED, "channel_misconfigured", true, B::None),
    rule(2494176, "Signup terms already accepted: omit the policy", FAILED, "invalid_request", true, B::None),
    rule(2494177, "Terms of service URL not approved", FAILED, "invalid_request", true, B::None),
    rule(2494179, "Website URL is not https", FAILED, "invalid_request", true, B::None),
];

/// Every `reason` this channel emits, with what it means. The vocabulary table in `docs/reasons.md` is
/// tested against this list, and every reason the code uses must be in it.
pub const REASONS: &[(&str, &str)] = &[
    (
        "accepted",
        "Meta accepted the request; statuses follow by webhook",
    ),
    (
        "held_for_quality_assessment",
        "accepted, but held by template pacing; may still fail with 132015",
    ),
    ("sent", "status: left Meta's servers"),
    ("delivered", "status: reached a device"),
    ("read", "status: opened"),
    ("played", "status: a voice message was played"),
    (
        "recipient_not_on_channel",
        "the number is not on WhatsApp (or uses an old app / has not accepted the terms)",
    ),
    (
        "recipient_opted_out",
        "the customer stopped marketing messages from this business",
    ),
    (
        "recipient_identity_changed",
        "the customer's identity key changed (identity check)",
    ),
    (
        "outside_service_window",
        "more than 24 h since the customer last wrote: only templates may be sent",
    ),
    (
        "marketing_limit_reached",
        "Meta's per-user marketing limit: do not retry on WhatsApp within 24 h",
    ),
    (
        "policy_blocked",
        "Meta will not deliver this for policy reasons (country, experiment, spam quality)",
    ),
    (
        "rate_limited",
        "a throughput or API call limit: back off and retry",
    ),
    (
        "pair_rate_limited",
        "too many messages to this one customer: back off 4^n s for this customer only",
    ),
    (
        "template_error",
        "the template is missing, disabled, not approved in that language, or its parameters do not match",
    ),
    (
        "template_paused",
        "the template is paused for quality (3 h / 6 h); fall back now",
    ),
    ("flow_error", "the WhatsApp Flow is blocked"),
    (
        "media_error",
        "the media could not be uploaded or downloaded",
    ),
    (
        "auth_error",
        "the access token is invalid or expired, or a permission is missing",
    ),
    (
        "account_restricted",
        "the business account is restricted or locked",
    ),
    (
        "channel_misconfigured",
        "the phone number or account needs set-up (registration, display name, phone number id…)",
    ),
    (
        "payment_required",
        "the business account has a payment problem",
    ),
    (
        "provider_unavailable",
        "Meta is temporarily unavailable or overloaded",
    ),
    (
        "invalid_request",
        "the request is malformed or has an invalid parameter",
    ),
    (
        "duplicate_request",
        "Meta already has this request: do not send it again",
    ),
    (
        "unknown_error",
        "a code Meta does not document (4xx: a person looks; 5xx: retry)",
    ),
    (
        "unexpected_response",
        "a 2xx answer without a message id: may have been sent, do not resend blindly",
    ),
    (
        "transport_error",
        "the request never left the host (DNS, connect, TLS): safe to retry",
    ),
    (
        "outcome_unknown",
        "the connection failed after the request may have reached Meta: wait for a status",
    ),
    (
        "host_policy_denied",
        "the host refused the request (allowlist, missing secret)",
    ),
    (
        "unknown_status",
        "a status value this channel does not know",
    ),
    ("inbound_message", "event: a customer wrote"),
    (
        "recipient_opted_in",
        "event: a customer resumed marketing messages",
    ),
    (
        "template_approved",
        "event: a template was approved or reinstated",
    ),
    (
        "template_pending",
        "event: a template is pending review or in appeal",
    ),
    (
        "recipient_busy",
        "a call with this customer is already ongoing: try again later",
    ),
    (
        "call_permission_missing",
        "the customer has not allowed calls: ask with a call-permission request first",
    ),
    (
        "call_limit_reached",
        "Meta's call or call-permission-request limit for this customer: not again within 24 h",
    ),
    (
        "bsuid_not_supported",
        "this message (an authentication template) cannot go to a business-scoped user id: it needs a phone number",
    ),
    (
        "marketing_messages_api_required",
        "marketing templates are off on Cloud API for this account: set `marketing_messages_api: true` to send them through the Marketing Messages API",
    ),
    (
        "business_app_reply",
        "event: a person answered this customer from the WhatsApp Business app (handover)",
    ),
    (
        "handled_by_another_app",
        "event: another handler owns this conversation (standby); the customer's message still opens the window",
    ),
    (
        "customer_call",
        "event: the customer called (opens the window)",
    ),
    ("business_call", "event: a call the business placed"),
    (
        "customer_identity_changed",
        "event: the customer has a new phone number or business-scoped user id",
    ),
    (
        "template_category_changed",
        "event: Meta re-categorised a template (operator action when it became MARKETING)",
    ),
    (
        "template_quality_changed",
        "event: a template's quality score changed (operator action at RED)",
    ),
    (
        "template_components_changed",
        "event: an approved template's components changed",
    ),
    (
        "account_updated",
        "event: an account update that needs nothing (verification, partner changes…)",
    ),
    (
        "sender_quality_flagged",
        "event: the sending number was flagged for quality",
    ),
    (
        "sender_limit_downgraded",
        "event: the sending number's messaging limit went down",
    ),
    (
        "sender_quality_restored",
        "event: the sending number is no longer flagged",
    ),
    (
        "sender_limit_upgraded",
        "event: the sending number's messaging limit or throughput went up",
    ),
    (
        "sender_quality_changed",
        "event: another quality or limit change of the sending number",
    ),
    (
        "other_event",
        "event: a webhook field this channel does not interpret",
    ),
];

/// The rule for a code, if Meta documents it.
///
/// A single code inside a documented range (the template-creation codes among the 2388xxx
/// migration codes) takes precedence over the range.
pub fn rule_for(code: i64) -> Option<&'static CodeRule> {
    CODE_TABLE
        .iter()
        .filter(|r| (r.codes.0..=r.codes.1).contains(&code))
        .min_by_key(|r| r.codes.1 - r.codes.0)
}

/// A provider error as found in an API answer or a webhook.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProviderError {
    pub code: Option<i64>,
    pub title: Option<String>,
    pub details: Option<String>,
    pub trace_id: Option<String>,
}

impl ProviderError {
    /// Reads Graph's `{"error":{…}}` or a webhook `errors[]` entry.
    pub fn from_json(e: &Value) -> ProviderError {
        let code = e
            .get("code")
            .and_then(|c| c.as_i64().or_else(|| c.as_str()?.trim().parse().ok()));
        let text = |v: Option<&Value>| {
            v.and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let title = text(e.get("title")).or_else(|| {
            // Graph puts "(#130429) Rate limit hit" in `message`; keep the title part.
            text(e.get("message")).map(|m| match m.strip_prefix("(#") {
                Some(rest) => rest
                    .split_once(") ")
                    .map(|(_, t)| t.to_string())
                    .unwrap_or(m),
                None => m,
            })
        });
        let details = text(e.pointer("/error_data/details"))
            .or_else(|| text(e.get("error_user_msg")))
            .or_else(|| text(e.get("details")));
        ProviderError {
            code,
            title,
            details,
            trace_id: text(e.get("fbtrace_id")),
        }
    }
}

/// Classifies a provider error; `http_status` is only consulted when there is no code.
pub fn classify_error(
    err: &ProviderError,
    http_status: Option<u16>,
    attempt: u32,
) -> Classification {
    let mut c = match (err.code, err.code.and_then(rule_for)) {
        (_, Some(r)) => {
            let mut c = Classification::new(r.disposition, r.reason);
            c.operator_action = r.operator_action;
            c.retry_after_ms = r.backoff.after(attempt);
            c
        }
        // A code Meta does not document: a 5xx is transient, anything else needs a person.
        (Some(_), None) => match http_status {
            Some(s) if s >= 500 => retry(OUTAGE, attempt, "unknown_error"),
            _ => {
                let mut c = Classification::new(Disposition::Failed, "unknown_error");
                c.operator_action = true;
                c
            }
        },
        (None, None) => classify_status_only(http_status, attempt),
    };
    c.provider_code = err.code.map(|n| n.to_string());
    c.provider_title = err.title.clone();
    c.provider_details = err.details.clone();
    c.provider_trace_id = err.trace_id.clone();
    c
}

fn retry(backoff: Backoff, attempt: u32, reason: &str) -> Classification {
    let mut c = Classification::new(Disposition::Retry, reason);
    c.retry_after_ms = backoff.after(attempt);
    c
}

/// When the body says nothing useful, the HTTP status decides.
fn classify_status_only(status: Option<u16>, attempt: u32) -> Classification {
    match status {
        Some(429) => retry(THROUGHPUT, attempt, "rate_limited"),
        // The server gave up waiting for our request: it was not processed.
        Some(408) => retry(OUTAGE, attempt, "provider_unavailable"),
        Some(s) if s >= 500 => retry(OUTAGE, attempt, "provider_unavailable"),
        Some(401 | 403) => {
            let mut c = Classification::new(Disposition::Failed, "auth_error");
            c.operator_action = true;
            c
        }
        Some(404) => {
            let mut c = Classification::new(Disposition::Failed, "channel_misconfigured");
            c.operator_action = true;
            c
        }
        _ => {
            let mut c = Classification::new(Disposition::Failed, "unknown_error");
            c.operator_action = true;
            c
        }
    }
}

/// `Retry-After` in seconds, if the response carries one.
fn retry_after_header(headers: &[Header]) -> Option<u64> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("retry-after"))
        .and_then(|h| h.value.trim().parse::<u64>().ok())
        .map(|s| s.saturating_mul(SECOND))
}

/// Classifies the Cloud API's answer to a send.
pub fn classify_response(resp: &HttpResponse, attempt: u32) -> Classification {
    let body: Option<Value> = serde_json::from_slice(&resp.body).ok();
    let mut c = if (200..300).contains(&resp.status) {
        classify_success(body.as_ref())
    } else {
        let err = body
            .as_ref()
            .and_then(|b| b.get("error"))
            .map(ProviderError::from_json)
            .unwrap_or_default();
        let mut err = err;
        if err.title.is_none() && body.is_none() && !resp.body.is_empty() {
            // An HTML error page or plain text: keep its start so nobody has to ask "why".
            let text = String::from_utf8_lossy(&resp.body);
            err.details = Some(text.chars().take(200).collect());
        }
        classify_error(&err, Some(resp.status), attempt)
    };
    if c.disposition == Disposition::Retry
        && let Some(hint) = retry_after_header(&resp.headers)
    {
        c.retry_after_ms = Some(c.retry_after_ms.unwrap_or(0).max(hint));
    }
    c
}

fn classify_success(body: Option<&Value>) -> Classification {
    let message = body.and_then(|b| b.pointer("/messages/0"));
    match message.and_then(|m| m.get("id")).and_then(Value::as_str) {
        Some(id) => {
            let held = message
                .and_then(|m| m.get("message_status"))
                .and_then(Value::as_str)
                == Some("held_for_quality_assessment");
            let mut c = Classification::new(
                Disposition::Accepted,
                if held {
                    "held_for_quality_assessment"
                } else {
                    "accepted"
                },
            );
            c.provider_message_id = Some(id.to_string());
            c
        }
        // Mark-as-read answers {"success": true}.
        None if body.and_then(|b| b.get("success")).and_then(Value::as_bool) == Some(true) => {
            Classification::new(Disposition::Accepted, "accepted")
        }
        // A 2xx we cannot read: the message may well be on its way, so never resend blindly.
        None => {
            let mut c = Classification::new(Disposition::Unknown, "unexpected_response");
            c.provider_details = Some("a 2xx answer without messages[0].id".into());
            c
        }
    }
}

/// Classifies a transport failure: safe to retry only if the request never left.
pub fn classify_transport(err: &TransportError, attempt: u32) -> Classification {
    let backoff = B::Exponential {
        base: SECOND,
        cap: MINUTE,
    };
    channel_sdk::transport_failure(err, backoff.after(attempt))
}

/// Classifies whatever came back from a send.
pub fn classify_outcome(outcome: &SendOutcome, attempt: u32) -> Classification {
    match outcome {
        SendOutcome::Response(r) => classify_response(r, attempt),
        SendOutcome::TransportError(e) => classify_transport(e, attempt),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TransportErrorKind;

    fn resp(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        }
    }

    fn err_body(code: i64) -> String {
        format!(
            r#"{{"error":{{"message":"(#{code}) Title","type":"OAuthException","code":{code},"error_data":{{"messaging_product":"whatsapp","details":"d"}},"fbtrace_id":"T"}}}}"#
        )
    }

    #[test]
    fn accepted_keeps_the_message_id() {
        let c = classify_response(
            &resp(
                200,
                include_str!("../tests/fixtures/send-response-template-accepted.json"),
            ),
            1,
        );
        assert_eq!(c.disposition, Disposition::Accepted);
        assert_eq!(
            c.provider_message_id.as_deref(),
            Some("wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJBRkJENzExMTRFRjk2NTI1OTEA")
        );
    }

    #[test]
    fn held_for_quality_assessment_is_still_accepted() {
        let c = classify_response(
            &resp(
                200,
                r#"{"messages":[{"id":"wamid.X","message_status":"held_for_quality_assessment"}]}"#,
            ),
            1,
        );
        assert_eq!(
            (c.disposition, c.reason.as_str()),
            (Disposition::Accepted, "held_for_quality_assessment")
        );
    }

    #[test]
    fn rate_limit_sample_is_retry_with_raw_fields_kept() {
        let c = classify_response(
            &resp(
                400,
                include_str!("../tests/fixtures/error-response-130429-rate-limit.json"),
            ),
            1,
        );
        assert_eq!(c.disposition, Disposition::Retry);
        assert_eq!(c.reason, "rate_limited");
        assert_eq!(c.provider_code.as_deref(), Some("130429"));
        assert_eq!(c.provider_title.as_deref(), Some("Rate limit hit"));
        assert_eq!(
            c.provider_trace_id.as_deref(),
            Some("Az8or2yhqkZfEZ-_4Qn_Bam")
        );
        assert!(c.retry_after_ms.unwrap() >= 1000);
    }

    #[test]
    fn code_decides_not_http_status() {
        // 130429 arrives as 400 in Meta's table and as 429 in older copies: same answer.
        for status in [400, 429] {
            assert_eq!(
                classify_response(&resp(status, &err_body(130429)), 1).reason,
                "rate_limited"
            );
        }
        // 131026 under a 500 is still not-on-WhatsApp.
        assert_eq!(
            classify_response(&resp(500, &err_body(131026)), 1).disposition,
            Disposition::Fallback
        );
    }

    #[test]
    fn common_codes() {
        let cases = [
            (
                131026,
                Disposition::Fallback,
                "recipient_not_on_channel",
                false,
            ),
            (
                131047,
                Disposition::Fallback,
                "outside_service_window",
                false,
            ),
            (130429, Disposition::Retry, "rate_limited", false),
            (131056, Disposition::Retry, "pair_rate_limited", false),
            (131000, Disposition::Retry, "provider_unavailable", false),
            (190, Disposition::Failed, "auth_error", true),
            (132000, Disposition::Failed, "template_error", true),
            (132001, Disposition::Failed, "template_error", true),
            (250, Disposition::Failed, "auth_error", true),
        ];
        for (code, d, reason, op) in cases {
            let c = classify_response(&resp(400, &err_body(code)), 1);
            assert_eq!(
                (c.disposition, c.reason.as_str(), c.operator_action),
                (d, reason, op),
                "code {code}"
            );
            assert_eq!(c.provider_code, Some(code.to_string()));
        }
    }

    #[test]
    fn pair_rate_limit_backs_off_per_meta() {
        let secs = |attempt| Backoff::PairRate.after(attempt).unwrap() / 1000;
        assert_eq!([secs(1), secs(2), secs(3), secs(4)], [6, 6, 16, 64]);
        assert_eq!(secs(40), 65536);
    }

    #[test]
    fn no_code_falls_back_to_http_status() {
        let html = resp(503, "<html><body>Service Unavailable</body></html>");
        let c = classify_response(&html, 1);
        assert_eq!(
            (c.disposition, c.reason.as_str()),
            (Disposition::Retry, "provider_unavailable")
        );
        assert!(c.provider_details.unwrap().contains("Service Unavailable"));
        assert_eq!(
            classify_response(&resp(502, ""), 1).disposition,
            Disposition::Retry
        );
        assert_eq!(classify_response(&resp(401, ""), 1).reason, "auth_error");
    }

    #[test]
    fn unknown_codes_split_on_status() {
        assert_eq!(
            classify_response(&resp(400, &err_body(999_999)), 1).disposition,
            Disposition::Failed
        );
        assert_eq!(
            classify_response(&resp(503, &err_body(999_999)), 1).disposition,
            Disposition::Retry
        );
    }

    #[test]
    fn retry_after_header_is_honoured() {
        let mut r = resp(429, "");
        r.headers.push(Header {
            name: "Retry-After".into(),
            value: "120".into(),
        });
        assert_eq!(classify_response(&r, 1).retry_after_ms, Some(120_000));
    }

    #[test]
    fn transport_errors_never_retry_blindly() {
        let e = |kind, sent| TransportError {
            kind,
            request_sent: sent,
            message: "x".into(),
        };
        assert_eq!(
            classify_transport(&e(TransportErrorKind::Connect, false), 1).disposition,
            Disposition::Retry
        );
        assert_eq!(
            classify_transport(&e(TransportErrorKind::Timeout, true), 1).disposition,
            Disposition::Unknown
        );
        let denied = classify_transport(&e(TransportErrorKind::Denied, false), 1);
        assert_eq!(
            (denied.disposition, denied.operator_action),
            (Disposition::Failed, true)
        );
    }

    fn backoff_text(b: Backoff) -> String {
        let secs = |ms: u64| {
            if ms.is_multiple_of(3_600_000) {
                format!("{} h", ms / 3_600_000)
            } else if ms.is_multiple_of(60_000) {
                format!("{} min", ms / 60_000)
            } else {
                format!("{} s", ms / 1000)
            }
        };
        match b {
            Backoff::None => "—".into(),
            Backoff::Fixed(ms) => secs(ms),
            Backoff::Exponential { base, cap } => {
                format!("{} doubling, ≤ {}", secs(base), secs(cap))
            }
            Backoff::PairRate => "max(6 s, 4^(n-1) s)".into(),
        }
    }

    /// The code table of `docs/error-codes.md`, rendered from [`CODE_TABLE`].
    fn code_table_markdown() -> String {
        let mut out = String::from(
            "| code | Meta's title | disposition | reason | operator action | retry after |\n|---|---|---|---|---|---|\n",
        );
        let mut rows: Vec<&CodeRule> = CODE_TABLE.iter().collect();
        rows.sort_by_key(|r| r.codes.0);
        for r in rows {
            let code = if r.codes.0 == r.codes.1 {
                r.codes.0.to_string()
            } else {
                format!("{}–{}", r.codes.0, r.codes.1)
            };
            out.push_str(&format!(
                "| {code} | {} | {} | `{}` | {} | {} |\n",
                r.title,
                channel_sdk::names::disposition(r.disposition),
                r.reason,
                if r.operator_action { "yes" } else { "no" },
                backoff_text(r.backoff)
            ));
        }
        out
    }

    fn reasons_markdown() -> String {
        let mut out = String::from("| reason | meaning |\n|---|---|\n");
        for (reason, meaning) in REASONS {
            out.push_str(&format!("| `{reason}` | {meaning} |\n"));
        }
        out
    }

    #[test]
    fn the_docs_tables_match_the_code() {
        let table = code_table_markdown();
        assert!(
            include_str!("../docs/error-codes.md").contains(&table),
            "docs/error-codes.md's code table is stale; replace it with:\n{table}"
        );
        let reasons = reasons_markdown();
        assert!(
            include_str!("../docs/reasons.md").contains(&reasons),
            "docs/reasons.md's reason vocabulary is stale; replace it with:\n{reasons}"
        );
    }

    #[test]
    fn every_reason_is_documented() {
        let documented: Vec<&str> = REASONS.iter().map(|(r, _)| *r).collect();
        for r in CODE_TABLE {
            assert!(
                documented.contains(&r.reason),
                "{} is not in REASONS",
                r.reason
            );
        }
        // Reasons produced outside the table: every HTTP status without a body, every
        // transport failure, successes, and the webhook parser on every fixture.
        let mut produced: Vec<String> = (100..600)
            .map(|s| classify_response(&resp(s, ""), 1).reason)
            .collect();
        produced.push(classify_response(&resp(200, r#"{"success":true}"#), 1).reason);
        produced.push(
            classify_response(
                &resp(
                    200,
                    r#"{"messages":[{"id":"w","message_status":"held_for_quality_assessment"}]}"#,
                ),
                1,
            )
            .reason,
        );
        for kind in [
            TransportErrorKind::Dns,
            TransportErrorKind::Timeout,
            TransportErrorKind::Denied,
        ] {
            for sent in [true, false] {
                produced.push(
                    classify_transport(
                        &TransportError {
                            kind,
                            request_sent: sent,
                            message: String::new(),
                        },
                        1,
                    )
                    .reason,
                );
            }
        }
        for body in [
            include_str!("../tests/fixtures/webhook-status-failed-131049.json"),
            include_str!("../tests/fixtures/webhook-inbound-text-basic.json"),
            include_str!("../tests/fixtures/webhook-template-status-update-approved.json"),
            include_str!(
                "../tests/fixtures/webhook-template-status-update-rejected-invalid-format.json"
            ),
            include_str!("../tests/fixtures/webhook-user-preferences-resume-marketing.json"),
            include_str!("../tests/fixtures/webhook-status-sent-v24-no-conversation.json"),
        ] {
            produced.extend(
                crate::webhooks::parse_body(body.as_bytes())
                    .unwrap()
                    .into_iter()
                    .map(|e| e.classification.reason),
            );
        }
        for reason in produced {
            assert!(
                documented.contains(&reason.as_str()),
                "{reason} is not in REASONS"
            );
        }
    }

    #[test]
    fn code_table_has_no_ambiguous_overlaps() {
        // Overlaps are allowed only between a single code and a range (the code wins).
        for (i, a) in CODE_TABLE.iter().enumerate() {
            for b in &CODE_TABLE[i + 1..] {
                let disjoint = a.codes.1 < b.codes.0 || b.codes.1 < a.codes.0;
                let single_in_range = (a.codes.0 == a.codes.1) != (b.codes.0 == b.codes.1);
                assert!(
                    disjoint || single_in_range,
                    "{:?} overlaps {:?}",
                    a.codes,
                    b.codes
                );
            }
        }
    }
}
