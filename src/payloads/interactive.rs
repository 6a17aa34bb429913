//! `interactive` messages: reply buttons, lists, call-to-action URLs and Flows, with Meta's
//! per-variant limits (the body limit differs: 4,096 for lists, 1,024 otherwise).

use crate::field_errors::{Errors, Fields, excerpt, index, quoted};
use serde_json::Value;

pub use crate::meta_limits::interactive as limits;

/// The interactive variants this channel sends.
pub const VARIANTS: &[&str] = &[
    "button",
    "list",
    "cta_url",
    "flow",
    "carousel",
    "call_permission_request",
];

mod carousel;

pub fn build(content: &Fields, errors: &mut Errors) -> Option<Value> {
    let i = super::type_object(content, "interactive", errors)?;
    let before = errors.len();
    i.reject_unknown(&["type", "header", "body", "footer", "action"], errors);
    let kind = i.str("type", true, errors)?;
    if !VARIANTS.contains(&kind) {
        errors.add(
            i.path_of("type"),
            "unsupported_interactive_type",
            format!(
                "interactive type {} is not one of {}",
                excerpt(kind),
                VARIANTS.join(", ")
            ),
        );
        return None;
    }
    match i.get("header") {
        // A carousel's media are on its cards.
        Some(_) if kind == "carousel" => errors.add(
            i.path_of("header"),
            "not_allowed",
            "a carousel has no header: each card has its own",
        ),
        Some(h) => check_header(h, &i.path_of("header"), kind == "list", errors),
        None => {}
    }
    let body_max = if kind == "list" {
        limits::LIST_BODY_TEXT
    } else {
        limits::BODY_TEXT
    };
    match i.get("body") {
        Some(b) => {
            if let Some(b) = Fields::of(b, i.path_of("body"), "`body`", errors) {
                b.reject_unknown(&["text"], errors);
                if let Some(t) = b.text("text", true, errors) {
                    errors.check_len(&b.path_of("text"), "body text", t, body_max);
                }
            }
        }
        None => errors.add(
            i.path_of("body"),
            "missing",
            format!("an interactive {kind} message needs `body.text`"),
        ),
    }
    if let Some(f) = i.get("footer")
        && let Some(f) = Fields::of(f, i.path_of("footer"), "`footer`", errors)
    {
        f.reject_unknown(&["text"], errors);
        if let Some(t) = f.text("text", true, errors) {
            errors.check_len(&f.path_of("text"), "footer text", t, limits::FOOTER_TEXT);
        }
    }
    match i.get("action") {
        None => errors.add(
            i.path_of("action"),
            "missing",
            format!("an interactive {kind} message needs an `action`"),
        ),
        Some(a) => {
            if let Some(a) = Fields::of(a, i.path_of("action"), "`action`", errors) {
                match kind {
                    "button" => check_buttons(&a, errors),
                    "list" => check_list(&a, errors),
                    "cta_url" => check_cta(&a, errors),
                    "carousel" => carousel::check_carousel(&a, errors),
                    "call_permission_request" => carousel::check_call_permission(&a, errors),
                    _ => check_flow(&a, errors),
                }
            }
        }
    }
    (errors.len() == before)
        .then(|| content.get("interactive").cloned())
        .flatten()
}

fn check_header(h: &Value, path: &str, text_only: bool, errors: &mut Errors) {
    let Some(h) = Fields::of(h, path, "`header`", errors) else {
        return;
    };
    let Some(kind) = h.str("type", true, errors) else {
        return;
    };
    let allowed: &[&str] = if text_only {
        &["text"]
    } else {
        &["text", "image", "video", "document"]
    };
    if !allowed.contains(&kind) {
        errors.add(
            h.path_of("type"),
            "invalid_header_type",
            format!(
                "this header may be {}, got {}",
                allowed.join(", "),
                excerpt(kind)
            ),
        );
        return;
    }
    h.reject_unknown(&["type", kind], errors);
    if kind == "text" {
        if let Some(t) = h.text("text", true, errors) {
            errors.check_len(&h.path_of("text"), "header text", t, limits::HEADER_TEXT);
        }
    } else {
        match h.get(kind) {
            Some(m) => {
                super::media::check_media(m, &h.path_of(kind), kind, false, errors);
            }
            None => errors.add(
                h.path_of(kind),
                "missing",
                format!("a {kind} header needs its `{kind}` object"),
            ),
        }
    }
}

