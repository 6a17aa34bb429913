//! Message content (JSON, Meta's own shape without the envelope) → Cloud API request.
//!
//! The content is `{"type": "<type>", "<type>": {…}, "context": {"message_id": …}}`, exactly
//! as in Meta's examples but without `messaging_product`, `recipient_type` and `to`, which come
//! from the message request. Each type lives in its own module.

mod contacts;
mod interactive;
mod location;
mod media;
mod reaction;
mod template;
mod text;

use crate::catalog::Catalog;
use crate::config::Settings;
use crate::field_errors::{Errors, Fields, excerpt, parse_json};
use crate::host::Host;
use crate::phone::Recipient;
use crate::{
    ChannelConfig, Classification, FieldError, Header, HttpRequest, MessageRequest, SendOutcome,
};
use serde_json::{Map, Value, json};

/// Meta's limit on `biz_opaque_callback_data`.
pub use crate::meta_limits::CORRELATION_ID_MAX;

/// The message types `build` knows, in the order the docs list them.
pub const SUPPORTED_TYPES: &[&str] = &[
    "template",
    "text",
    "image",
    "video",
    "audio",
    "document",
    "sticker",
    "interactive",
    "location",
    "contacts",
    "reaction",
    "read",
    "typing",
];

/// Button sub-types a template message may fill.
pub fn template_button_sub_types() -> &'static [&'static str] {
    template::BUTTON_SUB_TYPES
}

/// Builds the HTTP request for a message.
pub fn build(
    request: &MessageRequest,
    config: &ChannelConfig,
) -> Result<HttpRequest, Vec<FieldError>> {
    let settings = Settings::parse(config);
    let empty = Catalog::default();
    let body = build_body_with(
        request,
        settings.as_ref().map(|s| &s.catalog).unwrap_or(&empty),
    );
    let (settings, body) = match (settings, body) {
        (Ok(s), Ok(b)) => (s, b),
        (s, b) => {
            let mut all = s.err().unwrap_or_default();
            all.extend(b.err().unwrap_or_default());
            return Err(all);
        }
    };
    if let Some(why) = crate::graph_versions::retired(&settings.api_version, request.now_ms) {
        return Err(vec![FieldError {
            path: "/settings/api_version".into(),
            code: "api_version_retired".into(),
            message: why,
        }]);
    }
    let category = template_category(&body, request, &settings.catalog);
    if let Some(why) = opted_out_of(category.as_deref(), request) {
        return Err(vec![FieldError {
            path: "/opted_out".into(),
            code: "recipient_opted_out".into(),
            message: why,
        }]);
    }
    let url = settings.endpoint_url(category.as_deref())?;
    Ok(HttpRequest {
        method: "POST".into(),
        url,
        headers: vec![
            Header {
                name: "authorization".into(),
                value: format!("Bearer ${{secret:{}}}", settings.access_token_secret),
            },
            Header {
                name: "content-type".into(),
                value: "application/json".into(),
            },
        ],
        // Serialising a `Value` cannot fail (its keys are strings).
        body: serde_json::to_vec(&body).unwrap_or_default(),
    })
}

/// The approved category of a template message (see [`template::approved_category`]); the
/// definition may travel in the request's content rather than in the built body.
fn template_category(body: &Value, request: &MessageRequest, catalog: &Catalog) -> Option<String> {
    let content: Value = serde_json::from_slice(request.content.as_bytes()).ok()?;
    let mut probe = content.clone();
    if let Some(t) = body.get("template") {
        probe["template"] = t.clone();
    }
    template::approved_category(&probe, catalog)
}

/// Why the customer does not want this message: its template category (lower-case, e.g.
/// `marketing`) is in `opted-out`.
fn opted_out_of(category: Option<&str>, request: &MessageRequest) -> Option<String> {
    let category = category?.to_ascii_lowercase();
    request
        .opted_out
        .iter()
        .any(|kind| kind.eq_ignore_ascii_case(&category))
        .then(|| format!("the customer stopped {category} messages on WhatsApp (opted-out: {}); this {} template is not sent until they resume", Value::from(request.opted_out.clone()), category.to_ascii_uppercase()))
}

