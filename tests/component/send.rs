//! `send` end to end: the real component in wasmtime, the host's HTTP client over loopback, the
//! embedded mock Cloud API checking the token the host substituted.

use host_testkit::Block;

use crate::common::*;
use host::Plugin;
use host::contract::types::{Classification, Disposition};
use host::services::{HostServices, HttpClient, HttpPolicy, Log, Secrets};
use host_testkit::defaults::DEMO_ACCESS_TOKEN;
use host_testkit::mock::mock_services;
use host_testkit::mock::{MockApi, MockConfig};
use serde_json::{Value, json};
use std::sync::Arc;

fn template_content() -> Value {
    json!({"type":"template","template":{"name":"order_update","language":"en_US","components":[
        {"type":"body","parameters":[{"type":"text","text":"Pablo"},{"type":"text","text":"4711"}]}]}})
}

struct Setup {
    mock: MockApi,
    plugin: Plugin,
}

fn setup() -> Setup {
    let mock = MockApi::start(0, MockConfig::default()).unwrap();
    let plugin = plugin().with_services(Arc::new(mock_services(&mock, Log::memory()).unwrap()));
    Setup { mock, plugin }
}

impl Setup {
    fn send(&self, recipient: &str, attempt: u32) -> Classification {
        self.plugin
            .send(
                &message(recipient, template_content()),
                &demo_config(Some(self.mock.base_url())),
                attempt,
            )
            .block()
            .unwrap()
            .unwrap()
    }
}

#[test]
fn accepted_send_reaches_the_mock_with_the_substituted_token() {
    let s = setup();
    let mut req = message("+15550100001", template_content());
    req.correlation_id = Some("flow-1/step-3".into());
    let c = s
        .plugin
        .send(&req, &demo_config(Some(s.mock.base_url())), 1)
        .block()
        .unwrap()
        .unwrap();
    assert_eq!(c.disposition, Disposition::Accepted);
    assert!(c.provider_message_id.unwrap().starts_with("wamid."));
    let recorded = s.mock.requests();
    assert_eq!(recorded.len(), 1);
    let r = &recorded[0];
    assert_eq!(r.path, "/v26.0/106540352242922/messages");
    let auth = r
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        .unwrap();
    assert_eq!(auth.1, format!("Bearer {DEMO_ACCESS_TOKEN}"));
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["to"], "+15550100001");
    assert_eq!(body["biz_opaque_callback_data"], "flow-1/step-3");
    assert_eq!(
        body["template"]["components"][0]["parameters"][1]["text"],
        "4711"
    );
}

#[test]
fn scenario_recipients_are_classified() {
    let s = setup();
    let cases = [
        (
            "+15550100002",
            Disposition::Fallback,
            "recipient_not_on_channel",
            Some("131026"),
        ),
        (
            "+15550100003",
            Disposition::Retry,
            "rate_limited",
            Some("130429"),
        ),
        (
            "+15550100004",
            Disposition::Fallback,
            "outside_service_window",
            Some("131047"),
        ),
        (
            "+15550100005",
            Disposition::Retry,
            "pair_rate_limited",
            Some("131056"),
        ),
        (
            "+15550100006",
            Disposition::Retry,
            "provider_unavailable",
            Some("131000"),
        ),
        (
            "+15550100007",
            Disposition::Retry,
            "provider_unavailable",
            None,
        ),
        (
            "+15550100008",
            Disposition::Failed,
            "template_error",
            Some("132000"),
        ),
        (
            "+15550100009",
            Disposition::Failed,
            "template_error",
            Some("132001"),
        ),
    ];
    for (to, disposition, reason, code) in cases {
        let c = s.send(to, 1);
        assert_eq!(
            (c.disposition, c.reason.as_str(), c.provider_code.as_deref()),
            (disposition, reason, code),
            "{to}"
        );
    }
}

#[test]
fn rate_limited_then_accepted_on_retry() {
    let s = setup();
    let first = s.send("+15550100010", 1);
    assert_eq!(first.disposition, Disposition::Retry);
    let second = s.send("+15550100010", 2);
    assert_eq!(second.disposition, Disposition::Accepted);
}

