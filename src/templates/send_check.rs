//! The send-time check: a template message against the approved template it names, catching
//! what Meta would answer with 132000 (parameter count), 132001 (template or language missing),
//! 132005 (hydrated text too long), 132012 (parameter format), 132015 (paused) and 132016
//! (disabled) before anything is sent.

mod carousel;

use crate::catalog::{Catalog, Definition};
use crate::field_errors::{Errors, excerpt, index, quoted};
use crate::meta_limits::templates as limits;
use crate::templates::{Variable, scan_variables};
use serde_json::Value;

/// Meta's limit on a hydrated body when the template has only a body.
pub use crate::meta_limits::template_sends::BODY_ONLY_HYDRATED as BODY_ONLY_HYDRATED_MAX;
/// Meta's limit on an authentication code.
pub use crate::meta_limits::template_sends::OTP as OTP_MAX;

/// Finds the definition a template message names and checks the message against it.
pub fn check_against_catalog(template: &Value, catalog: &Catalog, path: &str, errors: &mut Errors) {
    let name = template
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let language = template
        .pointer("/language/code")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match catalog.find(name, language) {
        Some(def) => check(template, def, path, errors),
        None => {
            let langs = catalog.languages_of(name);
            let msg = if langs.is_empty() {
                format!(
                    "no template named {} in the catalog (Meta would answer 132001)",
                    excerpt(name)
                )
            } else {
                format!(
                    "template {} exists in {} but not in {language} (Meta would answer 132001)",
                    excerpt(name),
                    langs.join(", ")
                )
            };
            errors.add(format!("{path}/name"), "template_not_found", msg);
        }
    }
}

/// What one template component asks of a message.
enum HeaderNeed {
    Text { vars: Vec<Variable>, text: String },
    Media(String),
    Location,
}

fn distinct(vars: Vec<Variable>) -> Vec<Variable> {
    let mut out: Vec<Variable> = Vec::new();
    for v in vars {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// The text a parameter contributes to hydrated text.
fn param_text(p: &Value) -> String {
    match str_of(p, "type").unwrap_or_default() {
        "text" => str_of(p, "text").unwrap_or_default().to_string(),
        "currency" => p
            .pointer("/currency/fallback_value")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        "date_time" => p
            .pointer("/date_time/fallback_value")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        _ => String::new(),
    }
}

/// Replaces variables in `text` with the values given for them.
fn hydrate(text: &str, values: &[(Variable, String)]) -> String {
    let mut out = text.to_string();
    for (var, value) in values {
        let placeholder = match var {
            Variable::Positional(n) => format!("{{{{{n}}}}}"),
            Variable::Named(n) => format!("{{{{{n}}}}}"),
        };
        out = out.replace(&placeholder, value);
    }
    out
}

/// What a message is checked against: one approved component list (the template's, or one
/// carousel card's) and how its variables are written.
struct Shape<'a> {
    /// `template "name" (language)`, or that plus `card N`.
    who: String,
    components: &'a [Value],
    named: bool,
    auth: bool,
    /// Hydrated body limit; `None` where Meta states none (carousel cards).
    body_max: Option<usize>,
}

impl Shape<'_> {
    fn component(&self, kind: &str) -> Option<&Value> {
        self.components.iter().find(|c| {
            c.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.eq_ignore_ascii_case(kind))
        })
    }
}

/// A message's component list and where it is.
struct Given<'a> {
    components: Vec<&'a Value>,
    path: String,
}

impl Given<'_> {
    fn find(&self, kind: &str) -> Option<usize> {
        self.components
            .iter()
            .position(|c| str_of(c, "type") == Some(kind))
    }
}

/// Checks a message's template object against a definition.
pub fn check(template: &Value, def: &Definition, path: &str, errors: &mut Errors) {
    let who = format!("template {} ({})", quoted(&def.name), def.language);
    match def.status.as_str() {
        "APPROVED" => {}
        "PAUSED" => errors.add(format!("{path}/name"), "template_paused", format!("{who} is paused for low quality (Meta would answer 132015); it is usable again after the pause")),
        "DISABLED" => errors.add(format!("{path}/name"), "template_disabled", format!("{who} is disabled (Meta would answer 132016); create a new template")),
        other => errors.add(format!("{path}/name"), "template_not_approved", format!("{who} is {other}, not APPROVED; only approved templates can be sent (Meta would answer 132001)")),
    }
    let given = Given {
        components: template
            .get("components")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default(),
        path: format!("{path}/components"),
    };
    let body_only = def
        .components
        .iter()
        .all(|c| str_of(c, "type").is_some_and(|t| t.eq_ignore_ascii_case("BODY")));
    let shape = Shape {
        who,
        components: &def.components,
        named: def.named,
        auth: def.category == "AUTHENTICATION",
        body_max: Some(if body_only {
            BODY_ONLY_HYDRATED_MAX
        } else {
            limits::BODY_TEXT
        }),
    };
    check_parts(&given, &shape, errors);
    carousel::check(&given, &shape, errors);
}