/// A send declined because the customer opted out of its kind: fall back without calling Meta.
fn opt_out_decline(request: &MessageRequest, config: &ChannelConfig) -> Option<Classification> {
    if request.opted_out.is_empty() {
        return None;
    }
    let settings = Settings::parse(config).ok()?;
    let content: Value = serde_json::from_slice(request.content.as_bytes()).ok()?;
    let category = template::approved_category(&content, &settings.catalog);
    let why = opted_out_of(category.as_deref(), request)?;
    let mut c = crate::Classification::new(crate::Disposition::Fallback, "recipient_opted_out");
    c.provider_details = Some(why);
    Some(c)
}

/// Builds the JSON body for a message request, without a template catalog.
pub fn build_body(request: &MessageRequest) -> Result<Value, Vec<FieldError>> {
    build_body_with(request, &Catalog::default())
}

/// Builds the JSON body Meta expects for a message request; template messages are checked
/// against `catalog` (and any `template_definition` in the content) when there is one.
pub fn build_body_with(
    request: &MessageRequest,
    catalog: &Catalog,
) -> Result<Value, Vec<FieldError>> {
    let mut errors = Errors::new();
    let content = match parse_json(&request.content, "message content") {
        Ok(v) => v,
        Err(mut e) => {
            e[0].path = "/content".into();
            errors.extend_from(e);
            return Err(errors.into_vec());
        }
    };
    let Some(c) = Fields::of(&content, "/content", "message content", &mut errors) else {
        return Err(errors.into_vec());
    };
    let kind = c.str("type", true, &mut errors);
    if kind == Some("read") {
        return mark_as_read(&c, request, errors);
    }
    if kind == Some("typing") {
        return typing(&c, request, errors);
    }
    let recipient = match crate::phone::parse_recipient(&request.recipient) {
        Ok(r) => Some(r),
        Err(msg) => {
            errors.add("/recipient", "invalid_recipient", msg);
            None
        }
    };
    if let Some(id) = &request.correlation_id {
        errors.check_len("/correlation_id", "correlation id", id, CORRELATION_ID_MAX);
    }
    let mut body = Map::new();
    body.insert("messaging_product".into(), json!("whatsapp"));
    body.insert("recipient_type".into(), json!("individual"));
    // A BSUID goes in `recipient` (Meta: with both, `to` wins, so never both).
    match &recipient {
        Some(Recipient::Bsuid(id)) => body.insert("recipient".into(), json!(id)),
        Some(Recipient::Phone(to)) => body.insert("to".into(), json!(to)),
        None => body.insert("to".into(), json!("")),
    };
    let to_bsuid = matches!(recipient, Some(Recipient::Bsuid(_)));

    if let Some(context) = c.get("context") {
        let cf = Fields::of(context, "/content/context", "`context`", &mut errors);
        if let Some(cf) = cf {
            cf.reject_unknown(&["message_id"], &mut errors);
            if let Some(id) = cf.text("message_id", true, &mut errors) {
                body.insert("context".into(), json!({ "message_id": id }));
            }
        }
    }
    if let Some(kind) = kind {
        let payload = match kind {
            "template" => template::build(&c, catalog, to_bsuid, &mut errors),
            "text" => text::build(&c, &mut errors),
            "image" | "video" | "audio" | "document" | "sticker" => {
                media::build(&c, kind, &mut errors)
            }
            "interactive" => interactive::build(&c, &mut errors),
            "location" => location::build(&c, &mut errors),
            "contacts" => contacts::build(&c, &mut errors),
            "reaction" => reaction::build(&c, &mut errors),
            other => {
                errors.add(
                    "/content/type",
                    "unsupported_type",
                    format!(
                        "message type {} is not supported; expected one of: {}",
                        excerpt(other),
                        SUPPORTED_TYPES.join(", ")
                    ),
                );
                None
            }
        };
        let extra = if kind == "template" {
            "template_definition"
        } else {
            "outside_window_template"
        };
        c.reject_unknown(&["type", kind, "context", extra], &mut errors);
        body.insert("type".into(), json!(kind));
        if let Some(p) = payload {
            body.insert(kind.to_string(), p);
        }
    }
    if let Some(id) = &request.correlation_id {
        body.insert("biz_opaque_callback_data".into(), json!(id));
    }
    errors.finish(Value::Object(body))
}

