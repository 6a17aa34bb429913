//! The SMS channel's rules, natively, against a real in-process host (HMAC-SHA1 with a known
//! auth token) and the signatures Twilio's own SDK made (`tests/vectors/`).

use channel_sdk::{
    ChannelConfig, Disposition, EventKind, Header, Host, HttpRequest, HttpResponse, LogLevel,
    MessageRequest, SecretError, SendOutcome, SignatureAlgorithm, TransportError,
    TransportErrorKind, WebhookError, WebhookEvent, WebhookOutcome, WebhookRequest,
};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use std::cell::RefCell;
use twilio_sms_channel::{codes, send, webhook};

const SID: &str = "AC0a1b2c3d4e5f60718293a4b5c6d7e8f9";

/// A host holding one auth token, answering sends with a canned response.
struct TestHost {
    auth_token: String,
    answer: Result<HttpResponse, TransportError>,
    sent: RefCell<Vec<HttpRequest>>,
}

impl TestHost {
    fn with_token(auth_token: &str) -> TestHost {
        TestHost {
            auth_token: auth_token.into(),
            answer: Ok(response(
                201,
                json!({"sid": "SM1", "status": "queued", "body": "hi"}),
            )),
            sent: RefCell::default(),
        }
    }
}

impl Host for TestHost {
    fn http_send(&self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        self.sent.borrow_mut().push(request.clone());
        self.answer.clone()
    }
    fn hmac_sha256_verify(&self, _: &str, _: &[u8], _: &[u8]) -> Result<bool, SecretError> {
        unreachable!("Twilio signs with HMAC-SHA1")
    }
    fn signature_verify(
        &self,
        algorithm: SignatureAlgorithm,
        secret: &str,
        data: &[u8],
        signature: &[u8],
    ) -> Result<bool, SecretError> {
        assert_eq!(algorithm, SignatureAlgorithm::HmacSha1);
        if secret != "sms/auth-token" {
            return Err(SecretError::NotFound);
        }
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(self.auth_token.as_bytes()).unwrap();
        mac.update(data);
        Ok(mac.verify_slice(signature).is_ok())
    }
    fn secret_equals(&self, _: &str, _: &str) -> Result<bool, SecretError> {
        unreachable!("nothing is compared")
    }
    fn log(&self, _: LogLevel, _: &str) {}
}

fn response(status: u16, body: Value) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![],
        body: body.to_string().into_bytes(),
    }
}

fn config() -> ChannelConfig {
    ChannelConfig {
        api_base: Some("http://127.0.0.1:9".into()),
        settings: json!({"account_sid": SID, "from": "+15005550006",
            "status_callback": "https://hooks.example.com/webhooks/sms"})
        .to_string(),
    }
}

fn message(to: &str, content: Value) -> MessageRequest {
    MessageRequest {
        recipient: to.into(),
        correlation_id: Some("order-1:sms:1".into()),
        content: content.to_string(),
        last_inbound_ms: None,
        now_ms: 0,
        opted_out: vec![],
        deadline_ms: None,
    }
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn sign(token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let text: String = std::iter::once(url.to_string())
        .chain(sorted.iter().map(|(k, v)| format!("{k}{v}")))
        .collect();
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(text.as_bytes());
    base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        mac.finalize().into_bytes(),
    )
}

