//! Every error code in the fact sheet (`whatsapp-cloud-api.md` §3, plus the template codes of
//! §2.5), classified through the real component, both as a synchronous Graph error (with the
//! HTTP status Meta's table gives) and as the error of a `failed` status webhook.

use host_testkit::Block;

use crate::common::*;
use Disposition::{Failed as F, Fallback as B, Retry as R, Unknown as U};
use host::contract::types::{
    ChannelConfig, Disposition, HttpResponse, SendOutcome, WebhookOutcome, WebhookRequest,
};
use serde_json::json;

/// (code, HTTP status in Meta's table, disposition, reason, operator action)
const FACT_SHEET: &[(i64, u16, Disposition, &str, bool)] = &[
    // Authorization
    (0, 401, F, "auth_error", true),
    (3, 500, F, "auth_error", true),
    (10, 403, F, "auth_error", true),
    (190, 401, F, "auth_error", true),
    (200, 403, F, "auth_error", true),
    (250, 403, F, "auth_error", true),
    (299, 403, F, "auth_error", true),
    // Integrity
    (368, 403, F, "account_restricted", true),
    (130497, 403, B, "policy_blocked", false),
    (131031, 403, F, "account_restricted", true),
    // Throttling
    (4, 400, R, "rate_limited", false),
    (80007, 400, R, "rate_limited", false),
    (130429, 400, R, "rate_limited", false),
    (131048, 400, F, "policy_blocked", true),
    (131056, 400, R, "pair_rate_limited", false),
    (133016, 400, F, "channel_misconfigured", true),
    // Other
    (1, 400, R, "provider_unavailable", false),
    (2, 503, R, "provider_unavailable", false),
    (33, 400, F, "channel_misconfigured", true),
    (100, 400, F, "invalid_request", true),
    (130472, 400, B, "policy_blocked", false),
    (131000, 500, R, "provider_unavailable", false),
    (131005, 403, F, "auth_error", true),
    (131008, 400, F, "invalid_request", true),
    (131009, 400, F, "invalid_request", true),
    (131016, 500, R, "provider_unavailable", false),
    (131021, 400, F, "invalid_request", true),
    (131026, 400, B, "recipient_not_on_channel", false),
    (131037, 400, F, "channel_misconfigured", true),
    (131042, 400, F, "payment_required", true),
    (131045, 500, F, "channel_misconfigured", true),
    (131047, 400, B, "outside_service_window", false),
    (131049, 400, B, "marketing_limit_reached", false),
    (131050, 400, B, "recipient_opted_out", false),
    (131051, 400, F, "invalid_request", true),
    (131052, 400, F, "media_error", false),
    (131053, 400, F, "media_error", true),
    (131057, 500, R, "provider_unavailable", false),
    (132000, 400, F, "template_error", true),
    (132001, 404, F, "template_error", true),
    (132005, 400, F, "template_error", true),
    (132007, 400, F, "template_error", true),
    (132012, 400, F, "template_error", true),
    (132015, 400, B, "template_paused", false),
    (132016, 400, F, "template_error", true),
    (132068, 400, F, "flow_error", true),
    (132069, 400, R, "rate_limited", false),
    (133000, 500, F, "channel_misconfigured", true),
    (133004, 503, R, "provider_unavailable", false),
    (133005, 400, F, "channel_misconfigured", true),
    (133006, 400, F, "channel_misconfigured", true),
    (133008, 400, F, "channel_misconfigured", true),
    (133009, 400, F, "channel_misconfigured", true),
    (133010, 400, F, "channel_misconfigured", true),
    (133015, 400, F, "channel_misconfigured", true),
    (134011, 400, F, "channel_misconfigured", true),
    (135000, 400, F, "invalid_request", true),
    // MM Lite
    (131055, 400, F, "invalid_request", true),
    (134100, 400, F, "invalid_request", true),
    (134101, 400, R, "template_error", false),
    (134102, 500, R, "provider_unavailable", false),
    (1752041, 400, U, "duplicate_request", false),
    // Seen in other sources
    (131030, 400, F, "channel_misconfigured", true),
    (131059, 400, F, "invalid_request", true),
    (131062, 400, B, "bsuid_not_supported", false),
    (131063, 400, F, "marketing_messages_api_required", true),
    (131064, 400, F, "account_restricted", true),
    (132018, 400, F, "template_error", true),
    (137000, 400, B, "recipient_identity_changed", false),
    (2494100, 500, R, "provider_unavailable", false),
    (2388001, 400, F, "channel_misconfigured", true),
    (2388103, 400, F, "channel_misconfigured", true),
    (131044, 400, F, "payment_required", true),
    // Template management (§2.5)
    (2388019, 400, F, "template_error", true),
    (2388040, 400, F, "template_error", true),
    (2388047, 400, F, "template_error", true),
    (2388072, 400, F, "template_error", true),
    (2388073, 400, F, "template_error", true),
    (2388293, 400, F, "template_error", true),
    (2388299, 400, F, "template_error", true),
];

