//! `flow:channel@1.1.0`, served beside the latest version.
//!
//! Bindings are generated from the frozen WIT in `wit-history/1.1.0`; values cross here and
//! nowhere else, as for 1.0.0. What differs from the latest version is what 1.2.0 grew (see
//! [`super::convert`]): the URL of a webhook request, the account and sender of an event, a
//! message request's deadline, the `signature-verify` import and the account operations, which do not exist for it.

use super::convert::{
    Convert, same_cases, same_record, serve_imports_before_v1_2, unchanged_since_v1_0,
};
use crate::contract::types as latest;
use crate::runtime::PluginState;

/// Bindings of the 1.1.0 world.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit-history/1.1.0",
        world: "channel-plugin",
        imports: { default: async },
        exports: { default: async },
    });
}

pub(crate) use bindings::flow::channel::types as old;

unchanged_since_v1_0!();

same_cases!(EventKind {
    MessageStatus,
    InboundMessage,
    ChannelError,
    RecipientPreference,
    TemplateStatus,
    IdentityChange,
    Handover,
    Call,
    TemplateCategoryChange,
    TemplateQualityChange,
    TemplateComponentsChange,
    AccountUpdate,
    SenderQualityChange,
    Other,
});
same_record!(MessageRequest {
    recipient,
    correlation_id,
    content,
    last_inbound_ms,
    now_ms,
    opted_out,
} grown { deadline_ms });

serve_imports_before_v1_2!();
