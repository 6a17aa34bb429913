//! Property tests: break one rule of a valid template at a time and find that rule's code;
//! arbitrary JSON is an error, never a panic.

use super::validate;
use proptest::prelude::*;
use serde_json::{Value, json};

fn bases() -> Vec<Value> {
    let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap();
    vec![
        parse(include_str!(
            "../../tests/fixtures/template-create-marketing-positional-seasonal-promotion.json"
        )),
        parse(include_str!(
            "../../tests/fixtures/template-create-utility-location-header.json"
        )),
        parse(include_str!(
            "../../tests/fixtures/template-create-utility-named-params.json"
        )),
        parse(include_str!(
            "../../tests/fixtures/template-create-utility-positional-document-header.json"
        )),
        json!({"name": "plain_notice", "category": "utility", "language": "de", "components": [{"type": "body", "text": "Ihre Bestellung ist unterwegs."}]}),
    ]
}

fn auth_base() -> Value {
    serde_json::from_str(include_str!(
        "../../tests/fixtures/template-create-authentication-copy-code.json"
    ))
    .unwrap()
}

fn comps(t: &mut Value) -> &mut Vec<Value> {
    t["components"].as_array_mut().unwrap()
}

fn kind_of(c: &Value) -> String {
    c["type"].as_str().unwrap_or("").to_ascii_uppercase()
}

fn body(t: &mut Value) -> &mut Value {
    comps(t).iter_mut().find(|c| kind_of(c) == "BODY").unwrap()
}

fn named(t: &Value) -> bool {
    t["parameter_format"].as_str() == Some("named")
}

/// Replaces the body with `text` and matching positional examples (or named ones).
fn set_body(t: &mut Value, text: &str, examples: Value) {
    let is_named = named(t);
    let b = body(t);
    b["text"] = json!(text);
    b["example"] = if is_named {
        json!({"body_text_named_params": examples})
    } else {
        json!({"body_text": [examples]})
    };
}

fn set_buttons(t: &mut Value, buttons: Value) {
    comps(t).retain(|c| kind_of(c) != "BUTTONS");
    comps(t).push(json!({"type": "BUTTONS", "buttons": buttons}));
}

fn set_header(t: &mut Value, header: Value) {
    comps(t).retain(|c| kind_of(c) != "HEADER");
    comps(t).insert(0, header);
}

fn qr(i: usize) -> Value {
    json!({"type": "QUICK_REPLY", "text": format!("Option {i}")})
}