/// Checks a required string with a maximum length; returns it when present.
fn bounded<'a>(
    f: &Fields<'a>,
    key: &str,
    what: &str,
    max: usize,
    errors: &mut Errors,
) -> Option<&'a str> {
    let v = f.text(key, true, errors)?;
    errors.check_len(&f.path_of(key), what, v, max);
    Some(v)
}

fn check_buttons(a: &Fields, errors: &mut Errors) {
    a.reject_unknown(&["buttons"], errors);
    let Some(buttons) = a.array("buttons", true, errors) else {
        return;
    };
    let path = a.path_of("buttons");
    if buttons.is_empty() || buttons.len() > limits::REPLY_BUTTONS {
        errors.add(
            &path,
            "invalid_count",
            format!(
                "reply-button messages have 1 to {} buttons, got {}",
                limits::REPLY_BUTTONS,
                buttons.len()
            ),
        );
    }
    let mut ids: Vec<&str> = Vec::new();
    for (i, b) in buttons.iter().enumerate() {
        let Some(b) = Fields::of(b, index(&path, i), "a button", errors) else {
            continue;
        };
        b.reject_unknown(&["type", "reply"], errors);
        if let Some(t) = b.str("type", true, errors)
            && t != "reply"
        {
            errors.add(
                b.path_of("type"),
                "invalid_button_type",
                format!("reply buttons have type \"reply\", got {}", excerpt(t)),
            );
        }
        let Some(reply) = b.get("reply") else {
            errors.add(
                b.path_of("reply"),
                "missing",
                "each button needs `reply: {id, title}`",
            );
            continue;
        };
        let Some(r) = Fields::of(reply, b.path_of("reply"), "`reply`", errors) else {
            continue;
        };
        r.reject_unknown(&["id", "title"], errors);
        bounded(&r, "title", "button title", limits::BUTTON_TITLE, errors);
        if let Some(id) = bounded(&r, "id", "button id", limits::BUTTON_ID, errors) {
            if ids.contains(&id) {
                errors.add(
                    r.path_of("id"),
                    "duplicate_id",
                    format!(
                        "button id {} is used twice; ids must be unique",
                        excerpt(id)
                    ),
                );
            }
            ids.push(id);
        }
    }
}

fn check_list(a: &Fields, errors: &mut Errors) {
    a.reject_unknown(&["button", "sections"], errors);
    bounded(a, "button", "list button text", limits::LIST_BUTTON, errors);
    let Some(sections) = a.array("sections", true, errors) else {
        return;
    };
    let path = a.path_of("sections");
    if sections.is_empty() || sections.len() > limits::SECTIONS {
        errors.add(
            &path,
            "invalid_count",
            format!(
                "a list has 1 to {} sections, got {}",
                limits::SECTIONS,
                sections.len()
            ),
        );
    }
    let mut rows_total = 0;
    let mut ids: Vec<&str> = Vec::new();
    for (i, s) in sections.iter().enumerate() {
        let Some(s) = Fields::of(s, index(&path, i), "a section", errors) else {
            continue;
        };
        s.reject_unknown(&["title", "rows", "product_items"], errors);
        // Meta: a section title is required once there is more than one section.
        if sections.len() > 1 || s.get("title").is_some() {
            bounded(&s, "title", "section title", limits::SECTION_TITLE, errors);
        }
        let Some(rows) = s.array("rows", true, errors) else {
            continue;
        };
        if rows.is_empty() {
            errors.add(
                s.path_of("rows"),
                "invalid_count",
                "each section needs at least one row",
            );
        }
        rows_total += rows.len();
        for (j, row) in rows.iter().enumerate() {
            let Some(r) = Fields::of(row, index(&s.path_of("rows"), j), "a row", errors) else {
                continue;
            };
            r.reject_unknown(&["id", "title", "description"], errors);
            bounded(&r, "title", "row title", limits::ROW_TITLE, errors);
            if let Some(d) = r.str("description", false, errors) {
                errors.check_len(
                    &r.path_of("description"),
                    "row description",
                    d,
                    limits::ROW_DESCRIPTION,
                );
            }
            if let Some(id) = bounded(&r, "id", "row id", limits::ROW_ID, errors) {
                if ids.contains(&id) {
                    errors.add(
                        r.path_of("id"),
                        "duplicate_id",
                        format!(
                            "row id {} is used twice; ids must be unique across sections",
                            excerpt(id)
                        ),
                    );
                }
                ids.push(id);
            }
        }
    }
    if rows_total > limits::ROWS {
        errors.add(
            &path,
            "too_many_rows",
            format!(
                "a list has at most {} rows across all sections, got {rows_total}",
                limits::ROWS
            ),
        );
    }
}

