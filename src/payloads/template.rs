//! `template` messages: name, language and the parameters of each component, positional or
//! named, every parameter type Meta documents.

use super::location::check_location;
use super::media::check_media;
use crate::catalog::Catalog;
use crate::field_errors::{Errors, Fields, excerpt, index, quoted, type_name};
use crate::send_check::check_against_catalog;
use crate::templates::{LANGUAGES, is_valid_name};
use serde_json::{Map, Value, json};

/// Meta's limit on a copy-code coupon and on an authentication code.
pub use crate::meta_limits::template_sends::COUPON_CODE as COUPON_CODE_MAX;
/// Button sub-types a template message may fill.
pub const BUTTON_SUB_TYPES: &[&str] = &[
    "quick_reply",
    "url",
    "copy_code",
    "flow",
    "catalog",
    "mpm",
    "spm",
    "voice_call",
];

/// The approved category (upper-case) of a template message, from the catalog or the
/// content's own `template_definition`; `None` for other messages or unknown templates.
pub fn approved_category(content: &Value, catalog: &Catalog) -> Option<String> {
    let template = content.get("template")?;
    let name = template.get("name")?.as_str()?;
    let language = match template.get("language")? {
        Value::String(code) => code.as_str(),
        other => other.get("code")?.as_str()?,
    };
    let mut local;
    let mut catalog = catalog;
    if let Some(def) = content.get("template_definition") {
        local = catalog.clone();
        local.apply(def, "", &mut Errors::new());
        catalog = &local;
    }
    catalog
        .find(name, language)
        .map(|d| d.category.clone())
        .filter(|c| !c.is_empty())
}

pub fn build(
    content: &Fields,
    catalog: &Catalog,
    to_bsuid: bool,
    errors: &mut Errors,
) -> Option<Value> {
    let t = super::type_object(content, "template", errors)?;
    t.reject_unknown(&["name", "language", "components"], errors);
    let before = errors.len();

    let name = t.text("name", true, errors);
    if let Some(n) = name
        && !is_valid_name(n)
    {
        errors.add(t.path_of("name"), "invalid_name", format!("template names are lowercase letters, digits and underscores (at most 512), got {}", excerpt(n)));
    }

    // `language` may be the code itself or Meta's `{"code": …}` (with the legacy `policy`).
    let code = match t.get("language") {
        Some(Value::String(s)) => Some(s.as_str()),
        Some(v @ Value::Object(_)) => {
            let l = Fields::of(v, t.path_of("language"), "`language`", errors)?;
            l.reject_unknown(&["code", "policy"], errors);
            l.text("code", true, errors)
        }
        Some(other) => {
            errors.add(t.path_of("language"), "expected_string", format!("`language` must be a code such as \"en_US\" or {{\"code\": \"en_US\"}}, got {}", type_name(other)));
            None
        }
        None => {
            errors.add(
                t.path_of("language"),
                "missing",
                "`language` is required (e.g. \"en_US\")",
            );
            None
        }
    };
    if let Some(c) = code
        && !LANGUAGES.contains(&c)
    {
        errors.add(t.path_of("language"), "unsupported_language", format!("language {} is not a WhatsApp template language (e.g. en_US, pt_BR; note `_`, not `-`)", excerpt(c)));
    }

    let mut out = Map::new();
    out.insert("name".into(), json!(name.unwrap_or_default()));
    out.insert(
        "language".into(),
        json!({ "code": code.unwrap_or_default() }),
    );
    if let Some(components) = t.array("components", false, errors) {
        let built = build_components(components, &t.path_of("components"), errors);
        out.insert("components".into(), Value::Array(built));
    }
    if errors.len() != before {
        return None;
    }
    let out = Value::Object(out);
    // The approved definition may travel with the message instead of in the settings.
    let mut local;
    let mut catalog = catalog;
    if let Some(def) = content.get("template_definition") {
        local = catalog.clone();
        local.apply(def, &content.path_of("template_definition"), errors);
        catalog = &local;
    }
    if !catalog.is_empty() {
        check_against_catalog(&out, catalog, &t.path, errors);
    }
    if to_bsuid
        && let (Some(n), Some(c)) = (name, code)
        && catalog
            .find(n, c)
            .is_some_and(|d| d.category == "AUTHENTICATION")
    {
        errors.add(
            "/recipient",
            "bsuid_not_supported",
            format!("{} is an authentication template; copy-code, one-tap and zero-tap templates need a phone number, and Meta answers 131062 for a business-scoped user id", quoted(n)),
        );
    }
    (errors.len() == before).then_some(out)
}

