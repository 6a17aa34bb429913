//! How values cross between an older contract version's types and the latest's: one
//! [`Convert`] trait and the macros each `since_v*` module states its differences with. A
//! macro's paths (`old::…`, `latest::…`) resolve in the module that invokes it, so every older
//! module writes `use … as old` and `use crate::contract::types as latest` and lists, type by
//! type, what is the same and what grew.

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

/// Both directions for a record whose fields are the same in both versions. With
/// `grown { a, b }`: the latest version added those fields; from the old version they take
/// their default (`none`), towards it they are dropped.
macro_rules! same_record {
    ($name:ident { $($field:ident),* $(,)? } $(grown { $($new:ident),* $(,)? })?) => {
        impl Convert<latest::$name> for old::$name {
            fn convert(self) -> latest::$name {
                latest::$name {
                    $($field: self.$field.convert(),)*
                    $($($new: Default::default(),)*)?
                }
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

/// The types every served version has unchanged since 1.0.0.
macro_rules! unchanged_since_v1_0 {
    () => {
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
        // 1.2.0 gave the webhook request its URL and each event its account and sender.
        same_record!(WebhookRequest {
            method,
            headers,
            query,
            body
        } grown { url });
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
        } grown { account_id, sender_id });
    };
}

/// The host imports of a version before 1.2.0 (the same five functions over twin types),
/// served by the latest ones. Invoked where `bindings` and `old` name that version's.
macro_rules! serve_imports_before_v1_2 {
    () => {
        impl bindings::flow::channel::types::Host for PluginState {}

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
                PluginState::signature_verify(
                    self,
                    latest::SignatureAlgorithm::HmacSha256,
                    &secret_name,
                    &data,
                    &mac,
                )
                .convert()
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
    };
}

pub(crate) use {same_cases, same_record, serve_imports_before_v1_2, unchanged_since_v1_0};
