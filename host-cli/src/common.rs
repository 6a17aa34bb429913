//! What the commands share: what a command produces ([`Outcome`]), usage errors (exit 2),
//! input files, settings, secrets, and loading the plugin the command line names.

use anyhow::{Context, Result};
use host::runtime::{Limits, Plugin, Runtime};
use host::services::{HostServices, HttpClient, HttpPolicy, Secrets};
use host_testkit::defaults::DEMO_PHONE_NUMBER_ID;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Meta's Graph API host, allowed by default for `send` and `serve`.
pub const GRAPH_HOST: &str = "graph.facebook.com";

/// What a command produced.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    /// Printed as pretty JSON on stdout.
    pub json: Option<Value>,
    /// Printed as is on stdout (human-readable commands).
    pub text: Option<String>,
}

impl Outcome {
    pub fn json(code: i32, v: Value) -> Outcome {
        Outcome {
            code,
            json: Some(v),
            text: None,
        }
    }

    pub fn text(text: String) -> Outcome {
        Outcome {
            code: 0,
            json: None,
            text: Some(text),
        }
    }

    /// Nothing to print (the command reported on stderr as it went).
    pub fn none() -> Outcome {
        Outcome {
            code: 0,
            json: None,
            text: None,
        }
    }
}

/// Input the user can fix (a flag, a file, a plugin that does not load): exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The exit code of a command that failed: 2 for a [`UsageError`] anywhere in the chain;
/// anything else (a guest trap, a host failure) must never look like "invalid input", so 4.
/// (Commands that succeed choose their own code in [`Outcome::code`].)
pub fn exit_code(error: &anyhow::Error) -> u8 {
    if error.chain().any(|e| e.is::<UsageError>()) {
        2
    } else {
        4
    }
}

pub fn usage<T>(msg: impl Into<String>) -> Result<T> {
    Err(UsageError(msg.into()).into())
}

pub fn read_input(file: &str) -> Result<Vec<u8>> {
    if file == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).context("reading stdin")?;
        Ok(buf)
    } else {
        std::fs::read(file).map_err(|e| UsageError(format!("cannot read {file}: {e}")).into())
    }
}

pub fn read_json(file: &str) -> Result<Value> {
    let bytes = read_input(file)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| UsageError(format!("{file} is not valid JSON: {e}")).into())
}

/// The embedded demo settings.
pub fn demo_settings() -> Value {
    json!({ "phone_number_id": DEMO_PHONE_NUMBER_ID })
}

pub fn settings_from(path: Option<&Path>) -> Result<Value> {
    match path {
        None => Ok(demo_settings()),
        Some(p) => read_json(&p.to_string_lossy()),
    }
}

/// Secrets from `FLOW_SECRET_*` variables and, if given, a JSON file of name → value.
pub fn secrets_from(file: Option<&Path>) -> Result<Secrets> {
    let mut store = Secrets::default().with_env();
    if let Some(path) = file {
        store
            .load_file(path)
            .map_err(|e| UsageError(format!("{e:#}")))?;
    }
    Ok(store)
}

/// One plugin's view of the host's secrets: the names under its own prefix (`whatsapp/…` for
/// the plugin that describes itself as `whatsapp`), which may travel in headers to `hosts`.
pub fn scoped_secrets(store: &Secrets, plugin_name: &str, hosts: &[String]) -> Result<Secrets> {
    let rules = hosts
        .iter()
        .map(|h| host::services::AllowRule::parse(h))
        .collect::<Result<Vec<_>>>()
        .map_err(|e| UsageError(format!("{e:#}")))?;
    Ok(store.scoped(vec![host::services::SecretGrant {
        name: format!("{plugin_name}/*"),
        to_hosts: rules,
    }]))
}

/// `--api-base` does not widen the allowlist: a base off the list is a usage error that
/// names the flag to add, not a send that fails later.
pub fn check_api_base_allowed(api_base: Option<&str>, policy: &HttpPolicy) -> Result<()> {
    let Some(base) = api_base else {
        return Ok(());
    };
    HttpClient::new(policy.clone())
        .check_url(base)
        .map_err(|e| {
            UsageError(format!(
                "--api-base {base}: {}; allow it explicitly with --allow-host",
                e.message
            ))
            .into()
        })
}

/// Loads the plugin the CLI was pointed at.
pub fn load_plugin(path: Option<&Path>, services: HostServices) -> Result<Plugin> {
    let path = path
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(host_testkit::WHATSAPP_CHANNEL_WASM));
    let runtime = Runtime::new()?;
    runtime
        .load_file(&path, Arc::new(services), Limits::default())
        .map_err(|e| UsageError(format!("{e:#}")).into())
}

/// The settings with the catalog documents as their `templates` (for `templates check`).
pub fn settings_with_catalog(config: Option<&Path>, catalog: &[PathBuf]) -> Result<Value> {
    let mut settings = settings_from(config)?;
    let docs = catalog
        .iter()
        .map(|p| read_json(&p.to_string_lossy()))
        .collect::<Result<Vec<_>>>()?;
    settings
        .as_object_mut()
        .ok_or_else(|| UsageError("the settings must be a JSON object".into()))?
        .insert("templates".into(), Value::Array(docs));
    Ok(settings)
}
