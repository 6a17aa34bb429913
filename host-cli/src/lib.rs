//! The `host-harness` command line, as a library (the binary is `main.rs`; the tests drive
//! commands in process through [`run`]): load a flow:channel component and drive it from the command line, serve
//! the flow runtime, publish and resolve plugins. The command line's shape (`Cli`, `Command`)
//! and the dispatch are here; each subcommand's work is in `commands/`, the helpers they share
//! in `common`. Exit codes: 0 ok, 1 invalid input (field errors), 2 usage or plugin load
//! errors, 3 a webhook's or registry artifact's signature or verification refused, 4 the plugin
//! trapped (or any other failure: never mistaken for invalid input).

pub mod commands;
pub mod common;

use anyhow::Result;
use clap::{Parser, Subcommand};
use commands::bench::bench;
use commands::demo::demo;
use commands::plugin::{
    WebhookArgs, build, check_template_message, classify, inspect, validate_template,
    webhook_command,
};
use common::{
    Outcome, UsageError, load_plugin, read_input, read_json, settings_from, settings_with_catalog,
    usage,
};
use host::services::{HostServices, HttpClient, HttpPolicy, Log, Secrets, parse_level};
use std::path::PathBuf;

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
    /// Parse a webhook body as the channel's provider posts it (any channel: --plugin), as
    /// serve would: the events (exit 0), a missing or wrong signature (3), a malformed body
    /// (1), a secret the settings name and --secrets lacks (2).
    Webhook {
        file: String,
        /// The full URL the provider called (providers that sign the URL, as Twilio does,
        /// need it); its query is the request's.
        #[arg(long)]
        url: Option<String>,
        /// A request header, `Name: value`. Repeatable.
        #[arg(long = "header")]
        headers: Vec<String>,
        /// A JSON file of secret name → value: the keys the channel's signature checks use
        /// (inside the host only).
        #[arg(long)]
        secrets: Option<PathBuf>,
        /// The channel's settings JSON (default: the channel's demo settings).
        #[arg(long)]
        config: Option<PathBuf>,
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
    Send(commands::plugin::SendArgs),
    /// Template tools.
    Templates {
        #[command(subcommand)]
        action: TemplatesCommand,
    },
    /// Run the flow runner: flows and webhooks in, timers, pacing; state in SQLite.
    Serve(commands::serve::ServeArgs),
    /// Flows: start one on a running `serve`, or print a flow's timeline.
    Flow {
        #[command(subcommand)]
        action: commands::flow::FlowCommand,
    },
    /// Tenants and their flow API tokens, through a running serve's operator API.
    Tenant(commands::tenant::TenantArgs),
    /// Run the embedded mock Cloud API (and SMS API).
    MockApi(commands::mock_api::MockApiArgs),
    /// Send the demo messages to the embedded mock and print each classification.
    Demo,
    /// Publish, list, resolve, pull, yank and verify channel plugins (directory or OCI).
    Registry(commands::registry::RegistryArgs),
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
    Load(commands::bench_load::LoadArgs),
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

fn log_level(cli: &Cli) -> Result<host::contract::types::LogLevel> {
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

/// Runs a parsed command line.
pub async fn run(cli: &Cli) -> Result<Outcome> {
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
        Command::Inspect => inspect(&load_plugin(plugin_path, pure())?, plugin_path).await,
        Command::ValidateTemplate { file } => {
            let text = String::from_utf8(read_input(file)?)
                .map_err(|_| UsageError(format!("{file} is not UTF-8")))?;
            validate_template(&load_plugin(plugin_path, pure())?, &text).await
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
            .await
        }
        Command::Classify { file } => {
            classify(&load_plugin(plugin_path, pure())?, &read_json(file)?).await
        }
        Command::Webhook {
            file,
            url,
            headers,
            secrets,
            config,
            signature,
            app_secret_env,
            verify_token_env,
            method,
            query,
        } => {
            webhook_command(
                plugin_path,
                log,
                WebhookArgs {
                    file,
                    url: url.as_deref(),
                    headers,
                    secrets: secrets.as_deref(),
                    config: config.as_deref(),
                    signature: signature.as_deref(),
                    app_secret_env: app_secret_env.as_deref(),
                    verify_token_env: verify_token_env.as_deref(),
                    method,
                    query,
                },
            )
            .await
        }
        Command::Send(args) => args.run(load_plugin(plugin_path, pure())?, log).await,
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
            check_template_message(&load_plugin(plugin_path, pure())?, &doc, &settings).await
        }
        Command::Serve(args) => args.run(plugin_path, log_level(cli)?).await,
        Command::Flow { action } => action.run().await,
        Command::Tenant(args) => args.run().await,
        Command::MockApi(args) => args.run().await,
        Command::Demo => demo(plugin_path, &mut std::io::stdout()).await,
        Command::Registry(args) => args.run().await,
        Command::Bench {
            load: Some(BenchCommand::Load(args)),
            ..
        } => args.run(plugin_path).await,
        Command::Bench { iterations, .. } => bench(plugin_path, *iterations).await,
    }
}
