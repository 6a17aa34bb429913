//! A versioned plugin registry: channel components by name and semver version.
//!
//! A component is admitted only if the contract it declares (`describe().contract-version`) is
//! one this host serves: the same package, the same major version, and a minor version no newer
//! than the host's (a plugin built against `flow:channel@1.3` may import functions a `1.0` host
//! lacks; wasmtime's linker would refuse it anyway, this says why in plain words). Several
//! versions of one channel can be registered side by side; [`Registry::resolve`] picks the
//! highest that matches a semver requirement. Each entry keeps the sha256 of its bytes, and
//! registering different bytes under an existing name and version is refused.

use crate::runtime::{Limits, Plugin, Runtime};
use crate::services::HostServices;
use anyhow::{Context, Result, bail};
use semver::{Version, VersionReq};
use sha2::Digest;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One registered component.
#[derive(Clone)]
pub struct Entry {
    pub name: String,
    pub version: Version,
    /// The contract it declares, e.g. `flow:channel@1.0.0`.
    pub contract: String,
    pub capabilities: Vec<String>,
    pub sha256: String,
    pub plugin: Plugin,
}

/// Channel components by name, each with its versions in ascending order.
pub struct Registry {
    runtime: Runtime,
    entries: BTreeMap<String, Vec<Entry>>,
}

/// Splits `package@version`.
pub fn parse_contract(contract: &str) -> Result<(&str, Version)> {
    let (package, version) = contract
        .rsplit_once('@')
        .with_context(|| format!("contract {contract:?} is not package@version"))?;
    let version = Version::parse(version)
        .with_context(|| format!("contract {contract:?}: {version:?} is not a semver version"))?;
    Ok((package, version))
}

/// Whether a host serving `host` can run a plugin built against `plugin`.
pub fn compatible(host: &str, plugin: &str) -> Result<()> {
    let (host_pkg, host_v) = parse_contract(host)?;
    let (plugin_pkg, plugin_v) = parse_contract(plugin)?;
    if host_pkg != plugin_pkg {
        bail!("the plugin implements {plugin_pkg}, this host serves {host_pkg}");
    }
    if host_v.major != plugin_v.major {
        bail!("the plugin needs {plugin}, a different major version than this host's {host}");
    }
    if plugin_v.minor > host_v.minor {
        bail!("the plugin needs {plugin}, newer than this host's {host}: upgrade the host");
    }
    Ok(())
}

impl Registry {
    pub fn new(runtime: Runtime) -> Self {
        Registry {
            runtime,
            entries: BTreeMap::new(),
        }
    }

    /// Compiles, describes and admits a component.
    pub fn register(
        &mut self,
        bytes: &[u8],
        services: Arc<HostServices>,
        limits: Limits,
    ) -> Result<&Entry> {
        let plugin = self.runtime.load(bytes, services, limits)?;
        let info = plugin
            .describe()
            .map_err(|e| anyhow::anyhow!("describe failed: {e}"))?;
        compatible(crate::CONTRACT, &info.contract_version)
            .with_context(|| format!("plugin {} {}", info.name, info.plugin_version))?;
        let version = Version::parse(&info.plugin_version).with_context(|| {
            format!(
                "plugin {}: version {:?} is not semver",
                info.name, info.plugin_version
            )
        })?;
        let sha256 = hex::encode(sha2::Sha256::digest(bytes));
        let versions = self.entries.entry(info.name.clone()).or_default();
        if let Some(existing) = versions.iter().find(|e| e.version == version) {
            if existing.sha256 != sha256 {
                bail!(
                    "{} {} is already registered with different bytes (sha256 {}); bump the version",
                    info.name,
                    version,
                    existing.sha256
                );
            }
            return Ok(versions
                .iter()
                .find(|e| e.version == version)
                .expect("found above"));
        }
        let entry = Entry {
            name: info.name,
            version: version.clone(),
            contract: info.contract_version,
            capabilities: info.capabilities,
            sha256,
            plugin,
        };
        let at = versions.partition_point(|e| e.version < version);
        versions.insert(at, entry);
        Ok(&versions[at])
    }

    /// Registers every `.wasm` file in a directory; returns what failed and why, file by file,
    /// so one bad plugin does not keep the others out.
    pub fn load_dir(
        &mut self,
        dir: &Path,
        services: Arc<HostServices>,
        limits: Limits,
    ) -> Result<Vec<(PathBuf, anyhow::Error)>> {
        let mut failures = Vec::new();
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("reading the plugin directory {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
            .collect();
        paths.sort();
        for path in paths {
            let result = std::fs::read(&path)
                .map_err(anyhow::Error::from)
                .and_then(|bytes| self.register(&bytes, services.clone(), limits).map(|_| ()));
            if let Err(e) = result {
                failures.push((path, e));
            }
        }
        Ok(failures)
    }

    /// The highest registered version of `name` matching `req`.
    pub fn resolve(&self, name: &str, req: &VersionReq) -> Option<&Entry> {
        self.entries
            .get(name)?
            .iter()
            .rev()
            .find(|e| req.matches(&e.version))
    }

    /// Every entry, by name then version.
    pub fn list(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_compatibility() {
        assert!(compatible("flow:channel@1.0.0", "flow:channel@1.0.0").is_ok());
        assert!(compatible("flow:channel@1.2.0", "flow:channel@1.1.5").is_ok());
        assert!(
            compatible("flow:channel@1.0.0", "flow:channel@1.1.0")
                .unwrap_err()
                .to_string()
                .contains("upgrade the host")
        );
        assert!(compatible("flow:channel@1.0.0", "flow:channel@2.0.0").is_err());
        assert!(compatible("flow:channel@1.0.0", "acme:sms@1.0.0").is_err());
        assert!(compatible("flow:channel@1.0.0", "flow:channel").is_err());
    }
}
