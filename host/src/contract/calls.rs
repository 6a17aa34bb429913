//! Each channel function called in the plugin's own contract version: the arguments converted
//! to that version's types, the results back to the host's. A function a version does not
//! have is answered here without calling the plugin (`operation-error::unsupported`).

// The contract's errors are as large as the contract makes them (`operation-error` carries a
// classification); boxing them here would only move the allocation.
#![allow(clippy::result_large_err)]

use super::convert::Convert;
use super::{ContractVersion, since_v1_0::old as v1_0, since_v1_1::old as v1_1, types};
use crate::runtime::{CallError, Plugin};
use anyhow::Result;
use wasmtime::component::{Component, ComponentExportIndex};

/// The functions of the channel interface, each since the version that added it.
#[derive(Debug, Clone, Copy)]
pub enum Export {
    Describe,
    ValidateTemplate,
    BuildPayload,
    Classify,
    ParseWebhook,
    Send,
    ExchangeCode,
    CheckAccount,
    ListTemplates,
    SubscribeWebhooks,
    RegisterSender,
}

impl Export {
    pub const COUNT: usize = 11;
    const ALL: [Export; Export::COUNT] = [
        Export::Describe,
        Export::ValidateTemplate,
        Export::BuildPayload,
        Export::Classify,
        Export::ParseWebhook,
        Export::Send,
        Export::ExchangeCode,
        Export::CheckAccount,
        Export::ListTemplates,
        Export::SubscribeWebhooks,
        Export::RegisterSender,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Export::Describe => "describe",
            Export::ValidateTemplate => "validate-template",
            Export::BuildPayload => "build-payload",
            Export::Classify => "classify",
            Export::ParseWebhook => "parse-webhook",
            Export::Send => "send",
            Export::ExchangeCode => "exchange-code",
            Export::CheckAccount => "check-account",
            Export::ListTemplates => "list-templates",
            Export::SubscribeWebhooks => "subscribe-webhooks",
            Export::RegisterSender => "register-sender",
        }
    }

    /// The contract version that added the function.
    pub fn since(self) -> ContractVersion {
        match self {
            Export::Describe
            | Export::ValidateTemplate
            | Export::BuildPayload
            | Export::Classify
            | Export::ParseWebhook
            | Export::Send => ContractVersion::V1_0,
            Export::ExchangeCode
            | Export::CheckAccount
            | Export::ListTemplates
            | Export::SubscribeWebhooks
            | Export::RegisterSender => ContractVersion::V1_2,
        }
    }

    /// Each function's index in `component`, looked up once so a call finds its function
    /// without a string lookup (and checks the type of that one function, not of all);
    /// `None` for a function newer than the component's version.
    pub(crate) fn indices(
        component: &Component,
        interface: &str,
        contract: ContractVersion,
    ) -> Result<[Option<ComponentExportIndex>; Export::COUNT]> {
        let not_exported = |what: &str| {
            anyhow::anyhow!(
                "the component does not export {what} as {}",
                contract.name()
            )
        };
        let instance = component
            .get_export_index(None, interface)
            .ok_or_else(|| not_exported(interface))?;
        let mut indices = [None; Export::COUNT];
        for (slot, export) in indices.iter_mut().zip(Export::ALL) {
            if export.since() > contract {
                continue;
            }
            *slot = Some(
                component
                    .get_export_index(Some(&instance), export.name())
                    .ok_or_else(|| not_exported(&format!("{interface}#{}", export.name())))?,
            );
        }
        Ok(indices)
    }
}

/// A call in an older version: `$old` names that version's types; `$args` are converted to
/// them and the result `$ret` (in `$old`'s types) back to the host's.
macro_rules! older {
    ($plugin:expr, $export:expr, $old:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty) => {{
        #[allow(unused_imports)]
        use $old as old;
        $(let $arg: $ty = $arg.clone().convert();)*
        $plugin
            .call::<_, ($ret,)>($export, ($(&$arg,)*))
            .await
            .map(|(r,)| r.convert())
    }};
}

/// The account operations: only a 1.2.0 component has them; an older one answers
/// `unsupported` without being called.
macro_rules! account_operation {
    ($plugin:expr, $export:expr, ($($arg:expr),*) -> $ok:ty) => {
        match $plugin.contract {
            ContractVersion::V1_2 => $plugin
                .call::<_, (Result<$ok, types::OperationError>,)>($export, ($($arg,)*))
                .await
                .map(|(r,)| r),
            ContractVersion::V1_0 | ContractVersion::V1_1 => {
                Ok(Err(types::OperationError::Unsupported))
            }
        }
    };
}

/// What an account operation answers: the call itself may fail (the plugin trapped), or the
/// operation (unsupported, invalid, refused by the provider).
pub type Operation<T> = Result<Result<T, types::OperationError>, CallError>;

impl Plugin {
    /// `describe`, always calling the component (the bench measures the call).
    pub async fn describe_uncached(&self) -> Result<types::ChannelInfo, CallError> {
        match self.contract {
            ContractVersion::V1_2 => self.call(Export::Describe, ()).await.map(|(r,)| r),
            ContractVersion::V1_1 => {
                older!(self, Export::Describe, v1_1, () -> old::ChannelInfo)
            }
            ContractVersion::V1_0 => {
                older!(self, Export::Describe, v1_0, () -> old::ChannelInfo)
            }
        }
    }