#[test]
fn wrong_token_is_an_auth_failure() {
    let mock = MockApi::start(
        0,
        MockConfig {
            access_token: "the-real-one".into(),
            ..MockConfig::default()
        },
    )
    .unwrap();
    let plugin = plugin().with_services(Arc::new(mock_services(&mock, Log::memory()).unwrap()));
    let c = plugin
        .send(
            &message("+15550100001", template_content()),
            &demo_config(Some(mock.base_url())),
            1,
        )
        .block()
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            c.disposition,
            c.reason.as_str(),
            c.provider_code.as_deref(),
            c.operator_action
        ),
        (Disposition::Failed, "auth_error", Some("190"), true)
    );
}

#[test]
fn a_timeout_after_sending_is_unknown_never_retry() {
    let s = setup();
    let c = s.send("+15550100011", 1);
    assert_eq!(
        (c.disposition, c.reason.as_str()),
        (Disposition::Unknown, "outcome_unknown")
    );
}

#[test]
fn hosts_off_the_allowlist_are_denied_without_a_request() {
    let mock = MockApi::start(0, MockConfig::default()).unwrap();
    let mut secrets = Secrets::default();
    secrets
        .insert_for_hosts(
            "whatsapp/access-token",
            DEMO_ACCESS_TOKEN,
            ["graph.facebook.com"],
        )
        .unwrap();
    let locked = HostServices::new(
        HttpClient::new(
            HttpPolicy::default()
                .allowing(["graph.facebook.com"])
                .unwrap(),
        ),
        secrets,
        Log::memory(),
    );
    let plugin = plugin().with_services(Arc::new(locked));
    let c = plugin
        .send(
            &message("+15550100001", template_content()),
            &demo_config(Some(mock.base_url())),
            1,
        )
        .block()
        .unwrap()
        .unwrap();
    assert_eq!(
        (c.disposition, c.reason.as_str(), c.operator_action),
        (Disposition::Failed, "host_policy_denied", true)
    );
    assert!(mock.requests().is_empty());
}

#[test]
fn a_missing_secret_is_denied_before_anything_is_sent() {
    let mock = MockApi::start(0, MockConfig::default()).unwrap();
    let no_secret = HostServices::new(
        HttpClient::new(
            HttpPolicy::default()
                .allowing([mock.base_url().as_str()])
                .unwrap(),
        ),
        granted_but_unset(&mock.base_url()),
        Log::memory(),
    );
    let plugin = plugin().with_services(Arc::new(no_secret));
    let c = plugin
        .send(
            &message("+15550100001", template_content()),
            &demo_config(Some(mock.base_url())),
            1,
        )
        .block()
        .unwrap()
        .unwrap();
    assert_eq!(c.reason, "host_policy_denied");
    assert!(
        c.provider_details
            .unwrap()
            .contains("FLOW_SECRET_WHATSAPP_ACCESS_TOKEN")
    );
    assert!(mock.requests().is_empty());
}

#[test]
fn connection_refused_is_a_safe_retry() {
    // Bind then drop a listener: nothing listens on that port now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let mut secrets = Secrets::default();
    secrets
        .insert_for_hosts("whatsapp/access-token", "x", [base.as_str()])
        .unwrap();
    let services = HostServices::new(
        HttpClient::new(HttpPolicy::default().allowing([base.as_str()]).unwrap()),
        secrets,
        Log::memory(),
    );
    let plugin = plugin().with_services(Arc::new(services));
    let c = plugin
        .send(
            &message("+15550100001", template_content()),
            &demo_config(Some(base)),
            1,
        )
        .block()
        .unwrap()
        .unwrap();
    assert_eq!(
        (c.disposition, c.reason.as_str()),
        (Disposition::Retry, "transport_error")
    );
}

#[test]
fn invalid_messages_are_refused_before_sending() {
    let s = setup();
    let errs = s
        .plugin
        .send(
            &message("555-1234", template_content()),
            &demo_config(Some(s.mock.base_url())),
            1,
        )
        .block()
        .unwrap()
        .unwrap_err();
    assert_eq!(errs[0].path, "/recipient");
    assert!(s.mock.requests().is_empty());
}

fn text_message(last_inbound_ms: Option<u64>) -> host::contract::types::MessageRequest {
    let mut m = message(
        "+15550100001",
        json!({"type":"text","text":{"body":"Your table is ready"}}),
    );
    m.now_ms = host::services::now_ms();
    m.last_inbound_ms = last_inbound_ms;
    m
}

