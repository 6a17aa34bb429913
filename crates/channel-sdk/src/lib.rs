//! What every `flow:channel` guest built against the latest contract (`wit/channel.wit`)
//! shares, so that a channel crate holds only its provider's rules:
//!
//! - the generated bindings ([`bindings`]; the contract's types re-exported at the root) and
//!   [`export!`](crate::export), which a channel calls once with its [`Guest`] implementation;
//! - [`Host`], the host's side effects as a trait, with [`ImportedHost`] reaching the
//!   component's imports, so a channel's domain is tested natively against a real
//!   in-process host and runs in wasm against the real one;
//! - [`Classification`] builders and the names of the contract's enums ([`names`]);
//! - the reasons every channel gives for the same host-side facts ([`reasons`]), and the one
//!   classification of a transport failure ([`transport_failure`]);
//! - [`report_panics`]: a panic reaches the host's log before the call traps.
//!
//! A component built against an older contract version (the frozen 1.0.0 SMS fixture, the
//! 1.1.0 hostile fixture) keeps its own bindings: its version is the point of it.

pub mod names;
pub mod reasons;

mod classification;
mod host;

pub use classification::transport_failure;
pub use host::{Host, ImportedHost, now_ms};

/// The bindings generated from `wit/channel.wit`. Public so that [`export!`](crate::export)
/// can name them from the channel's crate.
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "channel-plugin",
        additional_derives: [PartialEq, Eq],
        pub_export_macro: true,
        default_bindings_module: "channel_sdk::bindings",
    });
}

/// `export!(MyChannel with_types_in channel_sdk::bindings)`: makes `MyChannel`'s [`Guest`]
/// implementation the component's exports (call it once, under `cfg(target_arch = "wasm32")`).
pub use bindings::export;
pub use bindings::exports::flow::channel::channel::Guest;
pub use bindings::flow::channel::types::{
    AccountFacts, ChannelConfig, ChannelInfo, Classification, Disposition, EventKind, FieldError,
    GrantedCredential, Header, HttpRequest, HttpResponse, LogLevel, MessageRequest, OperationError,
    SecretError, SendOutcome, SenderFacts, SignatureAlgorithm, TemplatePage, TemplateState,
    TransportError, TransportErrorKind, WebhookError, WebhookEvent, WebhookOutcome, WebhookRequest,
};

/// The contract version these bindings implement.
pub const CONTRACT: &str = "flow:channel@1.2.0";

/// Installs, once per instance, a panic hook that writes the panic to the host's log naming
/// `channel`: the component has no stderr (it imports nothing but the contract). Call it at
/// the top of every export.
pub fn report_panics(channel: &'static str) {
    // The name lives in a static and the hook captures nothing: a boxed closure with a capture
    // would be a heap block that is never freed, and the bump allocator starts its heap over
    // only when every block is free (a host that keeps one instance for many calls would see
    // memory grow at every call).
    static CHANNEL: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    if CHANNEL.set(channel).is_ok() {
        std::panic::set_hook(Box::new(|info| {
            let channel = CHANNEL.get().copied().unwrap_or("a");
            ImportedHost.log(
                LogLevel::Error,
                &format!("{channel} channel panicked: {info}"),
            );
        }));
    }
}

/// The value of the first header named `name` (names compare case-insensitively), trimmed.
pub fn header_value<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.trim())
}

/// A webhook the channel cannot check because its settings do not parse: the host answers
/// 500 (an operator must fix them) and the provider delivers it again later.
pub fn settings_unusable(channel: &str, errors: &[FieldError]) -> WebhookError {
    let problems: Vec<String> = errors
        .iter()
        .map(|e| format!("/settings{}: {}", e.path, e.message))
        .collect();
    WebhookError::SecretUnavailable(format!(
        "the {channel} settings are not usable: {}",
        problems.join("; ")
    ))
}

/// The account operations of [`Guest`] for a channel without business accounts in the
/// contract's sense (its account is the operator's, in the settings): each answers
/// `unsupported`. Call it inside the channel's `impl Guest`.
#[macro_export]
macro_rules! no_account_operations {
    () => {
        fn exchange_code(
            _: String,
            _: $crate::ChannelConfig,
        ) -> Result<$crate::GrantedCredential, $crate::OperationError> {
            Err($crate::OperationError::Unsupported)
        }

        fn check_account(
            _: String,
            _: Vec<String>,
            _: $crate::ChannelConfig,
        ) -> Result<$crate::AccountFacts, $crate::OperationError> {
            Err($crate::OperationError::Unsupported)
        }

        fn list_templates(
            _: String,
            _: Option<String>,
            _: $crate::ChannelConfig,
        ) -> Result<$crate::TemplatePage, $crate::OperationError> {
            Err($crate::OperationError::Unsupported)
        }

        fn subscribe_webhooks(
            _: String,
            _: $crate::ChannelConfig,
        ) -> Result<(), $crate::OperationError> {
            Err($crate::OperationError::Unsupported)
        }

        fn register_sender(
            _: String,
            _: String,
            _: $crate::ChannelConfig,
        ) -> Result<(), $crate::OperationError> {
            Err($crate::OperationError::Unsupported)
        }
    };
}

impl Header {
    pub fn new(name: &str, value: &str) -> Header {
        Header {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// The wait before retry `attempt` (1-based) when the provider names none: 1 s, doubling, at
/// most 64 s.
pub fn doubling_backoff_ms(attempt: u32) -> u64 {
    1_000u64.saturating_mul(1 << attempt.saturating_sub(1).min(6))
}

/// A channel's settings text as a JSON object (empty text: `{}`), or the field error saying
/// why not, naming the channel (`what`: "SMS", "email").
pub fn settings_object(
    text: &str,
    what: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, Vec<FieldError>> {
    let text = if text.trim().is_empty() { "{}" } else { text };
    let error = |code: &str, message: String| {
        vec![FieldError {
            path: String::new(),
            code: code.into(),
            message,
        }]
    };
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(other) => Err(error(
            "expected_object",
            format!("the {what} settings must be a JSON object, got {other}"),
        )),
        Err(e) => Err(error(
            "invalid_json",
            format!("the {what} settings are not JSON: {e}"),
        )),
    }
}
