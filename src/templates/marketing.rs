//! Creation rules of the MARKETING-only template kinds: media-card and product-card
//! carousels, limited-time offers, and product headers (Meta's marketing template pages).
//!
//! - A carousel is the top-level BODY plus `{"type": "CAROUSEL", "cards": [...]}`: 2–10 cards
//!   (the count approved is the count every send must carry), each with an IMAGE or VIDEO
//!   header with a sample handle (or a PRODUCT header for product cards), an optional body
//!   (≤ 160; all cards or none) and 1–2 buttons; every card has the same shape.
//! - A limited-time offer has `{"type": "LIMITED_TIME_OFFER", "limited_time_offer": {"text"
//!   ≤ 16, "has_expiration"}}`, a body ≤ 600, no footer, an IMAGE or VIDEO header if any, and
//!   URL (required) and COPY_CODE buttons only.

use super::{Category, Ctx, check_body, check_buttons, check_header, limits};
use crate::field_errors::{Errors, Fields, excerpt, index, pointer};
use serde_json::Value;

fn marketing_only(c: &Fields, what: &str, ctx: &Ctx, errors: &mut Errors) {
    if matches!(
        ctx.category,
        Some(Category::Authentication | Category::Utility)
    ) {
        errors.add(
            c.path_of("type"),
            "marketing_only",
            format!("{what} templates are MARKETING only"),
        );
    }
}

fn upper(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_ascii_uppercase)
}

/// The shape every card must share: header format, whether it has a body, button types.
#[derive(PartialEq)]
struct CardShape {
    header: Option<String>,
    body: bool,
    buttons: Vec<String>,
}

impl CardShape {
    fn describe(&self) -> String {
        format!(
            "{} header, {}, buttons [{}]",
            self.header.as_deref().unwrap_or("no"),
            if self.body { "a body" } else { "no body" },
            self.buttons.join(", ")
        )
    }
}

/// The `CAROUSEL` component.
pub(super) fn check_carousel(c: &Fields, ctx: &Ctx, errors: &mut Errors) {
    marketing_only(c, "carousel", ctx, errors);
    let Some(cards) = c.array("cards", true, errors) else {
        return;
    };
    let list_path = c.path_of("cards");
    let (lo, hi) = limits::CAROUSEL_CARDS;
    if !(lo..=hi).contains(&cards.len()) {
        errors.add(
            &list_path,
            "card_count",
            format!("a carousel has {lo}–{hi} cards, got {}", cards.len()),
        );
    }
    let mut first: Option<CardShape> = None;
    for (i, card) in cards.iter().enumerate() {
        let path = index(&list_path, i);
        let Some(shape) = check_card(card, &path, ctx, errors) else {
            continue;
        };
        match &first {
            None => first = Some(shape),
            Some(f) if *f != shape => errors.add(
                &path,
                "cards_not_uniform",
                format!(
                    "every card has the same components; card 0 has {}, this one {}",
                    f.describe(),
                    shape.describe()
                ),
            ),
            Some(_) => {}
        }
    }
}

/// One card: its components checked, its shape returned for the uniformity check.
fn check_card(card: &Value, path: &str, ctx: &Ctx, errors: &mut Errors) -> Option<CardShape> {
    let f = Fields::of(card, path, "a carousel card", errors)?;
    f.reject_unknown(&["components"], errors);
    let components = f.array("components", true, errors)?;
    let list_path = f.path_of("components");
    let mut shape = CardShape {
        header: None,
        body: false,
        buttons: Vec::new(),
    };
    for (j, comp) in components.iter().enumerate() {
        let cpath = index(&list_path, j);
        let Some(c) = Fields::of(comp, &cpath, "a card component", errors) else {
            continue;
        };
        match upper(comp, "type").as_deref() {
            Some("HEADER") => {
                shape.header = check_card_header(&c, ctx, errors);
            }
            Some("BODY") => {
                shape.body = true;
                check_body(&c, ctx, errors);
                if let Some(text) = c.text("text", false, errors) {
                    errors.check_len(
                        &c.path_of("text"),
                        "card body text",
                        text,
                        limits::CAROUSEL_CARD_BODY,
                    );
                }
            }
            Some("BUTTONS") => shape.buttons = check_card_buttons(&c, ctx, errors),
            other => errors.add(
                pointer(&cpath, "type"),
                "unknown_component",
                format!(
                    "a carousel card has HEADER, BODY and BUTTONS components, got {}",
                    excerpt(other.unwrap_or("none"))
                ),
            ),
        }
    }
    if shape.header.is_none() {
        errors.add(
            &list_path,
            "missing_card_header",
            "every carousel card needs an IMAGE or VIDEO header (PRODUCT for product cards)",
        );
    }
    if shape.buttons.is_empty() {
        errors.add(
            &list_path,
            "missing_card_buttons",
            format!(
                "every carousel card needs 1–{} buttons",
                limits::CAROUSEL_CARD_BUTTONS
            ),
        );
    }
    Some(shape)
}