/// Typing indicator: `{"type": "typing", "message_id": …}` → Meta's mark-as-read with
/// `typing_indicator: {"type": "text"}` (the customer sees "typing…" for up to 25 s, or until
/// the next message).
fn typing(
    c: &Fields,
    request: &MessageRequest,
    mut errors: Errors,
) -> Result<Value, Vec<FieldError>> {
    c.reject_unknown(&["type", "message_id"], &mut errors);
    let id = c.text("message_id", true, &mut errors);
    if request.correlation_id.is_some() {
        errors.add(
            "/correlation_id",
            "not_allowed",
            "a typing indicator carries no correlation id (Meta sends no status for it)",
        );
    }
    errors.finish(json!({"messaging_product": "whatsapp", "status": "read",
        "message_id": id.unwrap_or_default(), "typing_indicator": {"type": "text"}}))
}

/// Mark-as-read: `{"type": "read", "message_id": …}` → `{"status": "read", …}`; it is not a
/// message, so it has no recipient, context or correlation id.
fn mark_as_read(
    c: &Fields,
    request: &MessageRequest,
    mut errors: Errors,
) -> Result<Value, Vec<FieldError>> {
    c.reject_unknown(&["type", "message_id", "typing_indicator"], &mut errors);
    let id = c.text("message_id", true, &mut errors);
    if request.correlation_id.is_some() {
        errors.add(
            "/correlation_id",
            "not_allowed",
            "a read receipt carries no correlation id (Meta sends no status for it)",
        );
    }
    let mut body = Map::new();
    body.insert("messaging_product".into(), json!("whatsapp"));
    body.insert("status".into(), json!("read"));
    body.insert("message_id".into(), json!(id.unwrap_or_default()));
    if let Some(t) = c.get("typing_indicator") {
        match t.get("type").and_then(Value::as_str) {
            Some("text") => {
                body.insert("typing_indicator".into(), json!({"type": "text"}));
            }
            _ => errors.add(
                "/content/typing_indicator",
                "invalid_value",
                "`typing_indicator` is {\"type\": \"text\"}",
            ),
        }
    }
    errors.finish(Value::Object(body))
}

/// The customer-service window: free-form messages only within 24 h of the customer's last
/// message.
pub use crate::meta_limits::SERVICE_WINDOW_MS;

/// What `send` does about the service window.
#[derive(Debug, PartialEq)]
pub enum WindowDecision {
    /// Send the request as it is (a template, or the window is open).
    Send,
    /// The window is closed: send this template content instead.
    SendInstead(String),
    /// The window is closed and there is no alternative: fall back, without calling Meta.
    Decline(Classification),
}

/// Decides whether a message may go out now. Unreadable content is left for `build` to report.
pub fn service_window(request: &MessageRequest) -> WindowDecision {
    let Ok(content) = serde_json::from_slice::<Value>(request.content.as_bytes()) else {
        return WindowDecision::Send;
    };
    let kind = content
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("template");
    let open = request
        .last_inbound_ms
        .is_some_and(|t| request.now_ms < t.saturating_add(SERVICE_WINDOW_MS));
    if kind == "template" || kind == "read" || kind == "typing" || open {
        return WindowDecision::Send;
    }
    if let Some(alternative) = content.get("outside_window_template") {
        return WindowDecision::SendInstead(
            json!({"type": "template", "template": alternative}).to_string(),
        );
    }
    let details = match request.last_inbound_ms {
        Some(t) => format!("the customer last wrote at {t} ms; the 24 h window closed at {} ms (now {} ms); only templates may be sent", t.saturating_add(SERVICE_WINDOW_MS), request.now_ms),
        None => "no message from this customer is known, so the 24 h window is not open; only templates may be sent".to_string(),
    };
    let mut c = crate::Classification::new(crate::Disposition::Fallback, "outside_service_window");
    c.provider_details = Some(details);
    WindowDecision::Decline(c)
}

