//! `text` messages: body ≤ 4,096 characters, optional link preview.

use crate::field_errors::{Errors, Fields};

use serde_json::{Value, json};

/// Meta's limit on `text.body`.
pub use crate::meta_limits::messages::TEXT_BODY as BODY_MAX;

pub fn build(content: &Fields, errors: &mut Errors) -> Option<Value> {
    let text = super::type_object(content, "text", errors)?;
    text.reject_unknown(&["body", "preview_url"], errors);
    let body = text.text("body", true, errors)?;
    let ok = errors.check_len("/content/text/body", "text body", body, BODY_MAX);
    let mut out = json!({ "body": body });
    if let Some(preview) = text.bool("preview_url", errors) {
        out["preview_url"] = json!(preview);
    }
    ok.then_some(out)
}

#[cfg(test)]
mod tests {
    use crate::payloads::build_body;
    use crate::payloads::tests::{content_of, request};
    use serde_json::json;

    #[test]
    fn meta_sample() {
        let (full, content) = content_of(include_str!(
            "../../tests/fixtures/send-request-text-preview-url.json"
        ));
        assert_eq!(build_body(&request(content)).unwrap(), full);
    }

    #[test]
    fn body_limit() {
        assert!(
            build_body(&request(
                json!({"type":"text","text":{"body":"é".repeat(4096)}})
            ))
            .is_ok()
        );
        let e = build_body(&request(
            json!({"type":"text","text":{"body":"é".repeat(4097)}}),
        ))
        .unwrap_err();
        assert_eq!(
            (e[0].path.as_str(), e[0].code.as_str()),
            ("/content/text/body", "too_long")
        );
    }

    #[test]
    fn missing_text_object() {
        let e = build_body(&request(json!({"type":"text"}))).unwrap_err();
        assert_eq!(e[0].path, "/content/text");
    }
}