fn build_components(components: &[Value], list_path: &str, errors: &mut Errors) -> Vec<Value> {
    let mut out = Vec::with_capacity(components.len());
    let mut seen: Vec<(String, usize)> = Vec::new();
    for (i, comp) in components.iter().enumerate() {
        let path = index(list_path, i);
        let Some(c) = Fields::of(comp, &path, "a component", errors) else {
            continue;
        };
        let Some(kind) = c.str("type", true, errors) else {
            continue;
        };
        let kind = kind.to_ascii_lowercase();
        if kind == "carousel" {
            c.reject_unknown(&["type", "cards"], errors);
            if seen.iter().any(|(k, _)| k == "carousel") {
                errors.add(
                    c.path_of("type"),
                    "duplicate_component",
                    "a template message has one carousel component",
                );
            }
            seen.push(("carousel".into(), i));
            if let Some(cards) = c.array("cards", true, errors) {
                out.push(json!({"type": "carousel", "cards": build_cards(cards, &c.path_of("cards"), errors)}));
            }
            continue;
        }
        let mut built = Map::new();
        built.insert("type".into(), json!(kind));
        let key = match kind.as_str() {
            // Limited-time-offer templates carry the offer's expiry in their own component.
            "header" | "body" | "limited_time_offer" => {
                c.reject_unknown(&["type", "parameters"], errors);
                kind.clone()
            }
            "button" => build_button(&c, &mut built, errors),
            other => {
                errors.add(
                    c.path_of("type"),
                    "invalid_component",
                    format!(
                        "component type {} is not one of header, body, button, limited_time_offer, carousel",
                        excerpt(other)
                    ),
                );
                continue;
            }
        };
        if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
            errors.add(
                c.path_of("type"),
                "duplicate_component",
                format!("this {kind} component repeats the one at {list_path}/{first}"),
            );
        } else {
            seen.push((key, i));
        }
        let params = c
            .array("parameters", kind != "button", errors)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let built_params = build_parameters(params, &c.path_of("parameters"), &kind, errors);
        built.insert("parameters".into(), Value::Array(built_params));
        out.push(Value::Object(built));
    }
    out
}

/// A button component's `sub_type` and `index` into `built`; its key for duplicate checks.
fn build_button(c: &Fields, built: &mut Map<String, Value>, errors: &mut Errors) -> String {
    c.reject_unknown(&["type", "sub_type", "index", "parameters"], errors);
    let sub = c.str("sub_type", true, errors).map(str::to_ascii_lowercase);
    if let Some(s) = &sub {
        if BUTTON_SUB_TYPES.contains(&s.as_str()) {
            built.insert("sub_type".into(), json!(s));
        } else {
            errors.add(
                c.path_of("sub_type"),
                "invalid_sub_type",
                format!(
                    "button sub_type {} is not one of {}",
                    excerpt(s),
                    BUTTON_SUB_TYPES.join(", ")
                ),
            );
        }
    }
    // Meta's docs show the index both as "0" and 0; send the string form.
    let idx = match c.get("index") {
        Some(Value::String(s)) if s.parse::<u8>().is_ok_and(|n| n < 10) => Some(s.clone()),
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n < 10) => {
            n.as_u64().map(|n| n.to_string())
        }
        Some(other) => {
            errors.add(
                c.path_of("index"),
                "invalid_index",
                format!("button `index` is the button's position, 0–9, got {other}"),
            );
            None
        }
        None => {
            errors.add(
                c.path_of("index"),
                "missing",
                "a button component needs the `index` of the button it fills",
            );
            None
        }
    };
    if let Some(idx) = &idx {
        built.insert("index".into(), json!(idx));
    }
    format!("button:{}", idx.unwrap_or_default())
}

