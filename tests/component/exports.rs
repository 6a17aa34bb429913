//! Every export of the real component, through wasmtime, with Meta's own payloads.

use host_testkit::Block;

use crate::common::*;
use host::contract::types::{
    Disposition, EventKind, Header, HttpResponse, SendOutcome, TransportError, TransportErrorKind,
    WebhookError, WebhookOutcome, WebhookRequest,
};
use serde_json::{Value, json};

#[test]
fn describe_names_channel_versions_and_schemas() {
    let info = plugin().describe().block().unwrap();
    assert_eq!(info.name, "whatsapp");
    assert_eq!(info.contract_version, "flow:channel@1.2.0");
    assert!(semver_like(&info.plugin_version), "{}", info.plugin_version);
    assert!(info.capabilities.iter().any(|c| c == "template"));
    for schema in [
        &info.config_schema,
        &info.message_schema,
        &info.template_schema,
    ] {
        let v: Value = serde_json::from_str(schema).unwrap();
        assert_eq!(v["$schema"], "https://json-schema.org/draft/2020-12/schema");
    }
}

fn semver_like(v: &str) -> bool {
    v.split('.').count() == 3 && v.split('.').all(|p| p.parse::<u32>().is_ok())
}

#[test]
fn meta_template_samples_validate() {
    for name in [
        "template-create-authentication-copy-code.json",
        "template-create-marketing-positional-seasonal-promotion.json",
        "template-create-utility-location-header.json",
        "template-create-utility-named-params.json",
        "template-create-utility-positional-document-header.json",
    ] {
        assert_eq!(
            plugin().validate_template(&fixture(name)).block().unwrap(),
            Ok(()),
            "{name}"
        );
    }
}

#[test]
fn invalid_template_reports_every_error_with_path_code_and_limit() {
    let mut t = fixture_json("template-create-marketing-positional-seasonal-promotion.json");
    t["components"][0]["text"] = json!("x".repeat(61));
    t["components"][2]["text"] = json!("Reply {{1}} to stop");
    t["language"] = json!("en-US");
    let errors = plugin()
        .validate_template(&t.to_string())
        .block()
        .unwrap()
        .unwrap_err();
    let find = |path: &str, code: &str| errors.iter().find(|e| e.path == path && e.code == code);
    let long = find("/components/0/text", "too_long").expect("header length");
    assert!(
        long.message.contains("61") && long.message.contains("60"),
        "{}",
        long.message
    );
    assert!(find("/components/2/text", "variables_not_allowed").is_some());
    assert!(find("/language", "unsupported_language").is_some());
}

#[test]
fn arbitrary_text_never_traps() {
    for input in [
        "",
        "null",
        "[]",
        "{",
        "\u{0}",
        "{\"components\":[1,2,{}]}",
        &"[".repeat(10_000),
    ] {
        assert!(plugin().validate_template(input).block().unwrap().is_err());
    }
}

#[test]
fn build_payload_for_meta_template_samples() {
    for name in [
        "send-request-template-named-params-image-header.json",
        "send-request-template-authentication-otp.json",
    ] {
        let sample = fixture_json(name);
        let mut content = sample.clone();
        for k in ["messaging_product", "recipient_type", "to"] {
            content.as_object_mut().unwrap().remove(k);
        }
        let to = format!("+{}", sample["to"].as_str().unwrap());
        let req = plugin()
            .build_payload(&message(&to, content), &demo_config(None))
            .block()
            .unwrap()
            .unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(
            req.url,
            "https://graph.facebook.com/v26.0/106540352242922/messages"
        );
        let auth = req
            .headers
            .iter()
            .find(|h| h.name == "authorization")
            .unwrap();
        assert_eq!(
            auth.value, "Bearer ${secret:whatsapp/access-token}",
            "the component only names the secret"
        );
        let mut body: Value = serde_json::from_slice(&req.body).unwrap();
        body["to"] = sample["to"].clone();
        assert_eq!(body, sample, "{name}");
    }
}

#[test]
fn build_payload_reports_field_errors() {
    let errs = plugin()
        .build_payload(
            &message(
                "6505551234",
                json!({"type":"template","template":{"name":"Order","language":"en_US"}}),
            ),
            &demo_config(None),
        )
        .block()
        .unwrap()
        .unwrap_err();
    let paths: Vec<_> = errs.iter().map(|e| e.path.as_str()).collect();
    assert!(
        paths.contains(&"/recipient") && paths.contains(&"/content/template/name"),
        "{paths:?}"
    );
}