#[test]
fn free_form_outside_the_window_falls_back_without_calling_meta() {
    let s = setup();
    let now = host::services::now_ms();
    let cfg = demo_config(Some(s.mock.base_url()));
    for last in [None, Some(now - 25 * 3600 * 1000)] {
        let c = s
            .plugin
            .send(&text_message(last), &cfg, 1)
            .block()
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.disposition, c.reason.as_str()),
            (Disposition::Fallback, "outside_service_window")
        );
    }
    assert!(s.mock.requests().is_empty());
    let inside = s
        .plugin
        .send(&text_message(Some(now - 3600 * 1000)), &cfg, 1)
        .block()
        .unwrap()
        .unwrap();
    assert_eq!(inside.disposition, Disposition::Accepted);
    assert_eq!(s.mock.requests().len(), 1);
}

#[test]
fn outside_the_window_the_named_template_goes_instead() {
    let s = setup();
    let mut m = text_message(None);
    m.content = json!({"type":"text","text":{"body":"Your table is ready"},
        "outside_window_template":{"name":"table_ready","language":"en_US","components":[{"type":"body","parameters":[{"type":"text","text":"Pablo"}]}]}}).to_string();
    let c = s
        .plugin
        .send(&m, &demo_config(Some(s.mock.base_url())), 1)
        .block()
        .unwrap()
        .unwrap();
    assert_eq!(c.disposition, Disposition::Accepted);
    let body: Value = serde_json::from_slice(&s.mock.requests()[0].body).unwrap();
    assert_eq!(
        (body["type"].as_str(), body["template"]["name"].as_str()),
        (Some("template"), Some("table_ready"))
    );
}

#[test]
fn sends_are_checked_against_the_catalog_before_reaching_meta() {
    let s = setup();
    let page = json!({"data": [{"name": "order_update", "language": "en_US", "status": "APPROVED", "category": "UTILITY", "id": "77",
        "components": [{"type": "BODY", "text": "Hi {{1}}, order {{2}} shipped. {{3}} days to go."}]}]});
    let cfg = host::contract::types::ChannelConfig {
        api_base: Some(s.mock.base_url()),
        settings: json!({"phone_number_id": "106540352242922", "templates": page}).to_string(),
    };
    let errs = s
        .plugin
        .send(&message("+15550100001", template_content()), &cfg, 1)
        .block()
        .unwrap()
        .unwrap_err();
    assert_eq!(
        (errs[0].path.as_str(), errs[0].code.as_str()),
        (
            "/content/template/components/0/parameters",
            "parameter_count_mismatch"
        )
    );
    assert!(
        errs[0].message.contains("3 variable(s)") && errs[0].message.contains("132000"),
        "{}",
        errs[0].message
    );
    assert!(s.mock.requests().is_empty());
}

/// The access token granted for the mock, with no value configured anywhere.
fn granted_but_unset(base: &str) -> Secrets {
    let mut secrets = Secrets::default();
    secrets.grant("whatsapp/access-token", [base]).unwrap();
    secrets
}

#[test]
fn a_business_scoped_user_id_is_sent_in_recipient_and_accepted() {
    let s = setup();
    let c = s.send("US.13491208655302741918", 1);
    assert_eq!(c.disposition, Disposition::Accepted, "{c:?}");
    let body: Value = serde_json::from_slice(&s.mock.requests()[0].body).unwrap();
    assert_eq!(body["recipient"], "US.13491208655302741918");
    assert_eq!(body["recipient_type"], "individual");
    assert!(body.get("to").is_none(), "never both: Meta lets `to` win");
}

#[test]
fn an_authentication_template_to_a_business_scoped_user_id_is_refused_before_sending() {
    let s = setup();
    let content = json!({"type": "template",
        "template": {"name": "verification_code", "language": "en_US", "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "123456"}]},
            {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "123456"}]}]},
        "template_definition": {"name": "verification_code", "language": "en_US", "status": "APPROVED",
            "category": "AUTHENTICATION", "components": [
            {"type": "BODY", "text": "*{{1}}* is your verification code.", "add_security_recommendation": true},
            {"type": "BUTTONS", "buttons": [{"type": "OTP", "otp_type": "COPY_CODE", "text": "Copy code"}]}]}});
    let errs = s
        .plugin
        .send(
            &message("US.13491208655302741918", content.clone()),
            &demo_config(Some(s.mock.base_url())),
            1,
        )
        .block()
        .unwrap()
        .unwrap_err();
    let e = errs
        .iter()
        .find(|e| e.code == "bsuid_not_supported")
        .unwrap_or_else(|| panic!("{errs:?}"));
    assert_eq!(e.path, "/recipient");
    assert!(e.message.contains("131062"));
    assert!(s.mock.requests().is_empty());
    // The same template to a phone number builds.
    assert!(
        s.plugin
            .build_payload(&message("+15550100001", content), &demo_config(None))
            .block()
            .unwrap()
            .is_ok()
    );
}