/// The cards of a carousel template message: 2–10, each `card_index` once, each card's
/// components built like a template's.
fn build_cards(cards: &[Value], list_path: &str, errors: &mut Errors) -> Vec<Value> {
    let (lo, hi) = crate::meta_limits::templates::CAROUSEL_CARDS;
    if !(lo..=hi).contains(&cards.len()) {
        errors.add(
            list_path,
            "card_count",
            format!("a carousel has {lo}–{hi} cards, got {}", cards.len()),
        );
    }
    let mut indices: Vec<u64> = Vec::new();
    let mut out = Vec::with_capacity(cards.len());
    for (i, card) in cards.iter().enumerate() {
        let path = index(list_path, i);
        let Some(f) = Fields::of(card, &path, "a carousel card", errors) else {
            continue;
        };
        f.reject_unknown(&["card_index", "components"], errors);
        let card_index = match f.get("card_index").and_then(Value::as_u64) {
            Some(n) if n < hi as u64 => n,
            other => {
                errors.add(
                    f.path_of("card_index"),
                    "invalid_card_index",
                    format!(
                        "`card_index` is the card's position, 0–{}, got {}",
                        hi - 1,
                        other.map_or("none".into(), |n| n.to_string())
                    ),
                );
                continue;
            }
        };
        if indices.contains(&card_index) {
            errors.add(
                f.path_of("card_index"),
                "duplicate_card_index",
                format!("card_index {card_index} is given twice"),
            );
        }
        indices.push(card_index);
        let components = f
            .array("components", true, errors)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let built = build_components(components, &f.path_of("components"), errors);
        out.push(json!({"card_index": card_index, "components": built}));
    }
    out
}

/// Parameter types allowed in each kind of component.
fn allowed_types(component: &str) -> &'static [&'static str] {
    match component {
        "header" => &[
            "text",
            "image",
            "video",
            "document",
            "location",
            "currency",
            "date_time",
            "product",
        ],
        "body" => &["text", "currency", "date_time"],
        "limited_time_offer" => &["limited_time_offer"],
        _ => &["payload", "text", "coupon_code", "action"],
    }
}

fn build_parameters(
    params: &[Value],
    list_path: &str,
    component: &str,
    errors: &mut Errors,
) -> Vec<Value> {
    let mut named = 0usize;
    let mut positional = 0usize;
    let mut names: Vec<&str> = Vec::new();
    let mut out = Vec::with_capacity(params.len());
    for (i, p) in params.iter().enumerate() {
        let path = index(list_path, i);
        let Some(f) = Fields::of(p, &path, "a parameter", errors) else {
            continue;
        };
        let Some(kind) = f.str("type", true, errors) else {
            continue;
        };
        let kind = kind.to_ascii_lowercase();
        if !allowed_types(component).contains(&kind.as_str()) {
            errors.add(
                f.path_of("type"),
                "invalid_parameter_type",
                format!(
                    "a {component} parameter cannot be of type {}; allowed: {}",
                    excerpt(&kind),
                    allowed_types(component).join(", ")
                ),
            );
            continue;
        }
        f.reject_unknown(&["type", kind.as_str(), "parameter_name"], errors);
        match f.str("parameter_name", false, errors) {
            Some(n) => {
                named += 1;
                if n.is_empty()
                    || !n
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                {
                    errors.add(
                        f.path_of("parameter_name"),
                        "invalid_parameter_name",
                        format!(
                            "parameter names are lowercase letters, digits and underscores, got {}",
                            excerpt(n)
                        ),
                    );
                }
                if names.contains(&n) {
                    errors.add(
                        f.path_of("parameter_name"),
                        "duplicate_parameter_name",
                        format!("parameter {} is given twice", excerpt(n)),
                    );
                }
                names.push(n);
            }
            None => positional += 1,
        }
        let ok = check_parameter_value(&kind, f.get(&kind), &f.path_of(&kind), errors);
        if ok {
            out.push(p.clone());
        }
    }
    if named > 0 && positional > 0 {
        errors.add(list_path, "mixed_parameter_formats", format!("parameters must be all named (with `parameter_name`) or all positional; got {named} named and {positional} positional"));
    }
    out
}

