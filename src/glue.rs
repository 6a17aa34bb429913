//! The contract's exports, each delegating to a domain module; every import is reached through
//! [`channel_sdk::Host`] ([`ImportedHost`] in the component).

use crate::{
    ChannelConfig, ChannelInfo, Classification, FieldError, HttpRequest, MessageRequest,
    SendOutcome, WebhookError, WebhookOutcome, WebhookRequest,
};
use channel_sdk::{
    AccountFacts, GrantedCredential, Guest, ImportedHost, OperationError, TemplatePage,
    report_panics,
};

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct Component;

impl Guest for Component {
    fn describe() -> ChannelInfo {
        report_panics(crate::CHANNEL_NAME);
        crate::schemas::describe()
    }

    fn validate_template(template: String) -> Result<(), Vec<FieldError>> {
        report_panics(crate::CHANNEL_NAME);
        crate::templates::validate_json(&template)
    }

    fn build_payload(
        request: MessageRequest,
        config: ChannelConfig,
    ) -> Result<HttpRequest, Vec<FieldError>> {
        report_panics(crate::CHANNEL_NAME);
        crate::payloads::build(&request, &config)
    }

    fn classify(outcome: SendOutcome, attempt: u32) -> Classification {
        report_panics(crate::CHANNEL_NAME);
        crate::classify::classify_outcome(&outcome, attempt)
    }

    fn parse_webhook(
        request: WebhookRequest,
        config: ChannelConfig,
    ) -> Result<WebhookOutcome, WebhookError> {
        report_panics(crate::CHANNEL_NAME);
        crate::webhooks::parse(&request, &config, &ImportedHost)
    }

    fn send(
        request: MessageRequest,
        config: ChannelConfig,
        attempt: u32,
    ) -> Result<Classification, Vec<FieldError>> {
        report_panics(crate::CHANNEL_NAME);
        crate::payloads::send(&request, &config, attempt, &ImportedHost)
    }

    fn exchange_code(
        code: String,
        config: ChannelConfig,
    ) -> Result<GrantedCredential, OperationError> {
        report_panics(crate::CHANNEL_NAME);
        crate::accounts::exchange_code(&code, &config, channel_sdk::now_ms(), &ImportedHost)
    }

    fn check_account(
        account_id: String,
        sender_ids: Vec<String>,
        config: ChannelConfig,
    ) -> Result<AccountFacts, OperationError> {
        report_panics(crate::CHANNEL_NAME);
        crate::accounts::check_account(&account_id, &sender_ids, &config, &ImportedHost)
    }

    fn list_templates(
        account_id: String,
        cursor: Option<String>,
        config: ChannelConfig,
    ) -> Result<TemplatePage, OperationError> {
        report_panics(crate::CHANNEL_NAME);
        crate::accounts::list_templates(&account_id, cursor.as_deref(), &config, &ImportedHost)
    }

    fn subscribe_webhooks(account_id: String, config: ChannelConfig) -> Result<(), OperationError> {
        report_panics(crate::CHANNEL_NAME);
        crate::accounts::subscribe_webhooks(&account_id, &config, &ImportedHost)
    }

    fn register_sender(
        sender_id: String,
        pin: String,
        config: ChannelConfig,
    ) -> Result<(), OperationError> {
        report_panics(crate::CHANNEL_NAME);
        crate::accounts::register_sender(&sender_id, &pin, &config, &ImportedHost)
    }
}

#[cfg(target_arch = "wasm32")]
channel_sdk::export!(Component with_types_in channel_sdk::bindings);
