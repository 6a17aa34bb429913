//! `host-harness registry keygen | publish | list | resolve | pull | yank | verify`: channel
//! plugins in a directory or an OCI registry (see [`host::registry`]), and the lock file
//! `serve` loads them from.

use crate::common::{Outcome, UsageError};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use host::lockfile::{LockEntry, LockFile};
use host::registry::artifact::ComponentFacts;
use host::registry::{Pin, Registry, Resolved, signing};
use host::runtime::Runtime;
use semver::{Version, VersionReq};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// Publish, find and pull channel plugins.
#[derive(Args, Debug)]
pub struct RegistryArgs {
    /// `oci://host[:port]/namespace` (HTTP on loopback, HTTPS elsewhere; `oci+http://` forces
    /// HTTP), `file:DIR` or a directory.
    #[arg(
        long,
        global = true,
        env = "HOST_HARNESS_REGISTRY",
        default_value = "registry"
    )]
    pub registry: String,
    #[command(subcommand)]
    pub action: RegistryCommand,
}

#[derive(Subcommand, Debug)]
pub enum RegistryCommand {
    /// Make an Ed25519 key pair for signing: PATH (secret, 0600) and PATH.pub.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Publish components (versions are immutable; the same bytes again change nothing).
    Publish {
        #[arg(required = true)]
        wasm: Vec<PathBuf>,
        /// Sign each published manifest with this secret key.
        #[arg(long)]
        sign_key: Option<PathBuf>,
    },
    /// Plugins and their versions (yanked ones marked).
    List { name: Option<String> },
    /// The version a requirement picks (`NAME@^1.2`, `NAME@sha256:…`; no requirement: the
    /// highest), with the grants it asks for.
    Resolve {
        spec: String,
        #[command(flatten)]
        trust: TrustedKeys,
    },
    /// Fetch a plugin into the lock file's directory and lock it; or, with --locked, fetch
    /// every locked plugin again by its pinned digest.
    Pull {
        /// `NAME`, `NAME@REQ` or `NAME@sha256:…` (not with --locked).
        #[arg(required_unless_present = "locked", conflicts_with = "locked")]
        spec: Option<String>,
        #[arg(long, default_value = "plugins.lock")]
        lock: PathBuf,
        /// Re-fetch exactly what the lock file pins.
        #[arg(long)]
        locked: bool,
        #[command(flatten)]
        trust: TrustedKeys,
        /// The provider base for a new entry whose plugin declares none.
        #[arg(long)]
        api_base: Option<String>,
    },
    /// Hide a version from resolution (pinned pulls keep working); --undo brings it back.
    Yank {
        /// `NAME@VERSION`.
        spec: String,
        #[arg(long, default_value = "yanked by the publisher")]
        reason: String,
        #[arg(long)]
        undo: bool,
    },
    /// Check a version's digests and signature against trusted keys.
    Verify {
        spec: String,
        #[arg(
            long = "trusted-key",
            env = "HOST_HARNESS_TRUSTED_KEYS",
            value_delimiter = ',',
            required = true
        )]
        trusted_keys: Vec<PathBuf>,
    },
}

/// The public keys whose signatures the operator trusts; with any, unsigned or otherwise
/// signed artifacts are refused.
#[derive(Args, Debug)]
pub struct TrustedKeys {
    #[arg(
        long = "trusted-key",
        env = "HOST_HARNESS_TRUSTED_KEYS",
        value_delimiter = ','
    )]
    pub keys: Vec<PathBuf>,
}

fn usage_error(e: anyhow::Error) -> anyhow::Error {
    UsageError(format!("{e:#}")).into()
}

/// `NAME`, `NAME@REQ`, `NAME@sha256:…`.
pub fn parse_spec(spec: &str) -> Result<(String, Pin)> {
    let (name, rest) = spec.split_once('@').unwrap_or((spec, "*"));
    if name.is_empty() {
        bail!("{spec:?} names no plugin (NAME, NAME@REQ or NAME@sha256:…)");
    }
    let pin = if rest.starts_with("sha256:") {
        Pin::Digest(rest.to_string())
    } else {
        Pin::Req(
            VersionReq::parse(rest)
                .with_context(|| format!("{spec:?}: {rest:?} is not a semver requirement"))?,
        )
    };
    Ok((name.to_string(), pin))
}

