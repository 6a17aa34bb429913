//! The email channel's rules, natively, against a real in-process host (ECDSA P-256 with the
//! public keys of the vectors) and deliveries signed as SendGrid signs them, checked by
//! SendGrid's own SDK (`tests/vectors/`).

use channel_sdk::{
    ChannelConfig, Disposition, EventKind, Header, Host, HttpRequest, HttpResponse, LogLevel,
    MessageRequest, SecretError, SendOutcome, SignatureAlgorithm, TransportError, WebhookError,
    WebhookEvent, WebhookOutcome, WebhookRequest,
};
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{DerSignature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey};
use sendgrid_email_channel::{events, send};
use serde_json::{Value, json};
use std::cell::RefCell;

const VECTORS: &str = include_str!("vectors/sendgrid-event-webhook.json");

fn vectors() -> Value {
    serde_json::from_str(VECTORS).unwrap()
}

fn b64(s: &str) -> Vec<u8> {
    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, s).unwrap()
}

fn b64e(b: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b)
}

/// A host holding one public key, answering sends with a canned response.
struct TestHost {
    public_key: String,
    answer: HttpResponse,
    sent: RefCell<Vec<HttpRequest>>,
}

impl TestHost {
    fn new(public_key: &str) -> TestHost {
        TestHost {
            public_key: public_key.into(),
            answer: HttpResponse {
                status: 202,
                headers: vec![Header {
                    name: "X-Message-Id".into(),
                    value: "14c5d75ce93".into(),
                }],
                body: vec![],
            },
            sent: RefCell::default(),
        }
    }
}

impl Host for TestHost {
    fn http_send(&self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        self.sent.borrow_mut().push(request.clone());
        Ok(self.answer.clone())
    }
    fn hmac_sha256_verify(&self, _: &str, _: &[u8], _: &[u8]) -> Result<bool, SecretError> {
        unreachable!("SendGrid signs with ECDSA")
    }
    fn signature_verify(
        &self,
        algorithm: SignatureAlgorithm,
        secret: &str,
        data: &[u8],
        signature: &[u8],
    ) -> Result<bool, SecretError> {
        assert_eq!(algorithm, SignatureAlgorithm::EcdsaP256Sha256);
        if secret != "email/webhook-public-key" {
            return Err(SecretError::NotFound);
        }
        let key = VerifyingKey::from_public_key_der(&b64(&self.public_key)).unwrap();
        Ok(DerSignature::from_bytes(signature)
            .ok()
            .is_some_and(|s| key.verify(data, &s).is_ok()))
    }
    fn secret_equals(&self, _: &str, _: &str) -> Result<bool, SecretError> {
        unreachable!()
    }
    fn log(&self, _: LogLevel, _: &str) {}
}

fn config() -> ChannelConfig {
    ChannelConfig {
        api_base: Some("http://127.0.0.1:9".into()),
        settings: json!({"from": {"email": "orders@example.com", "name": "Example Shop"}})
            .to_string(),
    }
}

fn message(to: &str, content: Value) -> MessageRequest {
    MessageRequest {
        recipient: to.into(),
        correlation_id: Some("order-1/2/1".into()),
        content: content.to_string(),
        last_inbound_ms: None,
        now_ms: 0,
        opted_out: vec![],
        deadline_ms: None,
    }
}

#[test]
fn a_message_is_the_mail_send_request_sendgrid_documents() {
    let http = send::build(
        &message(
            "pablo@example.com",
            json!({"subject": "Your order", "text": "It shipped.", "html": "<p>It shipped.</p>", "asm_group_id": 42}),
        ),
        &config(),
    )
    .unwrap();
    assert_eq!(http.url, "http://127.0.0.1:9/v3/mail/send");
    assert!(
        http.headers
            .iter()
            .any(|h| h.name == "authorization" && h.value == "Bearer ${secret:email/api-key}")
    );
    let body: Value = serde_json::from_slice(&http.body).unwrap();
    assert_eq!(
        body,
        json!({
            "personalizations": [{"to": [{"email": "pablo@example.com"}],
                                  "custom_args": {"flow_correlation_id": "order-1/2/1"}}],
            "from": {"email": "orders@example.com", "name": "Example Shop"},
            "subject": "Your order",
            "content": [{"type": "text/plain", "value": "It shipped."},
                        {"type": "text/html", "value": "<p>It shipped.</p>"}],
            "asm": {"group_id": 42}
        })
    );
    let http = send::build(
        &message(
            "pablo@example.com",
            json!({"template_id": "d-0123456789abcdef", "dynamic_template_data": {"name": "Pablo"}}),
        ),
        &config(),
    )
    .unwrap();
    let body: Value = serde_json::from_slice(&http.body).unwrap();
    assert_eq!(body["template_id"], "d-0123456789abcdef");
    assert_eq!(
        body["personalizations"][0]["dynamic_template_data"]["name"],
        "Pablo"
    );
}