fn parameters<'a>(a: &Fields<'a>, name: &str, errors: &mut Errors) -> Option<Fields<'a>> {
    a.reject_unknown(&["name", "parameters"], errors);
    match a.str("name", true, errors) {
        Some(n) if n == name => {}
        Some(n) => errors.add(
            a.path_of("name"),
            "invalid_action",
            format!("this action's name is {}, got {}", quoted(name), excerpt(n)),
        ),
        None => {}
    }
    match a.get("parameters") {
        Some(p) => Fields::of(p, a.path_of("parameters"), "`parameters`", errors),
        None => {
            errors.add(
                a.path_of("parameters"),
                "missing",
                format!("the {name} action needs `parameters`"),
            );
            None
        }
    }
}

fn check_cta(a: &Fields, errors: &mut Errors) {
    let Some(p) = parameters(a, "cta_url", errors) else {
        return;
    };
    p.reject_unknown(&["display_text", "url"], errors);
    bounded(
        &p,
        "display_text",
        "display_text",
        limits::CTA_DISPLAY_TEXT,
        errors,
    );
    if let Some(url) = p.text("url", true, errors)
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        errors.add(
            p.path_of("url"),
            "invalid_url",
            format!(
                "`url` must be an http:// or https:// URL, got {}",
                excerpt(url)
            ),
        );
    }
}