fn trusted(keys: &[PathBuf]) -> Result<Vec<signing::TrustedKey>> {
    keys.iter()
        .map(|k| signing::read_verifying_key(k))
        .collect()
}

impl RegistryArgs {
    pub async fn run(&self) -> Result<Outcome> {
        let registry = || Registry::open(&self.registry).map_err(usage_error);
        match &self.action {
            RegistryCommand::Keygen { out } => keygen(out),
            RegistryCommand::Publish { wasm, sign_key } => {
                publish(&registry()?, wasm, sign_key.as_deref()).await
            }
            RegistryCommand::List { name } => list(&registry()?, name.as_deref()).await,
            RegistryCommand::Resolve { spec, trust } => {
                resolve(&registry()?, spec, &trust.keys).await
            }
            RegistryCommand::Pull {
                spec,
                lock,
                locked,
                trust,
                api_base,
            } => {
                let keys = trusted(&trust.keys).map_err(usage_error)?;
                if *locked {
                    pull_locked(lock, &keys).await
                } else {
                    let spec = spec.as_deref().expect("required without --locked");
                    pull(&registry()?, spec, lock, &keys, api_base.as_deref()).await
                }
            }
            RegistryCommand::Yank { spec, reason, undo } => {
                yank(&registry()?, spec, reason, *undo).await
            }
            RegistryCommand::Verify { spec, trusted_keys } => {
                verify(&registry()?, spec, trusted_keys).await
            }
        }
    }
}

fn keygen(out: &Path) -> Result<Outcome> {
    let key = signing::generate()?;
    let public = signing::write_key_pair(&key, out).map_err(usage_error)?;
    Ok(Outcome::json(
        0,
        json!({
            "secret_key": out.display().to_string(),
            "public_key": public.display().to_string(),
            "key_id": key.id()?,
        }),
    ))
}

async fn publish(
    registry: &Registry,
    files: &[PathBuf],
    sign_key: Option<&Path>,
) -> Result<Outcome> {
    let key = sign_key
        .map(signing::read_signing_key)
        .transpose()
        .map_err(usage_error)?;
    let runtime = Runtime::new()?;
    let mut published = Vec::new();
    for file in files {
        let wasm = std::fs::read(file)
            .map_err(|e| UsageError(format!("cannot read {}: {e}", file.display())))?;
        let facts = ComponentFacts::read(&runtime, &wasm)
            .await
            .with_context(|| file.display().to_string())
            .map_err(usage_error)?;
        let done = registry
            .publish(&wasm, &facts, key.as_ref())
            .await
            .with_context(|| file.display().to_string())
            .map_err(usage_error)?;
        published.push(serde_json::to_value(done)?);
    }
    Ok(Outcome::json(
        0,
        json!({"registry": registry.location(), "published": published}),
    ))
}

async fn list(registry: &Registry, name: Option<&str>) -> Result<Outcome> {
    let names = match name {
        Some(n) => vec![n.to_string()],
        None => registry.names().await.map_err(usage_error)?,
    };
    let mut plugins = Vec::new();
    for name in names {
        let versions = registry.versions(&name).await.map_err(usage_error)?;
        plugins.push(json!({"name": name, "versions": versions}));
    }
    Ok(Outcome::json(
        0,
        json!({"registry": registry.location(), "plugins": plugins}),
    ))
}

/// Resolves a spec and, with trusted keys, checks its signature.
async fn resolve_checked(
    registry: &Registry,
    spec: &str,
    keys: &[signing::TrustedKey],
) -> Result<(Resolved, Option<String>)> {
    let (name, pin) = parse_spec(spec)?;
    let resolved = registry.resolve(&name, &pin).await?;
    let signed_by = registry.verify(&resolved, keys).await?;
    Ok((resolved, signed_by))
}

async fn resolve(registry: &Registry, spec: &str, keys: &[PathBuf]) -> Result<Outcome> {
    let keys = trusted(keys).map_err(usage_error)?;
    let (resolved, signed_by) = resolve_checked(registry, spec, &keys)
        .await
        .map_err(usage_error)?;
    let mut out = serde_json::to_value(&resolved)?;
    out["signed_by"] = json!(signed_by);
    Ok(Outcome::json(0, out))
}