fn response(status: u16, body: &str) -> SendOutcome {
    SendOutcome::Response(HttpResponse {
        status,
        headers: vec![],
        body: body.as_bytes().to_vec(),
    })
}

#[test]
fn classify_meta_responses() {
    let ok = plugin()
        .classify(
            &response(200, &fixture("send-response-template-accepted.json")),
            1,
        )
        .block()
        .unwrap();
    assert_eq!(
        (ok.disposition, ok.provider_message_id.as_deref()),
        (
            Disposition::Accepted,
            Some("wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJBRkJENzExMTRFRjk2NTI1OTEA")
        )
    );
    let text = plugin()
        .classify(&response(200, &fixture("send-response-text.json")), 1)
        .block()
        .unwrap();
    assert_eq!(text.disposition, Disposition::Accepted);

    let rl = plugin()
        .classify(
            &response(400, &fixture("error-response-130429-rate-limit.json")),
            1,
        )
        .block()
        .unwrap();
    assert_eq!(
        (
            rl.disposition,
            rl.reason.as_str(),
            rl.provider_code.as_deref()
        ),
        (Disposition::Retry, "rate_limited", Some("130429"))
    );
    assert_eq!(
        rl.provider_trace_id.as_deref(),
        Some("Az8or2yhqkZfEZ-_4Qn_Bam")
    );
    assert!(rl.retry_after_ms.is_some());

    let bad = plugin()
        .classify(
            &response(
                400,
                &fixture("error-response-100-invalid-parameter-mmlite.json"),
            ),
            1,
        )
        .block()
        .unwrap();
    assert_eq!(
        (bad.disposition, bad.operator_action),
        (Disposition::Failed, true)
    );
    assert_eq!(
        bad.provider_details.as_deref(),
        Some("Message must be a template message.")
    );
}

#[test]
fn classify_common_codes_through_wasm() {
    let body = |code: i64| {
        json!({"error": {"message": format!("(#{code}) t"), "type": "OAuthException", "code": code, "fbtrace_id": "X"}}).to_string()
    };
    let cases = [
        (131026, Disposition::Fallback, "recipient_not_on_channel"),
        (131047, Disposition::Fallback, "outside_service_window"),
        (130429, Disposition::Retry, "rate_limited"),
        (131056, Disposition::Retry, "pair_rate_limited"),
        (131000, Disposition::Retry, "provider_unavailable"),
        (190, Disposition::Failed, "auth_error"),
        (132000, Disposition::Failed, "template_error"),
        (132001, Disposition::Failed, "template_error"),
    ];
    for (code, disposition, reason) in cases {
        let c = plugin()
            .classify(&response(400, &body(code)), 1)
            .block()
            .unwrap();
        assert_eq!(
            (c.disposition, c.reason.as_str()),
            (disposition, reason),
            "{code}"
        );
    }
    let html = plugin()
        .classify(&response(503, "<html>Service Unavailable</html>"), 1)
        .block()
        .unwrap();
    assert_eq!(html.disposition, Disposition::Retry);
    let pair2 = plugin()
        .classify(&response(400, &body(131056)), 3)
        .block()
        .unwrap();
    assert_eq!(
        pair2.retry_after_ms,
        Some(16_000),
        "4^2 s on the third attempt"
    );
}

#[test]
fn classify_transport_errors() {
    let t = |kind, sent| {
        SendOutcome::TransportError(TransportError {
            kind,
            request_sent: sent,
            message: "x".into(),
        })
    };
    assert_eq!(
        plugin()
            .classify(&t(TransportErrorKind::Connect, false), 1)
            .block()
            .unwrap()
            .disposition,
        Disposition::Retry
    );
    assert_eq!(
        plugin()
            .classify(&t(TransportErrorKind::Timeout, true), 1)
            .block()
            .unwrap()
            .disposition,
        Disposition::Unknown
    );
}

fn signed_post(body: &[u8], signature: Option<String>) -> WebhookRequest {
    WebhookRequest {
        method: "POST".into(),
        url: None,
        headers: signature
            .map(|s| Header {
                name: "X-Hub-Signature-256".into(),
                value: s,
            })
            .into_iter()
            .collect(),
        query: vec![],
        body: body.to_vec(),
    }
}