fn check_card_header(c: &Fields, ctx: &Ctx, errors: &mut Errors) -> Option<String> {
    let format = c
        .get("format")
        .and_then(Value::as_str)?
        .to_ascii_uppercase();
    match format.as_str() {
        "IMAGE" | "VIDEO" => check_header(c, ctx, errors),
        "PRODUCT" => {}
        other => errors.add(
            c.path_of("format"),
            "invalid_card_header",
            format!(
                "a carousel card's header is IMAGE or VIDEO (PRODUCT for product cards), got {}",
                excerpt(other)
            ),
        ),
    }
    Some(format)
}

fn check_card_buttons(c: &Fields, ctx: &Ctx, errors: &mut Errors) -> Vec<String> {
    check_buttons(c, ctx, errors);
    let buttons = c
        .get("buttons")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if buttons.len() > limits::CAROUSEL_CARD_BUTTONS {
        errors.add(
            c.path_of("buttons"),
            "too_many_buttons",
            format!(
                "a carousel card has at most {} buttons, got {}",
                limits::CAROUSEL_CARD_BUTTONS,
                buttons.len()
            ),
        );
    }
    let kinds: Vec<String> = buttons
        .iter()
        .map(|b| upper(b, "type").unwrap_or_default())
        .collect();
    for (i, kind) in kinds.iter().enumerate() {
        if !matches!(
            kind.as_str(),
            "QUICK_REPLY" | "URL" | "PHONE_NUMBER" | "SPM"
        ) {
            errors.add(
                pointer(&index(&c.path_of("buttons"), i), "type"),
                "invalid_card_button",
                format!("carousel card buttons are QUICK_REPLY, URL or PHONE_NUMBER (SPM or URL on product cards), got {}", excerpt(kind)),
            );
        }
    }
    kinds
}

/// The `LIMITED_TIME_OFFER` component.
pub(super) fn check_offer_component(c: &Fields, ctx: &Ctx, errors: &mut Errors) {
    marketing_only(c, "limited-time-offer", ctx, errors);
    let Some(offer) = c.get("limited_time_offer").and_then(|v| {
        Fields::of(
            v,
            c.path_of("limited_time_offer"),
            "`limited_time_offer`",
            errors,
        )
    }) else {
        errors.add(
            c.path_of("limited_time_offer"),
            "missing",
            "a LIMITED_TIME_OFFER component needs `limited_time_offer`: {\"text\", \"has_expiration\"}",
        );
        return;
    };
    offer.reject_unknown(&["text", "has_expiration"], errors);
    if let Some(text) = offer.text("text", true, errors) {
        errors.check_len(
            &offer.path_of("text"),
            "offer text",
            text,
            limits::OFFER_TEXT,
        );
    }
    offer.bool("has_expiration", errors);
}

/// Template-wide rules of a limited-time offer (run when it has the component).
pub(super) fn check_offer_template(components: &[Value], errors: &mut Errors) {
    let mut has_url = false;
    for (i, comp) in components.iter().enumerate() {
        let path = index("/components", i);
        match upper(comp, "type").as_deref() {
            Some("FOOTER") => errors.add(
                pointer(&path, "type"),
                "not_allowed_in_offer",
                "limited-time-offer templates have no footer",
            ),
            Some("BODY") => {
                if let Some(text) = comp.get("text").and_then(Value::as_str) {
                    errors.check_len(
                        &pointer(&path, "text"),
                        "limited-time-offer body text",
                        text,
                        limits::OFFER_BODY,
                    );
                }
            }
            Some("HEADER") => {
                let format = upper(comp, "format").unwrap_or_default();
                if !matches!(format.as_str(), "IMAGE" | "VIDEO") {
                    errors.add(
                        pointer(&path, "format"),
                        "invalid_header_format",
                        format!(
                            "a limited-time offer's header is IMAGE or VIDEO, got {}",
                            excerpt(&format)
                        ),
                    );
                }
            }
            Some("BUTTONS") => {
                let buttons = comp
                    .get("buttons")
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or(&[]);
                for (j, b) in buttons.iter().enumerate() {
                    match upper(b, "type").as_deref() {
                        Some("URL") => has_url = true,
                        Some("COPY_CODE") => {}
                        other => errors.add(
                            pointer(&index(&pointer(&path, "buttons"), j), "type"),
                            "not_allowed_in_offer",
                            format!(
                                "limited-time-offer buttons are COPY_CODE and URL, got {}",
                                excerpt(other.unwrap_or("none"))
                            ),
                        ),
                    }
                }
            }
            _ => {}
        }
    }
    if !has_url {
        errors.add(
            "/components",
            "missing_offer_url_button",
            "a limited-time-offer template needs a URL button",
        );
    }
}
