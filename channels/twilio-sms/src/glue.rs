//! The contract's exports over the domain modules; every import is reached through
//! [`channel_sdk::Host`] ([`ImportedHost`] in the component). The account operations belong
//! to channels with business accounts: an SMS account is the operator's, set in the settings.

use channel_sdk::{
    ChannelConfig, ChannelInfo, Classification, FieldError, Guest, HttpRequest, ImportedHost,
    MessageRequest, SendOutcome, WebhookError, WebhookOutcome, WebhookRequest, report_panics,
};

use crate::describe::CHANNEL_NAME;

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
            message: "the SMS channel has no templates".into(),
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
        crate::send::classify(&outcome, attempt)
    }

    fn parse_webhook(
        request: WebhookRequest,
        config: ChannelConfig,
    ) -> Result<WebhookOutcome, WebhookError> {
        report_panics(CHANNEL_NAME);
        crate::webhook::parse(&request, &config, &ImportedHost)
    }

    fn send(
        request: MessageRequest,
        config: ChannelConfig,
        attempt: u32,
    ) -> Result<Classification, Vec<FieldError>> {
        report_panics(CHANNEL_NAME);
        crate::send::send(&request, &config, attempt, &ImportedHost)
    }

    channel_sdk::no_account_operations!();
}

#[cfg(target_arch = "wasm32")]
channel_sdk::export!(Component with_types_in channel_sdk::bindings);
