//! `plugins.lock`: the plugins `serve` loads, each pinned by version and sha256 and carrying
//! its grants (Spin's `allowed_outbound_hosts`, Zed's capability granter): the hosts it may
//! call and the secrets it may use. Nothing else is loaded, and nothing is granted that the
//! lock file does not say.
//!
//! ```json
//! {"plugins": [{"name": "whatsapp", "version": "0.1.0", "digest": "sha256:…",
//!   "path": "whatsapp_channel.wasm", "registry": "file:./plugins",
//!   "api_base": "https://graph.facebook.com", "allowed_hosts": ["graph.facebook.com"],
//!   "secrets": ["whatsapp/*"], "settings": {"phone_number_id": "…"},
//!   "rate_per_second": 80, "customer_gap_ms": 6000}]}
//! ```
//!
//! `registry pull` writes entries (a new entry starts from the grants the plugin asks for;
//! an existing one keeps the operator's grants and settings and moves only the pin).

use crate::channels::ChannelSetup;
use crate::flow::pacing::ChannelPacing;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The whole lock file.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockFile {
    pub plugins: Vec<LockEntry>,
}

/// One pinned plugin and what it is granted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockEntry {
    /// The channel's name in flows (and the prefix of its own secrets).
    pub name: String,
    /// The plugin version `describe` must report.
    pub version: String,
    /// `sha256:<hex>` of the artifact; checked before it is compiled.
    pub digest: String,
    /// The artifact, relative to the lock file.
    pub path: PathBuf,
    /// Where it was resolved from (`registry pull --locked` fetches it again from there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// The registry manifest's `sha256:` (what its signature covers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_digest: Option<String>,
    /// The id of the trusted key whose signature was checked when it was pulled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    /// The provider's base URL.
    pub api_base: String,
    /// Hosts the plugin may call (its secrets travel only there).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Secrets it may use: names, or `prefix/*`; empty: those under its own name.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// The channel's settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Value>,
    /// Sends per second per sending number (none: unpaced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_second: Option<f64>,
    /// Minimum gap between two messages to one customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_gap_ms: Option<u64>,
}

impl LockFile {
    /// Reads a lock file; a malformed one is refused with the JSON pointer of the problem.
    pub fn read(path: &Path) -> Result<LockFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the lock file {}", path.display()))?;
        let de = &mut serde_json::Deserializer::from_str(&text);
        let lock: LockFile = serde_path_to_error::deserialize(de).map_err(|e| {
            anyhow::anyhow!(
                "{} at /{}: {}",
                path.display(),
                e.path().to_string().replace('.', "/"),
                e.inner()
            )
        })?;
        let mut names: Vec<&str> = lock.plugins.iter().map(|p| p.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            bail!("{}: the channel {:?} is locked twice", path.display(), w[0]);
        }
        Ok(lock)
    }

    /// Reads a lock file, or an empty one if there is none yet.
    pub fn read_or_default(path: &Path) -> Result<LockFile> {
        if path.exists() {
            Self::read(path)
        } else {
            Ok(LockFile::default())
        }
    }

    /// Writes it (through a temporary file: a reader never sees half a lock file).
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("JSON") + "\n";
        crate::registry::backend::write_atomically(path, text.as_bytes())
    }

    /// The entry of a channel.
    pub fn entry_mut(&mut self, name: &str) -> Option<&mut LockEntry> {
        self.plugins.iter_mut().find(|p| p.name == name)
    }

    /// Reads a lock file and returns the channels it sets up.
    pub fn setups_from(path: &Path) -> Result<Vec<ChannelSetup>> {
        Self::read(path)?.setups(path)
    }

    /// The channels to load, artifacts found next to the lock file.
    pub fn setups(&self, lock_path: &Path) -> Result<Vec<ChannelSetup>> {
        let dir = lock_path.parent().unwrap_or(Path::new("."));
        self.plugins
            .iter()
            .enumerate()
            .map(|(i, p)| p.setup(dir).with_context(|| format!("/plugins/{i}")))
            .collect()
    }
}

impl LockEntry {
    /// A new entry that grants what the plugin asks for, at `version` / `digest`.
    pub fn granting(
        request: &crate::plugin_manifest::PluginManifest,
        version: String,
        digest: String,
        path: PathBuf,
    ) -> LockEntry {
        LockEntry {
            name: request.name.clone(),
            version,
            digest,
            path,
            registry: None,
            manifest_digest: None,
            signed_by: None,
            api_base: request.api_base.clone(),
            allowed_hosts: request.allowed_hosts.clone(),
            secrets: request.secrets.clone(),
            settings: None,
            rate_per_second: request.rate_per_second,
            customer_gap_ms: request.customer_gap_ms,
        }
    }

    fn setup(&self, dir: &Path) -> Result<ChannelSetup> {
        if !self.digest.starts_with("sha256:") {
            bail!("digest must be sha256:<hex>, got {:?}", self.digest);
        }
        let pacing = match (self.rate_per_second, self.customer_gap_ms) {
            (None, None) => None,
            (rate, gap) => Some(ChannelPacing {
                rate_per_second: rate.unwrap_or(0.0),
                customer_gap_ms: gap.unwrap_or(0),
            }),
        };
        let settings = self
            .settings
            .clone()
            .unwrap_or_else(|| Value::Object(Default::default()));
        Ok(ChannelSetup {
            allow_hosts: self.allowed_hosts.clone(),
            pacing,
            secrets: self.secrets.clone(),
            digest: Some(self.digest.clone()),
            version: Some(self.version.clone()),
            ..ChannelSetup::new(
                &self.name,
                dir.join(&self.path),
                &self.api_base,
                settings.to_string(),
            )
        })
    }
}