/// Enforces the service window, builds, has the host send, classifies.
pub fn send(
    request: &MessageRequest,
    config: &ChannelConfig,
    attempt: u32,
    host: &dyn Host,
) -> Result<Classification, Vec<FieldError>> {
    if let Some(declined) = opt_out_decline(request, config) {
        return Ok(declined);
    }
    let alternative;
    let request = match service_window(request) {
        WindowDecision::Send => request,
        WindowDecision::SendInstead(content) => {
            host.log(
                crate::LogLevel::Info,
                "outside the service window: sending the outside_window_template instead",
            );
            alternative = MessageRequest {
                content,
                ..request.clone()
            };
            &alternative
        }
        WindowDecision::Decline(c) => return Ok(c),
    };
    let http = build(request, config)?;
    let outcome = match host.http_send(&http) {
        Ok(resp) => SendOutcome::Response(resp),
        Err(e) => SendOutcome::TransportError(e),
    };
    let c = crate::classify::classify_outcome(&outcome, attempt);
    host.log(
        crate::LogLevel::Debug,
        &format!(
            "send attempt {attempt}: {} ({})",
            channel_sdk::names::disposition(c.disposition),
            c.reason
        ),
    );
    Ok(c)
}

/// The object under the type's key (`"text": {…}`), or a `missing` error.
fn type_object<'a>(content: &Fields<'a>, kind: &str, errors: &mut Errors) -> Option<Fields<'a>> {
    match content.get(kind) {
        Some(v) => Fields::of(v, content.path_of(kind), &format!("`{kind}`"), errors),
        None => {
            errors.add(
                content.path_of(kind),
                "missing",
                format!("a {kind} message needs a `{kind}` object"),
            );
            None
        }
    }
}

