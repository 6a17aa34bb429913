//! Interactive media carousels (free-form, inside the service window) and call-permission
//! requests.
//!
//! A carousel is a body plus `action.cards`: 2–10 cards, each `{"card_index", "type",
//! "header", "body"?, "action"}` with an image or video header; every card has the same kind
//! of action, either `cta_url` (one URL button) or quick replies (`type: "button"`, 1–2
//! `quick_reply` buttons), and the same number of buttons.

use super::{bounded, check_cta, check_header, limits};
use crate::field_errors::{Errors, Fields, excerpt, index};
use serde_json::Value;

/// `action` of a carousel message.
pub(super) fn check_carousel(a: &Fields, errors: &mut Errors) {
    a.reject_unknown(&["cards"], errors);
    let Some(cards) = a.array("cards", true, errors) else {
        return;
    };
    let path = a.path_of("cards");
    let (lo, hi) = limits::CAROUSEL_CARDS;
    if !(lo..=hi).contains(&cards.len()) {
        errors.add(
            &path,
            "card_count",
            format!("a carousel has {lo}–{hi} cards, got {}", cards.len()),
        );
    }
    let mut first: Option<(String, usize)> = None;
    let mut indices: Vec<u64> = Vec::new();
    for (i, card) in cards.iter().enumerate() {
        let Some(c) = Fields::of(card, index(&path, i), "a carousel card", errors) else {
            continue;
        };
        match c.get("card_index").and_then(Value::as_u64) {
            Some(n) if n < hi as u64 && !indices.contains(&n) => indices.push(n),
            Some(n) if indices.contains(&n) => errors.add(
                c.path_of("card_index"),
                "duplicate_card_index",
                format!("card_index {n} is given twice"),
            ),
            _ => errors.add(
                c.path_of("card_index"),
                "invalid_card_index",
                format!("`card_index` is the card's position, 0–{}", hi - 1),
            ),
        }
        let Some(shape) = check_card(&c, errors) else {
            continue;
        };
        match &first {
            None => first = Some(shape),
            Some(f) if *f != shape => errors.add(
                c.path_of("action"),
                "cards_not_uniform",
                format!(
                    "every card has the same buttons; card 0 has {} × {}, this one {} × {}",
                    f.1, f.0, shape.1, shape.0
                ),
            ),
            Some(_) => {}
        }
    }
}

/// One card; returns its button kind and count.
fn check_card(c: &Fields, errors: &mut Errors) -> Option<(String, usize)> {
    c.reject_unknown(&["card_index", "type", "header", "body", "action"], errors);
    match c.get("header") {
        Some(h) => {
            let kind = h.get("type").and_then(Value::as_str).unwrap_or_default();
            if matches!(kind, "image" | "video") {
                check_header(h, &c.path_of("header"), false, errors);
            } else {
                errors.add(
                    c.path_of("header"),
                    "invalid_header_type",
                    format!(
                        "a carousel card's header is an image or a video, got {}",
                        excerpt(kind)
                    ),
                );
            }
        }
        None => errors.add(
            c.path_of("header"),
            "missing",
            "every carousel card needs an image or video header",
        ),
    }
    if let Some(b) = c.get("body")
        && let Some(b) = Fields::of(b, c.path_of("body"), "`body`", errors)
    {
        b.reject_unknown(&["text"], errors);
        bounded(
            &b,
            "text",
            "card body text",
            limits::CAROUSEL_CARD_BODY,
            errors,
        );
    }
    let kind = c.str("type", true, errors)?;
    let action = c.get("action");
    let Some(a) = action.and_then(|a| Fields::of(a, c.path_of("action"), "`action`", errors))
    else {
        errors.add(
            c.path_of("action"),
            "missing",
            "every carousel card needs an `action`",
        );
        return None;
    };
    match kind {
        "cta_url" => {
            check_cta(&a, errors);
            Some(("cta_url".into(), 1))
        }
        "button" => Some(("quick_reply".into(), check_quick_replies(&a, errors))),
        other => {
            errors.add(
                c.path_of("type"),
                "invalid_card_type",
                format!(
                    "a carousel card is of type cta_url or button (quick replies), got {}",
                    excerpt(other)
                ),
            );
            None
        }
    }
}

fn check_quick_replies(a: &Fields, errors: &mut Errors) -> usize {
    a.reject_unknown(&["buttons"], errors);
    let Some(buttons) = a.array("buttons", true, errors) else {
        return 0;
    };
    let path = a.path_of("buttons");
    let max = limits::CAROUSEL_CARD_REPLY_BUTTONS;
    if buttons.is_empty() || buttons.len() > max {
        errors.add(
            &path,
            "invalid_count",
            format!(
                "a carousel card has 1 to {max} quick replies, got {}",
                buttons.len()
            ),
        );
    }
    for (i, b) in buttons.iter().enumerate() {
        let Some(b) = Fields::of(b, index(&path, i), "a button", errors) else {
            continue;
        };
        b.reject_unknown(&["type", "quick_reply"], errors);
        if b.str("type", true, errors)
            .is_some_and(|t| t != "quick_reply")
        {
            errors.add(
                b.path_of("type"),
                "invalid_button_type",
                "carousel card buttons have type \"quick_reply\"",
            );
        }
        match b
            .get("quick_reply")
            .and_then(|r| Fields::of(r, b.path_of("quick_reply"), "`quick_reply`", errors))
        {
            Some(r) => {
                r.reject_unknown(&["id", "title"], errors);
                bounded(&r, "id", "button id", limits::BUTTON_ID, errors);
                bounded(&r, "title", "button title", limits::BUTTON_TITLE, errors);
            }
            None => errors.add(
                b.path_of("quick_reply"),
                "missing",
                "each button needs `quick_reply: {id, title}`",
            ),
        }
    }
    buttons.len()
}

/// `action` of a call-permission request: `{"name": "call_permission_request"}`.
pub(super) fn check_call_permission(a: &Fields, errors: &mut Errors) {
    a.reject_unknown(&["name"], errors);
    if let Some(n) = a.str("name", true, errors)
        && n != "call_permission_request"
    {
        errors.add(
            a.path_of("name"),
            "invalid_action",
            format!(
                "this action's name is \"call_permission_request\", got {}",
                excerpt(n)
            ),
        );
    }
}
