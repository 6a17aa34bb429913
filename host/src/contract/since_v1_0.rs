//! `flow:channel@1.0.0`, served beside the latest version.
//!
//! Bindings are generated from the frozen WIT in `wit-history/1.0.0`. The host works only with
//! the latest types; values cross between the two here and nowhere else: 1.0.0 imports are
//! served by the latest host functions, and 1.0.0 exports are called with converted arguments
//! and their results converted back. What differs from the latest version: `message-request`
//! (1.1.0 added `opted-out`, which a 1.0.0 channel cannot honour), `event-kind` (1.1.0 added
//! cases, so every 1.0.0 kind has its latest twin), and what 1.2.0 grew (see
//! [`super::convert`]); 1.2.0's account operations do not exist for it.

use super::convert::{
    Convert, same_cases, same_record, serve_imports_before_v1_2, unchanged_since_v1_0,
};
use crate::contract::types as latest;
use crate::runtime::PluginState;

/// Bindings of the 1.0.0 world.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit-history/1.0.0",
        world: "channel-plugin",
        imports: { default: async },
        exports: { default: async },
    });
}

pub(crate) use bindings::flow::channel::types as old;

unchanged_since_v1_0!();

impl Convert<latest::EventKind> for old::EventKind {
    fn convert(self) -> latest::EventKind {
        match self {
            old::EventKind::MessageStatus => latest::EventKind::MessageStatus,
            old::EventKind::InboundMessage => latest::EventKind::InboundMessage,
            old::EventKind::ChannelError => latest::EventKind::ChannelError,
            old::EventKind::RecipientPreference => latest::EventKind::RecipientPreference,
            old::EventKind::TemplateStatus => latest::EventKind::TemplateStatus,
            old::EventKind::Other => latest::EventKind::Other,
        }
    }
}

/// Only needed to satisfy [`same_record!`] for `webhook-event` in the direction the host
/// never uses (it never hands events to a plugin); kinds added since become `other`.
impl Convert<old::EventKind> for latest::EventKind {
    fn convert(self) -> old::EventKind {
        match self {
            latest::EventKind::MessageStatus => old::EventKind::MessageStatus,
            latest::EventKind::InboundMessage => old::EventKind::InboundMessage,
            latest::EventKind::ChannelError => old::EventKind::ChannelError,
            latest::EventKind::RecipientPreference => old::EventKind::RecipientPreference,
            latest::EventKind::TemplateStatus => old::EventKind::TemplateStatus,
            _ => old::EventKind::Other,
        }
    }
}

/// A 1.0.0 message request: `opted-out` and `deadline-ms` did not exist, so they are dropped.
impl Convert<old::MessageRequest> for latest::MessageRequest {
    fn convert(self) -> old::MessageRequest {
        old::MessageRequest {
            recipient: self.recipient,
            correlation_id: self.correlation_id,
            content: self.content,
            last_inbound_ms: self.last_inbound_ms,
            now_ms: self.now_ms,
        }
    }
}

serve_imports_before_v1_2!();