#[test]
fn addresses_and_content_are_checked_before_sending_with_field_errors() {
    let errors = send::build(
        &message(
            &format!("{}@example.com", "a".repeat(250)),
            json!({"html": 3, "dynamic_template_data": {}}),
        ),
        &config(),
    )
    .unwrap_err();
    let found: Vec<(&str, &str)> = errors
        .iter()
        .map(|e| (e.path.as_str(), e.code.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("/recipient", "invalid_recipient"),
            ("/content/html", "expected_string"),
            ("/content/subject", "required"),
            ("/content/text", "required"),
            ("/content/dynamic_template_data", "needs_template"),
        ]
    );
    assert!(errors[0].message.contains("254"), "{}", errors[0].message);
    let errors = send::build(
        &message("+15550100001", json!({"subject": "s", "text": "t"})),
        &config(),
    )
    .unwrap_err();
    assert_eq!(errors[0].path, "/recipient");
    let long_subject = "s".repeat(send::SUBJECT_MAX_CHARS + 1);
    let errors = send::build(
        &message(
            "a@example.com",
            json!({"subject": long_subject, "text": "t"}),
        ),
        &config(),
    )
    .unwrap_err();
    assert_eq!(errors[0].code, "too_long");
}

#[test]
fn an_unsubscribed_recipient_is_declined_without_a_request() {
    let host = TestHost::new("");
    for (stopped, content) in [
        ("all", json!({"subject": "s", "text": "t"})),
        (
            "group:42",
            json!({"subject": "s", "text": "t", "asm_group_id": 42}),
        ),
    ] {
        let mut m = message("pablo@example.com", content);
        m.opted_out = vec![stopped.into()];
        let c = send::send(&m, &config(), 1, 0, &host).unwrap();
        assert_eq!(c.reason, "recipient_opted_out", "{stopped}");
    }
    assert!(host.sent.borrow().is_empty());
    let mut other_group = message(
        "pablo@example.com",
        json!({"subject": "s", "text": "t", "asm_group_id": 7}),
    );
    other_group.opted_out = vec!["group:42".into()];
    let c = send::send(&other_group, &config(), 1, 0, &host).unwrap();
    assert_eq!(
        (c.disposition, c.provider_message_id.as_deref()),
        (Disposition::Accepted, Some("14c5d75ce93"))
    );
}