/// Checks a parameter's value (under the key named by its type); whether it is usable.
fn check_parameter_value(
    kind: &str,
    value: Option<&Value>,
    value_path: &str,
    errors: &mut Errors,
) -> bool {
    match (kind, value) {
        (_, None) => {
            errors.add(
                value_path,
                "missing",
                format!("a {kind} parameter needs its value in `{kind}`"),
            );
            false
        }
        ("text", Some(v)) | ("payload", Some(v)) => check_string(v, value_path, kind, None, errors),
        ("coupon_code", Some(v)) => {
            check_string(v, value_path, "coupon_code", Some(COUPON_CODE_MAX), errors)
        }
        ("currency", Some(v)) => check_currency(v, value_path, errors),
        ("date_time", Some(v)) => check_date_time(v, value_path, errors),
        ("image" | "video" | "document", Some(v)) => {
            check_media(v, value_path, kind, false, errors)
        }
        ("location", Some(v)) => check_location(v, value_path, errors),
        // A product card's header: the catalog product it shows.
        ("product", Some(v)) => {
            let ok = ["product_retailer_id", "catalog_id"].iter().all(|k| {
                v.get(k)
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty())
            });
            if !ok {
                errors.add(
                    value_path,
                    "invalid_product",
                    "a product parameter is {\"product_retailer_id\", \"catalog_id\"}",
                );
            }
            ok
        }
        ("limited_time_offer", Some(v)) => match v.get("expiration_time_ms") {
            Some(ms) if ms.as_u64().is_some() => true,
            _ => {
                errors.add(
                    format!("{value_path}/expiration_time_ms"),
                    "expected_integer",
                    "`expiration_time_ms` is the offer's end in ms since the Unix epoch",
                );
                false
            }
        },
        ("action", Some(v)) => {
            if v.is_object() {
                true
            } else {
                errors.add(
                    value_path,
                    "expected_object",
                    format!(
                        "`action` must be an object with flow_token / flow_action_data, got {}",
                        type_name(v)
                    ),
                );
                false
            }
        }
        _ => true,
    }
}

fn check_string(
    v: &Value,
    path: &str,
    what: &str,
    max: Option<usize>,
    errors: &mut Errors,
) -> bool {
    match v.as_str() {
        Some(s) if !s.is_empty() => max.is_none_or(|m| errors.check_len(path, what, s, m)),
        Some(_) => {
            errors.add(path, "empty", format!("`{what}` must not be empty"));
            false
        }
        None => {
            errors.add(
                path,
                "expected_string",
                format!("`{what}` must be a string, got {}", type_name(v)),
            );
            false
        }
    }
}

fn check_currency(v: &Value, path: &str, errors: &mut Errors) -> bool {
    let before = errors.len();
    if let Some(f) = Fields::of(v, path, "`currency`", errors) {
        f.reject_unknown(&["fallback_value", "code", "amount_1000"], errors);
        f.text("fallback_value", true, errors);
        if let Some(code) = f.str("code", true, errors)
            && !(code.len() == 3 && code.chars().all(|c| c.is_ascii_uppercase()))
        {
            errors.add(
                f.path_of("code"),
                "invalid_currency_code",
                format!(
                    "`code` is an ISO 4217 code such as \"USD\", got {}",
                    excerpt(code)
                ),
            );
        }
        match f.get("amount_1000") {
            Some(n) if n.as_i64().is_some() => {}
            Some(other) => errors.add(
                f.path_of("amount_1000"),
                "expected_integer",
                format!("`amount_1000` is the amount × 1000 as an integer, got {other}"),
            ),
            None => errors.add(
                f.path_of("amount_1000"),
                "missing",
                "`amount_1000` is required (the amount × 1000)",
            ),
        }
    }
    errors.len() == before
}

fn check_date_time(v: &Value, path: &str, errors: &mut Errors) -> bool {
    let before = errors.len();
    if let Some(f) = Fields::of(v, path, "`date_time`", errors) {
        f.text("fallback_value", true, errors);
    }
    errors.len() == before
}

#[cfg(test)]
mod tests {
    use crate::payloads::build_body;
    use crate::payloads::tests::{content_of, request};
    use serde_json::{Value, json};

    #[test]
    fn meta_samples_round_trip() {
        for sample in [
            include_str!(
                "../../tests/fixtures/send-request-template-named-params-image-header.json"
            ),
            include_str!("../../tests/fixtures/send-request-template-authentication-otp.json"),
        ] {
            let (mut full, content) = content_of(sample);
            full["to"] = json!(format!(
                "+{}",
                full["to"].as_str().unwrap().trim_start_matches('+')
            ));
            let mut req = request(content);
            req.recipient = full["to"].as_str().unwrap().into();
            assert_eq!(build_body(&req).unwrap(), full);
        }
    }

