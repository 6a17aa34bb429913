//! Each channel function called in the plugin's own contract version: the arguments converted
//! to that version's types, the results back to the host's.

use super::since_v1_0::{Convert, bindings::flow::channel::types as old};
use super::{ContractVersion, types};
use crate::runtime::{CallError, Plugin};
use anyhow::Result;
use wasmtime::component::{Component, ComponentExportIndex};

/// The functions of the channel interface, the same in every served contract version.
#[derive(Debug, Clone, Copy)]
pub enum Export {
    Describe,
    ValidateTemplate,
    BuildPayload,
    Classify,
    ParseWebhook,
    Send,
}

impl Export {
    pub const COUNT: usize = 6;
    const ALL: [Export; Export::COUNT] = [
        Export::Describe,
        Export::ValidateTemplate,
        Export::BuildPayload,
        Export::Classify,
        Export::ParseWebhook,
        Export::Send,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Export::Describe => "describe",
            Export::ValidateTemplate => "validate-template",
            Export::BuildPayload => "build-payload",
            Export::Classify => "classify",
            Export::ParseWebhook => "parse-webhook",
            Export::Send => "send",
        }
    }

    /// Each function's index in `component`, looked up once so a call finds its function
    /// without a string lookup (and checks the type of that one function, not of all six).
    pub(crate) fn indices(
        component: &Component,
        interface: &str,
        contract: ContractVersion,
    ) -> Result<[ComponentExportIndex; Export::COUNT]> {
        let not_exported = |what: &str| {
            anyhow::anyhow!(
                "the component does not export {what} as {}",
                contract.name()
            )
        };
        let instance = component
            .get_export_index(None, interface)
            .ok_or_else(|| not_exported(interface))?;
        let mut indices = [instance; Export::COUNT];
        for (slot, export) in indices.iter_mut().zip(Export::ALL) {
            *slot = component
                .get_export_index(Some(&instance), export.name())
                .ok_or_else(|| not_exported(&format!("{interface}#{}", export.name())))?;
        }
        Ok(indices)
    }
}

impl Plugin {
    /// `describe`, always calling the component (the bench measures the call).
    pub async fn describe_uncached(&self) -> Result<types::ChannelInfo, CallError> {
        match self.contract {
            ContractVersion::V1_1 => self.call(Export::Describe, ()).await.map(|(r,)| r),
            ContractVersion::V1_0 => self
                .call::<_, (old::ChannelInfo,)>(Export::Describe, ())
                .await
                .map(|(r,)| r.convert()),
        }
    }

    /// `validate-template`.
    pub async fn validate_template(
        &self,
        template: &str,
    ) -> Result<Result<(), Vec<types::FieldError>>, CallError> {
        match self.contract {
            ContractVersion::V1_1 => self
                .call(Export::ValidateTemplate, (template,))
                .await
                .map(|(r,)| r),
            ContractVersion::V1_0 => self
                .call::<_, (Result<(), Vec<old::FieldError>>,)>(
                    Export::ValidateTemplate,
                    (template,),
                )
                .await
                .map(|(r,)| r.convert()),
        }
    }

    /// `build-payload`.
    pub async fn build_payload(
        &self,
        request: &types::MessageRequest,
        config: &types::ChannelConfig,
    ) -> Result<Result<types::HttpRequest, Vec<types::FieldError>>, CallError> {
        match self.contract {
            ContractVersion::V1_1 => self
                .call(Export::BuildPayload, (request, config))
                .await
                .map(|(r,)| r),
            ContractVersion::V1_0 => {
                let (request, config) = (request.convert(), config.clone().convert());
                self.call::<_, (Result<old::HttpRequest, Vec<old::FieldError>>,)>(
                    Export::BuildPayload,
                    (&request, &config),
                )
                .await
                .map(|(r,)| r.convert())
            }
        }
    }

    /// `classify`.
    pub async fn classify(
        &self,
        outcome: &types::SendOutcome,
        attempt: u32,
    ) -> Result<types::Classification, CallError> {
        match self.contract {
            ContractVersion::V1_1 => self
                .call(Export::Classify, (outcome, attempt))
                .await
                .map(|(r,)| r),
            ContractVersion::V1_0 => {
                let outcome = outcome.clone().convert();
                self.call::<_, (old::Classification,)>(Export::Classify, (&outcome, attempt))
                    .await
                    .map(|(r,)| r.convert())
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
            ContractVersion::V1_1 => self
                .call(Export::ParseWebhook, (request, config))
                .await
                .map(|(r,)| r),
            ContractVersion::V1_0 => {
                let (request, config) = (request.clone().convert(), config.clone().convert());
                self.call::<_, (Result<old::WebhookOutcome, old::WebhookError>,)>(
                    Export::ParseWebhook,
                    (&request, &config),
                )
                .await
                .map(|(r,)| r.convert())
            }
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
            ContractVersion::V1_1 => self
                .call(Export::Send, (request, config, attempt))
                .await
                .map(|(r,)| r),
            ContractVersion::V1_0 => {
                let (request, config) = (request.convert(), config.clone().convert());
                self.call::<_, (Result<old::Classification, Vec<old::FieldError>>,)>(
                    Export::Send,
                    (&request, &config, attempt),
                )
                .await
                .map(|(r,)| r.convert())
            }
        }
    }
}