fn webhook_config() -> host::contract::types::ChannelConfig {
    host::contract::types::ChannelConfig {
        api_base: None,
        settings: "{}".into(),
    }
}

#[test]
fn parse_webhook_statuses_signed_with_the_app_secret() {
    let cases = [
        (
            "webhook-status-sent-marketing-pmp-with-conversation.json",
            Disposition::Sent,
            None,
        ),
        (
            "webhook-status-failed-131049.json",
            Disposition::Fallback,
            Some("131049"),
        ),
        (
            "webhook-status-failed-130472-pywa-fixture.json",
            Disposition::Fallback,
            Some("130472"),
        ),
    ];
    for (name, disposition, code) in cases {
        let body = fixture(name).into_bytes();
        let out = plugin()
            .parse_webhook(
                &signed_post(&body, Some(sign(APP_SECRET, &body))),
                &webhook_config(),
            )
            .block()
            .unwrap()
            .unwrap();
        let WebhookOutcome::Events(events) = out else {
            panic!("events expected")
        };
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventKind::MessageStatus);
        assert_eq!(events[0].classification.disposition, disposition, "{name}");
        assert_eq!(events[0].classification.provider_code.as_deref(), code);
    }
}

#[test]
fn delivered_and_read_statuses() {
    let mut doc = fixture_json("webhook-status-sent-v24-no-conversation.json");
    let status = doc["entry"][0]["changes"][0]["value"]["statuses"][0].clone();
    let mut statuses = vec![];
    for s in ["delivered", "read"] {
        let mut st = status.clone();
        st["status"] = json!(s);
        statuses.push(st);
    }
    doc["entry"][0]["changes"][0]["value"]["statuses"] = json!(statuses);
    let body = doc.to_string().into_bytes();
    let WebhookOutcome::Events(events) = plugin()
        .parse_webhook(
            &signed_post(&body, Some(sign(APP_SECRET, &body))),
            &webhook_config(),
        )
        .block()
        .unwrap()
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        events
            .iter()
            .map(|e| e.classification.disposition)
            .collect::<Vec<_>>(),
        vec![Disposition::Delivered, Disposition::Read]
    );
    assert!(events[1].precedence > events[0].precedence);
}

#[test]
fn webhook_signatures_are_enforced() {
    let body = fixture("webhook-status-failed-131049.json").into_bytes();
    let p = plugin();
    assert_eq!(
        p.parse_webhook(&signed_post(&body, None), &webhook_config())
            .block()
            .unwrap(),
        Err(WebhookError::SignatureMissing)
    );
    let wrong = p
        .parse_webhook(
            &signed_post(&body, Some(sign("another-secret", &body))),
            &webhook_config(),
        )
        .block()
        .unwrap();
    assert!(matches!(wrong, Err(WebhookError::SignatureInvalid(_))));
    let mut tampered = body.clone();
    let pos = tampered.iter().position(|b| *b == b'1').unwrap();
    tampered[pos] = b'2';
    let t = p
        .parse_webhook(
            &signed_post(&tampered, Some(sign(APP_SECRET, &body))),
            &webhook_config(),
        )
        .block()
        .unwrap();
    assert!(matches!(t, Err(WebhookError::SignatureInvalid(_))));
    let malformed = p
        .parse_webhook(
            &signed_post(&body, Some("md5=abc".into())),
            &webhook_config(),
        )
        .block()
        .unwrap();
    assert!(matches!(malformed, Err(WebhookError::SignatureInvalid(_))));
    // A unicode body signs and verifies over its raw bytes.
    let unicode = "{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":\"1\",\"changes\":[{\"field\":\"messages\",\"value\":{\"messages\":[{\"from\":\"16505551234\",\"id\":\"wamid.U\",\"timestamp\":\"1\",\"type\":\"text\",\"text\":{\"body\":\"äöå 😀 @home\"}}]}}]}]}".as_bytes();
    assert!(matches!(
        p.parse_webhook(
            &signed_post(unicode, Some(sign(APP_SECRET, unicode))),
            &webhook_config()
        )
        .block()
        .unwrap(),
        Ok(WebhookOutcome::Events(_))
    ));
}

