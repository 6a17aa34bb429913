//! The contract's exports over the domain modules; every import is reached through
//! [`channel_sdk::Host`] ([`ImportedHost`] in the component). Email has no business accounts
//! in the contract's sense: the account operations answer `unsupported`.

use crate::describe::CHANNEL_NAME;
use channel_sdk::{
    ChannelConfig, ChannelInfo, Classification, FieldError, Guest, HttpRequest, ImportedHost,
    MessageRequest, SendOutcome, WebhookError, WebhookOutcome, WebhookRequest, now_ms,
    report_panics,
};

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct Component;

impl Guest for Component {
    fn describe() -> ChannelInfo {
        report_panics(CHANNEL_NAME);
        crate::describe::describe()
    }

    fn validate_template(_template: String) -> Result<(), Vec<FieldError>> {
        report_panics(CHANNEL_NAME);
        Err(vec![FieldError {
            path: String::new(),
            code: "templates_not_supported".into(),
            message: "email templates live at SendGrid: name one with template_id".into(),
        }])
    }

    fn build_payload(
        request: MessageRequest,
        config: ChannelConfig,
    ) -> Result<HttpRequest, Vec<FieldError>> {
        report_panics(CHANNEL_NAME);
        crate::send::build(&request, &config)
    }

    fn classify(outcome: SendOutcome, attempt: u32) -> Classification {
        report_panics(CHANNEL_NAME);
        crate::send::classify(&outcome, attempt, now_ms())
    }

    fn parse_webhook(
        request: WebhookRequest,
        config: ChannelConfig,
    ) -> Result<WebhookOutcome, WebhookError> {
        report_panics(CHANNEL_NAME);
        crate::events::parse(&request, &config, now_ms(), &ImportedHost)
    }

    fn send(
        request: MessageRequest,
        config: ChannelConfig,
        attempt: u32,
    ) -> Result<Classification, Vec<FieldError>> {
        report_panics(CHANNEL_NAME);
        crate::send::send(&request, &config, attempt, now_ms(), &ImportedHost)
    }

    channel_sdk::no_account_operations!();
}

#[cfg(target_arch = "wasm32")]
channel_sdk::export!(Component with_types_in channel_sdk::bindings);
