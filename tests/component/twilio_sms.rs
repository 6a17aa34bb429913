//! The SMS channel (Twilio) through wasmtime: real HTTP to the mock's Twilio API with Basic
//! credentials the host composes, every error code classified by the component as its table
//! says, and callbacks signed by Twilio's own SDK verified by the host's HMAC-SHA1.

use host::contract::types::{
    ChannelConfig, Disposition, Header, HttpResponse, MessageRequest, SendOutcome, WebhookError,
    WebhookOutcome, WebhookRequest,
};
use host::services::{HostServices, HttpClient, HttpPolicy, Log, Secrets};
use host::{Limits, Plugin, Runtime};
use host_testkit::Block;
use host_testkit::mock::{MockApi, MockConfig};
use host_testkit::mock_twilio::{DEMO_ACCOUNT_SID, DEMO_AUTH_TOKEN};
use serde_json::{Value, json};
use std::sync::Arc;

/// The component with the demo account's secrets, bound to `api_base`.
fn plugin(api_base: &str, auth_token: &str) -> Plugin {
    let mut secrets = Secrets::default();
    secrets
        .insert_for_hosts("sms/account-sid", DEMO_ACCOUNT_SID, [api_base])
        .unwrap();
    secrets
        .insert_for_hosts("sms/auth-token", auth_token, [api_base])
        .unwrap();
    let policy = HttpPolicy::default().allowing([api_base]).unwrap();
    let services = HostServices::new(HttpClient::new(policy), secrets, Log::memory());
    Runtime::new()
        .unwrap()
        .load_file(
            std::path::Path::new(host_testkit::SMS_CHANNEL_WASM),
            Arc::new(services),
            Limits::default(),
        )
        .unwrap()
}

fn config(api_base: &str) -> ChannelConfig {
    let mut settings = host_testkit::stack::demo_sms_settings();
    settings["status_callback"] = json!("https://hooks.example.com/webhooks/sms");
    ChannelConfig {
        api_base: Some(api_base.into()),
        settings: settings.to_string(),
    }
}

fn message(to: &str) -> MessageRequest {
    MessageRequest {
        recipient: to.into(),
        correlation_id: Some("order-7:sms:1".into()),
        content: json!({"text": "Your order shipped."}).to_string(),
        last_inbound_ms: None,
        now_ms: 0,
        opted_out: vec![],
        deadline_ms: None,
    }
}

#[test]
fn sends_reach_the_mock_twilio_with_basic_credentials_and_each_answer_is_classified() {
    let mock = MockApi::start(0, MockConfig::default()).unwrap();
    let base = mock.base_url();
    let sms = plugin(&base, DEMO_AUTH_TOKEN);
    let info = sms.describe().block().unwrap();
    assert_eq!(
        (info.name.as_str(), info.contract_version.as_str()),
        ("sms", "flow:channel@1.2.0")
    );
    let cases = [
        ("+15550100001", Disposition::Accepted, "accepted"),
        ("+15550600010", Disposition::Fallback, "recipient_opted_out"),
        (
            "+15550600014",
            Disposition::Fallback,
            "recipient_not_on_channel",
        ),
        ("+15550600029", Disposition::Retry, "rate_limited"),
    ];
    for (to, disposition, reason) in cases {
        let c = sms
            .send(&message(to), &config(&base), 1)
            .block()
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.disposition, c.reason.as_str()),
            (disposition, reason),
            "{to}: {c:?}"
        );
    }
    let requests = mock.requests();
    assert_eq!(requests.len(), cases.len());
    let first = &requests[0];
    assert_eq!(
        first.path,
        format!("/2010-04-01/Accounts/{DEMO_ACCOUNT_SID}/Messages.json")
    );
    let basic = first
        .headers
        .iter()
        .find(|(n, _)| n == "authorization")
        .map(|(_, v)| v.clone())
        .unwrap();
    let expected = base64_of(&format!("{DEMO_ACCOUNT_SID}:{DEMO_AUTH_TOKEN}"));
    assert_eq!(basic, format!("Basic {expected}"));
    assert_eq!(first.correlation_id().as_deref(), Some("order-7:sms:1"));

    // A wrong token is the provider's 20003: a person must act.
    let wrong = plugin(&base, "not-the-token");
    let c = wrong
        .send(&message("+15550100001"), &config(&base), 1)
        .block()
        .unwrap()
        .unwrap();
    assert_eq!(
        (c.disposition, c.reason.as_str(), c.operator_action),
        (Disposition::Failed, "auth_error", true)
    );
}