#[test]
fn verification_handshake() {
    let get = |token: &str| WebhookRequest {
        method: "GET".into(),
        url: None,
        headers: vec![],
        query: vec![
            ("hub.mode".into(), "subscribe".into()),
            ("hub.verify_token".into(), token.into()),
            ("hub.challenge".into(), "1158201444".into()),
        ],
        body: vec![],
    };
    assert_eq!(
        plugin()
            .parse_webhook(&get(VERIFY_TOKEN), &webhook_config())
            .block()
            .unwrap(),
        Ok(WebhookOutcome::Verification("1158201444".into()))
    );
    assert!(matches!(
        plugin()
            .parse_webhook(&get("guess"), &webhook_config())
            .block()
            .unwrap(),
        Err(WebhookError::VerificationRefused(_))
    ));
}

#[test]
fn arbitrary_webhook_bytes_never_trap() {
    let off = host::contract::types::ChannelConfig {
        api_base: None,
        settings: r#"{"app_secret":null}"#.into(),
    };
    for body in [
        &b""[..],
        b"\xff\xff",
        b"{}",
        b"{\"entry\":7}",
        b"{\"entry\":[{\"changes\":[{\"value\":null}]}]}",
    ] {
        let r = plugin()
            .parse_webhook(&signed_post(body, None), &off)
            .block()
            .unwrap();
        assert!(r.is_ok() || matches!(r, Err(WebhookError::Malformed(_))));
    }
}

#[test]
fn build_payload_reproduces_every_meta_send_sample() {
    let dir = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !name.starts_with("send-request-") {
            continue;
        }
        let sample = fixture_json(&name);
        let mut content = sample.clone();
        for k in ["messaging_product", "recipient_type", "to"] {
            content.as_object_mut().unwrap().remove(k);
        }
        let to = format!(
            "+{}",
            sample["to"].as_str().unwrap().trim_start_matches('+')
        );
        let req = plugin()
            .build_payload(&message(&to, content), &demo_config(None))
            .block()
            .unwrap();
        let req = req.unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        // Semantically equal: `to` in E.164, and recipient_type always present.
        let mut expected = sample.clone();
        expected["to"] = json!(to);
        expected["recipient_type"] = json!("individual");
        assert_eq!(body, expected, "{name}");
        count += 1;
    }
    assert_eq!(count, 14, "every send-request sample is covered");
}

#[test]
fn the_documented_message_examples_build() {
    let page = std::fs::read_to_string(format!("{}/docs/messages.md", env!("CARGO_MANIFEST_DIR")))
        .unwrap();
    let block = page.split("Examples, one per type").nth(1).unwrap();
    let block = block
        .split("```json")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let mut n = 0;
    for line in block.lines().filter(|l| !l.trim().is_empty()) {
        let doc: Value = serde_json::from_str(line).unwrap();
        let req = host::json::message_request(&doc, 0).unwrap();
        let built = plugin()
            .build_payload(&req, &demo_config(None))
            .block()
            .unwrap();
        assert!(built.is_ok(), "{line}: {built:?}");
        n += 1;
    }
    assert!(n >= 14);
}