#[test]
fn every_fact_sheet_code_as_a_graph_error() {
    for &(code, status, disposition, reason, operator) in FACT_SHEET {
        let body = json!({"error": {"message": format!("(#{code}) Title"), "type": "OAuthException", "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": "details"}, "fbtrace_id": "AbCd"}});
        let outcome = SendOutcome::Response(HttpResponse {
            status,
            headers: vec![],
            body: body.to_string().into_bytes(),
        });
        let c = plugin().classify(&outcome, 1).block().unwrap();
        assert_eq!(
            (c.disposition, c.reason.as_str(), c.operator_action),
            (disposition, reason, operator),
            "code {code}"
        );
        assert_eq!(c.provider_code, Some(code.to_string()));
        assert_eq!(
            (
                c.provider_title.as_deref(),
                c.provider_details.as_deref(),
                c.provider_trace_id.as_deref()
            ),
            (Some("Title"), Some("details"), Some("AbCd"))
        );
        if disposition == R {
            assert!(
                c.retry_after_ms.is_some_and(|ms| ms >= 1000),
                "code {code} backs off"
            );
        }
        // The HTTP status never overrides a documented code (Meta's 400-vs-429 disagreement).
        let as_429 = SendOutcome::Response(HttpResponse {
            status: 429,
            headers: vec![],
            body: body.to_string().into_bytes(),
        });
        assert_eq!(
            plugin().classify(&as_429, 1).block().unwrap().disposition,
            disposition,
            "code {code} under 429"
        );
    }
}

#[test]
fn every_fact_sheet_code_as_a_failed_status_webhook() {
    let statuses: Vec<_> = FACT_SHEET
        .iter()
        .map(|(code, ..)| json!({"id": format!("wamid.{code}"), "status": "failed", "timestamp": "1751142888", "recipient_id": "16505551234",
            "errors": [{"code": code, "title": "t", "message": "t", "error_data": {"details": "d"}, "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"}]}))
        .collect();
    // One batch: every status is its own event, in order.
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {"messaging_product": "whatsapp", "statuses": statuses}}]}]}).to_string().into_bytes();
    let request = WebhookRequest {
        method: "POST".into(),
        url: None,
        headers: vec![host::contract::types::Header {
            name: "X-Hub-Signature-256".into(),
            value: sign(APP_SECRET, &body),
        }],
        query: vec![],
        body,
    };
    let WebhookOutcome::Events(events) = plugin()
        .parse_webhook(
            &request,
            &ChannelConfig {
                api_base: None,
                settings: "{}".into(),
            },
        )
        .block()
        .unwrap()
        .unwrap()
    else {
        panic!("events")
    };
    assert_eq!(events.len(), FACT_SHEET.len());
    for (e, &(code, _, disposition, reason, _)) in events.iter().zip(FACT_SHEET) {
        assert_eq!(
            (
                e.classification.disposition,
                e.classification.reason.as_str()
            ),
            (disposition, reason),
            "code {code}"
        );
        assert_eq!(
            e.provider_message_id.as_deref(),
            Some(format!("wamid.{code}").as_str())
        );
    }
}

/// Every code in pywa's error table (pywa/errors.py at 2026-08-12; `range(200, 300)` as 200):
/// a well-kept peer library knows them, so this channel does too.
const PEER_LIBRARY_CODES: &[i64] = &[
    0, 3, 4, 10, 190, 200, 368, 613, 80007, 130429, 130472, 130497, 131000, 131005, 131008, 131009,
    131016, 131020, 131021, 131026, 131030, 131031, 131037, 131041, 131042, 131044, 131045, 131047,
    131048, 131049, 131050, 131051, 131052, 131053, 131056, 131057, 131059, 131062, 131063, 131064,
    131201, 131202, 131204, 131207, 131208, 131209, 131210, 131211, 131212, 131213, 131214, 131215,
    132000, 132001, 132005, 132007, 132008, 132012, 132015, 132016, 132068, 132069, 133016, 135000,
    137000, 138000, 138001, 138002, 138003, 138004, 138005, 138006, 138007, 138009, 138012, 138013,
    138018, 139000, 139001, 139002, 139003, 139004, 139100, 139101, 139102, 139103, 147001, 147002,
    147003, 147004, 147005, 2388012, 2388019, 2388040, 2388047, 2388073, 2388091, 2388093, 2388103,
    2388293, 2388299, 2494100, 2494164, 2494165, 2494166, 2494167, 2494168, 2494176, 2494177,
    2494179,
];

#[test]
fn every_code_a_peer_library_knows_is_classified() {
    let unknown: Vec<i64> = PEER_LIBRARY_CODES
        .iter()
        .copied()
        .filter(|&code| {
            let body = json!({"error": {"message": "m", "type": "OAuthException", "code": code, "fbtrace_id": "t"}});
            let outcome = SendOutcome::Response(HttpResponse {
                status: 400,
                headers: vec![],
                body: body.to_string().into_bytes(),
            });
            plugin().classify(&outcome, 1).block().unwrap().reason == "unknown_error"
        })
        .collect();
    assert_eq!(unknown, Vec::<i64>::new(), "codes still unknown_error");
    assert_eq!(PEER_LIBRARY_CODES.len(), 110);
}