/// The host's deadline for the send reaches Twilio, through the component, as the seconds
/// Twilio may keep the message queued.
#[test]
fn the_deadline_of_a_send_reaches_twilio_as_its_validity_period() {
    let mock = MockApi::start(0, MockConfig::default()).unwrap();
    let base = mock.base_url();
    let sms = plugin(&base, DEMO_AUTH_TOKEN);
    let mut m = message("+15550100001");
    m.now_ms = 1_750_000_000_000;
    m.deadline_ms = Some(m.now_ms + 120_500);
    let c = sms.send(&m, &config(&base), 1).block().unwrap().unwrap();
    assert_eq!(c.disposition, Disposition::Accepted, "{c:?}");
    let form = host_testkit::mock_twilio::form(&mock.requests()[0].body);
    assert!(
        form.contains(&("ValidityPeriod".into(), "120".into())),
        "{form:?}"
    );
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn the_component_classifies_every_code_of_its_table_as_the_table_says() {
    let sms = plugin("http://127.0.0.1:9", "t");
    for rule in twilio_sms_channel::codes::CODES {
        let status = if rule.code == 20429 { 429 } else { 400 };
        let outcome = SendOutcome::Response(HttpResponse {
            status,
            headers: vec![],
            body: json!({"code": rule.code, "message": "m", "status": status,
                "more_info": format!("https://www.twilio.com/docs/errors/{}", rule.code)})
            .to_string()
            .into_bytes(),
        });
        let c = sms.classify(&outcome, 1).block().unwrap();
        assert_eq!(
            (
                host::json::disposition_name(c.disposition),
                c.reason.as_str(),
                c.operator_action
            ),
            (
                channel_sdk::names::disposition(rule.disposition),
                rule.reason,
                rule.operator_action
            ),
            "{}",
            rule.code
        );
    }
}

/// Signatures made by Twilio's Python SDK, checked by the host's HMAC-SHA1 (the component
/// never holds the token).
#[test]
fn callbacks_signed_by_twilios_sdk_are_verified_by_the_host() {
    let doc: Value = serde_json::from_str(include_str!(
        "../../channels/twilio-sms/tests/vectors/twilio-python-sdk.json"
    ))
    .unwrap();
    for case in doc["cases"].as_array().unwrap() {
        let token = case["auth_token"].as_str().unwrap();
        let sms = plugin("http://127.0.0.1:9", token);
        let url = case["url"].as_str().unwrap();
        let body = match case["params"].as_object() {
            Some(params) => url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(params.iter().map(|(k, v)| (k, v.as_str().unwrap())))
                .finish(),
            None => case["json_body"].as_str().unwrap().to_string(),
        };
        let request = |signature: &str| WebhookRequest {
            method: "POST".into(),
            url: Some(url.into()),
            headers: vec![Header {
                name: "X-Twilio-Signature".into(),
                value: signature.into(),
            }],
            query: url
                .split_once('?')
                .map(|(_, q)| {
                    url::form_urlencoded::parse(q.as_bytes())
                        .map(|(k, v)| (k.into_owned(), v.into_owned()))
                        .collect()
                })
                .unwrap_or_default(),
            body: body.clone().into_bytes(),
        };
        let good = sms
            .parse_webhook(
                &request(case["signature"].as_str().unwrap()),
                &config("http://127.0.0.1:9"),
            )
            .block()
            .unwrap();
        assert!(
            !matches!(
                good,
                Err(WebhookError::SignatureInvalid(_) | WebhookError::SignatureMissing)
            ),
            "{url}: {good:?}"
        );
        if case["params"]["MessageStatus"].is_string() {
            assert!(matches!(good, Ok(WebhookOutcome::Events(_))), "{good:?}");
        }
        let forged = sms
            .parse_webhook(
                &request("AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
                &config("http://127.0.0.1:9"),
            )
            .block()
            .unwrap();
        assert!(
            matches!(forged, Err(WebhookError::SignatureInvalid(_))),
            "{forged:?}"
        );
    }
}
