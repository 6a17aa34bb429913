//! The one place that sees the bindings generated from the contract: the latest version
//! ([`bindings`], `wit/channel.wit`) whose types the whole host uses, each older version it
//! still serves in a `since_v*` module that maps its calls onto the latest types (Zed's
//! pattern), the JSON forms the CLI and the server use ([`json`]) and the single mapping of a
//! webhook error to an HTTP answer and a CLI exit code ([`WebhookErrorAnswer`]).

pub mod json;
pub mod signals;
pub mod since_v1_0;

use semver::Version;

/// Types and traits generated from `wit/channel.wit`, `flow:channel@1.1.0` (async on both
/// sides: the host awaits HTTP inside `http-send`, and calls exports from async tasks).
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "channel-plugin",
        imports: { default: async },
        exports: { default: async },
        additional_derives: [PartialEq, Eq],
    });
}

/// The contract versions this host serves, oldest first: a component built against any of
/// them (or a patch release of one) loads.
pub const SERVED: [ContractVersion; 2] = [ContractVersion::V1_0, ContractVersion::V1_1];

/// One contract version the host serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContractVersion {
    /// `flow:channel@1.0.0`, frozen in `wit-history/1.0.0`.
    V1_0,
    /// `flow:channel@1.1.0`, `wit/channel.wit`.
    V1_1,
}

/// The interface a channel component exports, without its version.
pub const CHANNEL_EXPORT: &str = "flow:channel/channel";

impl ContractVersion {
    pub fn name(self) -> &'static str {
        match self {
            ContractVersion::V1_0 => "flow:channel@1.0.0",
            ContractVersion::V1_1 => "flow:channel@1.1.0",
        }
    }

    /// The served version a component exporting `flow:channel/channel@{version}` was built
    /// against, or why it cannot be served, naming both sides.
    pub fn of_export(version: &str) -> Result<ContractVersion, String> {
        let served = || {
            format!(
                "this host serves {} to {}",
                SERVED[0].name(),
                SERVED[SERVED.len() - 1].name()
            )
        };
        let v = Version::parse(version).map_err(|_| {
            format!(
                "the component exports {CHANNEL_EXPORT}@{version}, which is not a semver version; {}",
                served()
            )
        })?;
        match (v.major, v.minor) {
            (1, 0) => Ok(ContractVersion::V1_0),
            (1, 1) => Ok(ContractVersion::V1_1),
            (1, _) => Err(format!(
                "the component implements flow:channel@{v}, newer than this host: {}; upgrade the host",
                served()
            )),
            _ => Err(format!(
                "the component implements flow:channel@{v}, another major version: {}",
                served()
            )),
        }
    }
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
                // The host serves every channel: the channel's own header is its business.
                json!({"message": "the request carries no signature while the channel's webhook secret is configured"}),
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
