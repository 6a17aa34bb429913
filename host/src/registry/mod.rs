//! The versioned plugin registry: channel plugins published as OCI artifacts (CNCF Wasm
//! layout, [`artifact`]) to a directory ([`backend::DirBackend`], the default) or an OCI
//! registry ([`oci::OciBackend`]), one repository per plugin name, one tag per version.
//!
//! - A version is immutable: publishing other bytes under an existing version is refused
//!   (the same bytes again are a no-op: the manifest has no timestamp, so its digest is the
//!   same).
//! - `yank` hides a version from resolution (a marker tag `<version>.yanked`); a pull pinned
//!   by digest, as a lock file pins it, still works.
//! - Resolution picks the highest unyanked version matching a semver requirement.
//! - Every fetched manifest and blob is checked against its sha256 before anything uses it.
//! - A signature (Ed25519 over name and manifest digest, [`signing`]) is stored at the tag
//!   `sha256-<hex>.sig`, cosign's convention; with trusted keys configured, unsigned or
//!   wrongly signed artifacts are refused.
//!
//! A component is admitted only if the contract it declares is one this host serves
//! ([`compatible`]).

pub mod artifact;
pub mod backend;
pub mod oci;
pub mod signing;

use anyhow::{Context, Result, bail};
use artifact::{ComponentFacts, Descriptor, ImageManifest};
use backend::{Backend, DirBackend, digest_of};
use semver::{Version, VersionReq};
use serde::Serialize;
use std::path::PathBuf;

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

/// A registry: a backend and where it is.
pub struct Registry {
    backend: Backend,
    location: String,
}

/// One published version.
#[derive(Debug, Clone, Serialize)]
pub struct VersionEntry {
    pub version: Version,
    /// Why it was yanked, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub yanked: Option<String>,
}

/// A version chosen by resolution or pinned, with its manifest read and checked.
#[derive(Debug, Clone, Serialize)]
pub struct Resolved {
    pub name: String,
    pub version: Version,
    /// The registry it came from.
    pub registry: String,
    pub manifest_digest: String,
    /// `sha256:` of the component (the lock file's `digest`).
    pub digest: String,
    pub size: u64,
    pub contract: Option<String>,
    /// The grants it asks for.
    pub requests: Option<crate::plugin_manifest::PluginManifest>,
    pub annotations: std::collections::BTreeMap<String, String>,
    #[serde(skip)]
    manifest: ImageManifest,
}

/// How to pick a version.
#[derive(Debug, Clone)]
pub enum Pin {
    /// The highest unyanked version matching.
    Req(VersionReq),
    /// Exactly this manifest (yanked or not).
    Digest(String),
}

/// What `publish` did.
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    pub name: String,
    pub version: Version,
    pub manifest_digest: String,
    pub digest: String,
    /// False when the same bytes were already published under this version.
    pub created: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
}

/// A registry (repository) name: lowercase letters and digits, separated by single `.` `_`
/// `-`. Checked wherever a name reaches a backend, so none (`../outside`, `/etc`) leaves it.
pub fn check_name(name: &str) -> Result<()> {
    let valid_name = !name.is_empty()
        && name.len() <= 128
        && name.split(['.', '_', '-']).all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    if !valid_name {
        bail!(
            "the plugin name {name:?} is not a registry name (lowercase letters and digits, separated by . _ -)"
        );
    }
    Ok(())
}

/// The version a component's own metadata (`wasm-metadata`) names.
fn component_version(wasm: &[u8]) -> Option<Version> {
    let payload = wasm_metadata::Payload::from_binary(wasm).ok()?;
    let version = payload.metadata().version.as_ref()?.to_string();
    Version::parse(&version).ok()
}

/// OCI tags cannot hold `+`; build metadata would also make two "equal" versions.
fn check_publishable(name: &str, version: &Version) -> Result<()> {
    check_name(name)?;
    if !version.build.is_empty() {
        bail!("{name} {version}: build metadata (+…) cannot be a registry version");
    }
    Ok(())
}

/// cosign's tag for the signatures of a manifest: `sha256-<hex>.sig`.
fn signature_tag(manifest_digest: &str) -> String {
    manifest_digest.replacen(':', "-", 1) + ".sig"
}

fn yank_tag(version: &Version) -> String {
    format!("{version}.yanked")
}

