//! `reaction` messages: an emoji on a message (an empty emoji removes the reaction). A
//! reaction cannot be sent as a contextual reply.

use crate::field_errors::{Errors, Fields};
use serde_json::{Value, json};

pub fn build(content: &Fields, errors: &mut Errors) -> Option<Value> {
    let r = super::type_object(content, "reaction", errors)?;
    r.reject_unknown(&["message_id", "emoji"], errors);
    let id = r.text("message_id", true, errors);
    let emoji = r.str("emoji", true, errors);
    if let Some(e) = emoji
        && e.chars().count() > 10
    {
        errors.add(
            r.path_of("emoji"),
            "invalid_emoji",
            format!(
                "`emoji` is one emoji (or \"\" to remove the reaction), got {} characters",
                e.chars().count()
            ),
        );
    }
    if content.get("context").is_some() {
        errors.add(content.path_of("context"), "not_allowed", "a reaction cannot be sent as a contextual reply; it already names its message in `message_id`");
    }
    Some(json!({ "message_id": id?, "emoji": emoji? }))
}

#[cfg(test)]
mod tests {
    use crate::payloads::build_body;
    use crate::payloads::tests::{content_of, request};
    use serde_json::json;

    #[test]
    fn meta_sample() {
        let (full, content) = content_of(include_str!(
            "../../tests/fixtures/send-request-reaction.json"
        ));
        assert_eq!(build_body(&request(content)).unwrap(), full);
    }

    #[test]
    fn no_contextual_reactions() {
        let e = build_body(&request(json!({"type":"reaction","reaction":{"message_id":"wamid.A","emoji":"👍"},"context":{"message_id":"wamid.A"}}))).unwrap_err();
        assert_eq!(
            (e[0].path.as_str(), e[0].code.as_str()),
            ("/content/context", "not_allowed")
        );
        assert!(
            build_body(&request(
                json!({"type":"reaction","reaction":{"message_id":"wamid.A","emoji":""}})
            ))
            .is_ok()
        );
    }
}