fn check_flow(a: &Fields, errors: &mut Errors) {
    let Some(p) = parameters(a, "flow", errors) else {
        return;
    };
    p.reject_unknown(
        &[
            "flow_message_version",
            "flow_token",
            "flow_id",
            "flow_name",
            "flow_cta",
            "flow_action",
            "flow_action_payload",
            "mode",
        ],
        errors,
    );
    match p.str("flow_message_version", true, errors) {
        Some("3") | None => {}
        Some(v) => errors.add(
            p.path_of("flow_message_version"),
            "invalid_value",
            format!("`flow_message_version` is \"3\", got {}", excerpt(v)),
        ),
    }
    let ids = ["flow_id", "flow_name"]
        .iter()
        .filter(|k| p.get(k).is_some())
        .count();
    if ids != 1 {
        errors.add(
            &p.path,
            "invalid_flow_reference",
            format!("give exactly one of `flow_id` and `flow_name`, got {ids}"),
        );
    }
    p.str("flow_id", false, errors);
    p.str("flow_name", false, errors);
    p.str("flow_token", false, errors);
    bounded(&p, "flow_cta", "flow_cta", limits::FLOW_CTA, errors);
    let action = p.str("flow_action", false, errors).unwrap_or("navigate");
    if !matches!(action, "navigate" | "data_exchange") {
        errors.add(
            p.path_of("flow_action"),
            "invalid_flow_action",
            format!(
                "`flow_action` is navigate or data_exchange, got {}",
                excerpt(action)
            ),
        );
    }
    if let Some(m) = p.str("mode", false, errors)
        && !matches!(m, "draft" | "published")
    {
        errors.add(
            p.path_of("mode"),
            "invalid_value",
            format!("`mode` is draft or published, got {}", excerpt(m)),
        );
    }
    match p.get("flow_action_payload") {
        Some(payload) => {
            if let Some(pl) = Fields::of(
                payload,
                p.path_of("flow_action_payload"),
                "`flow_action_payload`",
                errors,
            ) {
                pl.reject_unknown(&["screen", "data"], errors);
                if action == "navigate" {
                    pl.text("screen", true, errors);
                }
            }
        }
        None if action == "navigate" => errors.add(
            p.path_of("flow_action_payload"),
            "missing",
            "a navigate Flow needs `flow_action_payload.screen`",
        ),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use crate::payloads::build_body;
    use crate::payloads::tests::{content_of, request};
    use serde_json::{Value, json};

    #[test]
    fn meta_samples() {
        for sample in [
            include_str!("../../tests/fixtures/send-request-interactive-reply-buttons.json"),
            include_str!("../../tests/fixtures/send-request-interactive-list.json"),
            include_str!("../../tests/fixtures/send-request-interactive-cta-url.json"),
        ] {
            let (full, content) = content_of(sample);
            assert_eq!(build_body(&request(content)).unwrap(), full);
        }
    }

    fn errs(v: Value) -> Vec<(String, String)> {
        build_body(&request(v))
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.path, e.code))
            .collect()
    }

    fn buttons(n: usize, title_len: usize) -> Value {
        let b: Vec<Value> = (0..n).map(|i| json!({"type":"reply","reply":{"id":format!("b{i}"),"title":"t".repeat(title_len)}})).collect();
        json!({"type":"interactive","interactive":{"type":"button","body":{"text":"Pick"},"action":{"buttons":b}}})
    }

    #[test]
    fn reply_button_limits() {
        assert_eq!(errs(buttons(3, 20)), vec![]);
        assert!(errs(buttons(4, 5)).contains(&(
            "/content/interactive/action/buttons".into(),
            "invalid_count".into()
        )));
        assert!(errs(buttons(1, 21)).contains(&(
            "/content/interactive/action/buttons/0/reply/title".into(),
            "too_long".into()
        )));
        let mut dup = buttons(2, 5);
        dup["interactive"]["action"]["buttons"][1]["reply"]["id"] = json!("b0");
        assert!(errs(dup).contains(&(
            "/content/interactive/action/buttons/1/reply/id".into(),
            "duplicate_id".into()
        )));
        let mut long_id = buttons(1, 5);
        long_id["interactive"]["action"]["buttons"][0]["reply"]["id"] = json!("i".repeat(257));
        assert!(errs(long_id).iter().any(|(_, c)| c == "too_long"));
        let mut body = buttons(1, 5);
        body["interactive"]["body"]["text"] = json!("b".repeat(1025));
        assert!(errs(body).contains(&("/content/interactive/body/text".into(), "too_long".into())));
    }

    fn list(sections: usize, rows: usize) -> Value {
        let s: Vec<Value> = (0..sections)
            .map(|i| json!({"title": format!("S{i}"), "rows": (0..rows).map(|j| json!({"id": format!("r{i}-{j}"), "title": "Row", "description": "d"})).collect::<Vec<_>>()}))
            .collect();
        json!({"type":"interactive","interactive":{"type":"list","body":{"text":"b".repeat(4096)},"action":{"button":"Choose","sections":s}}})
    }

    #[test]
    fn list_limits() {
        assert_eq!(errs(list(2, 5)), vec![]);
        assert!(errs(list(2, 6)).contains(&(
            "/content/interactive/action/sections".into(),
            "too_many_rows".into()
        )));
        assert!(errs(list(11, 1)).iter().any(|(_, c)| c == "invalid_count"));
        let mut l = list(1, 1);
        l["interactive"]["header"] = json!({"type":"image","image":{"id":"1"}});
        assert!(errs(l).contains(&(
            "/content/interactive/header/type".into(),
            "invalid_header_type".into()
        )));
        let mut l = list(1, 1);
        l["interactive"]["action"]["sections"][0]["rows"][0]["description"] = json!("d".repeat(73));
        assert!(
            errs(l)
                .iter()
                .any(|(p, c)| p.ends_with("/description") && c == "too_long")
        );
        let mut l = list(1, 1);
        l["interactive"]["action"]["button"] = json!("b".repeat(21));
        assert!(
            errs(l)
                .iter()
                .any(|(p, c)| p.ends_with("/action/button") && c == "too_long")
        );
        let mut l = list(1, 1);
        l["interactive"]["body"]["text"] = json!("b".repeat(4097));
        assert!(errs(l).iter().any(|(_, c)| c == "too_long"));
        let mut two = list(2, 1);
        two["interactive"]["action"]["sections"][1]
            .as_object_mut()
            .unwrap()
            .remove("title");
        assert!(
            errs(two)
                .iter()
                .any(|(p, c)| p.ends_with("/sections/1/title") && c == "missing")
        );
    }

    fn card(i: usize, kind: &str, buttons: usize) -> Value {
        let action = if kind == "cta_url" {
            json!({"name": "cta_url", "parameters": {"display_text": "Buy", "url": "https://example.com"}})
        } else {
            let b: Vec<Value> = (0..buttons)
                .map(|j| json!({"type": "quick_reply", "quick_reply": {"id": format!("c{i}b{j}"), "title": "More"}}))
                .collect();
            json!({ "buttons": b })
        };
        json!({"card_index": i, "type": kind, "header": {"type": "image", "image": {"id": "1"}},
            "body": {"text": "Fresh"}, "action": action})
    }

    fn carousel(cards: Vec<Value>) -> Value {
        json!({"type": "interactive", "interactive": {"type": "carousel", "body": {"text": "Picks"},
            "action": {"cards": cards}}})
    }

    #[test]
    fn carousel_limits() {
        assert_eq!(
            errs(carousel(vec![card(0, "cta_url", 1), card(1, "cta_url", 1)])),
            vec![]
        );
        assert_eq!(
            errs(carousel(vec![card(0, "button", 2), card(1, "button", 2)])),
            vec![]
        );
        let p = "/content/interactive/action/cards";
        assert_eq!(
            errs(carousel(vec![card(0, "cta_url", 1)])),
            vec![(p.into(), "card_count".into())]
        );
        let eleven = (0..11).map(|i| card(i % 10, "cta_url", 1)).collect();
        assert!(errs(carousel(eleven)).contains(&(p.into(), "card_count".into())));
        assert!(
            errs(carousel(vec![card(0, "cta_url", 1), card(1, "button", 1)]))
                .contains(&(format!("{p}/1/action"), "cards_not_uniform".into()))
        );
        assert!(
            errs(carousel(vec![card(0, "button", 1), card(1, "button", 2)]))
                .contains(&(format!("{p}/1/action"), "cards_not_uniform".into()))
        );
        assert!(
            errs(carousel(vec![card(0, "button", 3), card(1, "button", 3)]))
                .contains(&(format!("{p}/0/action/buttons"), "invalid_count".into()))
        );
        assert!(
            errs(carousel(vec![card(0, "cta_url", 1), card(0, "cta_url", 1)]))
                .contains(&(format!("{p}/1/card_index"), "duplicate_card_index".into()))
        );
        let mut doc = carousel(vec![card(0, "cta_url", 1), card(1, "cta_url", 1)]);
        doc["interactive"]["action"]["cards"][1]["header"] =
            json!({"type": "document", "document": {"id": "1"}});
        doc["interactive"]["action"]["cards"][0]["body"]["text"] = json!("x".repeat(161));
        let got = errs(doc);
        assert!(
            got.contains(&(format!("{p}/1/header"), "invalid_header_type".into())),
            "{got:?}"
        );
        assert!(
            got.contains(&(format!("{p}/0/body/text"), "too_long".into())),
            "{got:?}"
        );
    }

    #[test]
    fn call_permission_request() {
        let ok = json!({"type": "interactive", "interactive": {"type": "call_permission_request",
            "body": {"text": "May we call you?"}, "action": {"name": "call_permission_request"}}});
        assert_eq!(errs(ok.clone()), vec![]);
        let mut bad = ok;
        bad["interactive"]["action"]["name"] = json!("call_me");
        assert_eq!(
            errs(bad),
            vec![(
                "/content/interactive/action/name".into(),
                "invalid_action".into()
            )]
        );
    }

    #[test]
    fn cta_and_flow() {
        let cta = |text: &str, url: &str| json!({"type":"interactive","interactive":{"type":"cta_url","body":{"text":"Go"},"action":{"name":"cta_url","parameters":{"display_text":text,"url":url}}}});
        assert_eq!(errs(cta("See dates", "https://x.com")), vec![]);
        assert!(
            errs(cta(&"d".repeat(21), "https://x.com"))
                .iter()
                .any(|(_, c)| c == "too_long")
        );
        assert!(
            errs(cta("See", "javascript:alert(1)"))
                .iter()
                .any(|(_, c)| c == "invalid_url")
        );
        let flow = json!({"type":"interactive","interactive":{"type":"flow","header":{"type":"text","text":"Book"},"body":{"text":"Book a table"},"action":{"name":"flow","parameters":{
            "flow_message_version":"3","flow_token":"tok","flow_id":"123","flow_cta":"Book now","flow_action":"navigate","flow_action_payload":{"screen":"WELCOME","data":{"a":1}}}}}});
        assert_eq!(errs(flow.clone()), vec![]);
        let mut both = flow.clone();
        both["interactive"]["action"]["parameters"]["flow_name"] = json!("booking");
        assert!(
            errs(both)
                .iter()
                .any(|(_, c)| c == "invalid_flow_reference")
        );
        let mut no_screen = flow;
        no_screen["interactive"]["action"]["parameters"]["flow_action_payload"] =
            json!({"data":{}});
        assert!(
            errs(no_screen)
                .iter()
                .any(|(p, c)| p.ends_with("/screen") && c == "missing")
        );
    }
}