/// The header, body and buttons of one component list.
fn check_parts(given: &Given, shape: &Shape, errors: &mut Errors) {
    check_header(given, shape, errors);
    let otp = check_body(given, shape, errors);
    check_buttons(given, shape, otp.as_deref(), errors);
}

fn header_need(shape: &Shape) -> Option<HeaderNeed> {
    let h = shape.component("HEADER")?;
    match str_of(h, "format")
        .unwrap_or("TEXT")
        .to_ascii_uppercase()
        .as_str()
    {
        "TEXT" => {
            let text = str_of(h, "text").unwrap_or_default().to_string();
            let vars = distinct(scan_variables(&text).variables);
            (!vars.is_empty()).then_some(HeaderNeed::Text { vars, text })
        }
        "LOCATION" => Some(HeaderNeed::Location),
        other => Some(HeaderNeed::Media(other.to_ascii_lowercase())),
    }
}

fn check_header(given: &Given, shape: &Shape, errors: &mut Errors) {
    let who = &shape.who;
    let comps_path = &given.path;
    let need = header_need(shape);
    match (&need, given.find("header")) {
        (None, Some(i)) => errors.add(index(comps_path, i), "unexpected_component", format!("{who} has no header parameters; remove this header component (Meta would answer 132000)")),
        (Some(need), None) => {
            let want = match need {
                HeaderNeed::Text { .. } => "a header component with 1 text parameter".to_string(),
                HeaderNeed::Media(kind) => format!("a header component with 1 {kind} parameter"),
                HeaderNeed::Location => "a header component with 1 location parameter".to_string(),
            };
            errors.add(comps_path, "missing_component", format!("{who} needs {want} (Meta would answer 132000)"));
        }
        (Some(need), Some(i)) => {
            let p = index(comps_path, i);
            let params = params_of(given.components[i]);
            if params.len() != 1 {
                errors.add(format!("{p}/parameters"), "parameter_count_mismatch", format!("{who}'s header takes 1 parameter, got {} (Meta would answer 132000)", params.len()));
                return;
            }
            let got = str_of(params[0], "type").unwrap_or_default();
            let want = match need {
                HeaderNeed::Text { .. } => "text",
                HeaderNeed::Media(kind) => kind.as_str(),
                HeaderNeed::Location => "location",
            };
            if got != want {
                errors.add(format!("{p}/parameters/0/type"), "parameter_type_mismatch", format!("{who}'s header is {}, so its parameter must be of type {want}, got {got} (Meta would answer 132012)", want.to_ascii_uppercase()));
            } else if let HeaderNeed::Text { vars, text } = need {
                check_names(&[params[0]], vars, shape.named, &format!("{p}/parameters"), who, "header", errors);
                let hydrated = hydrate(text, &[(vars[0].clone(), param_text(params[0]))]);
                let n = hydrated.chars().count();
                if n > limits::HEADER_TEXT {
                    errors.add(format!("{p}/parameters/0"), "hydrated_text_too_long", format!("{who}'s header with this value is {n} characters; the limit is {} (Meta would answer 132005)", limits::HEADER_TEXT));
                }
            }
        }
        (None, None) => {}
    }
}

