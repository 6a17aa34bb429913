//! The one place that sees the bindings generated from `wit/channel.wit`, with the JSON forms
//! the CLI and the server use ([`json`]) and the single mapping of a webhook error to an HTTP
//! answer and a CLI exit code ([`WebhookErrorAnswer`]).

pub mod json;

/// Types and traits generated from `wit/channel.wit` (async on both sides: the host awaits
/// HTTP inside `http-send`, and calls exports from async tasks).
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "channel-plugin",
        imports: { default: async },
        exports: { default: async },
        additional_derives: [PartialEq, Eq],
    });
}

use bindings::flow::channel::types::WebhookError;
use serde_json::{Value, json};

/// How a webhook error is answered: to the provider over HTTP, and by the CLI.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookErrorAnswer {
    /// 401 bad or missing signature, 403 verification refused, 400 malformed, 500 host-side.
    pub http_status: u16,
    /// 3 signature/verification, 1 malformed, 2 a secret the host lacks.
    pub exit_code: i32,
    /// Stable snake_case code.
    pub code: &'static str,
    /// JSON body (for HTTP and the CLI alike).
    pub body: Value,
}

impl WebhookErrorAnswer {
    pub fn of(e: &WebhookError) -> WebhookErrorAnswer {
        let (http_status, exit_code, code, body) = match e {
            WebhookError::SignatureMissing => (
                401,
                3,
                "signature_missing",
                json!({"message": "the request has no X-Hub-Signature-256 header while an app secret is configured"}),
            ),
            WebhookError::SignatureInvalid(m) => {
                (401, 3, "signature_invalid", json!({"message": m}))
            }
            WebhookError::VerificationRefused(m) => {
                (403, 3, "verification_refused", json!({"message": m}))
            }
            // The secret's name is configuration, not a secret; the value never appears.
            WebhookError::SecretUnavailable(m) => {
                (500, 2, "secret_unavailable", json!({"message": m}))
            }
            WebhookError::Malformed(errors) => (
                400,
                1,
                "malformed",
                json!({"errors": json::field_errors(errors)}),
            ),
        };
        let mut body = body;
        body["error"] = json!(code);
        WebhookErrorAnswer {
            http_status,
            exit_code,
            code,
            body,
        }
    }
}
