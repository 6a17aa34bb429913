//! The command line: its shape (`Cli`, `Command`), what a command produces (`Outcome`), the
//! helpers the commands share (input files, settings, secrets, plugin loading), and `run`,
//! which dispatches to `commands/`. Commands return an exit code and the JSON to print, so
//! tests can drive them without spawning a process. Exit codes: 0 ok, 1 invalid input (field
//! errors), 2 usage or plugin load errors, 3 a webhook or registry artifact's signature or verification
//! refused, 4 the
//! plugin trapped.

use crate::runtime::{Limits, Plugin, Runtime};
use crate::services::{HostServices, HttpClient, HttpPolicy, Log, Secrets, parse_level};
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::commands::bench::bench;
pub use crate::commands::demo::{demo, demo_flows, mock_services};
use crate::commands::plugin::{WebhookArgs, webhook_command, with_send_grants};
pub use crate::commands::plugin::{
    build, check_template_message, classify, inspect, send, validate_template, webhook,
};
pub use crate::testkit::defaults::{DEMO_ACCESS_TOKEN, DEMO_PHONE_NUMBER_ID, DEMO_SMS_API_KEY};

/// Meta's Graph API host, allowed by default for `send` and `serve`.
pub const GRAPH_HOST: &str = "graph.facebook.com";