async fn verify(registry: &Registry, spec: &str, keys: &[PathBuf]) -> Result<Outcome> {
    let keys = trusted(keys).map_err(usage_error)?;
    let checked = match resolve_checked(registry, spec, &keys).await {
        Ok((resolved, signed_by)) => registry
            .component(&resolved)
            .await
            .map(|_| (resolved, signed_by)),
        Err(e) => Err(e),
    };
    Ok(match checked {
        Ok((resolved, signed_by)) => Outcome::json(
            0,
            json!({"verified": true, "name": resolved.name, "version": resolved.version.to_string(),
                   "manifest_digest": resolved.manifest_digest, "digest": resolved.digest,
                   "signed_by": signed_by}),
        ),
        Err(e) => Outcome::json(3, json!({"verified": false, "error": format!("{e:#}")})),
    })
}

async fn yank(registry: &Registry, spec: &str, reason: &str, undo: bool) -> Result<Outcome> {
    let (name, version) = spec
        .split_once('@')
        .and_then(|(n, v)| Some((n, Version::parse(v).ok()?)))
        .ok_or_else(|| UsageError(format!("{spec:?} is not NAME@VERSION")))?;
    registry
        .yank(name, &version, !undo, reason)
        .await
        .map_err(usage_error)?;
    Ok(Outcome::json(
        0,
        json!({"name": name, "version": version.to_string(), "yanked": !undo}),
    ))
}

/// Fetches a resolved version's component, checks it (sha256, then what it describes itself
/// as) and writes it to `dir/relative` (default `plugins/NAME-VERSION.wasm`); returns the
/// relative path.
async fn fetch_into(
    runtime: &Runtime,
    registry: &Registry,
    resolved: &Resolved,
    dir: &Path,
    relative: Option<&Path>,
) -> Result<PathBuf> {
    let wasm = registry.component(resolved).await?;
    let facts = ComponentFacts::read(runtime, &wasm).await?;
    if facts.name != resolved.name || facts.version != resolved.version {
        bail!(
            "the artifact {}@{} holds the component {} {}",
            resolved.name,
            resolved.version,
            facts.name,
            facts.version
        );
    }
    // What the artifact's annotations ask for is what the component itself declares: an
    // annotation is written by whoever pushed, the section is inside the pinned bytes.
    if resolved.requests.is_some() && resolved.requests != facts.manifest {
        bail!(
            "the artifact {}@{} asks for other grants in its annotations than its component declares; refusing it",
            resolved.name,
            resolved.version
        );
    }
    let relative = relative.map_or_else(
        || PathBuf::from("plugins").join(format!("{}-{}.wasm", resolved.name, resolved.version)),
        Path::to_path_buf,
    );
    // A lock file may come from anywhere (a commit, a colleague): its paths stay under the
    // lock file's directory.
    let inside = relative
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if !inside || relative.as_os_str().is_empty() {
        bail!(
            "the path {} is not a relative path inside the lock file's directory",
            relative.display()
        );
    }
    host::registry::backend::write_atomically(&dir.join(&relative), &wasm)?;
    Ok(relative)
}