type Mutation = (&'static str, fn(&mut Value, usize));

/// Each mutation breaks exactly one rule; `n` (1..40) varies how.
const MUTATIONS: &[Mutation] = &[
    ("invalid_name", |t, n| {
        t["name"] = json!(format!("Order Update {n}"))
    }),
    ("too_long", |t, n| t["name"] = json!("a".repeat(513 + n))),
    ("invalid_category", |t, n| {
        t["category"] = json!(format!("PROMO{n}"))
    }),
    ("unsupported_language", |t, n| {
        t["language"] = json!(["en-US", "english", "pt-br", "zz"][n % 4])
    }),
    ("invalid_parameter_format", |t, _| {
        t["parameter_format"] = json!("numbered")
    }),
    ("missing_body", |t, _| {
        comps(t).retain(|c| kind_of(c) != "BODY")
    }),
    ("duplicate_component", |t, _| {
        let b = body(t).clone();
        comps(t).push(b);
    }),
    ("unknown_component", |t, n| {
        comps(t).push(json!({"type": format!("SIDEBAR{n}")}))
    }),
    ("too_long", |t, n| {
        let text = format!("Hello {}.", "x".repeat(1_020 + n));
        set_body(t, &text, json!([]));
        body(t).as_object_mut().unwrap().remove("example");
    }),
    ("variables_not_sequential", |t, n| {
        if named(t) {
            t["parameter_format"] = json!("positional");
        }
        let text = format!("Hi {{{{1}}}}, see {{{{{}}}}} now.", n + 2);
        t["parameter_format"] = json!("positional");
        set_body(t, &text, json!(["a", "b"]));
    }),
    ("mismatched_braces", |t, n| {
        t["parameter_format"] = json!("positional");
        let text = ["Hi {{1}, ok.", "Hi {{1 ok.", "Hi 1}} ok.", "Hi {{{1}} ok."][n % 4];
        set_body(t, text, json!(["a"]));
    }),
    ("invalid_variable", |t, n| {
        t["parameter_format"] = json!("positional");
        let text = [
            "Hi {{#}} ok.",
            "Hi {{first-name}} ok.",
            "Hi {{ 1 }} ok.",
            "Hi {{$1}} ok.",
            "Hi {{0}} ok.",
        ][n % 5];
        set_body(t, text, json!(["a"]));
    }),
    ("dangling_variable", |t, n| {
        t["parameter_format"] = json!("positional");
        let text = if n % 2 == 0 {
            "{{1}} is ready."
        } else {
            "Your order is {{1}}"
        };
        set_body(t, text, json!(["a"]));
    }),
    ("adjacent_variables", |t, n| {
        t["parameter_format"] = json!("positional");
        let text = format!("Hi {{{{1}}}}{}{{{{2}}}} there.", " ".repeat(n % 3));
        set_body(t, &text, json!(["a", "b"]));
    }),
    ("example_count_mismatch", |t, n| {
        t["parameter_format"] = json!("positional");
        let examples: Vec<String> = (0..(n % 4) + 2).map(|i| format!("v{i}")).collect();
        set_body(t, "Hi {{1}}, thanks.", json!(examples));
    }),
    ("missing_example", |t, _| {
        t["parameter_format"] = json!("positional");
        set_body(t, "Hi {{1}}, thanks.", json!([]));
        body(t).as_object_mut().unwrap().remove("example");
    }),
    ("parameter_format_mismatch", |t, _| {
        t["parameter_format"] = json!("named");
        set_body(
            t,
            "Hi {{1}}, thanks.",
            json!([{"param_name": "x", "example": "y"}]),
        );
    }),
    ("too_long", |t, n| {
        set_header(
            t,
            json!({"type": "HEADER", "format": "TEXT", "text": "H".repeat(61 + n)}),
        )
    }),
    ("too_many_variables", |t, _| {
        t["parameter_format"] = json!("positional");
        set_body(t, "Body text only.", json!([]));
        body(t).as_object_mut().unwrap().remove("example");
        set_header(
            t,
            json!({"type": "HEADER", "format": "TEXT", "text": "Hi {{1}} and {{2}}!", "example": {"header_text": ["a", "b"]}}),
        );
    }),
    ("invalid_header_format", |t, n| {
        let format = ["AUDIO", "STICKER", "HTML"][n % 3];
        set_header(t, json!({"type": "HEADER", "format": format}));
    }),
    ("missing_example", |t, n| {
        let format = ["IMAGE", "VIDEO", "DOCUMENT"][n % 3];
        set_header(t, json!({"type": "HEADER", "format": format}));
    }),
    ("variables_not_allowed", |t, _| {
        comps(t).retain(|c| kind_of(c) != "FOOTER");
        comps(t).push(json!({"type": "FOOTER", "text": "Reply {{1}} to stop"}));
    }),
    ("too_long", |t, n| {
        comps(t).retain(|c| kind_of(c) != "FOOTER");
        comps(t).push(json!({"type": "FOOTER", "text": "f".repeat(61 + n)}));
    }),
    ("too_many_buttons", |t, n| {
        set_buttons(t, json!((0..11 + n % 3).map(qr).collect::<Vec<_>>()))
    }),
    ("quick_replies_not_grouped", |t, _| {
        set_buttons(
            t,
            json!([qr(1), {"type": "URL", "text": "Shop", "url": "https://x.com"}, qr(2)]),
        )
    }),
    ("too_long", |t, n| {
        set_buttons(
            t,
            json!([{"type": "QUICK_REPLY", "text": "L".repeat(26 + n)}]),
        )
    }),
    ("too_long", |t, n| {
        set_buttons(
            t,
            json!([{"type": "URL", "text": "Go", "url": format!("https://x.com/{}", "p".repeat(2_000 + n))}]),
        )
    }),
    ("variable_not_at_end", |t, _| {
        set_buttons(
            t,
            json!([{"type": "URL", "text": "Go", "url": "https://x.com/{{1}}/track", "example": ["https://x.com/a/track"]}]),
        )
    }),
    ("missing_example", |t, _| {
        set_buttons(
            t,
            json!([{"type": "URL", "text": "Go", "url": "https://x.com/{{1}}"}]),
        )
    }),
    ("too_many_buttons", |t, n| {
        let urls: Vec<Value> = (0..3 + n % 2)
            .map(|i| json!({"type": "URL", "text": format!("Go {i}"), "url": "https://x.com"}))
            .collect();
        set_buttons(t, json!(urls));
    }),
    ("too_many_buttons", |t, _| {
        set_buttons(
            t,
            json!([{"type": "PHONE_NUMBER", "text": "Call", "phone_number": "+15550051310"}, {"type": "PHONE_NUMBER", "text": "Call 2", "phone_number": "+15550051311"}]),
        )
    }),
    ("too_long", |t, n| {
        set_buttons(
            t,
            json!([{"type": "PHONE_NUMBER", "text": "Call", "phone_number": format!("+1{}", "5".repeat(20 + n))}]),
        )
    }),
    ("too_long", |t, n| {
        set_buttons(
            t,
            json!([{"type": "COPY_CODE", "example": "C".repeat(16 + n)}]),
        )
    }),
    ("missing_example", |t, _| {
        set_buttons(t, json!([{"type": "COPY_CODE"}]))
    }),
    ("unknown_button_type", |t, n| {
        set_buttons(t, json!([{"type": format!("TELEPORT{n}"), "text": "Go"}]))
    }),
    ("invalid_url", |t, n| {
        set_buttons(
            t,
            json!([{"type": "URL", "text": "Go", "url": format!("ftp://x.com/{n}")}]),
        )
    }),
    ("invalid_flow_action", |t, _| {
        set_buttons(
            t,
            json!([{"type": "FLOW", "text": "Book", "flow_id": "1", "flow_action": "teleport"}]),
        )
    }),
    ("unknown_example", |t, _| {
        t["parameter_format"] = json!("named");
        set_body(
            t,
            "Hi {{first_name}}, thanks.",
            json!([{"param_name": "first_name", "example": "Ann"}, {"param_name": "last_name", "example": "Lee"}]),
        );
    }),
    ("duplicate_example", |t, _| {
        t["parameter_format"] = json!("named");
        set_body(
            t,
            "Hi {{first_name}}, thanks.",
            json!([{"param_name": "first_name", "example": "Ann"}, {"param_name": "first_name", "example": "Bo"}]),
        );
    }),
    ("invalid_example", |t, n| {
        t["parameter_format"] = json!("positional");
        let bad = if n % 2 == 0 { json!(7) } else { json!("") };
        set_body(t, "Hi {{1}}, thanks.", json!([bad]));
    }),
    ("expected_array", |t, _| {
        t["components"] = json!({"type": "BODY"})
    }),
    ("otp_outside_authentication", |t, _| {
        set_buttons(t, json!([{"type": "OTP", "otp_type": "COPY_CODE"}]))
    }),
    ("invalid_flow_button", |t, _| {
        set_buttons(
            t,
            json!([{"type": "FLOW", "text": "Book", "flow_id": "1", "flow_name": "booking"}]),
        )
    }),
    ("out_of_range", |t, n| {
        t["message_send_ttl_seconds"] = json!(if t["category"]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case("marketing")
        {
            100 + n as i64
        } else {
            50_000 + n as i64
        })
    }),
];

const AUTH_MUTATIONS: &[Mutation] = &[
    ("out_of_range", |t, n| {
        comps(t)[1]["code_expiration_minutes"] = json!(if n % 2 == 0 { 0 } else { 91 + n })
    }),
    ("not_allowed_in_authentication", |t, _| {
        set_header(
            t,
            json!({"type": "HEADER", "format": "IMAGE", "example": {"header_handle": ["4::a"]}}),
        )
    }),
    ("not_allowed_in_authentication", |t, _| {
        comps(t)[0]["text"] = json!("Your code is {{1}}")
    }),
    ("not_allowed_in_authentication", |t, _| {
        set_buttons(
            t,
            json!([{"type": "OTP", "otp_type": "COPY_CODE"}, {"type": "URL", "text": "Site", "url": "https://x.com"}]),
        )
    }),
    ("not_allowed_in_authentication", |t, _| {
        set_buttons(
            t,
            json!([{"type": "OTP", "otp_type": "COPY_CODE", "text": "Copy 🔑"}]),
        )
    }),
    ("missing_otp_button", |t, _| {
        comps(t).retain(|c| kind_of(c) != "BUTTONS")
    }),
    ("invalid_supported_app", |t, _| {
        comps(t)[2]["buttons"][0]["otp_type"] = json!("ONE_TAP");
        comps(t)[2]["buttons"][0]["supported_apps"] = json!([{"package_name": "com.example.app"}]);
    }),
    ("invalid_otp_type", |t, n| {
        comps(t)[2]["buttons"][0]["otp_type"] = json!(format!("TWO_TAP{n}"))
    }),
    ("missing", |t, n| {
        comps(t)[2]["buttons"][0]["otp_type"] = json!(["ONE_TAP", "ZERO_TAP"][n % 2])
    }),
    ("out_of_range", |t, n| {
        t["message_send_ttl_seconds"] = json!(900 + n)
    }),
];

fn carousel_base() -> Value {
    serde_json::from_str(include_str!(
        "../../tests/fixtures/template-create-marketing-media-card-carousel.json"
    ))
    .unwrap()
}

fn offer_base() -> Value {
    serde_json::from_str(include_str!(
        "../../tests/fixtures/template-create-marketing-limited-time-offer.json"
    ))
    .unwrap()
}

fn cards(t: &mut Value) -> &mut Vec<Value> {
    comps(t)
        .iter_mut()
        .find(|c| kind_of(c) == "CAROUSEL")
        .unwrap()["cards"]
        .as_array_mut()
        .unwrap()
}

/// The components of every card.
fn each_card(t: &mut Value, f: impl Fn(&mut Vec<Value>)) {
    for card in cards(t) {
        f(card["components"].as_array_mut().unwrap());
    }
}

const CAROUSEL_MUTATIONS: &[Mutation] = &[
    ("card_count", |t, n| {
        let c = cards(t);
        if n % 2 == 0 {
            c.truncate(1);
        } else {
            let card = c[0].clone();
            c.resize(11 + n % 5, card);
        }
    }),
    ("marketing_only", |t, n| {
        t["category"] = json!(["UTILITY", "utility", "AUTHENTICATION"][n % 3])
    }),
    ("cards_not_uniform", |t, _| {
        cards(t)[1]["components"]
            .as_array_mut()
            .unwrap()
            .retain(|c| kind_of(c) != "BODY")
    }),
    ("too_long", |t, n| {
        each_card(t, |c| {
            c[1] = json!({"type": "body", "text": format!("Fresh {}.", "x".repeat(160))});
        });
        let _ = n;
    }),
    ("invalid_card_header", |t, n| {
        let format = ["TEXT", "DOCUMENT", "LOCATION", "AUDIO"][n % 4];
        each_card(t, |c| c[0]["format"] = json!(format));
    }),
    ("missing_example", |t, _| {
        cards(t)[0]["components"][0]
            .as_object_mut()
            .unwrap()
            .remove("example");
    }),
    ("too_many_buttons", |t, _| {
        each_card(t, |c| {
            c[2]["buttons"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "quick_reply", "text": "More"}))
        })
    }),
    ("invalid_card_button", |t, _| {
        each_card(t, |c| {
            c[2]["buttons"][0] = json!({"type": "COPY_CODE", "example": "SAVE10"})
        })
    }),
    ("missing_card_buttons", |t, _| {
        each_card(t, |c| c.retain(|x| kind_of(x) != "BUTTONS"))
    }),
    ("missing_card_header", |t, _| {
        each_card(t, |c| c.retain(|x| kind_of(x) != "HEADER"))
    }),
];

