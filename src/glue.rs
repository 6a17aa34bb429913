//! The wit-bindgen glue: generated bindings stay in this file; every export delegates to a
//! domain module and every import is reached through [`crate::host::Host`].

mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "channel-plugin",
        additional_derives: [PartialEq, Eq],
    });
}

pub use bindings::flow::channel::types;

use crate::{
    ChannelConfig, ChannelInfo, Classification, FieldError, HttpRequest, HttpResponse, LogLevel,
    MessageRequest, SecretError, SendOutcome, TransportError, WebhookError, WebhookOutcome,
    WebhookRequest,
};
use bindings::exports::flow::channel::channel::Guest;
use bindings::flow::channel::host as imports;

/// The host, reached through the component's imports.
struct ImportedHost;

impl crate::host::Host for ImportedHost {
    fn http_send(&self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        imports::http_send(request)
    }
    fn hmac_sha256_verify(
        &self,
        secret: &str,
        data: &[u8],
        mac: &[u8],
    ) -> Result<bool, SecretError> {
        imports::hmac_sha256_verify(secret, data, mac)
    }
    fn secret_equals(&self, secret: &str, candidate: &str) -> Result<bool, SecretError> {
        imports::secret_equals(secret, candidate)
    }
    fn log(&self, level: LogLevel, message: &str) {
        imports::log(level, message)
    }
}

struct Component;

/// A panic is reported through the contract's `log` before the call traps: the component has
/// no stderr (it imports nothing but the contract).
fn report_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            imports::log(
                LogLevel::Error,
                &format!("whatsapp channel panicked: {info}"),
            );
        }));
    });
}

impl Guest for Component {
    fn describe() -> ChannelInfo {
        report_panics();
        crate::schemas::describe()
    }

    fn validate_template(template: String) -> Result<(), Vec<FieldError>> {
        report_panics();
        crate::templates::validate_json(&template)
    }

    fn build_payload(
        request: MessageRequest,
        config: ChannelConfig,
    ) -> Result<HttpRequest, Vec<FieldError>> {
        report_panics();
        crate::payloads::build(&request, &config)
    }

    fn classify(outcome: SendOutcome, attempt: u32) -> Classification {
        report_panics();
        crate::classify::classify_outcome(&outcome, attempt)
    }

    fn parse_webhook(
        request: WebhookRequest,
        config: ChannelConfig,
    ) -> Result<WebhookOutcome, WebhookError> {
        report_panics();
        crate::webhooks::parse(&request, &config, &ImportedHost)
    }

    fn send(
        request: MessageRequest,
        config: ChannelConfig,
        attempt: u32,
    ) -> Result<Classification, Vec<FieldError>> {
        report_panics();
        crate::payloads::send(&request, &config, attempt, &ImportedHost)
    }
}

#[cfg(target_arch = "wasm32")]
bindings::export!(Component with_types_in bindings);