fn lock_dir(lock: &Path) -> PathBuf {
    lock.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

async fn pull(
    registry: &Registry,
    spec: &str,
    lock_path: &Path,
    keys: &[signing::TrustedKey],
    api_base: Option<&str>,
) -> Result<Outcome> {
    let mut lock = LockFile::read_or_default(lock_path).map_err(usage_error)?;
    let (resolved, signed_by) = resolve_checked(registry, spec, keys)
        .await
        .map_err(usage_error)?;
    let path = fetch_into(
        &Runtime::new()?,
        registry,
        &resolved,
        &lock_dir(lock_path),
        None,
    )
    .await
    .map_err(usage_error)?;
    let pinned = |entry: &mut LockEntry| {
        entry.version = resolved.version.to_string();
        entry.digest = resolved.digest.clone();
        entry.path = path.clone();
        entry.registry = Some(registry.location().to_string());
        entry.manifest_digest = Some(resolved.manifest_digest.clone());
        entry.signed_by = signed_by.clone();
    };
    let channel = resolved
        .requests
        .as_ref()
        .map_or(resolved.name.clone(), |r| r.name.clone());
    let entry = match lock.entry_mut(&channel) {
        Some(entry) => {
            pinned(entry);
            entry.clone()
        }
        None => {
            let mut entry = new_entry(&resolved, api_base).map_err(usage_error)?;
            pinned(&mut entry);
            lock.plugins.push(entry.clone());
            entry
        }
    };
    lock.write(lock_path)?;
    Ok(Outcome::json(
        0,
        json!({"locked": entry, "requests": resolved.requests, "grants_differ": grants_differ(&resolved, &entry),
               "lock": lock_path.display().to_string()}),
    ))
}

/// What a plugin may be granted without the operator writing it into the lock file by
/// hand: secrets under its own name only (never the host's `flow/…`), hosts that are not
/// loopback, private or link-local addresses (the host's own API and the operator's network).
fn check_requests(request: &host::plugin_manifest::PluginManifest) -> Result<()> {
    let own = format!("{}/", request.name);
    for secret in &request.secrets {
        let own_name = secret.starts_with(&own) && secret.len() > own.len();
        if host::services::is_host_only(secret) || !own_name {
            bail!(
                "{} asks for the secrets {secret:?}: a plugin is granted only names under {own}* (the host's own flow/… never); grant others by hand in the lock file",
                request.name
            );
        }
    }
    for host in &request.allowed_hosts {
        let rule = host::services::AllowRule::parse(host)?;
        if rule.is_internal() {
            bail!(
                "{} asks to reach {host:?}, a loopback, private or link-local address: grant it by hand in the lock file if that is meant",
                request.name
            );
        }
    }
    Ok(())
}

/// A lock entry granting what the plugin asks for.
fn new_entry(resolved: &Resolved, api_base: Option<&str>) -> Result<LockEntry> {
    if let Some(request) = &resolved.requests {
        check_requests(request)?;
    }
    let version = resolved.version.to_string();
    let mut entry = match &resolved.requests {
        Some(request) => {
            LockEntry::granting(request, version, resolved.digest.clone(), PathBuf::new())
        }
        None => {
            let Some(base) = api_base else {
                bail!(
                    "{} declares no manifest (provider base, hosts, secrets): give --api-base and add its grants to the lock file",
                    resolved.name
                );
            };
            let request = host::plugin_manifest::PluginManifest {
                name: resolved.name.clone(),
                api_base: base.to_string(),
                allowed_hosts: Vec::new(),
                secrets: Vec::new(),
                rate_per_second: None,
                customer_gap_ms: None,
            };
            LockEntry::granting(&request, version, resolved.digest.clone(), PathBuf::new())
        }
    };
    if let Some(base) = api_base {
        entry.api_base = base.to_string();
    }
    Ok(entry)
}

/// Whether the plugin asks for hosts or secrets the lock entry does not grant.
fn grants_differ(resolved: &Resolved, entry: &LockEntry) -> bool {
    resolved.requests.as_ref().is_some_and(|r| {
        r.allowed_hosts
            .iter()
            .any(|h| !entry.allowed_hosts.contains(h))
            || r.secrets.iter().any(|s| !entry.secrets.contains(s))
    })
}

/// Fetches every locked plugin again by its pinned manifest digest (yanked or not).
async fn pull_locked(lock_path: &Path, keys: &[signing::TrustedKey]) -> Result<Outcome> {
    let lock = LockFile::read(lock_path).map_err(usage_error)?;
    let dir = lock_dir(lock_path);
    let runtime = Runtime::new()?;
    let mut fetched: Vec<Value> = Vec::new();
    for (i, entry) in lock.plugins.iter().enumerate() {
        let at =
            |e: anyhow::Error| usage_error(e.context(format!("/plugins/{i} ({})", entry.name)));
        let (Some(location), Some(manifest_digest)) = (&entry.registry, &entry.manifest_digest)
        else {
            return Err(at(anyhow::anyhow!(
                "not pulled from a registry (no registry and manifest_digest)"
            )));
        };
        let registry = Registry::open(location).map_err(at)?;
        let resolved = registry
            .resolve(&entry.name, &Pin::Digest(manifest_digest.clone()))
            .await
            .map_err(at)?;
        registry.verify(&resolved, keys).await.map_err(at)?;
        if resolved.digest != entry.digest {
            return Err(at(anyhow::anyhow!(
                "the manifest pins {}, the lock file {}",
                resolved.digest,
                entry.digest
            )));
        }
        let path = fetch_into(&runtime, &registry, &resolved, &dir, Some(&entry.path))
            .await
            .map_err(at)?;
        fetched.push(json!({"name": entry.name, "version": entry.version, "path": path}));
    }
    Ok(Outcome::json(0, json!({"fetched": fetched})))
}