/// `order_update` as an approved template of the given category, with the body it needs.
fn approved(category: &str) -> Value {
    json!({"data": [{"name": "order_update", "language": "en_US", "status": "APPROVED", "category": category, "id": "77",
        "components": [{"type": "BODY", "text": "Hi {{1}}, order {{2}} shipped."}]}]})
}

fn settings_with(s: &Setup, extra: Value) -> host::contract::types::ChannelConfig {
    let mut settings = json!({"phone_number_id": "106540352242922"});
    settings
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    host::contract::types::ChannelConfig {
        api_base: Some(s.mock.base_url()),
        settings: settings.to_string(),
    }
}

#[test]
fn marketing_templates_go_to_the_marketing_messages_api_when_it_is_on() {
    let s = setup();
    let on = settings_with(
        &s,
        json!({"marketing_messages_api": true, "templates": approved("MARKETING")}),
    );
    let c = s
        .plugin
        .send(&message("+15550100001", template_content()), &on, 1)
        .block()
        .unwrap()
        .unwrap();
    assert_eq!(c.disposition, Disposition::Accepted, "{c:?}");
    assert_eq!(
        s.mock.requests()[0].path,
        "/v26.0/106540352242922/marketing_messages"
    );
    // Utility templates, and marketing ones with the setting off, keep /messages.
    for cfg in [
        settings_with(
            &s,
            json!({"marketing_messages_api": true, "templates": approved("UTILITY")}),
        ),
        settings_with(&s, json!({"templates": approved("MARKETING")})),
    ] {
        let http = s
            .plugin
            .build_payload(&message("+15550100001", template_content()), &cfg)
            .block()
            .unwrap()
            .unwrap();
        assert!(
            http.url.ends_with("/106540352242922/messages"),
            "{}",
            http.url
        );
    }
}

#[test]
fn meta_s_131063_tells_the_operator_to_switch_to_the_marketing_messages_api() {
    let c = plugin()
        .classify(
            &host::contract::types::SendOutcome::Response(host::contract::types::HttpResponse {
                status: 400,
                headers: vec![],
                body: json!({"error": {"message": "(#131063) Marketing templates disabled", "type": "OAuthException", "code": 131063, "fbtrace_id": "A1"}}).to_string().into_bytes(),
            }),
            1,
        )
        .block().unwrap();
    assert_eq!(
        (c.disposition, c.reason.as_str(), c.operator_action),
        (Disposition::Failed, "marketing_messages_api_required", true)
    );
}

#[test]
fn a_customer_who_stopped_marketing_gets_no_marketing_template_but_still_gets_utility() {
    let s = setup();
    let mut request = message("+15550100001", template_content());
    request.opted_out = vec!["marketing".into()];
    let marketing = settings_with(&s, json!({"templates": approved("MARKETING")}));
    let c = s
        .plugin
        .send(&request, &marketing, 1)
        .block()
        .unwrap()
        .unwrap();
    assert_eq!(
        (c.disposition, c.reason.as_str()),
        (Disposition::Fallback, "recipient_opted_out")
    );
    assert!(s.mock.requests().is_empty(), "nothing reached Meta");
    let errs = s
        .plugin
        .build_payload(&request, &marketing)
        .block()
        .unwrap()
        .unwrap_err();
    assert_eq!(
        (errs[0].path.as_str(), errs[0].code.as_str()),
        ("/opted_out", "recipient_opted_out")
    );
    let utility = settings_with(&s, json!({"templates": approved("UTILITY")}));
    let c = s
        .plugin
        .send(&request, &utility, 1)
        .block()
        .unwrap()
        .unwrap();
    assert_eq!(c.disposition, Disposition::Accepted, "{c:?}");
}