const OFFER_MUTATIONS: &[Mutation] = &[
    ("too_long", |t, n| {
        let c = comps(t)
            .iter_mut()
            .find(|c| kind_of(c) == "LIMITED_TIME_OFFER")
            .unwrap();
        c["limited_time_offer"]["text"] = json!("x".repeat(17 + n));
    }),
    ("marketing_only", |t, n| {
        t["category"] = json!(["UTILITY", "utility"][n % 2])
    }),
    ("not_allowed_in_offer", |t, _| {
        comps(t).push(json!({"type": "FOOTER", "text": "Terms apply"}))
    }),
    ("too_long", |t, n| {
        let text = format!(
            "Good news, {{{{1}}}}! Code {{{{2}}}} {}.",
            "x".repeat(600 + n)
        );
        set_body(t, &text, json!(["Pablo", "CARIBE25"]));
    }),
    ("invalid_header_format", |t, n| {
        let header = [
            json!({"type": "HEADER", "format": "TEXT", "text": "Hello"}),
            json!({"type": "HEADER", "format": "DOCUMENT", "example": {"header_handle": ["4::x"]}}),
        ][n % 2]
            .clone();
        set_header(t, header);
    }),
    ("missing_offer_url_button", |t, _| {
        set_buttons(t, json!([{"type": "COPY_CODE", "example": "CARIBE25"}]))
    }),
    ("not_allowed_in_offer", |t, n| {
        set_buttons(
            t,
            json!([qr(n), {"type": "URL", "text": "Book", "url": "https://x.com"}]),
        )
    }),
    ("missing", |t, _| {
        let c = comps(t)
            .iter_mut()
            .find(|c| kind_of(c) == "LIMITED_TIME_OFFER")
            .unwrap();
        c.as_object_mut().unwrap().remove("limited_time_offer");
    }),
];