/// Checks the body's parameters; returns the authentication code it carries, if any.
fn check_body(given: &Given, shape: &Shape, errors: &mut Errors) -> Option<String> {
    let who = &shape.who;
    let body_text = shape
        .component("BODY")
        .and_then(|b| str_of(b, "text"))
        .map(str::to_string);
    // An authentication body is fixed ("{{1}} is your verification code."): one code.
    let body_vars = match &body_text {
        Some(t) => distinct(scan_variables(t).variables),
        None if shape.auth => vec![Variable::Positional(1)],
        None => vec![],
    };
    let body_at = given.find("body");
    let body_params: Vec<&Value> = body_at
        .map(|i| params_of(given.components[i]))
        .unwrap_or_default();
    let Some(bp) = body_at.map(|i| format!("{}/parameters", index(&given.path, i))) else {
        if !body_vars.is_empty() {
            errors.add(&given.path, "parameter_count_mismatch", format!("{who}'s body has {} variable(s) but the message gives 0 parameter(s) (Meta would answer 132000)", body_vars.len()));
        }
        return None;
    };
    if body_params.len() != body_vars.len() {
        errors.add(&bp, "parameter_count_mismatch", format!("{who}'s body has {} variable(s) but the message gives {} parameter(s) (Meta would answer 132000)", body_vars.len(), body_params.len()));
        return None;
    }
    check_names(
        &body_params,
        &body_vars,
        shape.named,
        &bp,
        who,
        "body",
        errors,
    );
    if let (Some(text), Some(max)) = (&body_text, shape.body_max) {
        let values: Vec<(Variable, String)> = if shape.named {
            body_params
                .iter()
                .map(|p| {
                    let name = str_of(p, "parameter_name").unwrap_or_default().to_string();
                    (Variable::Named(name), param_text(p))
                })
                .collect()
        } else {
            body_vars
                .iter()
                .cloned()
                .zip(body_params.iter().map(|p| param_text(p)))
                .collect()
        };
        let n = hydrate(text, &values).chars().count();
        if n > max {
            errors.add(&bp, "hydrated_text_too_long", format!("{who}'s body with these values is {n} characters; the limit is {max} (Meta would answer 132005)"));
        }
    }
    let code = shape
        .auth
        .then(|| body_params.first().map(|p| param_text(p)))??;
    check_otp_length(&code, &bp, errors);
    Some(code)
}

fn check_otp_length(code: &str, body_path: &str, errors: &mut Errors) {
    if code.chars().count() > OTP_MAX {
        errors.add(
            format!("{body_path}/0"),
            "otp_too_long",
            format!(
                "an authentication code is at most {OTP_MAX} characters, got {}",
                code.chars().count()
            ),
        );
    }
}

/// What a message's button component must be for one approved button:
/// (sub_type, min and max parameters, parameter type).
fn button_need(kind: &str, url: &str, auth: bool) -> (&'static str, usize, usize, &'static str) {
    match kind {
        "URL" if auth => ("url", 1, 1, "text"),
        "URL" if url.contains("{{") => ("url", 1, 1, "text"),
        "URL" => ("url", 0, 0, "text"),
        "OTP" => ("url", 1, 1, "text"),
        "QUICK_REPLY" => ("quick_reply", 0, 1, "payload"),
        "COPY_CODE" => ("copy_code", 1, 1, "coupon_code"),
        "FLOW" => ("flow", 0, 1, "action"),
        // Catalog buttons: the product(s) shown travel as an `action` parameter.
        "MPM" => ("mpm", 1, 1, "action"),
        "CATALOG" => ("catalog", 0, 1, "action"),
        "SPM" => ("spm", 0, 1, "action"),
        _ => ("", 0, 0, ""),
    }
}

fn check_buttons(given: &Given, shape: &Shape, otp: Option<&str>, errors: &mut Errors) {
    let def_buttons: Vec<&Value> = shape
        .component("BUTTONS")
        .and_then(|b| b.get("buttons"))
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let mut covered = vec![false; def_buttons.len()];
    for (i, c) in given.components.iter().enumerate() {
        if str_of(c, "type") != Some("button") {
            continue;
        }
        let p = index(&given.path, i);
        let idx: usize = str_of(c, "index")
            .and_then(|s| s.parse().ok())
            .unwrap_or(usize::MAX);
        let Some(button) = def_buttons.get(idx) else {
            errors.add(
                format!("{p}/index"),
                "unknown_button",
                format!(
                    "{} has {} button(s); there is no button at index {}",
                    shape.who,
                    def_buttons.len(),
                    str_of(c, "index").unwrap_or("?")
                ),
            );
            continue;
        };
        covered[idx] = true;
        check_button(c, button, idx, &p, shape, otp, errors);
    }
    for (idx, button) in def_buttons.iter().enumerate() {
        let kind = str_of(button, "type")
            .unwrap_or_default()
            .to_ascii_uppercase();
        let needs = match kind.as_str() {
            "URL" => shape.auth || str_of(button, "url").unwrap_or_default().contains("{{"),
            "OTP" | "COPY_CODE" => true,
            _ => false,
        };
        if needs && !covered[idx] {
            let sub = if kind == "COPY_CODE" {
                "copy_code"
            } else {
                "url"
            };
            errors.add(&given.path, "missing_component", format!("{}'s {kind} button {idx} needs a value: add {{\"type\":\"button\",\"sub_type\":\"{sub}\",\"index\":\"{idx}\",\"parameters\":[…]}} (Meta would answer 132000)", shape.who));
        }
    }
}