impl Registry {
    /// `oci://host[:port]/namespace`, `oci+http://…`, `file:DIR` or a directory path.
    pub fn open(location: &str) -> Result<Registry> {
        let backend: Backend =
            if location.starts_with("oci://") || location.starts_with("oci+http://") {
                Backend::Oci(oci::OciBackend::open(location)?)
            } else {
                let dir = location.strip_prefix("file:").unwrap_or(location);
                Backend::Dir(DirBackend::new(PathBuf::from(dir)))
            };
        Ok(Registry {
            backend,
            location: location.to_string(),
        })
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    /// Publishes a component (already read and checked into `facts`), signed if a key is given.
    pub async fn publish(
        &self,
        wasm: &[u8],
        facts: &ComponentFacts,
        signer: Option<&signing::SigningKey>,
    ) -> Result<Published> {
        let (name, version) = (&facts.name, &facts.version);
        check_publishable(name, version)?;
        let layer = Descriptor::of(artifact::LAYER_MEDIA_TYPE, wasm);
        let config = facts.config(&layer);
        let mut manifest = ImageManifest::new(
            Descriptor::of(artifact::CONFIG_MEDIA_TYPE, &config),
            vec![layer.clone()],
        );
        manifest.annotations = facts.annotations();
        let bytes = manifest.to_bytes();
        let manifest_digest = digest_of(&bytes);
        let created = match self.backend.manifest(name, &version.to_string()).await? {
            Some(existing) => {
                let existing = ImageManifest::parse(&existing)?;
                let existing_layer = existing.layer(artifact::LAYER_MEDIA_TYPE)?;
                if existing_layer.digest != layer.digest {
                    bail!(
                        "{name} {version} is already published with other bytes ({}); versions are immutable: bump the version",
                        existing_layer.digest
                    );
                }
                false
            }
            None => {
                self.backend.put_blob(name, &layer.digest, wasm).await?;
                self.backend
                    .put_blob(name, &manifest.config.digest, &config)
                    .await?;
                self.backend
                    .put_manifest(name, &version.to_string(), &bytes)
                    .await?;
                true
            }
        };
        let signed_by = match signer {
            Some(key) => Some(self.sign(name, &manifest_digest, key).await?),
            None => None,
        };
        Ok(Published {
            name: name.clone(),
            version: version.clone(),
            manifest_digest,
            digest: layer.digest,
            created,
            signed_by,
        })
    }

    /// Stores a signature of `name`'s manifest in cosign's layout (a layer beside any already
    /// there, as `cosign sign` adds one); returns the key id.
    pub async fn sign(
        &self,
        name: &str,
        manifest_digest: &str,
        key: &signing::SigningKey,
    ) -> Result<String> {
        let payload = signing::payload(&self.reference(name), manifest_digest);
        let mut layer = Descriptor::of(signing::SIMPLE_SIGNING_MEDIA_TYPE, &payload);
        layer
            .annotations
            .insert(signing::SIGNATURE_ANNOTATION.into(), key.sign(&payload)?);
        let tag = signature_tag(manifest_digest);
        let mut layers = match self.backend.manifest(name, &tag).await? {
            Some(bytes) => ImageManifest::parse(&bytes)?.layers,
            None => Vec::new(),
        };
        layers.retain(|l| l.digest != layer.digest);
        layers.push(layer);
        let config = artifact::signature_config(&layers);
        let manifest = ImageManifest::new(
            Descriptor::of(artifact::IMAGE_CONFIG_MEDIA_TYPE, &config),
            layers,
        );
        self.backend
            .put_blob(name, &digest_of(&payload), &payload)
            .await?;
        self.backend
            .put_blob(name, &manifest.config.digest, &config)
            .await?;
        self.backend
            .put_manifest(name, &tag, &manifest.to_bytes())
            .await?;
        key.id()
    }

    /// What a signature names as the artifact: `registry/name` as cosign writes it (the
    /// OCI registry's host and port; a directory registry has no host).
    fn reference(&self, name: &str) -> String {
        let host = ["oci+http://", "oci://"]
            .iter()
            .find_map(|p| self.location.strip_prefix(p));
        match host {
            Some(host) => format!("{}/{name}", host.trim_end_matches('/')),
            None => name.to_string(),
        }
    }

    async fn put_note(
        &self,
        name: &str,
        tag: &str,
        media_type: &str,
        payload: &[u8],
    ) -> Result<()> {
        let (manifest, config) = artifact::note_artifact(media_type, payload);
        self.backend
            .put_blob(name, &manifest.config.digest, &config)
            .await?;
        self.backend
            .put_blob(name, &manifest.layers[0].digest, payload)
            .await?;
        self.backend
            .put_manifest(name, tag, &manifest.to_bytes())
            .await
    }

    /// The payload of a small artifact at `tag`, checked against its digests.
    async fn note(&self, name: &str, tag: &str, media_type: &str) -> Result<Option<Vec<u8>>> {
        let Some(bytes) = self.backend.manifest(name, tag).await? else {
            return Ok(None);
        };
        let manifest = ImageManifest::parse(&bytes)?;
        let layer = manifest.layer(media_type)?;
        Ok(Some(self.checked_blob(name, &layer.digest).await?))
    }

    async fn checked_blob(&self, name: &str, digest: &str) -> Result<Vec<u8>> {
        let bytes = self.backend.blob(name, digest).await?;
        let actual = digest_of(&bytes);
        if actual != digest {
            bail!("{name}: the blob {digest} arrived with other bytes ({actual}); refusing it");
        }
        Ok(bytes)
    }

    /// The plugin names it holds.
    pub async fn names(&self) -> Result<Vec<String>> {
        self.backend.repositories().await
    }

    /// Every published version of `name`, ascending, with yanks.
    pub async fn versions(&self, name: &str) -> Result<Vec<VersionEntry>> {
        let tags = self.backend.tags(name).await?;
        let mut versions: Vec<VersionEntry> = Vec::new();
        for tag in &tags {
            let Ok(version) = Version::parse(tag) else {
                continue;
            };
            let yanked = if tags.contains(&yank_tag(&version)) {
                self.yank_reason(name, &version).await?
            } else {
                None
            };
            versions.push(VersionEntry { version, yanked });
        }
        versions.sort_by(|a, b| a.version.cmp(&b.version));
        Ok(versions)
    }

    async fn yank_reason(&self, name: &str, version: &Version) -> Result<Option<String>> {
        let Some(payload) = self
            .note(name, &yank_tag(version), artifact::YANK_MEDIA_TYPE)
            .await?
        else {
            return Ok(None);
        };
        let marker: serde_json::Value = serde_json::from_slice(&payload)?;
        Ok((marker["yanked"] == true).then(|| marker["reason"].as_str().unwrap_or("").to_string()))
    }

    /// Yanks (or un-yanks) a published version.
    pub async fn yank(
        &self,
        name: &str,
        version: &Version,
        yanked: bool,
        reason: &str,
    ) -> Result<()> {
        if self
            .backend
            .manifest(name, &version.to_string())
            .await?
            .is_none()
        {
            bail!("{name} {version} is not published at {}", self.location);
        }
        let marker = serde_json::json!({"yanked": yanked, "reason": reason});
        let payload = serde_json::to_vec(&marker).expect("JSON");
        self.put_note(
            name,
            &yank_tag(version),
            artifact::YANK_MEDIA_TYPE,
            &payload,
        )
        .await
    }

    /// Picks a version and reads its manifest (checked against its digest).
    pub async fn resolve(&self, name: &str, pin: &Pin) -> Result<Resolved> {
        let (reference, tagged) = match pin {
            Pin::Digest(d) => (d.clone(), None),
            Pin::Req(req) => {
                let chosen = self.newest_matching(name, req).await?;
                (chosen.to_string(), Some(chosen))
            }
        };
        let bytes = self
            .backend
            .manifest(name, &reference)
            .await?
            .with_context(|| format!("{name}@{reference} is not at {}", self.location))?;
        let manifest_digest = digest_of(&bytes);
        if let Pin::Digest(expected) = pin
            && *expected != manifest_digest
        {
            bail!("{name}: the manifest {expected} arrived as {manifest_digest}; refusing it");
        }
        let manifest = ImageManifest::parse(&bytes)?;
        // A tag is only a pointer anyone with write access may move: the manifest it points at
        // must say the version the tag says, or an old (even yanked) release could be served
        // as a new one.
        let annotated = manifest.version()?;
        if let (Some(tag), Some(inside)) = (&tagged, &annotated)
            && inside != tag
        {
            bail!(
                "{name}: the tag {tag} at {} holds the manifest of version {inside}; refusing it",
                self.location
            );
        }
        if manifest.config.media_type != artifact::CONFIG_MEDIA_TYPE {
            bail!(
                "{name}@{reference} is not a Wasm artifact (config {})",
                manifest.config.media_type
            );
        }
        let layer = manifest.layer(artifact::LAYER_MEDIA_TYPE)?.clone();
        let version = match (annotated, tagged) {
            (Some(v), _) => v,
            // Only the layout's own fields (another tool pushed it): the tag says the version,
            // and the fetched component must describe itself as that version.
            (None, Some(tag)) => tag,
            // A digest pin of such an artifact: the component's own metadata says it.
            (None, None) => {
                let wasm = self.checked_blob(name, &layer.digest).await?;
                component_version(&wasm).with_context(|| {
                    format!(
                        "{name}@{reference}: neither the manifest nor the component names a version"
                    )
                })?
            }
        };
        let requests = self.grant_requests(name, &manifest, &layer.digest).await?;
        Ok(Resolved {
            name: name.to_string(),
            version,
            registry: self.location.clone(),
            manifest_digest,
            digest: layer.digest,
            size: layer.size,
            contract: manifest
                .annotations
                .get(artifact::CONTRACT_ANNOTATION)
                .cloned(),
            requests,
            annotations: manifest.annotations.clone(),
            manifest,
        })
    }

    /// The newest version of `name` that matches `req` and is not yanked; the error lists what
    /// is published.
    async fn newest_matching(&self, name: &str, req: &VersionReq) -> Result<Version> {
        let versions = self.versions(name).await?;
        if let Some(chosen) = versions
            .iter()
            .rev()
            .find(|v| v.yanked.is_none() && req.matches(&v.version))
        {
            return Ok(chosen.version.clone());
        }
        let all: Vec<String> = versions
            .iter()
            .map(|v| match &v.yanked {
                Some(_) => format!("{} (yanked)", v.version),
                None => v.version.to_string(),
            })
            .collect();
        bail!(
            "no version of {name} matching {req} at {} (published: {})",
            self.location,
            if all.is_empty() {
                "none".into()
            } else {
                all.join(", ")
            }
        )
    }

    /// The grants an artifact asks for: its manifest's annotation, or else (pushed by another
    /// tool) the component's own section, read from the blob pinned by `digest`.
    async fn grant_requests(
        &self,
        name: &str,
        manifest: &ImageManifest,
        digest: &str,
    ) -> Result<Option<crate::plugin_manifest::PluginManifest>> {
        let requests = manifest.plugin_manifest()?;
        if requests.is_some()
            || manifest
                .annotations
                .contains_key(artifact::MANIFEST_ANNOTATION)
        {
            return Ok(requests);
        }
        let wasm = self.checked_blob(name, digest).await?;
        crate::plugin_manifest::PluginManifest::from_component(&wasm)
    }

    /// The component of a resolved version, checked against its sha256.
    pub async fn component(&self, resolved: &Resolved) -> Result<Vec<u8>> {
        let layer = resolved.manifest.layer(artifact::LAYER_MEDIA_TYPE)?;
        self.checked_blob(&resolved.name, &layer.digest).await
    }

    /// Checks the signatures of a resolved version (cosign's, at its `.sig` tag) against the
    /// trusted keys: the signing key's id, or `None` when no key is trusted (nothing to check
    /// against).
    pub async fn verify(
        &self,
        resolved: &Resolved,
        trusted: &[signing::TrustedKey],
    ) -> Result<Option<String>> {
        if trusted.is_empty() {
            // Nothing to check against.
            return Ok(None);
        }
        let (name, digest) = (&resolved.name, &resolved.manifest_digest);
        let Some(bytes) = self.backend.manifest(name, &signature_tag(digest)).await? else {
            bail!(
                "{name} {} ({digest}) is not signed, and trusted keys are configured",
                resolved.version
            );
        };
        let manifest = ImageManifest::parse(&bytes)?;
        let mut payloads = Vec::new();
        for layer in &manifest.layers {
            if layer.media_type != signing::SIMPLE_SIGNING_MEDIA_TYPE {
                continue;
            }
            if let Some(signature) = layer.annotations.get(signing::SIGNATURE_ANNOTATION) {
                payloads.push((
                    self.checked_blob(name, &layer.digest).await?,
                    signature.clone(),
                ));
            }
        }
        let found: Vec<signing::Found> = payloads
            .iter()
            .map(|(payload, signature)| signing::Found { payload, signature })
            .collect();
        signing::verify(&found, name, digest, trusted)
            .with_context(|| format!("{name} {}", resolved.version))
            .map(Some)
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
