//! Carousel and limited-time-offer templates through the built component: creation rules
//! (`validate-template`) and sends checked against the approved cards (`build-payload`).

use host_testkit::Block;

use crate::common::*;
use serde_json::{Value, json};

fn codes(template: &Value) -> Vec<(String, String)> {
    match plugin()
        .validate_template(&template.to_string())
        .block()
        .unwrap()
    {
        Ok(()) => vec![],
        Err(errors) => errors.into_iter().map(|e| (e.path, e.code)).collect(),
    }
}

fn carousel() -> Value {
    fixture_json("template-create-marketing-media-card-carousel.json")
}

#[test]
fn meta_shaped_carousel_and_offer_templates_are_valid() {
    assert_eq!(codes(&carousel()), vec![]);
    assert_eq!(
        codes(&fixture_json(
            "template-create-marketing-limited-time-offer.json"
        )),
        vec![]
    );
}

#[test]
fn a_carousel_breaking_meta_s_rules_reports_each_problem() {
    let mut t = carousel();
    t["category"] = json!("UTILITY");
    t["components"][1]["cards"]
        .as_array_mut()
        .unwrap()
        .truncate(1);
    let got = codes(&t);
    assert!(
        got.contains(&("/components/1/type".into(), "marketing_only".into())),
        "{got:?}"
    );
    assert!(
        got.contains(&("/components/1/cards".into(), "card_count".into())),
        "{got:?}"
    );
    let mut t = carousel();
    t["components"][1]["cards"][1]["components"]
        .as_array_mut()
        .unwrap()
        .remove(1);
    assert!(codes(&t).contains(&("/components/1/cards/1".into(), "cards_not_uniform".into())));
}

#[test]
fn an_offer_with_a_footer_is_refused() {
    let mut t = fixture_json("template-create-marketing-limited-time-offer.json");
    t["components"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "FOOTER", "text": "Terms apply"}));
    assert!(codes(&t).contains(&("/components/4/type".into(), "not_allowed_in_offer".into())));
}

/// A send of the approved carousel with `n` cards.
fn carousel_message(n: usize) -> Value {
    let cards: Vec<Value> = (0..n)
        .map(|i| {
            json!({"card_index": i, "components": [
                {"type": "header", "parameters": [{"type": "image", "image": {"id": format!("24230790383{i}")}}]},
                {"type": "body", "parameters": [{"type": "text", "text": "10OFF"}, {"type": "text", "text": "10%"}]},
                {"type": "button", "sub_type": "quick_reply", "index": "0", "parameters": [{"type": "payload", "payload": format!("more-{i}")}]},
                {"type": "button", "sub_type": "url", "index": "1", "parameters": [{"type": "text", "text": format!("card_{i}")}]}
            ]})
        })
        .collect();
    let mut definition = carousel();
    definition["status"] = json!("APPROVED");
    json!({"type": "template", "template": {"name": "summer_carousel_promo_2026", "language": {"code": "en_US"},
        "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "15OFF"}, {"type": "text", "text": "15%"}]},
            {"type": "carousel", "cards": cards}
        ]},
        "template_definition": definition})
}

fn build(content: Value) -> Result<Value, Vec<(String, String, String)>> {
    match plugin()
        .build_payload(&message("+16505551234", content), &demo_config(None))
        .block()
        .unwrap()
    {
        Ok(req) => Ok(serde_json::from_slice(&req.body).unwrap()),
        Err(errors) => Err(errors
            .into_iter()
            .map(|e| (e.path, e.code, e.message))
            .collect()),
    }
}

#[test]
fn a_carousel_send_with_the_approved_cards_is_built_in_meta_s_shape() {
    let body = build(carousel_message(2)).unwrap();
    let cards = &body["template"]["components"][1];
    assert_eq!(cards["type"], "carousel");
    assert_eq!(cards["cards"][1]["card_index"], 1);
    assert_eq!(
        cards["cards"][1]["components"][0]["parameters"][0]["image"]["id"],
        "242307903831"
    );
    assert_eq!(cards["cards"][0]["components"][3]["index"], "1");
}

#[test]
fn a_carousel_send_with_another_card_count_is_refused_before_meta_s_misleading_132012() {
    for n in [3, 1] {
        let errors = build(carousel_message(n)).unwrap_err();
        let e = errors
            .iter()
            .find(|e| e.1 == "carousel_card_count_mismatch" || e.1 == "card_count")
            .unwrap_or_else(|| panic!("{errors:?}"));
        if e.1 == "carousel_card_count_mismatch" {
            assert_eq!(e.0, "/content/template/components/1/cards");
            assert!(e.2.contains("132012") && e.2.contains("2 cards"), "{}", e.2);
        }
    }
    let errors = build(carousel_message(3)).unwrap_err();
    assert!(errors.iter().any(|e| e.1 == "carousel_card_count_mismatch"));
}

#[test]
fn each_card_is_checked_against_its_approved_card() {
    let mut m = carousel_message(2);
    let card = &mut m["template"]["components"][1]["cards"][1]["components"];
    card[1]["parameters"].as_array_mut().unwrap().pop();
    card[0]["parameters"][0] = json!({"type": "video", "video": {"id": "1"}});
    let errors = build(m).unwrap_err();
    let at = |code: &str| {
        errors
            .iter()
            .find(|e| e.1 == code)
            .map(|e| e.0.clone())
            .unwrap_or_else(|| panic!("{code} in {errors:?}"))
    };
    assert_eq!(
        at("parameter_count_mismatch"),
        "/content/template/components/1/cards/1/components/1/parameters"
    );
    assert_eq!(
        at("parameter_type_mismatch"),
        "/content/template/components/1/cards/1/components/0/parameters/0/type"
    );
    let mut m = carousel_message(2);
    m["template"]["components"][1]["cards"][1]["card_index"] = json!(0);
    assert!(
        build(m)
            .unwrap_err()
            .iter()
            .any(|e| e.1 == "duplicate_card_index")
    );
}
