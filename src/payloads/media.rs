//! `image`, `video`, `audio`, `document` and `sticker` messages, and media objects wherever they
//! appear (template and interactive headers): exactly one of an uploaded `id` or an http(s)
//! `link`; captions ≤ 1,024 where Meta allows them.

use crate::field_errors::{Errors, Fields, excerpt};
use serde_json::Value;

/// Meta's limit on a media caption.
pub use crate::meta_limits::messages::CAPTION as CAPTION_MAX;

/// Whether a media message of this kind may carry a caption.
fn takes_caption(kind: &str) -> bool {
    matches!(kind, "image" | "video" | "document")
}

/// Checks a media object; `message` says whether it is a media message (captions, `voice`)
/// rather than a header.
pub fn check_media(v: &Value, path: &str, kind: &str, message: bool, errors: &mut Errors) -> bool {
    let before = errors.len();
    let Some(f) = Fields::of(v, path, &format!("`{kind}`"), errors) else {
        return false;
    };
    let mut known = vec!["id", "link"];
    if kind == "document" {
        known.push("filename");
    }
    if message && takes_caption(kind) {
        known.push("caption");
    }
    if message && kind == "audio" {
        known.push("voice");
    }
    f.reject_unknown(&known, errors);
    let id = f.text("id", false, errors);
    let link = f.text("link", false, errors);
    match (id, link) {
        (Some(_), Some(_)) => errors.add(
            path,
            "id_and_link",
            format!("`{kind}` takes either `id` or `link`, not both"),
        ),
        (None, None) => errors.add(
            path,
            "missing_media",
            format!("`{kind}` needs an uploaded media `id` or a `link`"),
        ),
        (None, Some(l)) if !(l.starts_with("https://") || l.starts_with("http://")) => errors.add(
            f.path_of("link"),
            "invalid_url",
            format!(
                "`link` must be an http:// or https:// URL, got {}",
                excerpt(l)
            ),
        ),
        _ => {}
    }
    if let Some(caption) = f.str("caption", false, errors) {
        errors.check_len(&f.path_of("caption"), "caption", caption, CAPTION_MAX);
    }
    f.text("filename", false, errors);
    f.bool("voice", errors);
    errors.len() == before
}

/// A media message: the object under its type, checked and passed on.
pub fn build(content: &Fields, kind: &str, errors: &mut Errors) -> Option<Value> {
    let v = content.get(kind);
    let Some(v) = v else {
        errors.add(
            content.path_of(kind),
            "missing",
            format!("a {kind} message needs a `{kind}` object"),
        );
        return None;
    };
    check_media(v, &content.path_of(kind), kind, true, errors).then(|| v.clone())
}

#[cfg(test)]
mod tests {
    use crate::payloads::build_body;
    use crate::payloads::tests::{content_of, request};
    use serde_json::json;

    #[test]
    fn meta_samples() {
        for sample in [
            include_str!("../../tests/fixtures/send-request-image-by-id.json"),
            include_str!("../../tests/fixtures/send-request-video-by-id.json"),
            include_str!("../../tests/fixtures/send-request-audio-voice.json"),
            include_str!("../../tests/fixtures/send-request-document-by-id.json"),
        ] {
            let (full, content) = content_of(sample);
            assert_eq!(build_body(&request(content)).unwrap(), full);
        }
    }

    #[test]
    fn caption_limit_and_id_or_link() {
        let img = |caption: &str| json!({"type":"image","image":{"link":"https://example.com/a.jpg","caption":caption}});
        assert!(build_body(&request(img(&"c".repeat(1024)))).is_ok());
        let e = build_body(&request(img(&"c".repeat(1025)))).unwrap_err();
        assert_eq!(
            (e[0].path.as_str(), e[0].code.as_str()),
            ("/content/image/caption", "too_long")
        );
        let both = build_body(&request(
            json!({"type":"video","video":{"id":"1","link":"https://x"}}),
        ))
        .unwrap_err();
        assert_eq!(both[0].code, "id_and_link");
        let none = build_body(&request(
            json!({"type":"document","document":{"filename":"a.pdf"}}),
        ))
        .unwrap_err();
        assert_eq!(none[0].code, "missing_media");
        let ftp = build_body(&request(
            json!({"type":"sticker","sticker":{"link":"ftp://x/s.webp"}}),
        ))
        .unwrap_err();
        assert_eq!(ftp[0].code, "invalid_url");
    }

    #[test]
    fn captions_only_where_meta_takes_them() {
        for kind in ["audio", "sticker"] {
            let e = build_body(&request(
                json!({"type":kind, kind:{"id":"1","caption":"x"}}),
            ))
            .unwrap_err();
            assert_eq!(
                (e[0].path.clone(), e[0].code.as_str()),
                (format!("/content/{kind}/caption"), "unknown_field")
            );
        }
        assert!(build_body(&request(json!({"type":"sticker","sticker":{"id":"1"}}))).is_ok());
        let voice = build_body(&request(
            json!({"type":"audio","audio":{"id":"1","voice":"yes"}}),
        ))
        .unwrap_err();
        assert_eq!(voice[0].code, "expected_boolean");
    }
}
