//! A channel plugin as an OCI artifact in the CNCF Wasm layout: one layer `application/wasm`
//! (the component), a config `application/vnd.wasm.config.v0+json` (architecture, os, layer
//! digests, the component's imports and exports), and the plugin's facts as manifest
//! annotations (the `org.opencontainers.image.*` ones, the contract it implements, the grants
//! it asks for). The config's `created` is fixed at the epoch: the same component always makes
//! the same manifest digest. An artifact pushed by another tool with only the layout's own
//! fields (`wkg oci push`) is read too: its version and grants come from the tag and the
//! component itself.

use super::backend::digest_of;
use super::oci::MANIFEST_MEDIA_TYPE;
use crate::plugin_manifest::PluginManifest;
use crate::runtime::{Limits, Runtime};
use crate::services::HostServices;
use anyhow::{Context, Result, bail};
use semver::Version;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
pub const LAYER_MEDIA_TYPE: &str = "application/wasm";
/// The config of our own small artifacts (signatures, yank markers): OCI's empty `{}`.
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// The config of a cosign signature manifest.
pub const IMAGE_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const YANK_MEDIA_TYPE: &str = "application/vnd.flow.channel.yank.v1+json";

/// The config's `created`: the Unix epoch, as reproducible builds date their outputs.
pub const REPRODUCIBLE_CREATED: &str = "1970-01-01T00:00:00Z";

pub const CONTRACT_ANNOTATION: &str = "dev.flow.channel.contract";
pub const MANIFEST_ANNOTATION: &str = "dev.flow.channel.manifest";
const TITLE: &str = "org.opencontainers.image.title";
const VERSION: &str = "org.opencontainers.image.version";

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    pub fn of(media_type: &str, bytes: &[u8]) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest: digest_of(bytes),
            size: bytes.len() as u64,
            annotations: BTreeMap::new(),
        }
    }
}