/// One button component against the approved button at its index.
fn check_button(
    c: &Value,
    button: &Value,
    idx: usize,
    p: &str,
    shape: &Shape,
    otp: Option<&str>,
    errors: &mut Errors,
) {
    let who = &shape.who;
    let kind = str_of(button, "type")
        .unwrap_or_default()
        .to_ascii_uppercase();
    let sub = str_of(c, "sub_type").unwrap_or_default();
    let url = str_of(button, "url").unwrap_or_default();
    let (want_sub, min, max, param_type) = button_need(&kind, url, shape.auth);
    if sub != want_sub {
        let expected = if want_sub.is_empty() {
            "no parameters".to_string()
        } else {
            format!("sub_type {}", quoted(want_sub))
        };
        errors.add(
            format!("{p}/sub_type"),
            "button_mismatch",
            format!("{who}'s button {idx} is {kind}, which takes {expected}; got sub_type {sub:?}"),
        );
        return;
    }
    let params = params_of(c);
    if params.len() < min || params.len() > max {
        let want = if min == max {
            format!("{min}")
        } else {
            format!("{min}–{max}")
        };
        errors.add(format!("{p}/parameters"), "parameter_count_mismatch", format!("{who}'s {kind} button {idx} takes {want} {param_type} parameter(s), got {} (Meta would answer 132000)", params.len()));
        return;
    }
    for (j, param) in params.iter().enumerate() {
        let got = str_of(param, "type").unwrap_or_default();
        if got != param_type {
            errors.add(format!("{p}/parameters/{j}/type"), "parameter_type_mismatch", format!("{who}'s {kind} button {idx} takes a {param_type} parameter, got {got} (Meta would answer 132012)"));
        }
    }
    if kind == "URL" && want_sub == "url" && min == 1 && !shape.auth {
        let value = params.first().map(|p| param_text(p)).unwrap_or_default();
        let n = url.replace("{{1}}", &value).chars().count();
        if n > limits::BUTTON_URL {
            errors.add(
                format!("{p}/parameters/0"),
                "hydrated_text_too_long",
                format!(
                    "the button URL with this value is {n} characters; the limit is {}",
                    limits::BUTTON_URL
                ),
            );
        }
    }
    if let Some(code) = otp
        && shape.auth
        && want_sub == "url"
    {
        let given = params.first().map(|p| param_text(p)).unwrap_or_default();
        if given != code {
            errors.add(
                format!("{p}/parameters/0"),
                "otp_mismatch",
                "an authentication template carries the same code in the body and in the button"
                    .to_string(),
            );
        }
    }
}