    /// `validate-template`.
    pub async fn validate_template(
        &self,
        template: &str,
    ) -> Result<Result<(), Vec<types::FieldError>>, CallError> {
        let template = template.to_string();
        match self.contract {
            ContractVersion::V1_2 => self
                .call(Export::ValidateTemplate, (&template,))
                .await
                .map(|(r,)| r),
            ContractVersion::V1_1 => older!(self, Export::ValidateTemplate, v1_1,
                (template: String) -> Result<(), Vec<old::FieldError>>),
            ContractVersion::V1_0 => older!(self, Export::ValidateTemplate, v1_0,
                (template: String) -> Result<(), Vec<old::FieldError>>),
        }
    }

    /// `build-payload`.
    pub async fn build_payload(
        &self,
        request: &types::MessageRequest,
        config: &types::ChannelConfig,
    ) -> Result<Result<types::HttpRequest, Vec<types::FieldError>>, CallError> {
        match self.contract {
            ContractVersion::V1_2 => self
                .call(Export::BuildPayload, (request, config))
                .await
                .map(|(r,)| r),
            ContractVersion::V1_1 => older!(self, Export::BuildPayload, v1_1,
                (request: old::MessageRequest, config: old::ChannelConfig) -> Result<old::HttpRequest, Vec<old::FieldError>>),
            ContractVersion::V1_0 => older!(self, Export::BuildPayload, v1_0,
                (request: old::MessageRequest, config: old::ChannelConfig) -> Result<old::HttpRequest, Vec<old::FieldError>>),
        }
    }

    /// `classify`.
    pub async fn classify(
        &self,
        outcome: &types::SendOutcome,
        attempt: u32,
    ) -> Result<types::Classification, CallError> {
        match self.contract {
            ContractVersion::V1_2 => self
                .call(Export::Classify, (outcome, attempt))
                .await
                .map(|(r,)| r),
            ContractVersion::V1_1 => {
                older!(self, Export::Classify, v1_1, (outcome: old::SendOutcome, attempt: u32) -> old::Classification)
            }
            ContractVersion::V1_0 => {
                older!(self, Export::Classify, v1_0, (outcome: old::SendOutcome, attempt: u32) -> old::Classification)
            }
        }
    }

    /// `parse-webhook`.
    pub async fn parse_webhook(
        &self,
        request: &types::WebhookRequest,
        config: &types::ChannelConfig,
    ) -> Result<Result<types::WebhookOutcome, types::WebhookError>, CallError> {
        match self.contract {
            ContractVersion::V1_2 => self
                .call(Export::ParseWebhook, (request, config))
                .await
                .map(|(r,)| r),
            ContractVersion::V1_1 => older!(self, Export::ParseWebhook, v1_1,
                (request: old::WebhookRequest, config: old::ChannelConfig) -> Result<old::WebhookOutcome, old::WebhookError>),
            ContractVersion::V1_0 => older!(self, Export::ParseWebhook, v1_0,
                (request: old::WebhookRequest, config: old::ChannelConfig) -> Result<old::WebhookOutcome, old::WebhookError>),
        }
    }

    /// `send`.
    pub async fn send(
        &self,
        request: &types::MessageRequest,
        config: &types::ChannelConfig,
        attempt: u32,
    ) -> Result<Result<types::Classification, Vec<types::FieldError>>, CallError> {
        match self.contract {
            ContractVersion::V1_2 => self
                .call(Export::Send, (request, config, attempt))
                .await
                .map(|(r,)| r),
            ContractVersion::V1_1 => older!(self, Export::Send, v1_1,
                (request: old::MessageRequest, config: old::ChannelConfig, attempt: u32) -> Result<old::Classification, Vec<old::FieldError>>),
            ContractVersion::V1_0 => older!(self, Export::Send, v1_0,
                (request: old::MessageRequest, config: old::ChannelConfig, attempt: u32) -> Result<old::Classification, Vec<old::FieldError>>),
        }
    }

    /// `exchange-code` (1.2.0).
    pub async fn exchange_code(
        &self,
        code: &str,
        config: &types::ChannelConfig,
    ) -> Operation<types::GrantedCredential> {
        account_operation!(self, Export::ExchangeCode, (code, config) -> types::GrantedCredential)
    }

    /// `check-account` (1.2.0).
    pub async fn check_account(
        &self,
        account_id: &str,
        sender_ids: &[String],
        config: &types::ChannelConfig,
    ) -> Operation<types::AccountFacts> {
        account_operation!(self, Export::CheckAccount,
            (account_id, sender_ids, config) -> types::AccountFacts)
    }

    /// `list-templates` (1.2.0).
    pub async fn list_templates(
        &self,
        account_id: &str,
        cursor: Option<&str>,
        config: &types::ChannelConfig,
    ) -> Operation<types::TemplatePage> {
        account_operation!(self, Export::ListTemplates,
            (account_id, cursor, config) -> types::TemplatePage)
    }

    /// `subscribe-webhooks` (1.2.0).
    pub async fn subscribe_webhooks(
        &self,
        account_id: &str,
        config: &types::ChannelConfig,
    ) -> Operation<()> {
        account_operation!(self, Export::SubscribeWebhooks, (account_id, config) -> ())
    }

    /// `register-sender` (1.2.0).
    pub async fn register_sender(
        &self,
        sender_id: &str,
        pin: &str,
        config: &types::ChannelConfig,
    ) -> Operation<()> {
        account_operation!(self, Export::RegisterSender, (sender_id, pin, config) -> ())
    }
}
