//! wit-bindgen glue: the generated bindings stay here.

mod bindings {
    // Built against the frozen 1.0.0 contract: the host serves it beside the newer one.
    wit_bindgen::generate!({ path: "../../wit-history/1.0.0", world: "channel-plugin" });
}

pub use bindings::flow::channel::types;

use bindings::exports::flow::channel::channel::Guest;
use bindings::flow::channel::host as imports;
use types::*;

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct Component;

impl Guest for Component {
    fn describe() -> ChannelInfo {
        crate::sms::describe()
    }
    fn validate_template(_template: String) -> Result<(), Vec<FieldError>> {
        Err(vec![FieldError {
            path: String::new(),
            code: "templates_not_supported".into(),
            message: "the SMS channel has no templates".into(),
        }])
    }
    fn build_payload(
        request: MessageRequest,
        config: ChannelConfig,
    ) -> Result<HttpRequest, Vec<FieldError>> {
        crate::sms::build(&request, &config)
    }
    fn classify(outcome: SendOutcome, attempt: u32) -> Classification {
        crate::sms::classify(&outcome, attempt)
    }
    fn parse_webhook(
        request: WebhookRequest,
        config: ChannelConfig,
    ) -> Result<WebhookOutcome, WebhookError> {
        crate::sms::parse_webhook(&request, &config, &|secret, data, mac| {
            imports::hmac_sha256_verify(secret, data, mac)
        })
    }
    fn send(
        request: MessageRequest,
        config: ChannelConfig,
        attempt: u32,
    ) -> Result<Classification, Vec<FieldError>> {
        let http = crate::sms::build(&request, &config)?;
        let outcome = match imports::http_send(&http) {
            Ok(r) => SendOutcome::Response(r),
            Err(e) => SendOutcome::TransportError(e),
        };
        Ok(crate::sms::classify(&outcome, attempt))
    }
}

#[cfg(target_arch = "wasm32")]
bindings::export!(Component with_types_in bindings);