    #[test]
    fn sdk_sample_with_currency_date_time_and_quick_replies() {
        let template: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/template-object-currency-datetime-quickreply-nodejs-sdk.json"
        ))
        .unwrap();
        let mut template = template;
        template["name"] = json!("order_update");
        template["language"]["code"] = json!("en_US");
        // The SDK sample's link is a placeholder ("http(s)://URL"), which is rightly refused.
        template["components"][0]["parameters"][0]["image"]["link"] =
            json!("https://example.com/a.png");
        let body = build_body(&request(json!({"type":"template","template":template}))).unwrap();
        assert_eq!(
            body["template"]["components"][1]["parameters"][1]["currency"]["amount_1000"],
            1000
        );
        assert_eq!(body["template"]["components"][3]["index"], "1");
        assert_eq!(body["template"]["language"], json!({"code":"en_US"}));
    }

    #[test]
    fn limited_time_offer_template() {
        // Meta's LTO example: the offer component, and a copy-code button with an integer index.
        let body = build_body(&request(json!({"type":"template","template":{"name":"limited_offer","language":{"code":"en_US"},"components":[
            {"type":"header","parameters":[{"type":"image","image":{"link":"https://example.com/offer.png"}}]},
            {"type":"body","parameters":[{"type":"text","text":"Pablo"},{"type":"text","text":"CARIBE25"}]},
            {"type":"limited_time_offer","parameters":[{"type":"limited_time_offer","limited_time_offer":{"expiration_time_ms":1209600000}}]},
            {"type":"button","sub_type":"copy_code","index":2,"parameters":[{"type":"coupon_code","coupon_code":"CARIBE25"}]}]}})))
        .unwrap();
        assert_eq!(
            body["template"]["components"][2]["parameters"][0]["limited_time_offer"]["expiration_time_ms"],
            1209600000
        );
        assert_eq!(body["template"]["components"][3]["index"], "2");
        let bad = build_body(&request(json!({"type":"template","template":{"name":"limited_offer","language":"en_US","components":[
            {"type":"limited_time_offer","parameters":[{"type":"limited_time_offer","limited_time_offer":{"expiration_time_ms":"soon"}}]}]}}))).unwrap_err();
        assert_eq!(
            bad[0].path,
            "/content/template/components/0/parameters/0/limited_time_offer/expiration_time_ms"
        );
    }

    #[test]
    fn language_shorthand_and_integer_index_are_normalised() {
        let body = build_body(&request(json!({"type":"template","template":{"name":"otp","language":"en_US","components":[
            {"type":"button","sub_type":"URL","index":0,"parameters":[{"type":"text","text":"123456"}]}]}}))).unwrap();
        assert_eq!(body["template"]["language"]["code"], "en_US");
        assert_eq!(body["template"]["components"][0]["index"], "0");
        assert_eq!(body["template"]["components"][0]["sub_type"], "url");
    }

    #[test]
    fn parameter_errors_name_the_path() {
        let e = build_body(&request(json!({"type":"template","template":{"name":"x","language":"en-US","components":[
            {"type":"body","parameters":[{"type":"text","text":"a","parameter_name":"first"},{"type":"text","text":"b"}]},
            {"type":"header","parameters":[{"type":"image","image":{"id":"1","link":"https://x"}}]},
            {"type":"button","sub_type":"copy_code","index":"0","parameters":[{"type":"coupon_code","coupon_code":"ABCDEFGHIJKLMNOP"}]}
        ]}}))).unwrap_err();
        let got: Vec<_> = e
            .iter()
            .map(|e| (e.path.as_str(), e.code.as_str()))
            .collect();
        assert!(
            got.contains(&("/content/template/language", "unsupported_language")),
            "{got:?}"
        );
        assert!(
            got.contains(&(
                "/content/template/components/0/parameters",
                "mixed_parameter_formats"
            )),
            "{got:?}"
        );
        assert!(
            got.contains(&(
                "/content/template/components/1/parameters/0/image",
                "id_and_link"
            )),
            "{got:?}"
        );
        assert!(
            got.contains(&(
                "/content/template/components/2/parameters/0/coupon_code",
                "too_long"
            )),
            "{got:?}"
        );
    }
}
