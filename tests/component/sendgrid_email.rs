//! The email channel (SendGrid) through wasmtime: real HTTP to the mock's Mail Send with the
//! API key the host substitutes, and Event Webhook deliveries verified by the host's ECDSA
//! P-256 with the public key as the secret (the component never holds it).

use host::contract::types::{
    ChannelConfig, Disposition, Header, MessageRequest, WebhookError, WebhookOutcome,
    WebhookRequest,
};
use host::services::{HostServices, HttpClient, HttpPolicy, Log, Secrets};
use host::{Limits, Plugin, Runtime};
use host_testkit::Block;
use host_testkit::mock::{MockApi, MockConfig};
use host_testkit::mock_sendgrid::{DEMO_API_KEY, demo_event_public_key, sign};
use serde_json::{Value, json};
use std::sync::Arc;

fn plugin(api_base: &str, api_key: &str, public_key: &str) -> Plugin {
    let mut secrets = Secrets::default();
    secrets
        .insert_for_hosts("email/api-key", api_key, [api_base])
        .unwrap();
    secrets.insert("email/webhook-public-key", public_key);
    let policy = HttpPolicy::default().allowing([api_base]).unwrap();
    let services = HostServices::new(HttpClient::new(policy), secrets, Log::memory());
    Runtime::new()
        .unwrap()
        .load_file(
            std::path::Path::new(host_testkit::EMAIL_CHANNEL_WASM),
            Arc::new(services),
            Limits::default(),
        )
        .unwrap()
}

fn config(api_base: &str) -> ChannelConfig {
    ChannelConfig {
        api_base: Some(api_base.into()),
        settings: host_testkit::stack::demo_email_settings().to_string(),
    }
}

fn message(to: &str) -> MessageRequest {
    MessageRequest {
        recipient: to.into(),
        correlation_id: Some("order-9/2/1".into()),
        content: json!({"subject": "Your order", "text": "It shipped."}).to_string(),
        last_inbound_ms: None,
        now_ms: 0,
        opted_out: vec![],
        deadline_ms: None,
    }
}

#[test]
fn sends_reach_the_mock_sendgrid_with_the_api_key_the_host_substitutes() {
    let mock = MockApi::start(0, MockConfig::default()).unwrap();
    let base = mock.base_url();
    let email = plugin(&base, DEMO_API_KEY, &demo_event_public_key());
    let info = email.describe().block().unwrap();
    assert_eq!(
        (info.name.as_str(), info.contract_version.as_str()),
        ("email", "flow:channel@1.2.0")
    );
    let c = email
        .send(&message("pablo@example.com"), &config(&base), 1)
        .block()
        .unwrap()
        .unwrap();
    assert_eq!(c.disposition, Disposition::Accepted, "{c:?}");
    assert!(c.provider_message_id.unwrap().starts_with("mockMsg"));
    let sent = &mock.requests()[0];
    assert_eq!(sent.correlation_id().as_deref(), Some("order-9/2/1"));
    let wrong = plugin(&base, "not-the-key", &demo_event_public_key());
    let c = wrong
        .send(&message("pablo@example.com"), &config(&base), 1)
        .block()
        .unwrap()
        .unwrap();
    assert_eq!(
        (c.disposition, c.reason.as_str(), c.operator_action),
        (Disposition::Failed, "auth_error", true)
    );
    let refused = email
        .send(&message("not an address"), &config(&base), 1)
        .block()
        .unwrap()
        .unwrap_err();
    assert_eq!(refused[0].path, "/recipient");
    assert_eq!(mock.requests().len(), 2, "the refused one never left");
}

fn delivery(body: &str, timestamp: &str, signature: &str) -> WebhookRequest {
    WebhookRequest {
        method: "POST".into(),
        url: None,
        headers: vec![
            Header {
                name: "X-Twilio-Email-Event-Webhook-Signature".into(),
                value: signature.into(),
            },
            Header {
                name: "X-Twilio-Email-Event-Webhook-Timestamp".into(),
                value: timestamp.into(),
            },
        ],
        query: vec![],
        body: body.as_bytes().to_vec(),
    }
}