#[test]
fn a_batch_of_every_kind_is_one_event_each() {
    let value = |name: &str| fixture_json(name)["entry"][0]["changes"][0].clone();
    let mut stop = value("webhook-user-preferences-resume-marketing.json");
    stop["value"]["user_preferences"][0]["value"] = json!("stop");
    let body = json!({"object": "whatsapp_business_account", "entry": [
        {"id": "1", "changes": [value("webhook-status-sent-v24-no-conversation.json"), value("webhook-errors-130429-async-rate-limit.json")]},
        {"id": "2", "changes": [value("webhook-inbound-interactive-button-reply.json"), value("webhook-inbound-unsupported-131051.json"), stop]},
        {"id": "3", "changes": [value("webhook-template-status-update-rejected-invalid-format.json"), value("webhook-user-preferences-resume-marketing.json")]},
    ]})
    .to_string()
    .into_bytes();
    let request = signed_post(&body, Some(sign(APP_SECRET, &body)));
    let WebhookOutcome::Events(events) = plugin()
        .parse_webhook(&request, &webhook_config())
        .block()
        .unwrap()
        .unwrap()
    else {
        panic!()
    };
    let summary: Vec<(EventKind, Disposition, &str)> = events
        .iter()
        .map(|e| {
            (
                e.kind,
                e.classification.disposition,
                e.classification.reason.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (EventKind::MessageStatus, Disposition::Sent, "sent"),
            (EventKind::ChannelError, Disposition::Retry, "rate_limited"),
            (
                EventKind::InboundMessage,
                Disposition::Accepted,
                "inbound_message"
            ),
            (
                EventKind::InboundMessage,
                Disposition::Accepted,
                "invalid_request"
            ),
            (
                EventKind::RecipientPreference,
                Disposition::Fallback,
                "recipient_opted_out"
            ),
            (
                EventKind::TemplateStatus,
                Disposition::Failed,
                "template_error"
            ),
            (
                EventKind::RecipientPreference,
                Disposition::Accepted,
                "recipient_opted_in"
            ),
        ]
    );
    let reply: Value = serde_json::from_str(&events[2].details).unwrap();
    assert_eq!(
        (reply["reply_id"].as_str(), events[2].service_window_ends_ms),
        (Some("change-button"), Some((1_714_510_003 + 86_400) * 1000))
    );
    assert_eq!(
        events[3].classification.provider_code.as_deref(),
        Some("131051")
    );
    // Meta redelivers: the same body gives the same dedupe keys.
    let WebhookOutcome::Events(again) = plugin()
        .parse_webhook(&request, &webhook_config())
        .block()
        .unwrap()
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        events.iter().map(|e| &e.dedupe_key).collect::<Vec<_>>(),
        again.iter().map(|e| &e.dedupe_key).collect::<Vec<_>>()
    );
    let mut keys: Vec<_> = events.iter().map(|e| e.dedupe_key.clone()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(
        keys.len(),
        events.len(),
        "distinct events have distinct keys"
    );
}

#[test]
fn build_defaults_to_graph_v26_and_refuses_a_retired_version_with_its_date() {
    let content = json!({"type": "text", "text": {"body": "hi"}});
    let mut m = message("+15550100001", content);
    m.last_inbound_ms = Some(m.now_ms);
    let req = plugin()
        .build_payload(&m, &demo_config(None))
        .block()
        .unwrap()
        .unwrap();
    assert!(req.url.contains("/v26.0/"), "{}", req.url);
    let cfg = |version: &str| host::contract::types::ChannelConfig {
        api_base: None,
        settings: json!({"phone_number_id": "106540352242922", "api_version": version}).to_string(),
    };
    // 2026-11-25: v20.0 ended on 2026-09-24, v21.0 is still available.
    m.now_ms = 1_795_600_000_000;
    m.last_inbound_ms = Some(m.now_ms);
    let errs = plugin()
        .build_payload(&m, &cfg("v20.0"))
        .block()
        .unwrap()
        .unwrap_err();
    assert_eq!(
        (errs[0].path.as_str(), errs[0].code.as_str()),
        ("/settings/api_version", "api_version_retired")
    );
    assert!(
        errs[0].message.contains("2026-09-24"),
        "{}",
        errs[0].message
    );
    assert!(
        plugin()
            .build_payload(&m, &cfg("v21.0"))
            .block()
            .unwrap()
            .is_ok()
    );
}

#[test]
fn a_typing_indicator_marks_the_message_read_with_meta_s_shape() {
    let m = message(
        "+15550100001",
        json!({"type": "typing", "message_id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA="}),
    );
    let req = plugin()
        .build_payload(&m, &demo_config(None))
        .block()
        .unwrap()
        .unwrap();
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(
        body,
        json!({"messaging_product": "whatsapp", "status": "read",
            "message_id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA=",
            "typing_indicator": {"type": "text"}})
    );
    assert!(req.url.ends_with("/messages"));
}

fn events_of(doc: &Value) -> Vec<host::contract::types::WebhookEvent> {
    let body = doc.to_string().into_bytes();
    match plugin()
        .parse_webhook(
            &signed_post(&body, Some(sign(APP_SECRET, &body))),
            &webhook_config(),
        )
        .block()
        .unwrap()
        .unwrap()
    {
        WebhookOutcome::Events(events) => events,
        other => panic!("events expected, got {other:?}"),
    }
}

fn customer(e: &host::contract::types::WebhookEvent) -> Value {
    serde_json::from_str::<Value>(&e.details).unwrap()["customer"].clone()
}

#[test]
fn a_status_carries_both_the_phone_and_the_business_scoped_user_id() {
    let events = events_of(&fixture_json(
        "webhook-status-failed-130472-pywa-fixture.json",
    ));
    assert_eq!(events[0].recipient.as_deref(), Some("+972987654321"));
    assert_eq!(
        customer(&events[0]),
        json!({"phone": "+972987654321", "user_id": "US.13491208655302741918",
            "parent_user_id": "US.ENT.11815799212886844830", "username": null})
    );
}

#[test]
fn a_status_without_a_phone_names_the_customer_by_bsuid() {
    // Since June 2026: a username user with no exchange in 30 days has no `recipient_id`.
    let mut doc = fixture_json("webhook-status-sent-v24-no-conversation.json");
    let value = &mut doc["entry"][0]["changes"][0]["value"];
    let status = &mut value["statuses"][0];
    status.as_object_mut().unwrap().remove("recipient_id");
    status["recipient_user_id"] = json!("US.13491208655302741918");
    value["contacts"] = json!([{"profile": {"name": "Pablo", "username": "@pablo"},
        "user_id": "US.13491208655302741918"}]);
    let events = events_of(&doc);
    assert_eq!(
        events[0].recipient.as_deref(),
        Some("US.13491208655302741918")
    );
    assert_eq!(customer(&events[0])["username"], "@pablo");
    assert_eq!(customer(&events[0])["phone"], Value::Null);
}

#[test]
fn an_inbound_message_from_a_username_user_still_opens_the_window() {
    let mut doc = fixture_json("webhook-inbound-text-basic.json");
    let value = &mut doc["entry"][0]["changes"][0]["value"];
    let m = &mut value["messages"][0];
    m.as_object_mut().unwrap().remove("from");
    m["from_user_id"] = json!("BR.8a7f3c");
    value["contacts"] = json!([{"profile": {"name": "Ana", "username": "@ana"}, "user_id": "BR.8a7f3c",
        "parent_user_id": "BR.ENT.99"}]);
    let events = events_of(&doc);
    let e = &events[0];
    assert_eq!(e.kind, EventKind::InboundMessage);
    assert_eq!(
        e.recipient.as_deref(),
        Some("BR.8a7f3c"),
        "who wrote is known"
    );
    assert!(e.service_window_ends_ms.is_some());
    assert_eq!(customer(e)["parent_user_id"], "BR.ENT.99");
}

#[test]
fn status_pricing_is_normalised_whatever_the_api_version() {
    let events = events_of(&fixture_json(
        "webhook-status-sent-marketing-pmp-with-conversation.json",
    ));
    let details: Value = serde_json::from_str(&events[0].details).unwrap();
    assert_eq!(
        details["cost"],
        json!({"billable": true, "category": "marketing", "type": "regular", "model": "PMP"})
    );
    // v24+: no `billable`, `pricing_type` instead of `type`, newer categories.
    let mut doc = fixture_json("webhook-status-sent-v24-no-conversation.json");
    doc["entry"][0]["changes"][0]["value"]["statuses"][0]["pricing"] = json!({"pricing_model": "PMP", "pricing_type": "free_customer_service", "category": "general_purpose_ai"});
    let events = events_of(&doc);
    let details: Value = serde_json::from_str(&events[0].details).unwrap();
    assert_eq!(
        details["cost"],
        json!({"billable": false, "category": "general_purpose_ai", "type": "free_customer_service", "model": "PMP"})
    );
}

/// The component needs nothing a flow engine does not implement: it imports the contract's
/// interfaces and nothing else (no WASI), and carries its metadata.
#[test]
fn the_component_imports_exactly_the_contract_and_carries_its_metadata() {
    let p = plugin();
    let ty = p.component().component_type();
    let mut imports: Vec<String> = ty.imports(p.engine()).map(|(n, _)| n.to_string()).collect();
    imports.sort();
    assert_eq!(
        imports,
        ["flow:channel/host@1.2.0", "flow:channel/types@1.2.0"]
    );
    let bytes = std::fs::read(host_testkit::WHATSAPP_CHANNEL_WASM).unwrap();
    let meta = host::registry::artifact::component_metadata(&bytes);
    assert_eq!(meta["name"], "whatsapp-channel");
    assert_eq!(meta["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(meta["licenses"], "Apache-2.0");
    assert!(meta["description"].as_str().unwrap().contains("WhatsApp"));
    assert!(meta["revision"].as_str().is_some_and(|r| !r.is_empty()));
}
