//! Arbitrary input through the real component in wasmtime: always an answer, never a trap.

use host_testkit::Block;

use crate::common::*;
use host::contract::types::{ChannelConfig, Header, MessageRequest, WebhookRequest};
use proptest::prelude::*;
use serde_json::{Value, json};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        prop_oneof![
            Just("BODY".to_string()),
            Just("template".to_string()),
            Just("{{1}}".to_string()),
            ".{0,10}"
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("type".to_string()),
                    Just("components".to_string()),
                    Just("template".to_string()),
                    Just("entry".to_string()),
                    "[a-z]{1,6}"
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_export_answers_arbitrary_json(v in arb_json(), bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let p = plugin();
        prop_assert!(p.validate_template(&v.to_string()).block().is_ok());
        let req = MessageRequest { recipient: "+16505551234".into(), correlation_id: None, content: v.to_string(), last_inbound_ms: None, now_ms: 0, opted_out: vec![], deadline_ms: None };
        let cfg = ChannelConfig { api_base: None, settings: json!({"phone_number_id": "1", "templates": v}).to_string() };
        prop_assert!(p.build_payload(&req, &cfg).block().is_ok());
        let off = ChannelConfig { api_base: None, settings: json!({"app_secret": null}).to_string() };
        let signed = ChannelConfig { api_base: None, settings: json!({}).to_string() };
        for body in [v.to_string().into_bytes(), bytes] {
            let hook = WebhookRequest { method: "POST".into(), url: None, headers: vec![Header { name: "x-hub-signature-256".into(), value: "sha256=00".into() }], query: vec![], body };
            prop_assert!(p.parse_webhook(&hook, &off).block().is_ok());
            prop_assert!(p.parse_webhook(&hook, &signed).block().is_ok());
        }
    }
}