fn codes(t: &Value) -> Vec<String> {
    validate(t)
        .err()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.code)
        .collect()
}

#[test]
fn every_base_is_valid() {
    for b in bases()
        .iter()
        .chain([auth_base(), carousel_base(), offer_base()].iter())
    {
        assert_eq!(validate(b), Ok(()), "{b}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn breaking_one_rule_reports_its_code(base in 0usize..5, m in 0..MUTATIONS.len(), n in 1usize..40) {
        let mut t = bases()[base].clone();
        let (code, mutate) = MUTATIONS[m];
        mutate(&mut t, n);
        let got = codes(&t);
        prop_assert!(got.iter().any(|c| c == code), "mutation {m} should report {code}, got {got:?} for {t}");
    }

    #[test]
    fn breaking_one_authentication_rule_reports_its_code(m in 0..AUTH_MUTATIONS.len(), n in 1usize..40) {
        let mut t = auth_base();
        let (code, mutate) = AUTH_MUTATIONS[m];
        mutate(&mut t, n);
        let got = codes(&t);
        prop_assert!(got.iter().any(|c| c == code), "auth mutation {m} should report {code}, got {got:?} for {t}");
    }

    #[test]
    fn breaking_one_carousel_rule_reports_its_code(m in 0..CAROUSEL_MUTATIONS.len(), n in 1usize..40) {
        let mut t = carousel_base();
        let (code, mutate) = CAROUSEL_MUTATIONS[m];
        mutate(&mut t, n);
        let got = codes(&t);
        prop_assert!(got.iter().any(|c| c == code), "carousel mutation {m} should report {code}, got {got:?} for {t}");
    }

    #[test]
    fn breaking_one_offer_rule_reports_its_code(m in 0..OFFER_MUTATIONS.len(), n in 1usize..40) {
        let mut t = offer_base();
        let (code, mutate) = OFFER_MUTATIONS[m];
        mutate(&mut t, n);
        let got = codes(&t);
        prop_assert!(got.iter().any(|c| c == code), "offer mutation {m} should report {code}, got {got:?} for {t}");
    }

    #[test]
    fn arbitrary_json_is_an_error_not_a_panic(v in arb_json()) {
        let _ = validate(&v);
        let _ = super::validate_json(&v.to_string());
        let _ = crate::webhooks::parse_body(v.to_string().as_bytes());
        let req = crate::MessageRequest { recipient: "+16505551234".into(), correlation_id: None, content: v.to_string(), last_inbound_ms: None, now_ms: 0, opted_out: vec![], deadline_ms: None };
        let _ = crate::payloads::build_body(&req);
        let mut catalog = crate::catalog::Catalog::default();
        catalog.apply(&v, "", &mut crate::field_errors::Errors::new());
    }

    #[test]
    fn arbitrary_template_shaped_json_never_panics(components in proptest::collection::vec(arb_json(), 0..6), name in ".{0,20}", cat in "[A-Za-z]{0,14}") {
        let t = json!({"name": name, "category": cat, "language": "en_US", "components": components});
        let _ = validate(&t);
    }
}

/// Any JSON value, biased towards the keys templates and messages use.
pub fn arb_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("type".to_string()),
        Just("text".to_string()),
        Just("format".to_string()),
        Just("buttons".to_string()),
        Just("components".to_string()),
        Just("example".to_string()),
        Just("parameters".to_string()),
        Just("entry".to_string()),
        Just("changes".to_string()),
        Just("statuses".to_string()),
        Just("data".to_string()),
        Just("template".to_string()),
        "[a-z_]{1,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        prop_oneof![
            Just("BODY".to_string()),
            Just("HEADER".to_string()),
            Just("BUTTONS".to_string()),
            Just("{{1}}".to_string()),
            Just("template".to_string()),
            ".{0,12}"
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn one_tap_apps_in_either_form() {
    let mut t = auth_base();
    comps(&mut t)[2]["buttons"][0] = json!({"type": "OTP", "otp_type": "ONE_TAP", "text": "Copy Code", "autofill_text": "Autofill",
        "supported_apps": [{"package_name": "com.example.luckyshrub", "signature_hash": "K8a/AINcGX7"}]});
    assert_eq!(validate(&t), Ok(()));
    comps(&mut t)[2]["buttons"][0] = json!({"type": "OTP", "otp_type": "ONE_TAP", "text": "Copy Code", "autofill_text": "Autofill",
        "package_name": "com.example.luckyshrub", "signature_hash": "K8a/AINcGX7"});
    assert_eq!(validate(&t), Ok(()), "the pre-v21 form");
}

#[test]
fn gif_headers_are_marketing_only() {
    let mut t = bases()[4].clone();
    set_header(
        &mut t,
        json!({"type": "HEADER", "format": "GIF", "example": {"header_handle": ["4::a"]}}),
    );
    assert!(codes(&t).contains(&"invalid_header_format".to_string()));
    t["category"] = json!("MARKETING");
    assert_eq!(validate(&t), Ok(()));
}