impl Errors {
    fn extend_from(&mut self, errs: Vec<FieldError>) {
        for e in errs {
            self.add(e.path, &e.code, e.message);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn request(content: Value) -> MessageRequest {
        MessageRequest {
            recipient: "+16505551234".into(),
            correlation_id: None,
            content: content.to_string(),
            last_inbound_ms: None,
            now_ms: 1_750_000_000_000,
            opted_out: vec![],
            deadline_ms: None,
        }
    }

    /// The Meta sample with the envelope removed, as message content.
    pub fn content_of(sample: &str) -> (Value, Value) {
        let full: Value = serde_json::from_str(sample).unwrap();
        let mut content = full.clone();
        for k in ["messaging_product", "recipient_type", "to"] {
            content.as_object_mut().unwrap().remove(k);
        }
        (full, content)
    }

    #[test]
    fn typing_indicator() {
        let r = request(json!({"type": "typing", "message_id": "wamid.X"}));
        assert_eq!(
            build_body(&r).unwrap(),
            json!({"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.X",
                "typing_indicator": {"type": "text"}})
        );
        let e = build_body(&request(json!({"type": "typing"}))).unwrap_err();
        assert_eq!(e[0].path, "/content/message_id");
        let e = build_body(&request(
            json!({"type": "typing", "message_id": "w", "text": {}}),
        ))
        .unwrap_err();
        assert_eq!(e[0].code, "unknown_field");
    }

    #[test]
    fn mark_as_read() {
        let mut r = request(json!({"type":"read","message_id":"wamid.X"}));
        r.recipient = String::new();
        assert_eq!(
            build_body(&r).unwrap(),
            json!({"messaging_product":"whatsapp","status":"read","message_id":"wamid.X"})
        );
        assert_eq!(super::service_window(&r), WindowDecision::Send);
        let e = build_body(&request(json!({"type":"read"}))).unwrap_err();
        assert_eq!(
            (e[0].path.as_str(), e[0].code.as_str()),
            ("/content/message_id", "missing")
        );
    }

    #[test]
    fn service_window() {
        let mut r = request(json!({"type":"text","text":{"body":"hi"}}));
        r.last_inbound_ms = Some(r.now_ms - SERVICE_WINDOW_MS + 1);
        assert_eq!(super::service_window(&r), WindowDecision::Send);
        r.last_inbound_ms = Some(r.now_ms - SERVICE_WINDOW_MS);
        let WindowDecision::Decline(c) = super::service_window(&r) else {
            panic!("closed")
        };
        assert_eq!(
            (c.disposition, c.reason.as_str()),
            (crate::Disposition::Fallback, "outside_service_window")
        );
        r.last_inbound_ms = None;
        assert!(matches!(
            super::service_window(&r),
            WindowDecision::Decline(_)
        ));
        let t = request(json!({"type":"template","template":{"name":"x","language":"en"}}));
        assert_eq!(super::service_window(&t), WindowDecision::Send);
        let alt = request(
            json!({"type":"text","text":{"body":"hi"},"outside_window_template":{"name":"hello","language":"en_US"}}),
        );
        let WindowDecision::SendInstead(content) = super::service_window(&alt) else {
            panic!("alternative")
        };
        assert_eq!(
            serde_json::from_str::<Value>(&content).unwrap(),
            json!({"type":"template","template":{"name":"hello","language":"en_US"}})
        );
    }

    #[test]
    fn builds_the_request_with_a_secret_reference() {
        let cfg = ChannelConfig {
            api_base: Some("http://127.0.0.1:9".into()),
            settings: r#"{"phone_number_id":"106540352242922"}"#.into(),
        };
        let req = build(&request(json!({"type":"text","text":{"body":"hi"}})), &cfg).unwrap();
        assert_eq!(req.url, "http://127.0.0.1:9/v26.0/106540352242922/messages");
        assert!(
            req.headers
                .iter()
                .any(|h| h.value == "Bearer ${secret:whatsapp/access-token}")
        );
    }

    #[test]
    fn correlation_id_travels_as_opaque_callback_data() {
        let mut r = request(json!({"type":"text","text":{"body":"hi"}}));
        r.correlation_id = Some("flow-7/step-2".into());
        assert_eq!(
            build_body(&r).unwrap()["biz_opaque_callback_data"],
            "flow-7/step-2"
        );
        r.correlation_id = Some("x".repeat(513));
        assert_eq!(build_body(&r).unwrap_err()[0].path, "/correlation_id");
    }

    #[test]
    fn recipient_without_country_code_is_rejected() {
        let mut r = request(json!({"type":"text","text":{"body":"hi"}}));
        r.recipient = "6505551234".into();
        let e = build_body(&r).unwrap_err();
        assert_eq!(
            (e[0].path.as_str(), e[0].code.as_str()),
            ("/recipient", "invalid_recipient")
        );
    }

    #[test]
    fn contextual_reply_sample() {
        let (full, content) = content_of(include_str!(
            "../../tests/fixtures/send-request-contextual-reply-text.json"
        ));
        assert_eq!(build_body(&request(content)).unwrap(), full);
    }

    #[test]
    fn unknown_type_and_fields_are_reported() {
        let e = build_body(&request(json!({"type":"hologram","hologram":{}}))).unwrap_err();
        assert_eq!(e[0].code, "unsupported_type");
        let e = build_body(&request(
            json!({"type":"text","text":{"body":"x"},"txet":1}),
        ))
        .unwrap_err();
        assert_eq!(
            (e[0].path.as_str(), e[0].code.as_str()),
            ("/content/txet", "unknown_field")
        );
    }
}

/// Every string limit: the value at the limit builds, one character past it is `too_long` at
/// that value's path.
#[cfg(test)]
mod limit_tests {
    use super::tests::request;
    use super::*;

    fn at_and_past(base: Value, pointer: &str, limit: usize) {
        let mut at = base.clone();
        *at.pointer_mut(pointer)
            .unwrap_or_else(|| panic!("{pointer} in {base}")) = json!("é".repeat(limit));
        assert_eq!(
            build_body(&request(at.clone())).map(|_| ()),
            Ok(()),
            "{pointer} at {limit}"
        );
        let mut past = base;
        *past.pointer_mut(pointer).unwrap() = json!("é".repeat(limit + 1));
        let errs = build_body(&request(past)).unwrap_err();
        let path = format!("/content{pointer}");
        assert!(
            errs.iter().any(|e| e.path == path
                && e.code == "too_long"
                && e.message.contains(&limit.to_string())),
            "{pointer} past {limit}: {errs:?}"
        );
    }

    #[test]
    fn every_string_limit() {
        let button = json!({"type":"interactive","interactive":{"type":"button","header":{"type":"text","text":"h"},"body":{"text":"b"},"footer":{"text":"f"},
            "action":{"buttons":[{"type":"reply","reply":{"id":"a","title":"t"}}]}}});
        at_and_past(button.clone(), "/interactive/header/text", 60);
        at_and_past(button.clone(), "/interactive/body/text", 1024);
        at_and_past(button.clone(), "/interactive/footer/text", 60);
        at_and_past(
            button.clone(),
            "/interactive/action/buttons/0/reply/title",
            20,
        );
        at_and_past(button, "/interactive/action/buttons/0/reply/id", 256);
        let list = json!({"type":"interactive","interactive":{"type":"list","header":{"type":"text","text":"h"},"body":{"text":"b"},"footer":{"text":"f"},
            "action":{"button":"Pick","sections":[{"title":"s","rows":[{"id":"r","title":"t","description":"d"}]}]}}});
        at_and_past(list.clone(), "/interactive/header/text", 60);
        at_and_past(list.clone(), "/interactive/body/text", 4096);
        at_and_past(list.clone(), "/interactive/footer/text", 60);
        at_and_past(list.clone(), "/interactive/action/button", 20);
        at_and_past(list.clone(), "/interactive/action/sections/0/title", 24);
        at_and_past(
            list.clone(),
            "/interactive/action/sections/0/rows/0/id",
            200,
        );
        at_and_past(
            list.clone(),
            "/interactive/action/sections/0/rows/0/title",
            24,
        );
        at_and_past(
            list,
            "/interactive/action/sections/0/rows/0/description",
            72,
        );
        let cta = json!({"type":"interactive","interactive":{"type":"cta_url","body":{"text":"b"},"action":{"name":"cta_url","parameters":{"display_text":"d","url":"https://x.com"}}}});
        at_and_past(cta.clone(), "/interactive/body/text", 1024);
        at_and_past(cta, "/interactive/action/parameters/display_text", 20);
        let flow = json!({"type":"interactive","interactive":{"type":"flow","body":{"text":"b"},"action":{"name":"flow","parameters":{
            "flow_message_version":"3","flow_token":"t","flow_name":"booking","flow_cta":"Go","flow_action":"data_exchange"}}}});
        at_and_past(flow, "/interactive/action/parameters/flow_cta", 30);
        at_and_past(
            json!({"type":"text","text":{"body":"b"}}),
            "/text/body",
            4096,
        );
        for kind in ["image", "video", "document"] {
            at_and_past(
                json!({"type":kind, kind:{"id":"1","caption":"c"}}),
                &format!("/{kind}/caption"),
                1024,
            );
        }
        let coupon = json!({"type":"template","template":{"name":"promo","language":"en","components":[
            {"type":"button","sub_type":"copy_code","index":"0","parameters":[{"type":"coupon_code","coupon_code":"C"}]}]}});
        at_and_past(
            coupon,
            "/template/components/0/parameters/0/coupon_code",
            15,
        );
    }

    #[test]
    fn count_limits() {
        let sections = |n: usize| {
            let s: Vec<Value> = (0..n).map(|i| json!({"title": format!("s{i}"), "rows": [{"id": format!("r{i}"), "title": "t"}]})).collect();
            json!({"type":"interactive","interactive":{"type":"list","body":{"text":"b"},"action":{"button":"Pick","sections":s}}})
        };
        assert!(build_body(&request(sections(10))).is_ok());
        assert!(build_body(&request(sections(11))).is_err());
        let mut r = request(json!({"type":"text","text":{"body":"b"}}));
        r.correlation_id = Some("c".repeat(512));
        assert!(build_body(&r).is_ok());
        r.correlation_id = Some("c".repeat(513));
        assert_eq!(build_body(&r).unwrap_err()[0].code, "too_long");
    }
}
