//! `flow:channel@1.0.0`, served beside the latest version.
//!
//! Bindings are generated from the frozen WIT in `wit-history/1.0.0`. The host works only with
//! the latest types; values cross between the two here and nowhere else: 1.0.0 imports are
//! served by the latest host functions, and 1.0.0 exports are called with converted arguments
//! and their results converted back. Every 1.0.0 type exists unchanged in 1.1.0 except
//! `message-request` (1.1.0 adds `opted-out`, which a 1.0.0 channel cannot honour) and
//! `event-kind` (1.1.0 adds cases, so every 1.0.0 kind has its latest twin).

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

use bindings::flow::channel::types as old;

/// A conversion between a type and its twin in the other contract version.
pub trait Convert<T> {
    fn convert(self) -> T;
}

macro_rules! identity {
    ($($t:ty),*) => { $(impl Convert<$t> for $t { fn convert(self) -> $t { self } })* };
}
identity!((), String, bool, u8, u16, u32, u64);

impl<A: Convert<B>, B> Convert<Vec<B>> for Vec<A> {
    fn convert(self) -> Vec<B> {
        self.into_iter().map(Convert::convert).collect()
    }
}

impl<A: Convert<B>, B> Convert<Option<B>> for Option<A> {
    fn convert(self) -> Option<B> {
        self.map(Convert::convert)
    }
}

impl<A: Convert<C>, B: Convert<D>, C, D> Convert<(C, D)> for (A, B) {
    fn convert(self) -> (C, D) {
        (self.0.convert(), self.1.convert())
    }
}

impl<A: Convert<C>, B: Convert<D>, C, D> Convert<Result<C, D>> for Result<A, B> {
    fn convert(self) -> Result<C, D> {
        self.map(Convert::convert).map_err(Convert::convert)
    }
}

/// Both directions for a record whose fields are the same in both versions.
macro_rules! same_record {
    ($name:ident { $($field:ident),* $(,)? }) => {
        impl Convert<latest::$name> for old::$name {
            fn convert(self) -> latest::$name {
                latest::$name { $($field: self.$field.convert()),* }
            }
        }
        impl Convert<old::$name> for latest::$name {
            fn convert(self) -> old::$name {
                old::$name { $($field: self.$field.convert()),* }
            }
        }
    };
}

/// Both directions for an enum (or variant) whose cases are the same in both versions;
/// `case(x)` marks a case with a payload.
macro_rules! same_cases {
    ($name:ident { $($case:ident $(($payload:ident))?),* $(,)? }) => {
        impl Convert<latest::$name> for old::$name {
            fn convert(self) -> latest::$name {
                match self { $(old::$name::$case $(($payload))? => latest::$name::$case $(($payload.convert()))?),* }
            }
        }
        impl Convert<old::$name> for latest::$name {
            fn convert(self) -> old::$name {
                match self { $(latest::$name::$case $(($payload))? => old::$name::$case $(($payload.convert()))?),* }
            }
        }
    };
}

same_record!(Header { name, value });
same_record!(HttpRequest {
    method,
    url,
    headers,
    body
});
same_record!(HttpResponse {
    status,
    headers,
    body
});
same_cases!(TransportErrorKind {
    Dns,
    Connect,
    Tls,
    Timeout,
    Reset,
    Denied,
    TooLarge,
    Other
});
same_record!(TransportError {
    kind,
    request_sent,
    message
});
same_cases!(SendOutcome { Response(r), TransportError(e) });
same_record!(FieldError {
    path,
    code,
    message
});
same_record!(ChannelConfig { api_base, settings });
same_cases!(Disposition {
    Accepted,
    Sent,
    Delivered,
    Read,
    Retry,
    Fallback,
    Failed,
    Unknown
});
same_record!(Classification {
    disposition,
    reason,
    provider_code,
    provider_title,
    provider_details,
    provider_trace_id,
    retry_after_ms,
    operator_action,
    provider_message_id,
});
same_record!(WebhookRequest {
    method,
    headers,
    query,
    body
});
same_cases!(WebhookError {
    SignatureMissing,
    SignatureInvalid(m),
    VerificationRefused(m),
    SecretUnavailable(m),
    Malformed(errors),
});
same_record!(ChannelInfo {
    name,
    plugin_version,
    contract_version,
    capabilities,
    config_schema,
    message_schema,
    template_schema,
});
same_cases!(SecretError { NotFound, Denied });
same_cases!(LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error
});
same_cases!(WebhookOutcome { Verification(body), Events(events) });
same_record!(WebhookEvent {
    kind,
    provider_message_id,
    recipient,
    correlation_id,
    occurred_at_ms,
    classification,
    precedence,
    dedupe_key,
    service_window_ends_ms,
    details,
});

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
/// never uses (it never hands events to a plugin); 1.1.0-only kinds become `other`.
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

/// A 1.0.0 message request: `opted-out` did not exist, so it is dropped.
impl Convert<old::MessageRequest> for &latest::MessageRequest {
    fn convert(self) -> old::MessageRequest {
        old::MessageRequest {
            recipient: self.recipient.clone(),
            correlation_id: self.correlation_id.clone(),
            content: self.content.clone(),
            last_inbound_ms: self.last_inbound_ms,
            now_ms: self.now_ms,
        }
    }
}

impl bindings::flow::channel::types::Host for PluginState {}

/// 1.0.0 imports are the same functions over twin types: served by the latest ones.
impl bindings::flow::channel::host::Host for PluginState {
    async fn http_send(
        &mut self,
        request: old::HttpRequest,
    ) -> Result<old::HttpResponse, old::TransportError> {
        PluginState::http_send(self, request.convert())
            .await
            .convert()
    }

    async fn hmac_sha256_verify(
        &mut self,
        secret_name: String,
        data: Vec<u8>,
        mac: Vec<u8>,
    ) -> Result<bool, old::SecretError> {
        PluginState::hmac_sha256_verify(self, &secret_name, &data, &mac).convert()
    }

    async fn secret_equals(
        &mut self,
        secret_name: String,
        candidate: String,
    ) -> Result<bool, old::SecretError> {
        PluginState::secret_equals(self, &secret_name, &candidate).convert()
    }

    async fn log(&mut self, level: old::LogLevel, message: String) {
        PluginState::log(self, level.convert(), &message);
    }

    async fn now_ms(&mut self) -> u64 {
        crate::services::now_ms()
    }
}