fn params_of(c: &Value) -> Vec<&Value> {
    c.get("parameters")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

/// Named templates need every variable by name; positional ones take none.
fn check_names(
    params: &[&Value],
    vars: &[Variable],
    named: bool,
    path: &str,
    who: &str,
    part: &str,
    errors: &mut Errors,
) {
    let given: Vec<Option<&str>> = params.iter().map(|p| str_of(p, "parameter_name")).collect();
    if !named {
        if let Some(j) = given.iter().position(Option::is_some) {
            errors.add(format!("{path}/{j}/parameter_name"), "parameter_format_mismatch", format!("{who} uses positional parameters; remove `parameter_name` (Meta would answer 132012)"));
        }
        return;
    }
    for (j, g) in given.iter().enumerate() {
        match g {
            None => errors.add(format!("{path}/{j}"), "parameter_format_mismatch", format!("{who} uses named parameters; give this one a `parameter_name` (Meta would answer 132012)")),
            Some(n) if !vars.iter().any(|v| matches!(v, Variable::Named(x) if x == n)) => {
                let names: Vec<String> = vars.iter().map(|v| match v {
                    Variable::Named(x) => x.clone(),
                    Variable::Positional(k) => k.to_string(),
                }).collect();
                errors.add(format!("{path}/{j}/parameter_name"), "unknown_parameter", format!("{who}'s {part} has no variable {{{{{n}}}}}; its variables are {}", names.join(", ")));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(value: Value) -> Definition {
        let mut c = Catalog::default();
        let mut e = Errors::new();
        c.apply(&value, "", &mut e);
        assert!(e.is_empty());
        c.templates.remove(0)
    }

    fn codes(template: Value, d: &Definition) -> Vec<(String, String)> {
        let mut e = Errors::new();
        check(&template, d, "/content/template", &mut e);
        e.into_vec().into_iter().map(|e| (e.path, e.code)).collect()
    }

    fn order_confirmation() -> Definition {
        let mut t: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/template-create-utility-positional-document-header.json"
        ))
        .unwrap();
        t["status"] = json!("APPROVED");
        def(t)
    }

    fn ok_message() -> Value {
        json!({"name":"order_confirmation","language":{"code":"en_US"},"components":[
            {"type":"header","parameters":[{"type":"document","document":{"id":"1"}}]},
            {"type":"body","parameters":[{"type":"text","text":"Pablo"},{"type":"text","text":"860198"}]}]})
    }

    #[test]
    fn catalog_buttons_take_their_product_action() {
        let d = def(
            json!({"name": "spring_catalog", "language": "en_US", "status": "APPROVED", "category": "MARKETING",
            "components": [{"type": "BODY", "text": "Our spring picks are in."},
                {"type": "BUTTONS", "buttons": [{"type": "MPM", "text": "View items"}]}]}),
        );
        let msg = |params: Value| {
            json!({"name": "spring_catalog", "language": {"code": "en_US"}, "components": [
            {"type": "button", "sub_type": "mpm", "index": "0", "parameters": params}]})
        };
        let action = json!([{"type": "action", "action": {"thumbnail_product_retailer_id": "sku-1",
            "sections": [{"title": "Picks", "product_items": [{"product_retailer_id": "sku-1"}]}]}}]);
        assert_eq!(codes(msg(action), &d), vec![]);
        assert_eq!(
            codes(msg(json!([])), &d),
            vec![(
                "/content/template/components/0/parameters".into(),
                "parameter_count_mismatch".into()
            )]
        );
    }

    #[test]
    fn matching_message_passes() {
        assert_eq!(codes(ok_message(), &order_confirmation()), vec![]);
    }

    #[test]
    fn count_type_and_status() {
        let d = order_confirmation();
        let mut m = ok_message();
        m["components"][1]["parameters"]
            .as_array_mut()
            .unwrap()
            .pop();
        assert!(codes(m, &d).contains(&(
            "/content/template/components/1/parameters".into(),
            "parameter_count_mismatch".into()
        )));
        let mut m = ok_message();
        m["components"][0]["parameters"][0] = json!({"type":"image","image":{"id":"1"}});
        assert!(codes(m, &d).contains(&(
            "/content/template/components/0/parameters/0/type".into(),
            "parameter_type_mismatch".into()
        )));
        let mut m = ok_message();
        m["components"].as_array_mut().unwrap().remove(0);
        assert!(codes(m, &d).contains(&(
            "/content/template/components".into(),
            "missing_component".into()
        )));
        for (status, code) in [
            ("PAUSED", "template_paused"),
            ("DISABLED", "template_disabled"),
            ("PENDING", "template_not_approved"),
        ] {
            let mut d = order_confirmation();
            d.status = status.into();
            assert!(
                codes(ok_message(), &d).contains(&("/content/template/name".into(), code.into()))
            );
        }
    }

    #[test]
    fn named_parameters_must_match_by_name() {
        let mut t: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/template-create-utility-named-params.json"
        ))
        .unwrap();
        t["status"] = json!("APPROVED");
        let d = def(t);
        let sample: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/send-request-template-named-params-image-header.json"
        ))
        .unwrap();
        assert_eq!(codes(sample["template"].clone(), &d), vec![]);
        let mut wrong = sample["template"].clone();
        wrong["components"][1]["parameters"][1]["parameter_name"] = json!("weekday");
        assert!(codes(wrong, &d).contains(&(
            "/content/template/components/1/parameters/1/parameter_name".into(),
            "unknown_parameter".into()
        )));
        let mut positional = sample["template"].clone();
        for p in positional["components"][1]["parameters"]
            .as_array_mut()
            .unwrap()
        {
            p.as_object_mut().unwrap().remove("parameter_name");
        }
        assert!(
            codes(positional, &d)
                .iter()
                .any(|(_, c)| c == "parameter_format_mismatch")
        );
    }

    #[test]
    fn authentication_code_in_body_and_button() {
        let d = def(
            json!({"name":"verification_code","language":"en_US","status":"APPROVED","category":"AUTHENTICATION","components":[
            {"type":"BODY","text":"*{{1}}* is your verification code."},
            {"type":"BUTTONS","buttons":[{"type":"URL","text":"Copy code","url":"https://www.whatsapp.com/otp/code/?otp_type=COPY_CODE&code_expiration_minutes=10&code={{1}}"}]}]}),
        );
        let sample: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/send-request-template-authentication-otp.json"
        ))
        .unwrap();
        assert_eq!(codes(sample["template"].clone(), &d), vec![]);
        let mut mismatch = sample["template"].clone();
        mismatch["components"][1]["parameters"][0]["text"] = json!("OTHER");
        assert!(codes(mismatch, &d).iter().any(|(_, c)| c == "otp_mismatch"));
        let mut long = sample["template"].clone();
        long["components"][0]["parameters"][0]["text"] = json!("1234567890123456");
        long["components"][1]["parameters"][0]["text"] = json!("1234567890123456");
        assert!(codes(long, &d).iter().any(|(_, c)| c == "otp_too_long"));
        let mut no_button = sample["template"].clone();
        no_button["components"].as_array_mut().unwrap().pop();
        assert!(
            codes(no_button, &d)
                .iter()
                .any(|(_, c)| c == "missing_component")
        );
    }

    #[test]
    fn hydrated_body_limit() {
        let d = def(
            json!({"name":"t","language":"en","status":"APPROVED","category":"UTILITY","components":[
            {"type":"HEADER","format":"TEXT","text":"Hello"},
            {"type":"BODY","text":"Dear {{1}}, thanks."}]}),
        );
        let m = |len: usize| json!({"name":"t","language":{"code":"en"},"components":[{"type":"body","parameters":[{"type":"text","text":"x".repeat(len)}]}]});
        assert_eq!(codes(m(1024 - 14), &d), vec![]);
        assert!(
            codes(m(1024 - 13), &d)
                .iter()
                .any(|(_, c)| c == "hydrated_text_too_long")
        );
    }

    #[test]
    fn buttons_by_index_and_sub_type() {
        let d = def(
            json!({"name":"t","language":"en","status":"APPROVED","category":"MARKETING","components":[
            {"type":"BODY","text":"Hi there, a sale."},
            {"type":"BUTTONS","buttons":[{"type":"QUICK_REPLY","text":"Stop"},{"type":"URL","text":"Shop","url":"https://x.com/s/{{1}}"},{"type":"COPY_CODE","example":"SAVE10"}]}]}),
        );
        let ok = json!({"name":"t","language":{"code":"en"},"components":[
            {"type":"button","sub_type":"quick_reply","index":"0","parameters":[{"type":"payload","payload":"STOP"}]},
            {"type":"button","sub_type":"url","index":"1","parameters":[{"type":"text","text":"summer"}]},
            {"type":"button","sub_type":"copy_code","index":"2","parameters":[{"type":"coupon_code","coupon_code":"SAVE10"}]}]});
        assert_eq!(codes(ok.clone(), &d), vec![]);
        let mut wrong = ok.clone();
        wrong["components"][1]["sub_type"] = json!("quick_reply");
        assert!(
            codes(wrong, &d)
                .iter()
                .any(|(p, c)| p == "/content/template/components/1/sub_type"
                    && c == "button_mismatch")
        );
        let mut missing = ok.clone();
        missing["components"].as_array_mut().unwrap().remove(2);
        assert!(
            codes(missing, &d)
                .iter()
                .any(|(_, c)| c == "missing_component")
        );
        let mut beyond = ok;
        beyond["components"][0]["index"] = json!("7");
        assert!(codes(beyond, &d).iter().any(|(_, c)| c == "unknown_button"));
    }
}
