//! What a channel plugin asks of its host, carried inside the component as the custom section
//! `flow-channel-manifest` (written from the crate's `channel-plugin.json` by the build): its
//! name in flows, the provider base it calls by default, the hosts it needs to reach and the
//! secrets it needs (Spin's `allowed_outbound_hosts`, Zed's capabilities). A request, not a
//! grant: the operator's lock entry says what is granted; `inspect`, `registry resolve` and
//! `registry pull` show the request, and `pull` starts a new lock entry from it.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The custom section's name.
pub const SECTION: &str = "flow-channel-manifest";

/// A plugin's requested grants and defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginManifest {
    /// The channel's name in flows (and the prefix of its own secrets).
    pub name: String,
    /// The provider base URL it calls by default.
    pub api_base: String,
    /// Hosts it needs to call.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Secrets it needs: names or `prefix/*`.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Sends per second per sending number the provider allows by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_second: Option<f64>,
    /// The provider's minimum gap between two messages to one customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_gap_ms: Option<u64>,
}

impl PluginManifest {
    /// The manifest a component carries, if any; a malformed one is an error.
    pub fn from_component(wasm: &[u8]) -> Result<Option<PluginManifest>> {
        let Some(payload) = custom_section(wasm, SECTION)? else {
            return Ok(None);
        };
        let de = &mut serde_json::Deserializer::from_slice(payload);
        let manifest = serde_path_to_error::deserialize(de).map_err(|e| {
            anyhow::anyhow!(
                "the {SECTION} section at /{}: {}",
                e.path().to_string().replace('.', "/"),
                e.inner()
            )
        })?;
        Ok(Some(manifest))
    }
}

/// The payload of the first top-level custom section called `name` (nested modules, which
/// live inside other sections, are not searched).
pub fn custom_section<'a>(wasm: &'a [u8], name: &str) -> Result<Option<&'a [u8]>> {
    if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
        bail!("not a WebAssembly binary");
    }
    let mut at = 8;
    while at < wasm.len() {
        let id = wasm[at];
        let (size, len) = leb128(&wasm[at + 1..]).context("a section size")?;
        let start = at + 1 + len;
        let end = start
            .checked_add(size)
            .filter(|&e| e <= wasm.len())
            .context("a section runs past the end of the binary")?;
        if id == 0 {
            let body = &wasm[start..end];
            let (name_len, n) = leb128(body).context("a custom section name")?;
            let name_end = n.checked_add(name_len).filter(|&e| e <= body.len());
            let name_end = name_end.context("a custom section name runs past its section")?;
            if &body[n..name_end] == name.as_bytes() {
                return Ok(Some(&body[name_end..]));
            }
        }
        at = end;
    }
    Ok(None)
}

/// An unsigned LEB128 number and how many bytes it took.
fn leb128(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut value: usize = 0;
    for (i, &b) in bytes.iter().enumerate().take(5) {
        value |= ((b & 0x7f) as usize) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_components_carry_their_manifest() {
        let whatsapp = std::fs::read(host_testkit::WHATSAPP_CHANNEL_WASM).unwrap();
        let m = PluginManifest::from_component(&whatsapp).unwrap().unwrap();
        assert_eq!(m.name, "whatsapp");
        assert_eq!(m.allowed_hosts, ["graph.facebook.com"]);
        assert_eq!(m.secrets, ["whatsapp/*"]);
        let sms = std::fs::read(host_testkit::SMS_FIXTURE_V1_WASM).unwrap();
        assert_eq!(
            PluginManifest::from_component(&sms).unwrap().unwrap().name,
            "sms"
        );
        let hostile = std::fs::read(host_testkit::HOSTILE_CHANNEL_WASM).unwrap();
        assert_eq!(PluginManifest::from_component(&hostile).unwrap(), None);
    }

    #[test]
    fn a_truncated_binary_is_an_error_not_a_panic() {
        let whatsapp = std::fs::read(host_testkit::WHATSAPP_CHANNEL_WASM).unwrap();
        for cut in [0, 3, 8, 9, 100, whatsapp.len() - 1] {
            let _ = custom_section(&whatsapp[..cut], SECTION);
        }
        assert!(custom_section(b"\0asm\x0d\0\x01\0\0\xff", SECTION).is_err());
    }
}
