//! A carousel template message against its approved cards: the message's `carousel`
//! component must carry exactly the approved number of cards (Meta answers a misleading
//! 132012, "header component parameter should not be empty", otherwise), each `card_index`
//! once, and each card is checked like a template of its own.

use super::{Given, Shape, check_parts, str_of};
use crate::field_errors::{Errors, index};
use serde_json::Value;

fn approved_cards<'a>(shape: &Shape<'a>) -> Option<&'a [Value]> {
    shape
        .components
        .iter()
        .find(|c| str_of(c, "type").is_some_and(|t| t.eq_ignore_ascii_case("CAROUSEL")))
        .and_then(|c| c.get("cards"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
}

pub(super) fn check(given: &Given, shape: &Shape, errors: &mut Errors) {
    let at = given.find("carousel");
    let approved = approved_cards(shape);
    let (approved, at) = match (approved, at) {
        (None, None) => return,
        (None, Some(i)) => {
            errors.add(index(&given.path, i), "unexpected_component", format!("{} is not a carousel template; remove this carousel component (Meta would answer 132000)", shape.who));
            return;
        }
        (Some(cards), None) => {
            errors.add(&given.path, "missing_component", format!("{} is a carousel of {} cards: add {{\"type\": \"carousel\", \"cards\": [{{\"card_index\": 0, \"components\": […]}}, …]}} (Meta would answer 132000)", shape.who, cards.len()));
            return;
        }
        (Some(cards), Some(i)) => (cards, i),
    };
    let path = format!("{}/cards", index(&given.path, at));
    let cards: &[Value] = given.components[at]
        .get("cards")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if cards.len() != approved.len() {
        errors.add(&path, "carousel_card_count_mismatch", format!("{} was approved with {} cards; this message has {} (every send carries exactly the approved number: Meta answers 132012, \"header component parameter should not be empty\", otherwise)", shape.who, approved.len(), cards.len()));
        return;
    }
    let mut seen = vec![false; approved.len()];
    for (i, card) in cards.iter().enumerate() {
        let card_path = index(&path, i);
        let Some(n) = card
            .get("card_index")
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n < approved.len())
        else {
            errors.add(
                format!("{card_path}/card_index"),
                "invalid_card_index",
                format!(
                    "`card_index` is the card's position in the approved carousel, 0–{}",
                    approved.len() - 1
                ),
            );
            continue;
        };
        if std::mem::replace(&mut seen[n], true) {
            errors.add(
                format!("{card_path}/card_index"),
                "duplicate_card_index",
                format!("card_index {n} is given twice"),
            );
            continue;
        }
        let card_given = Given {
            components: card
                .get("components")
                .and_then(Value::as_array)
                .map(|a| a.iter().collect())
                .unwrap_or_default(),
            path: format!("{card_path}/components"),
        };
        let card_shape = Shape {
            who: format!("{}'s card {n}", shape.who),
            components: approved[n]
                .get("components")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[]),
            named: shape.named,
            auth: false,
            body_max: None,
        };
        check_parts(&card_given, &card_shape, errors);
    }
}
