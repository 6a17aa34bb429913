//! The one place that sees the bindings generated from the contract (Zed's pattern): one
//! `since_v*` module per served version, each with its bindings and its imports served by the
//! engine; the latest version's types are the host's vocabulary ([`types`]), and each older
//! module maps its values onto them. Which export a call reaches, in which version's types, is
//! decided here too (`calls`), not in the engine. Beside them: the JSON forms the CLI and the
//! server use ([`json`]), the typed signals the runtime acts on ([`signals`]) and the single
//! mapping of a webhook error to an HTTP answer and a CLI exit code ([`WebhookErrorAnswer`]).

mod calls;
mod convert;
pub mod json;
pub mod signals;
pub mod since_v1_0;
pub mod since_v1_1;
pub mod since_v1_2;

use crate::runtime::PluginState;
use semver::Version;
use wasmtime::component::{HasSelf, Linker};

/// The host's vocabulary: the types of the latest contract version, used across the host.
/// (Older versions' twins never leave their `since_v*` module.)
pub use since_v1_2::bindings::flow::channel::types;

pub use calls::Export;

/// Links the host functions of every served version, each served by the same engine.
pub(crate) fn add_to_linker(linker: &mut Linker<PluginState>) -> anyhow::Result<()> {
    use anyhow::Context;
    since_v1_2::bindings::ChannelPlugin::add_to_linker::<PluginState, HasSelf<PluginState>>(
        linker,
        |s| s,
    )
    .map_err(anyhow::Error::from)
    .context("linking the 1.2.0 channel host interface")?;
    since_v1_1::bindings::ChannelPlugin::add_to_linker::<PluginState, HasSelf<PluginState>>(
        linker,
        |s| s,
    )
    .map_err(anyhow::Error::from)
    .context("linking the 1.1.0 channel host interface")?;
    since_v1_0::bindings::ChannelPlugin::add_to_linker::<PluginState, HasSelf<PluginState>>(
        linker,
        |s| s,
    )
    .map_err(anyhow::Error::from)
    .context("linking the 1.0.0 channel host interface")?;
    Ok(())
}

/// The contract versions this host serves, oldest first: a component built against any of
/// them (or a patch release of one) loads.
pub const SERVED: [ContractVersion; 3] = [
    ContractVersion::V1_0,
    ContractVersion::V1_1,
    ContractVersion::V1_2,
];

/// One contract version the host serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ContractVersion {
    /// `flow:channel@1.0.0`, frozen in `wit-history/1.0.0`.
    V1_0,
    /// `flow:channel@1.1.0`, frozen in `wit-history/1.1.0`.
    V1_1,
    /// `flow:channel@1.2.0`, `wit/channel.wit`.
    V1_2,
}

/// The interface a channel component exports, without its version.
pub const CHANNEL_EXPORT: &str = "flow:channel/channel";

impl ContractVersion {
    pub fn name(self) -> &'static str {
        match self {
            ContractVersion::V1_0 => "flow:channel@1.0.0",
            ContractVersion::V1_1 => "flow:channel@1.1.0",
            ContractVersion::V1_2 => "flow:channel@1.2.0",
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
            (1, 2) => Ok(ContractVersion::V1_2),
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

use serde_json::{Value, json};
use types::WebhookError;

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