/// Reference host for flow:channel components.
#[derive(Parser, Debug)]
#[command(name = "host-harness", version, about)]
pub struct Cli {
    /// The channel component to load (default: the WhatsApp component built from this repo).
    #[arg(long, global = true, value_name = "PATH")]
    pub plugin: Option<PathBuf>,
    /// Plugin log level: trace, debug, info, warn, error.
    #[arg(long, global = true, default_value = "warn")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Name, versions, contract, imports/exports, size and sha256 of the plugin.
    Inspect,
    /// Check a template definition (Meta's POST /{waba-id}/message_templates body).
    ValidateTemplate {
        /// A file, or - for stdin.
        file: String,
    },
    /// Build the HTTP request for a message file.
    Build {
        file: String,
        /// Channel settings JSON (default: the embedded demo settings).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Provider API base URL.
        #[arg(long)]
        api_base: Option<String>,
    },
    /// Classify a send result: {"http_status","headers","body"} or {"transport_error","request_sent"}.
    Classify { file: String },
    /// Parse a webhook body as Meta posts it.
    Webhook {
        file: String,
        /// The X-Hub-Signature-256 header value, `sha256=…`.
        #[arg(long)]
        signature: Option<String>,
        /// Environment variable holding the app secret; with it, signatures are required.
        #[arg(long)]
        app_secret_env: Option<String>,
        /// Environment variable holding the verify token (for --method GET).
        #[arg(long)]
        verify_token_env: Option<String>,
        /// GET for the verification handshake, POST for events.
        #[arg(long, default_value = "POST")]
        method: String,
        /// Query parameters as name=value (e.g. hub.mode=subscribe).
        #[arg(long = "query")]
        query: Vec<String>,
    },
    /// Send a message file through the plugin and print the classification.
    Send {
        file: String,
        /// Provider API base URL (it must be on the allowlist: see --allow-host).
        #[arg(long)]
        api_base: Option<String>,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Allowlist entries besides graph.facebook.com (e.g. http://127.0.0.1:8787).
        #[arg(long = "allow-host")]
        allow_hosts: Vec<String>,
        /// A JSON file of secret name → value (FLOW_SECRET_* variables are read too).
        #[arg(long)]
        secrets: Option<PathBuf>,
        /// Attempt number, for back-off.
        #[arg(long, default_value_t = 1)]
        attempt: u32,
    },
    /// Template tools.
    Templates {
        #[command(subcommand)]
        action: TemplatesCommand,
    },
    /// Run the flow runner: flows and webhooks in, timers, pacing; state in SQLite.
    Serve(crate::commands::serve::ServeArgs),
    /// Flows: start one on a running `serve`, or print a flow's timeline.
    Flow {
        #[command(subcommand)]
        action: crate::commands::flow::FlowCommand,
    },
    /// Run the embedded mock Cloud API (and SMS API).
    MockApi(crate::commands::mock_api::MockApiArgs),
    /// Send the demo messages to the embedded mock and print each classification.
    Demo,
    /// Publish, list, resolve, pull, yank and verify channel plugins (directory or OCI).
    Registry(crate::commands::registry::RegistryArgs),
    /// Measure compile, instantiate and call times.
    Bench {
        #[arg(long, default_value_t = 300)]
        iterations: usize,
        #[command(subcommand)]
        load: Option<BenchCommand>,
    },
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// The flow runtime under load: one serve process against the mock on loopback.
    Load(crate::commands::bench_load::LoadArgs),
}

#[derive(Subcommand, Debug)]
pub enum TemplatesCommand {
    /// Check a template message file against the approved templates, as Meta would at send time.
    Check {
        /// The message file (`{"recipient", "content": {"type": "template", …}}`), or -.
        message: String,
        /// Catalog documents, applied in order: pages of GET /{waba-id}/message_templates,
        /// template definitions, or message_template_status_update webhook bodies.
        #[arg(long, required = true)]
        catalog: Vec<PathBuf>,
        /// Channel settings JSON (default: the embedded demo settings).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

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

/// A usage error: exit 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for UsageError {}

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
        .map(|h| crate::services::AllowRule::parse(h))
        .collect::<Result<Vec<_>>>()
        .map_err(|e| UsageError(format!("{e:#}")))?;
    Ok(store.scoped(vec![crate::services::SecretGrant {
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
        .unwrap_or_else(|| PathBuf::from(crate::WHATSAPP_CHANNEL_WASM));
    let runtime = Runtime::new()?;
    runtime
        .load_file(&path, Arc::new(services), Limits::default())
        .map_err(|e| UsageError(format!("{e:#}")).into())
}

fn log_level(cli: &Cli) -> Result<crate::types::LogLevel> {
    match parse_level(&cli.log_level) {
        Some(level) => Ok(level),
        None => usage(format!(
            "--log-level must be trace, debug, info, warn or error, got {:?}",
            cli.log_level
        )),
    }
}

fn log_for(cli: &Cli) -> Result<Log> {
    log_level(cli).map(Log::stderr)
}

/// The settings with the catalog documents as their `templates` (for `templates check`).
fn settings_with_catalog(config: Option<&Path>, catalog: &[PathBuf]) -> Result<Value> {
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

/// Runs a parsed command line.
pub fn run(cli: &Cli) -> Result<Outcome> {
    let log = log_for(cli)?;
    let plugin_path = cli.plugin.as_deref();
    let pure = || {
        HostServices::new(
            HttpClient::new(HttpPolicy::default()),
            Secrets::default(),
            log_for(cli).expect("checked above"),
        )
    };
    match &cli.command {
        Command::Inspect => inspect(&load_plugin(plugin_path, pure())?, plugin_path),
        Command::ValidateTemplate { file } => {
            let text = String::from_utf8(read_input(file)?)
                .map_err(|_| UsageError(format!("{file} is not UTF-8")))?;
            validate_template(&load_plugin(plugin_path, pure())?, &text)
        }
        Command::Build {
            file,
            config,
            api_base,
        } => {
            let doc = read_json(file)?;
            let settings = settings_from(config.as_deref())?;
            build(
                &load_plugin(plugin_path, pure())?,
                &doc,
                &settings,
                api_base.clone(),
            )
        }
        Command::Classify { file } => {
            classify(&load_plugin(plugin_path, pure())?, &read_json(file)?)
        }
        Command::Webhook {
            file,
            signature,
            app_secret_env,
            verify_token_env,
            method,
            query,
        } => webhook_command(
            plugin_path,
            log,
            WebhookArgs {
                file,
                signature: signature.as_deref(),
                app_secret_env: app_secret_env.as_deref(),
                verify_token_env: verify_token_env.as_deref(),
                method,
                query,
            },
        ),
        Command::Send {
            file,
            api_base,
            config,
            allow_hosts,
            secrets,
            attempt,
        } => {
            let plugin = load_plugin(plugin_path, pure())?;
            let (doc, settings) = (read_json(file)?, settings_from(config.as_deref())?);
            let plugin = with_send_grants(
                plugin,
                log,
                api_base.as_deref(),
                allow_hosts,
                secrets.as_deref(),
            )?;
            send(&plugin, &doc, &settings, api_base.clone(), *attempt)
        }
        Command::Templates {
            action:
                TemplatesCommand::Check {
                    message,
                    catalog,
                    config,
                },
        } => {
            let doc = read_json(message)?;
            let settings = settings_with_catalog(config.as_deref(), catalog)?;
            check_template_message(&load_plugin(plugin_path, pure())?, &doc, &settings)
        }
        Command::Serve(args) => args.run(plugin_path, log_level(cli)?),
        Command::Flow { action } => action.run(),
        Command::MockApi(args) => args.run(),
        Command::Demo => demo(plugin_path, &mut std::io::stdout()),
        Command::Registry(args) => args.run(),
        Command::Bench {
            load: Some(BenchCommand::Load(args)),
            ..
        } => args.run(plugin_path),
        Command::Bench { iterations, .. } => bench(plugin_path, *iterations),
    }
}