#[test]
fn event_webhook_deliveries_are_verified_by_the_host() {
    let email = plugin("http://127.0.0.1:9", "k", &demo_event_public_key());
    let body = json!([{"email": "pablo@example.com", "event": "delivered", "timestamp": 1,
        "sg_event_id": "e1", "sg_message_id": "M1.filter", "flow_correlation_id": "order-9/2/1"}])
    .to_string();
    let (timestamp, signature) = sign(&body);
    let cfg = config("http://127.0.0.1:9");
    let outcome = email
        .parse_webhook(&delivery(&body, &timestamp, &signature), &cfg)
        .block()
        .unwrap();
    let Ok(WebhookOutcome::Events(events)) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(events[0].classification.disposition, Disposition::Delivered);
    assert_eq!(events[0].correlation_id.as_deref(), Some("order-9/2/1"));
    let tampered = body.replace("delivered", "bounce");
    assert!(matches!(
        email
            .parse_webhook(&delivery(&tampered, &timestamp, &signature), &cfg)
            .block()
            .unwrap(),
        Err(WebhookError::SignatureInvalid(_))
    ));
}

/// SendGrid's own published vector (sendgrid-python's tests): its signature verifies under
/// the host's ECDSA, and, signed in 2020, it is refused as a replay.
#[test]
fn sendgrids_published_vector_verifies_and_is_too_old_to_accept() {
    let doc: Value = serde_json::from_str(include_str!(
        "../../channels/sendgrid-email/tests/vectors/sendgrid-event-webhook.json"
    ))
    .unwrap();
    let case = &doc["cases"][0];
    let request = delivery(
        case["body"].as_str().unwrap(),
        case["timestamp"].as_str().unwrap(),
        case["signature"].as_str().unwrap(),
    );
    let email = plugin(
        "http://127.0.0.1:9",
        "k",
        case["public_key"].as_str().unwrap(),
    );
    let outcome = email
        .parse_webhook(&request, &config("http://127.0.0.1:9"))
        .block()
        .unwrap();
    assert!(
        matches!(&outcome, Err(WebhookError::SignatureInvalid(m)) if m.contains("s away from now")),
        "{outcome:?}"
    );
    let other_key = plugin("http://127.0.0.1:9", "k", &demo_event_public_key());
    let outcome = other_key
        .parse_webhook(&request, &config("http://127.0.0.1:9"))
        .block()
        .unwrap();
    assert!(
        matches!(&outcome, Err(WebhookError::SignatureInvalid(m)) if m.contains("does not match")),
        "{outcome:?}"
    );
}

/// Every answer SendGrid documents, classified by the component.
#[test]
fn the_component_classifies_every_answer_as_sendgrid_documents_it() {
    use host::contract::types::{HttpResponse, SendOutcome};
    let email = plugin("http://127.0.0.1:9", "k", &demo_event_public_key());
    let errors =
        json!({"errors": [{"message": "m", "field": "personalizations.0.to", "help": null}]});
    for (status, disposition, reason, operator) in [
        (400, "failed", "invalid_request", true),
        (401, "failed", "auth_error", true),
        (403, "failed", "auth_error", true),
        (413, "failed", "invalid_request", true),
        (429, "retry", "rate_limited", false),
        (500, "retry", "provider_unavailable", false),
        (502, "retry", "provider_unavailable", false),
    ] {
        let outcome = SendOutcome::Response(HttpResponse {
            status,
            headers: vec![],
            body: errors.to_string().into_bytes(),
        });
        let c = email.classify(&outcome, 1).block().unwrap();
        assert_eq!(
            (
                host::json::disposition_name(c.disposition),
                c.reason.as_str(),
                c.operator_action
            ),
            (disposition, reason, operator),
            "{status}"
        );
    }
}