/// An OCI image manifest (the fields we write and read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub schema_version: u32,
    pub media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl ImageManifest {
    pub fn new(config: Descriptor, layers: Vec<Descriptor>) -> ImageManifest {
        ImageManifest {
            schema_version: 2,
            media_type: MANIFEST_MEDIA_TYPE.into(),
            artifact_type: None,
            config,
            layers,
            annotations: BTreeMap::new(),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest serialises")
    }

    pub fn parse(bytes: &[u8]) -> Result<ImageManifest> {
        serde_json::from_slice(bytes).context("the manifest is not an OCI image manifest")
    }

    /// The single layer of the given media type.
    pub fn layer(&self, media_type: &str) -> Result<&Descriptor> {
        match self.layers.as_slice() {
            [layer] if layer.media_type == media_type => Ok(layer),
            layers => bail!(
                "expected one {media_type} layer, found {:?}",
                layers.iter().map(|l| &l.media_type).collect::<Vec<_>>()
            ),
        }
    }

    /// The plugin's version from its annotations, if they name one.
    pub fn version(&self) -> Result<Option<Version>> {
        self.annotations
            .get(VERSION)
            .map(|v| {
                Version::parse(v)
                    .with_context(|| format!("the manifest's version {v:?} is not semver"))
            })
            .transpose()
    }

    /// The grants the plugin asks for, if it declared them.
    pub fn plugin_manifest(&self) -> Result<Option<PluginManifest>> {
        self.annotations
            .get(MANIFEST_ANNOTATION)
            .map(|text| {
                serde_json::from_str(text)
                    .with_context(|| format!("the {MANIFEST_ANNOTATION} annotation"))
            })
            .transpose()
    }
}

/// What the host learns about a component by loading it: checked before it is published.
#[derive(Debug, Clone)]
pub struct ComponentFacts {
    pub name: String,
    pub version: Version,
    /// The contract it declares, `flow:channel@1.1.0`.
    pub contract: String,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    /// The grants it asks for (its `flow-channel-manifest` section).
    pub manifest: Option<PluginManifest>,
    /// Name, version, description, licences, source, revision (`wasm-metadata`).
    pub metadata: serde_json::Value,
}

impl ComponentFacts {
    /// Compiles and describes a component (sandboxed: no hosts, no secrets).
    pub async fn read(runtime: &Runtime, wasm: &[u8]) -> Result<ComponentFacts> {
        let plugin = runtime.load(
            wasm,
            Arc::new(HostServices::locked_down()),
            Limits::default(),
        )?;
        let info = plugin
            .describe()
            .await
            .map_err(|e| anyhow::anyhow!("describe failed: {e}"))?;
        super::compatible(crate::CONTRACT, &info.contract_version)
            .with_context(|| format!("plugin {} {}", info.name, info.plugin_version))?;
        let version = Version::parse(&info.plugin_version).with_context(|| {
            format!(
                "plugin {}: version {:?} is not semver",
                info.name, info.plugin_version
            )
        })?;
        let ty = plugin.component().component_type();
        let engine = plugin.engine();
        let manifest = PluginManifest::from_component(wasm)?;
        if let Some(m) = &manifest
            && m.name != info.name
        {
            bail!(
                "the plugin describes itself as {:?} but its manifest names {:?}",
                info.name,
                m.name
            );
        }
        Ok(ComponentFacts {
            name: info.name,
            version,
            contract: info.contract_version,
            imports: ty.imports(engine).map(|(n, _)| n.to_string()).collect(),
            exports: ty.exports(engine).map(|(n, _)| n.to_string()).collect(),
            manifest,
            metadata: component_metadata(wasm),
        })
    }

    /// The CNCF Wasm config blob.
    pub fn config(&self, layer: &Descriptor) -> Vec<u8> {
        serde_json::to_vec(&json!({
            // The CNCF Wasm layout requires it (oci-wasm's types refuse a config without
            // it); fixed, so the same component always makes the same digests.
            "created": REPRODUCIBLE_CREATED,
            "architecture": "wasm",
            "os": "wasip2",
            "layerDigests": [layer.digest],
            "component": {"imports": self.imports, "exports": self.exports},
        }))
        .expect("JSON")
    }

    /// The annotations of its manifest.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        let mut a = BTreeMap::new();
        a.insert(TITLE.to_string(), self.name.clone());
        a.insert(VERSION.to_string(), self.version.to_string());
        a.insert(CONTRACT_ANNOTATION.to_string(), self.contract.clone());
        for (key, field) in [
            ("org.opencontainers.image.description", "description"),
            ("org.opencontainers.image.licenses", "licenses"),
            ("org.opencontainers.image.source", "source"),
            ("org.opencontainers.image.revision", "revision"),
        ] {
            if let Some(v) = self.metadata[field].as_str() {
                a.insert(key.to_string(), v.to_string());
            }
        }
        if let Some(m) = &self.manifest {
            let text = serde_json::to_string(m).expect("JSON");
            a.insert(MANIFEST_ANNOTATION.to_string(), text);
        }
        a
    }
}

/// A small JSON document as an artifact of its own (signature, yank marker).
/// The image config of a cosign signature manifest, as cosign writes it: one layer per
/// signature, listed as its diff id.
pub fn signature_config(layers: &[Descriptor]) -> Vec<u8> {
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.digest.as_str()).collect();
    serde_json::to_vec(&json!({
        "architecture": "", "os": "", "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "rootfs": {"type": "layers", "diff_ids": diff_ids}, "config": {},
    }))
    .expect("JSON")
}

pub fn note_artifact(media_type: &str, payload: &[u8]) -> (ImageManifest, Vec<u8>) {
    let empty = b"{}".to_vec();
    let mut manifest = ImageManifest::new(
        Descriptor::of(EMPTY_MEDIA_TYPE, &empty),
        vec![Descriptor::of(media_type, payload)],
    );
    manifest.artifact_type = Some(media_type.into());
    (manifest, empty)
}

/// The metadata a component carries (`wasm-tools metadata show` conventions): name, version,
/// description, licences, source, revision.
pub fn component_metadata(bytes: &[u8]) -> Value {
    let Ok(payload) = wasm_metadata::Payload::from_binary(bytes) else {
        return Value::Null;
    };
    let m = payload.metadata();
    let text = |v: Option<String>| v.map_or(Value::Null, Value::String);
    json!({
        "name": m.name,
        "version": text(m.version.as_ref().map(ToString::to_string)),
        "description": text(m.description.as_ref().map(ToString::to_string)),
        "licenses": text(m.licenses.as_ref().map(ToString::to_string)),
        "source": text(m.source.as_ref().map(ToString::to_string)),
        "revision": text(m.revision.as_ref().map(ToString::to_string)),
    })
}