fn answer(status: u16, headers: &[(&str, &str)], body: Value) -> SendOutcome {
    SendOutcome::Response(HttpResponse {
        status,
        headers: headers
            .iter()
            .map(|(n, v)| Header {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
        body: body.to_string().into_bytes(),
    })
}

#[test]
fn every_answer_is_classified_as_sendgrid_documents_it() {
    let errors = json!({"errors": [{"message": "The from email does not contain a valid address.",
        "field": "from.email", "help": "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message.from"}]});
    let cases = [
        (400, Disposition::Failed, "invalid_request", true),
        (401, Disposition::Failed, "auth_error", true),
        (403, Disposition::Failed, "auth_error", true),
        (413, Disposition::Failed, "invalid_request", true),
        (429, Disposition::Retry, "rate_limited", false),
        (500, Disposition::Retry, "provider_unavailable", false),
        (503, Disposition::Retry, "provider_unavailable", false),
    ];
    for (status, disposition, reason, operator) in cases {
        let c = send::classify(&answer(status, &[], errors.clone()), 1, 0);
        assert_eq!(
            (c.disposition, c.reason.as_str(), c.operator_action),
            (disposition, reason, operator),
            "{status}"
        );
    }
    let c = send::classify(&answer(400, &[], errors), 1, 0);
    assert_eq!(c.provider_details.as_deref(), Some("field from.email"));
    assert_eq!(
        c.provider_title.as_deref(),
        Some("The from email does not contain a valid address.")
    );
    let c = send::classify(
        &answer(429, &[("X-RateLimit-Reset", "1765000030")], json!({})),
        1,
        1_765_000_000_000,
    );
    assert_eq!(c.retry_after_ms, Some(30_000));
    let c = send::classify(&answer(202, &[], json!(null)), 1, 0);
    assert_eq!(c.disposition, Disposition::Unknown);
}

fn delivery(case: &Value) -> WebhookRequest {
    WebhookRequest {
        method: "POST".into(),
        url: None,
        headers: vec![
            Header {
                name: "X-Twilio-Email-Event-Webhook-Signature".into(),
                value: case["signature"].as_str().unwrap().into(),
            },
            Header {
                name: "X-Twilio-Email-Event-Webhook-Timestamp".into(),
                value: case["timestamp"].as_str().unwrap().into(),
            },
        ],
        query: vec![],
        body: case["body"].as_str().unwrap().as_bytes().to_vec(),
    }
}

fn now_of(case: &Value) -> u64 {
    case["timestamp"].as_str().unwrap().parse::<u64>().unwrap() * 1_000
}

fn events_of(outcome: Result<WebhookOutcome, WebhookError>) -> Vec<WebhookEvent> {
    match outcome {
        Ok(WebhookOutcome::Events(e)) => e,
        other => panic!("expected events, got {other:?}"),
    }
}

/// SendGrid's published vector and deliveries its SDK verified.
#[test]
fn deliveries_the_sendgrid_sdk_verifies_are_verified_and_a_changed_byte_is_not() {
    let doc = vectors();
    for case in doc["cases"].as_array().unwrap() {
        let host = TestHost::new(case["public_key"].as_str().unwrap());
        let request = delivery(case);
        let events = events_of(events::parse(&request, &config(), now_of(case), &host));
        assert!(!events.is_empty());
        let mut tampered = request.clone();
        tampered.body[2] ^= 1;
        assert!(matches!(
            events::parse(&tampered, &config(), now_of(case), &host),
            Err(WebhookError::SignatureInvalid(_))
        ));
        let mut other_time = request.clone();
        other_time.headers[1].value = (now_of(case) / 1_000 + 1).to_string();
        assert!(matches!(
            events::parse(&other_time, &config(), now_of(case), &host),
            Err(WebhookError::SignatureInvalid(_))
        ));
    }
    // The published one: SendGrid's `dropped` of a bounced address.
    let published = &doc["cases"][0];
    let host = TestHost::new(published["public_key"].as_str().unwrap());
    let e = &events_of(events::parse(
        &delivery(published),
        &config(),
        now_of(published),
        &host,
    ))[0];
    assert_eq!(
        (
            e.classification.disposition,
            e.classification.reason.as_str()
        ),
        (Disposition::Fallback, "dropped")
    );
    assert_eq!(
        e.provider_message_id.as_deref(),
        Some("LRzXl_NHStOGhQ4kofSm_A")
    );
    assert_eq!(e.recipient.as_deref(), Some("hello@world.com"));
}

#[test]
fn an_old_or_unsigned_delivery_is_refused() {
    let doc = vectors();
    let case = &doc["cases"][1];
    let host = TestHost::new(case["public_key"].as_str().unwrap());
    let eleven_minutes = now_of(case) + 660_000;
    let err = events::parse(&delivery(case), &config(), eleven_minutes, &host).unwrap_err();
    assert!(
        matches!(&err, WebhookError::SignatureInvalid(m) if m.contains("660 s")),
        "{err:?}"
    );
    let mut unsigned = delivery(case);
    unsigned.headers.remove(0);
    assert!(matches!(
        events::parse(&unsigned, &config(), now_of(case), &host),
        Err(WebhookError::SignatureMissing)
    ));
}

/// Signs `events` as SendGrid does, with the vectors' test key.
fn signed(events_json: Value, timestamp: u64) -> (WebhookRequest, String) {
    let doc = vectors();
    let key =
        SigningKey::from_pkcs8_der(&b64(doc["test_private_key_pkcs8"].as_str().unwrap())).unwrap();
    let body = events_json.to_string();
    let ts = timestamp.to_string();
    let signature: DerSignature = key.sign(format!("{ts}{body}").as_bytes());
    let case = json!({"signature": b64e(signature.as_bytes()), "timestamp": ts, "body": body});
    (
        delivery(&case),
        doc["cases"][1]["public_key"].as_str().unwrap().to_string(),
    )
}

#[test]
fn each_event_maps_to_its_status_or_preference() {
    let item = |event: &str, extra: Value| {
        let mut v = json!({"email": "pablo@example.com", "event": event, "timestamp": 1765000000,
            "sg_event_id": format!("id-{event}"), "sg_message_id": "MSG1.filter-1",
            "flow_correlation_id": "order-1/2/1"});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    let all = json!([
        item("processed", json!({})),
        item(
            "deferred",
            json!({"response": "400 try again later", "attempt": "5"})
        ),
        item("delivered", json!({"response": "250 OK"})),
        item("open", json!({})),
        item(
            "bounce",
            json!({"type": "bounce", "status": "5.1.1", "reason": "550 no such user"})
        ),
        item(
            "bounce",
            json!({"type": "blocked", "sg_event_id": "id-blocked"})
        ),
        item("dropped", json!({"reason": "Bounced Address"})),
        item("spamreport", json!({})),
        item("unsubscribe", json!({})),
        item("group_unsubscribe", json!({"asm_group_id": 42})),
        item("group_resubscribe", json!({"asm_group_id": 42})),
        item("machine_opened_in_2030", json!({})),
    ]);
    let (request, key) = signed(all, 1_765_000_000);
    let host = TestHost::new(&key);
    let events = events_of(events::parse(&request, &config(), 1_765_000_000_000, &host));
    let seen: Vec<(EventKind, Disposition, &str)> = events
        .iter()
        .map(|e| {
            (
                e.kind,
                e.classification.disposition,
                e.classification.reason.as_str(),
            )
        })
        .collect();
    use Disposition::*;
    use EventKind::*;
    assert_eq!(
        seen,
        [
            (MessageStatus, Accepted, "accepted"),
            (MessageStatus, Accepted, "deferred"),
            (MessageStatus, Delivered, "delivered"),
            (MessageStatus, Read, "read"),
            (MessageStatus, Fallback, "bounced"),
            (MessageStatus, Fallback, "recipient_blocked"),
            (MessageStatus, Fallback, "dropped"),
            (RecipientPreference, Fallback, "recipient_opted_out"),
            (RecipientPreference, Fallback, "recipient_opted_out"),
            (RecipientPreference, Fallback, "recipient_opted_out"),
            (RecipientPreference, Accepted, "recipient_opted_in"),
            (Other, Unknown, "other_event"),
        ]
    );
    let e = &events[2];
    assert_eq!(e.correlation_id.as_deref(), Some("order-1/2/1"));
    assert_eq!(e.provider_message_id.as_deref(), Some("MSG1"));
    assert_eq!(e.dedupe_key, "sendgrid:id-delivered");
    assert_eq!(e.occurred_at_ms, Some(1_765_000_000_000));
    assert!(
        events[2].precedence > events[4].precedence,
        "delivered outranks a late bounce"
    );
    assert!(
        events[4].precedence > events[1].precedence,
        "a bounce outranks deferred"
    );
    let category =
        |i: usize| serde_json::from_str::<Value>(&events[i].details).unwrap()["category"].clone();
    assert_eq!(category(7), "all");
    assert_eq!(category(9), "group:42");
    assert_eq!(
        events[4].classification.provider_code.as_deref(),
        Some("5.1.1")
    );
}

#[test]
fn a_body_that_is_not_an_event_array_is_malformed() {
    for body in [json!({"event": "delivered"}), json!([{"email": "a@b.co"}])] {
        let (request, key) = signed(body, 1_765_000_000);
        let host = TestHost::new(&key);
        assert!(matches!(
            events::parse(&request, &config(), 1_765_000_000_000, &host),
            Err(WebhookError::Malformed(_))
        ));
    }
}

#[test]
fn every_reason_is_in_the_reason_vocabulary() {
    let vocabulary = include_str!("../../../docs/reasons.md");
    for reason in [
        "accepted",
        "deferred",
        "delivered",
        "read",
        "bounced",
        "recipient_blocked",
        "dropped",
        "recipient_opted_out",
        "recipient_opted_in",
        "rate_limited",
        "auth_error",
        "invalid_request",
        "provider_unavailable",
        "unexpected_response",
        "other_event",
    ] {
        assert!(
            vocabulary.contains(&format!("| `{reason}` |")),
            "{reason} is not in docs/reasons.md"
        );
    }
}
