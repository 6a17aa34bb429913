//! The SMS component through wasmtime: the same contract, another channel.

use host_testkit::Block;

use host::contract::types::{
    ChannelConfig, Disposition, Header, HttpResponse, MessageRequest, SendOutcome, WebhookError,
    WebhookOutcome, WebhookRequest,
};
use host::services::{HostServices, HttpClient, HttpPolicy, Log, Secrets};
use host::{Limits, Runtime};
use serde_json::json;
use std::sync::Arc;

#[test]
fn the_sms_component_implements_the_same_world() {
    let mut secrets = Secrets::default();
    secrets.insert("sms/webhook-secret", "s");
    let services = HostServices::new(
        HttpClient::new(HttpPolicy::default()),
        secrets,
        Log::memory(),
    );
    let plugin = Runtime::new()
        .unwrap()
        .load_file(
            std::path::Path::new(host_testkit::SMS_FIXTURE_V1_WASM),
            Arc::new(services),
            Limits::default(),
        )
        .unwrap();
    let info = plugin.describe().block().unwrap();
    assert_eq!(
        (info.name.as_str(), info.contract_version.as_str()),
        ("sms", "flow:channel@1.0.0")
    );
    assert!(plugin.validate_template("{}").block().unwrap().is_err());

    let cfg = ChannelConfig {
        api_base: Some("http://127.0.0.1:9".into()),
        settings: "{}".into(),
    };
    let req = MessageRequest {
        recipient: "+15550100001".into(),
        correlation_id: Some("f/1".into()),
        content: json!({"text": "hi"}).to_string(),
        last_inbound_ms: None,
        now_ms: 0,
        opted_out: vec![],
        deadline_ms: None,
    };
    let http = plugin.build_payload(&req, &cfg).block().unwrap().unwrap();
    assert!(
        http.headers
            .iter()
            .any(|h| h.value == "Bearer ${secret:sms/api-key}")
    );

    let accepted = SendOutcome::Response(HttpResponse {
        status: 202,
        headers: vec![],
        body: br#"{"id":"sms-1","status":"queued"}"#.to_vec(),
    });
    assert_eq!(
        plugin.classify(&accepted, 1).block().unwrap().disposition,
        Disposition::Accepted
    );

    let body = br#"{"id":"sms-1","status":"delivered","reference":"f/1","to":"+15550100001","timestamp":1750000000}"#.to_vec();
    let sig = host_testkit::mock::signature("s", &body);
    let hook = |sig: &str| WebhookRequest {
        method: "POST".into(),
        url: None,
        headers: vec![Header {
            name: "X-Signature".into(),
            value: sig.into(),
        }],
        query: vec![],
        body: body.clone(),
    };
    let Ok(Ok(WebhookOutcome::Events(events))) = plugin.parse_webhook(&hook(&sig), &cfg).block()
    else {
        panic!("events")
    };
    assert_eq!(
        (
            events[0].classification.disposition,
            events[0].correlation_id.as_deref()
        ),
        (Disposition::Delivered, Some("f/1"))
    );
    let wrong = host_testkit::mock::signature("other", &body);
    assert!(matches!(
        plugin.parse_webhook(&hook(&wrong), &cfg).block().unwrap(),
        Err(WebhookError::SignatureInvalid(_))
    ));
}