fn callback(url: &str, params: &[(String, String)], signature: Option<String>) -> WebhookRequest {
    let query = url
        .split_once('?')
        .map(|(_, q)| form(q.as_bytes()))
        .unwrap_or_default();
    WebhookRequest {
        method: "POST".into(),
        url: Some(url.into()),
        headers: signature
            .map(|s| Header {
                name: "X-Twilio-Signature".into(),
                value: s,
            })
            .into_iter()
            .collect(),
        query,
        body: form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish()
            .into_bytes(),
    }
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn one_event(outcome: Result<WebhookOutcome, WebhookError>) -> WebhookEvent {
    match outcome {
        Ok(WebhookOutcome::Events(mut events)) if events.len() == 1 => events.remove(0),
        other => panic!("expected one event, got {other:?}"),
    }
}

#[test]
fn a_message_is_the_form_twilio_documents_with_the_correlation_id_in_the_status_callback() {
    let content = json!({"text": "Your order shipped 🚚", "validity_period_s": 600});
    let http = send::build(&message("+1 555 010 0001", content), &config()).unwrap();
    assert_eq!(http.method, "POST");
    assert_eq!(
        http.url,
        format!("http://127.0.0.1:9/2010-04-01/Accounts/{SID}/Messages.json")
    );
    let header = |n: &str| {
        http.headers
            .iter()
            .find(|h| h.name == n)
            .map(|h| h.value.as_str())
    };
    assert_eq!(
        header("authorization"),
        Some("Basic ${basic:sms/account-sid:sms/auth-token}")
    );
    assert_eq!(
        header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        form(&http.body),
        pairs(&[
            ("To", "+15550100001"),
            ("From", "+15005550006"),
            ("Body", "Your order shipped 🚚"),
            (
                "StatusCallback",
                "https://hooks.example.com/webhooks/sms?correlation_id=order-1%3Asms%3A1"
            ),
            ("ValidityPeriod", "600"),
        ])
    );
}

/// The flow's deadline bounds how long Twilio may keep the message queued, so an SMS the
/// flow gave up on never arrives after the next channel's message.
#[test]
fn the_validity_period_is_the_time_left_until_the_flows_deadline_or_the_contents_if_shorter() {
    let validity = |content: Value, deadline_after_ms: Option<u64>| {
        let mut m = message("+15550100001", content);
        m.now_ms = 1_750_000_000_000;
        m.deadline_ms = deadline_after_ms.map(|d| m.now_ms + d);
        let http = send::build(&m, &config()).unwrap();
        form(&http.body)
            .into_iter()
            .find(|(n, _)| n == "ValidityPeriod")
            .map(|(_, v)| v)
    };
    let text = json!({"text": "Your code is 1234"});
    let with_600 = json!({"text": "Your code is 1234", "validity_period_s": 600});
    // Whole seconds left, rounded down: Twilio drops it before the flow moves on.
    assert_eq!(validity(text.clone(), Some(90_999)), Some("90".into()));
    assert_eq!(validity(with_600.clone(), Some(90_000)), Some("90".into()));
    assert_eq!(
        validity(with_600.clone(), Some(3_600_000)),
        Some("600".into())
    );
    assert_eq!(validity(with_600, None), Some("600".into()));
    // Less than a second left, or already past: Twilio's least, 1 s.
    assert_eq!(validity(text.clone(), Some(400)), Some("1".into()));
    assert_eq!(validity(text.clone(), Some(0)), Some("1".into()));
    // No deadline, or one past Twilio's own default of 36,000 s: nothing to ask.
    assert_eq!(validity(text.clone(), None), None);
    assert_eq!(validity(text.clone(), Some(36_000_000)), None);
    assert_eq!(validity(text, Some(35_999_999)), Some("35999".into()));
}

#[test]
fn bad_content_and_recipients_are_field_errors_with_the_limit_and_the_value() {
    let long = "a".repeat(send::BODY_MAX_CHARS + 1);
    let errors = send::build(
        &message(
            "5550100001",
            json!({"text": long, "validity_period_s": 36_001, "media": 1}),
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
            ("/content/media", "unknown_field"),
            ("/content/text", "too_long"),
            ("/content/validity_period_s", "out_of_range"),
        ]
    );
    assert!(errors[2].message.contains("1600") && errors[2].message.contains("1601"));
    assert!(errors[3].message.contains("36001"));
    let ok = "a".repeat(send::BODY_MAX_CHARS);
    assert!(send::build(&message("+15550100001", json!({ "text": ok })), &config()).is_ok());
    let bad_settings = ChannelConfig {
        settings: "{}".into(),
        ..config()
    };
    let errors = send::build(
        &message("+15550100001", json!({"text": "x"})),
        &bad_settings,
    )
    .unwrap_err();
    assert_eq!(errors[0].path, "/settings/account_sid");
}

#[test]
fn a_recipient_who_replied_stop_is_declined_without_a_request() {
    let host = TestHost::with_token("t");
    let mut m = message("+15550100001", json!({"text": "hi"}));
    m.opted_out = vec!["all".into()];
    let c = send::send(&m, &config(), 1, &host).unwrap();
    assert_eq!(
        (c.disposition, c.reason.as_str()),
        (Disposition::Fallback, "recipient_opted_out")
    );
    assert!(host.sent.borrow().is_empty());
}

#[test]
fn an_accepted_message_reports_its_encoding_and_segments() {
    let host = TestHost::with_token("t");
    let text = "€".repeat(100);
    let c = send::send(
        &message("+15550100001", json!({ "text": text })),
        &config(),
        1,
        &host,
    )
    .unwrap();
    assert_eq!(c.disposition, Disposition::Accepted);
    assert_eq!(c.provider_message_id.as_deref(), Some("SM1"));
    let details: Value = serde_json::from_str(c.provider_details.as_deref().unwrap()).unwrap();
    assert_eq!(
        details,
        json!({"encoding": "GSM-7", "segments": 2, "characters": 100})
    );
}

#[test]
fn every_code_in_the_table_is_classified_as_its_rule_says() {
    for rule in codes::CODES {
        let status = if rule.code == 20429 { 429 } else { 400 };
        let body = json!({"code": rule.code, "message": "m", "status": status,
            "more_info": format!("https://www.twilio.com/docs/errors/{}", rule.code)});
        let c = send::classify(&SendOutcome::Response(response(status, body)), 1);
        assert_eq!(
            (c.disposition, c.reason.as_str(), c.operator_action),
            (rule.disposition, rule.reason, rule.operator_action),
            "{}",
            rule.code
        );
        assert_eq!(c.provider_code, Some(rule.code.to_string()));
    }
}

#[test]
fn answers_without_a_known_code_are_classified_by_their_status() {
    let classify = |status, body: Value, headers: Vec<Header>| {
        send::classify(
            &SendOutcome::Response(HttpResponse {
                status,
                headers,
                body: body.to_string().into_bytes(),
            }),
            2,
        )
    };
    let retry_after = vec![Header {
        name: "Retry-After".into(),
        value: "7".into(),
    }];
    let c = classify(429, json!({}), retry_after);
    assert_eq!(
        (c.disposition, c.retry_after_ms),
        (Disposition::Retry, Some(7_000))
    );
    let c = classify(503, json!({"code": 99999}), vec![]);
    assert_eq!(
        (c.disposition, c.retry_after_ms),
        (Disposition::Retry, Some(2_000))
    );
    let c = classify(401, json!({}), vec![]);
    assert!(c.disposition == Disposition::Failed && c.operator_action);
    let c = classify(201, json!({"status": "queued"}), vec![]);
    assert_eq!(c.disposition, Disposition::Unknown);
    let timeout = TransportError {
        kind: TransportErrorKind::Timeout,
        request_sent: true,
        message: "no answer".into(),
    };
    let c = send::classify(&SendOutcome::TransportError(timeout), 1);
    assert_eq!(c.disposition, Disposition::Unknown);
}

/// Signatures made by Twilio's own Python SDK (`tests/vectors/twilio_python_sdk.py`).
#[test]
fn signatures_made_by_twilios_sdk_verify_and_a_changed_parameter_does_not() {
    let doc: Value = serde_json::from_str(include_str!("vectors/twilio-python-sdk.json")).unwrap();
    for case in doc["cases"].as_array().unwrap() {
        let host = TestHost::with_token(case["auth_token"].as_str().unwrap());
        let url = case["url"].as_str().unwrap();
        let signature = case["signature"].as_str().unwrap().to_string();
        let mut request = match case["params"].as_object() {
            Some(params) => {
                let params: Vec<(String, String)> = params
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect();
                callback(url, &params, Some(signature))
            }
            None => {
                let mut r = callback(url, &[], Some(signature));
                r.body = case["json_body"].as_str().unwrap().as_bytes().to_vec();
                r
            }
        };
        let outcome = webhook::parse(&request, &config(), &host);
        assert!(
            !matches!(
                outcome,
                Err(WebhookError::SignatureInvalid(_) | WebhookError::SignatureMissing)
            ),
            "{url}: {outcome:?}"
        );
        request.body.extend_from_slice(b"&Extra=1");
        if case["json_body"].is_string() {
            request.body = b"{\"MessageSid\":\"SM1\",\"MessageStatus\":\"failed\"}".to_vec();
        }
        assert!(
            matches!(
                webhook::parse(&request, &config(), &host),
                Err(WebhookError::SignatureInvalid(_))
            ),
            "{url}: a changed body must not verify"
        );
    }
}

#[test]
fn the_url_verifies_with_or_without_its_default_port() {
    let host = TestHost::with_token("tok");
    let params = twilio_status("SM1", "delivered", None);
    let signed_with_port = "https://hooks.example.com:443/webhooks/sms";
    let received = "https://hooks.example.com/webhooks/sms";
    let sig = sign("tok", signed_with_port, &params);
    let e = one_event(webhook::parse(
        &callback(received, &params, Some(sig)),
        &config(),
        &host,
    ));
    assert_eq!(e.classification.disposition, Disposition::Delivered);
    let sig = sign("tok", received, &params);
    let e = one_event(webhook::parse(
        &callback(signed_with_port, &params, Some(sig)),
        &config(),
        &host,
    ));
    assert_eq!(e.classification.disposition, Disposition::Delivered);
}

#[test]
fn unsigned_wrongly_signed_or_unlocatable_callbacks_are_refused() {
    let host = TestHost::with_token("tok");
    let url = "https://hooks.example.com/webhooks/sms";
    let params = twilio_status("SM1", "delivered", None);
    assert!(matches!(
        webhook::parse(&callback(url, &params, None), &config(), &host),
        Err(WebhookError::SignatureMissing)
    ));
    for bad in ["not base64!", "AAAA", &sign("other", url, &params)] {
        assert!(
            matches!(
                webhook::parse(
                    &callback(url, &params, Some(bad.to_string())),
                    &config(),
                    &host
                ),
                Err(WebhookError::SignatureInvalid(_))
            ),
            "{bad}"
        );
    }
    let mut no_url = callback(url, &params, Some(sign("tok", url, &params)));
    no_url.url = None;
    assert!(matches!(
        webhook::parse(&no_url, &config(), &host),
        Err(WebhookError::SecretUnavailable(_))
    ));
}

fn twilio_status(sid: &str, status: &str, code: Option<&str>) -> Vec<(String, String)> {
    let mut p = pairs(&[
        ("SmsSid", sid),
        ("SmsStatus", status),
        ("MessageStatus", status),
        ("To", "+15550100030"),
        ("MessageSid", sid),
        ("AccountSid", SID),
        ("From", "+15005550006"),
        ("ApiVersion", "2010-04-01"),
    ]);
    if let Some(code) = code {
        p.push(("ErrorCode".into(), code.into()));
    }
    p
}

fn status_event(status: &str, code: Option<&str>) -> WebhookEvent {
    let host = TestHost::with_token("tok");
    let url = "https://hooks.example.com/webhooks/sms?correlation_id=order-1%3Asms%3A1";
    let params = twilio_status("SMabc", status, code);
    let sig = sign("tok", url, &params);
    one_event(webhook::parse(
        &callback(url, &params, Some(sig)),
        &config(),
        &host,
    ))
}

#[test]
fn statuses_find_their_flow_by_the_correlation_id_and_rank_delivery_over_failure() {
    let e = status_event("undelivered", Some("30003"));
    assert_eq!(e.kind, EventKind::MessageStatus);
    assert_eq!(e.correlation_id.as_deref(), Some("order-1:sms:1"));
    assert_eq!(e.provider_message_id.as_deref(), Some("SMabc"));
    assert_eq!(e.recipient.as_deref(), Some("+15550100030"));
    assert_eq!(
        (
            e.classification.disposition,
            e.classification.reason.as_str()
        ),
        (Disposition::Fallback, "recipient_unreachable")
    );
    assert_eq!(e.classification.provider_code.as_deref(), Some("30003"));
    let rank = |s| status_event(s, None).precedence;
    assert!(rank("queued") < rank("sent"));
    assert!(rank("sent") < rank("undelivered"));
    assert!(rank("undelivered") < rank("delivered"));
    assert!(rank("delivered") < rank("read"));
    assert_eq!(
        status_event("sent", None).classification.disposition,
        Disposition::Sent
    );
    assert_eq!(
        status_event("failed", Some("12345")).classification.reason,
        "undelivered"
    );
    assert_ne!(
        status_event("sent", None).dedupe_key,
        status_event("delivered", None).dedupe_key
    );
}

#[test]
fn every_callback_error_code_is_classified_as_its_rule_says() {
    for rule in codes::CODES {
        let e = status_event("undelivered", Some(&rule.code.to_string()));
        assert_eq!(
            (
                e.classification.disposition,
                e.classification.reason.as_str()
            ),
            (rule.disposition, rule.reason),
            "{}",
            rule.code
        );
    }
}

fn inbound(body: &str, opt_out_type: Option<&str>) -> WebhookEvent {
    let host = TestHost::with_token("tok");
    let url = "https://hooks.example.com/webhooks/sms";
    let mut params = pairs(&[
        ("MessageSid", "SMin1"),
        ("SmsStatus", "received"),
        ("Body", body),
        ("From", "+15550100031"),
        ("To", "+15005550006"),
        ("AccountSid", SID),
    ]);
    if let Some(t) = opt_out_type {
        params.push(("OptOutType".into(), t.into()));
    }
    let sig = sign("tok", url, &params);
    one_event(webhook::parse(
        &callback(url, &params, Some(sig)),
        &config(),
        &host,
    ))
}

#[test]
fn stop_start_and_help_are_preferences_and_other_texts_are_inbound_messages() {
    for text in ["STOP", " stop ", "Unsubscribe", "stopall"] {
        let e = inbound(text, None);
        assert_eq!(e.kind, EventKind::RecipientPreference, "{text}");
        assert_eq!(e.classification.reason, "recipient_opted_out");
        let details: Value = serde_json::from_str(&e.details).unwrap();
        assert_eq!(details["category"], "all");
        assert_eq!(e.recipient.as_deref(), Some("+15550100031"));
    }
    let e = inbound("Arrêtez", Some("STOP"));
    assert_eq!(e.classification.reason, "recipient_opted_out");
    let e = inbound("start", None);
    assert_eq!(
        (e.kind, e.classification.reason.as_str()),
        (EventKind::RecipientPreference, "recipient_opted_in")
    );
    let e = inbound("HELP", None);
    assert_eq!(e.kind, EventKind::InboundMessage);
    let details: Value = serde_json::from_str(&e.details).unwrap();
    assert_eq!(details["keyword"], "help");
    let e = inbound("please stop calling me at work", None);
    assert_eq!(e.kind, EventKind::InboundMessage);
}
