//! The CLI's commands as functions returning an exit code and the JSON to print, so tests can
//! drive them without spawning a process. Exit codes: 0 ok, 1 invalid input (field errors),
//! 2 usage or plugin load errors, 3 webhook signature or verification refused.

use crate::json;
use crate::mock::{MockApi, MockConfig};
use crate::runtime::{Limits, Plugin, Runtime};
use crate::services::{
    ACCESS_TOKEN_NAME, APP_SECRET_NAME, HostServices, HttpClient, HttpPolicy, Log, Secrets,
    VERIFY_TOKEN_NAME, now_ms, parse_level,
};
use crate::types::{ChannelConfig, Disposition, Header, WebhookOutcome, WebhookRequest};
use anyhow::{Context, Result, anyhow};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Phone number id of the embedded defaults (Meta's sample id).
pub const DEMO_PHONE_NUMBER_ID: &str = "106540352242922";
/// The token the embedded mock accepts.
pub const DEMO_ACCESS_TOKEN: &str = "mock-access-token";
/// The API key the embedded mock's SMS API accepts.
pub const DEMO_SMS_API_KEY: &str = "mock-sms-key";
/// Meta's Graph API host, allowed by default for `send`.
pub const GRAPH_HOST: &str = "graph.facebook.com";
const DEMO_MESSAGES: &str = include_str!("../defaults/demo-messages.json");

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

fn usage<T>(msg: impl Into<String>) -> Result<T> {
    Err(UsageError(msg.into()).into())
}

fn read_input(file: &str) -> Result<Vec<u8>> {
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

fn settings_from(path: Option<&Path>) -> Result<Value> {
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
            let mut settings = settings_from(config.as_deref())?;
            let docs = catalog
                .iter()
                .map(|p| read_json(&p.to_string_lossy()))
                .collect::<Result<Vec<_>>>()?;
            settings
                .as_object_mut()
                .ok_or_else(|| UsageError("the settings must be a JSON object".into()))?
                .insert("templates".into(), Value::Array(docs));
            check_template_message(&load_plugin(plugin_path, pure())?, &doc, &settings)
        }
        Command::Serve(args) => args.run(plugin_path, log_level(cli)?),
        Command::Flow { action } => action.run(),
        Command::MockApi(args) => args.run(),
        Command::Demo => demo(plugin_path, &mut std::io::stdout()),
        Command::Bench {
            load: Some(BenchCommand::Load(args)),
            ..
        } => args.run(plugin_path),
        Command::Bench { iterations, .. } => bench(plugin_path, *iterations),
    }
}

/// The `webhook` command's arguments.
struct WebhookArgs<'a> {
    file: &'a str,
    signature: Option<&'a str>,
    app_secret_env: Option<&'a str>,
    verify_token_env: Option<&'a str>,
    method: &'a str,
    query: &'a [String],
}

/// `webhook`: secrets from the named environment variables, then the plugin's verdict.
fn webhook_command(plugin_path: Option<&Path>, log: Log, args: WebhookArgs<'_>) -> Result<Outcome> {
    let body = read_input(args.file)?;
    let mut secrets = Secrets::default().with_env();
    let env = |var: &str| {
        std::env::var(var)
            .map_err(|_| UsageError(format!("the environment variable {var} is not set")))
    };
    if let Some(var) = args.app_secret_env {
        secrets.insert(APP_SECRET_NAME, env(var)?);
    }
    if let Some(var) = args.verify_token_env {
        secrets.insert(VERIFY_TOKEN_NAME, env(var)?);
    }
    let signed = secrets.contains(APP_SECRET_NAME);
    if !signed {
        eprintln!(
            "note: no app secret configured (--app-secret-env); the signature is not checked"
        );
    }
    let settings = if signed {
        json!({})
    } else {
        json!({ "app_secret": null })
    };
    let mut headers = vec![Header {
        name: "content-type".into(),
        value: "application/json".into(),
    }];
    if let Some(sig) = args.signature {
        headers.push(Header {
            name: "X-Hub-Signature-256".into(),
            value: sig.to_string(),
        });
    }
    let query = args
        .query
        .iter()
        .map(|q| {
            q.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| UsageError(format!("--query takes name=value, got {q:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let request = WebhookRequest {
        method: args.method.to_ascii_uppercase(),
        headers,
        query,
        body,
    };
    let plugin = load_plugin(
        plugin_path,
        HostServices::new(HttpClient::new(HttpPolicy::default()), secrets, log),
    )?;
    webhook(&plugin, &request, &settings)
}

/// The plugin with `send`'s services: the allowlist (graph.facebook.com and `--allow-host`,
/// which the API base must be on), and the secrets under the plugin's own name, sendable
/// only there.
fn with_send_grants(
    plugin: Plugin,
    log: Log,
    api_base: Option<&str>,
    allow_hosts: &[String],
    secrets: Option<&Path>,
) -> Result<Plugin> {
    let mut allow: Vec<String> = vec![GRAPH_HOST.into()];
    allow.extend(allow_hosts.iter().cloned());
    let policy = HttpPolicy::default()
        .allowing(allow.iter().map(String::as_str))
        .map_err(|e| UsageError(format!("{e:#}")))?;
    check_api_base_allowed(api_base, &policy)?;
    let name = plugin.describe()?.name;
    let secrets = scoped_secrets(&secrets_from(secrets)?, &name, &allow)?;
    Ok(plugin.with_services(Arc::new(HostServices::new(
        HttpClient::new(policy),
        secrets,
        log,
    ))))
}

/// `inspect`.
pub fn inspect(plugin: &Plugin, path: Option<&Path>) -> Result<Outcome> {
    let path = path
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(crate::WHATSAPP_CHANNEL_WASM));
    let bytes = std::fs::read(&path)?;
    let info = plugin.describe()?;
    let ty = plugin.component().component_type();
    let engine = plugin.engine();
    let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    let contract = exports
        .iter()
        .find_map(|e| {
            e.strip_prefix("flow:channel/channel@")
                .map(|v| format!("flow:channel@{v}"))
        })
        .unwrap_or_else(|| info.contract_version.clone());
    Ok(Outcome::json(
        0,
        json!({
            "name": info.name,
            "plugin_version": info.plugin_version,
            "contract": contract,
            "contract_declared": info.contract_version,
            "capabilities": info.capabilities,
            "imports": imports,
            "exports": exports,
            "path": path.display().to_string(),
            "size_bytes": bytes.len(),
            "sha256": hex::encode(sha2::Sha256::digest(&bytes)),
        }),
    ))
}

/// `validate-template`.
pub fn validate_template(plugin: &Plugin, text: &str) -> Result<Outcome> {
    Ok(match plugin.validate_template(text)? {
        Ok(()) => Outcome::json(0, json!({"valid": true})),
        Err(errors) => Outcome::json(
            1,
            json!({"valid": false, "errors": json::field_errors(&errors)}),
        ),
    })
}

fn config(settings: &Value, api_base: Option<String>) -> ChannelConfig {
    ChannelConfig {
        api_base,
        settings: settings.to_string(),
    }
}

/// `build`.
pub fn build(
    plugin: &Plugin,
    doc: &Value,
    settings: &Value,
    api_base: Option<String>,
) -> Result<Outcome> {
    let request = match message_file(doc, false) {
        Ok(r) => r,
        Err(invalid) => return Ok(invalid),
    };
    Ok(
        match plugin.build_payload(&request, &config(settings, api_base))? {
            Ok(http) => Outcome::json(0, json::http_request(&http)),
            Err(errors) => Outcome::json(1, json!({"errors": json::field_errors(&errors)})),
        },
    )
}

/// Reads a message file, or gives the exit-1 outcome that lists its problems (with
/// `"valid": false` for the check commands).
fn message_file(
    doc: &Value,
    check: bool,
) -> std::result::Result<crate::types::MessageRequest, Outcome> {
    json::message_request(doc, now_ms()).map_err(|errors| {
        let mut out = json!({"errors": json::field_errors(&errors)});
        if check {
            out["valid"] = json!(false);
        }
        Outcome::json(1, out)
    })
}

/// `templates check`: build the message against the catalog and report only the verdict.
pub fn check_template_message(plugin: &Plugin, doc: &Value, settings: &Value) -> Result<Outcome> {
    let request = match message_file(doc, true) {
        Ok(r) => r,
        Err(invalid) => return Ok(invalid),
    };
    Ok(
        match plugin.build_payload(&request, &config(settings, None))? {
            Ok(_) => Outcome::json(0, json!({"valid": true})),
            Err(errors) => Outcome::json(
                1,
                json!({"valid": false, "errors": json::field_errors(&errors)}),
            ),
        },
    )
}

/// `classify`.
pub fn classify(plugin: &Plugin, doc: &Value) -> Result<Outcome> {
    let (outcome, attempt) = json::send_outcome(doc).map_err(|e| UsageError(format!("{e:#}")))?;
    Ok(Outcome::json(
        0,
        json::classification(&plugin.classify(&outcome, attempt)?),
    ))
}

/// `webhook`.
pub fn webhook(plugin: &Plugin, request: &WebhookRequest, settings: &Value) -> Result<Outcome> {
    Ok(
        match plugin.parse_webhook(request, &config(settings, None))? {
            Ok(WebhookOutcome::Verification(challenge)) => {
                Outcome::json(0, json!({"verification": challenge}))
            }
            Ok(WebhookOutcome::Events(events)) => Outcome::json(
                0,
                json!({"events": events.iter().map(json::webhook_event).collect::<Vec<_>>()}),
            ),
            Err(e) => {
                let answer = crate::contract::WebhookErrorAnswer::of(&e);
                Outcome::json(answer.exit_code, answer.body)
            }
        },
    )
}

/// `send`.
pub fn send(
    plugin: &Plugin,
    doc: &Value,
    settings: &Value,
    api_base: Option<String>,
    attempt: u32,
) -> Result<Outcome> {
    let request = match message_file(doc, false) {
        Ok(r) => r,
        Err(invalid) => return Ok(invalid),
    };
    Ok(
        match plugin.send(&request, &config(settings, api_base), attempt)? {
            Ok(c) => Outcome::json(0, json::classification(&c)),
            Err(errors) => Outcome::json(1, json!({"errors": json::field_errors(&errors)})),
        },
    )
}

/// Host services for talking to the embedded mock.
pub fn mock_services(mock: &MockApi, log: Log) -> Result<HostServices> {
    let policy = HttpPolicy {
        response_timeout: Duration::from_secs(2),
        ..HttpPolicy::default()
    }
    .allowing([mock.base_url().as_str()])?;
    let mut secrets = Secrets::default();
    secrets.insert_for_hosts(
        ACCESS_TOKEN_NAME,
        DEMO_ACCESS_TOKEN,
        [mock.base_url().as_str()],
    )?;
    Ok(HostServices::new(HttpClient::new(policy), secrets, log))
}

/// `demo`: every demo message to the embedded mock, with retries where the classification
/// says so (bounded, honouring `retry_after_ms` up to 2 s so the demo stays short).
pub fn demo(plugin_path: Option<&Path>, out: &mut dyn std::io::Write) -> Result<Outcome> {
    let mock = MockApi::start(0, MockConfig::default())?;
    let plugin = load_plugin(
        plugin_path,
        mock_services(&mock, Log::stderr(crate::types::LogLevel::Warn))?,
    )?;
    let messages: Vec<Value> =
        serde_json::from_str(DEMO_MESSAGES).context("the embedded demo messages")?;
    writeln!(
        out,
        "WhatsApp channel demo: {} messages to the embedded mock Cloud API at {}\n",
        messages.len(),
        mock.base_url()
    )?;
    let cfg = config(&demo_settings(), Some(mock.base_url()));
    for m in &messages {
        let scenario = m.get("scenario").and_then(Value::as_str).unwrap_or("");
        let mut doc = m.clone();
        doc.as_object_mut().map(|o| o.remove("scenario"));
        let request =
            json::message_request(&doc, now_ms()).map_err(|e| anyhow!("demo message: {e:?}"))?;
        writeln!(out, "▸ {scenario}  →  {}", request.recipient)?;
        for attempt in 1..=3u32 {
            match plugin.send(&request, &cfg, attempt)? {
                Err(errors) => {
                    for e in errors {
                        writeln!(
                            out,
                            "    refused before sending: {} [{}] {}",
                            e.path, e.code, e.message
                        )?;
                    }
                    break;
                }
                Ok(c) => {
                    let code = c
                        .provider_code
                        .as_deref()
                        .map(|c| format!(" code {c}"))
                        .unwrap_or_default();
                    let id = c
                        .provider_message_id
                        .as_deref()
                        .map(|i| format!(" id {i}"))
                        .unwrap_or_default();
                    let wait = c
                        .retry_after_ms
                        .map(|ms| format!(" retry after {ms} ms"))
                        .unwrap_or_default();
                    let op = if c.operator_action {
                        " (operator action needed)"
                    } else {
                        ""
                    };
                    writeln!(
                        out,
                        "    attempt {attempt}: {} / {}{code}{id}{wait}{op}",
                        json::disposition_name(c.disposition),
                        c.reason
                    )?;
                    if c.disposition != Disposition::Retry
                        || attempt == 3
                        || c.retry_after_ms.unwrap_or(0) > 2_000
                    {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(c.retry_after_ms.unwrap_or(0)));
                }
            }
        }
    }
    let n = mock.requests().len();
    writeln!(
        out,
        "\nThe mock received {n} HTTP requests; the access token never entered the component."
    )?;
    demo_flows(out)?;
    Ok(Outcome {
        code: 0,
        json: None,
        text: None,
    })
}

/// The demo's second part: fallback flows, with webhooks, timers and the SMS channel.
pub fn demo_flows(out: &mut dyn std::io::Write) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("host-harness-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("flows.sqlite");
    let _ = std::fs::remove_file(&db);
    let stack = crate::stack::Stack::start(&db.to_string_lossy(), Duration::from_millis(250))?;
    writeln!(
        out,
        "\nFallback flows: WhatsApp first, then SMS (serve at {}, signed webhooks from the mock)\n",
        stack.url()
    )?;
    let template = json!({"type": "template", "template": {"name": "order_update", "language": "en_US", "components": [{"type": "body", "parameters": [{"type": "text", "text": "Pablo"}]}]}});
    let scenarios = [
        ("delivered on WhatsApp", "+15550100001"),
        ("not on WhatsApp (131026 by webhook) → SMS", "+15550100012"),
        ("rate-limited, retried, delivered", "+15550100010"),
        ("never delivered → timer → SMS", "+15550100013"),
    ];
    let mut ids = Vec::new();
    for (i, (what, recipient)) in scenarios.iter().enumerate() {
        let spec: crate::flow::FlowSpec = serde_json::from_value(json!({
            "id": format!("demo-{}", i + 1), "recipient": recipient, "ttl_ms": 60_000, "unknown_wait_ms": 5_000,
            "steps": [
                {"channel": "whatsapp", "content": template, "wait_for": "delivered", "within_ms": 2_000},
                {"channel": "sms", "content": {"text": "Your order shipped."}, "wait_for": "delivered", "within_ms": 5_000}]}))?;
        let id = stack
            .runner
            .submit(vec![spec], now_ms())
            .map_err(|e| anyhow!("starting a demo flow: {e:?}"))?
            .remove(0)
            .id;
        writeln!(out, "  started {id}: {what} ({recipient})")?;
        ids.push(id);
    }
    let started = Instant::now();
    loop {
        let done = ids
            .iter()
            .filter(|id| stack.runner.is_final(id).unwrap_or(true))
            .count();
        writeln!(
            out,
            "  … {done}/{} flows finished after {:.1} s",
            ids.len(),
            started.elapsed().as_secs_f64()
        )?;
        if done == ids.len() || started.elapsed() > Duration::from_secs(30) {
            break;
        }
        std::thread::sleep(Duration::from_millis(700));
    }
    for id in &ids {
        if let Some(status) = stack.runner.status(id)? {
            writeln!(
                out,
                "\n{}",
                crate::flow::render_timeline(&status).trim_end()
            )?;
        }
    }
    writeln!(
        out,
        "\n(`host-harness flow status ID --db {}` prints a timeline again.)",
        db.display()
    )?;
    Ok(())
}

fn median_us(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e6
}

/// `bench`: compile once, then instantiate (+ call) many times, pooled and on demand.
pub fn bench(plugin_path: Option<&Path>, iterations: usize) -> Result<Outcome> {
    if iterations == 0 {
        return usage("--iterations must be at least 1");
    }
    let path = plugin_path
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(crate::WHATSAPP_CHANNEL_WASM));
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let classify_input = crate::json::send_outcome(&json!({"http_status": 400, "body": serde_json::from_str::<Value>(include_str!("../../tests/fixtures/error-response-130429-rate-limit.json"))?}))?.0;
    let mut doc = serde_json::from_str::<Vec<Value>>(DEMO_MESSAGES)?[1].clone();
    doc.as_object_mut().map(|o| o.remove("scenario"));
    let message =
        json::message_request(&doc, now_ms()).map_err(|e| anyhow!("bench message: {e:?}"))?;
    let cfg = config(&demo_settings(), None);
    let mut report = serde_json::Map::new();
    let mut lines = vec![format!(
        "{} iterations, component {} ({} bytes)",
        iterations,
        path.display(),
        bytes.len()
    )];
    let mut medians = std::collections::HashMap::new();
    for pooling in [true, false] {
        let runtime = match Runtime::with_options(pooling, false) {
            Ok(r) => r,
            Err(e) => {
                lines.push(format!("pooling={pooling}: unavailable ({e:#})"));
                continue;
            }
        };
        let t = Instant::now();
        let plugin = runtime.load(
            &bytes,
            Arc::new(HostServices::locked_down()),
            Limits::default(),
        )?;
        let compile_ms = t.elapsed().as_secs_f64() * 1e3;
        let mut measure = |name: &str, f: &dyn Fn() -> Result<()>| -> Result<f64> {
            f()?; // warm-up
            let samples = (0..iterations)
                .map(|_| {
                    let t = Instant::now();
                    f().map(|_| t.elapsed())
                })
                .collect::<Result<Vec<_>>>()?;
            let m = median_us(samples);
            medians.insert((pooling, name.to_string()), m);
            Ok(m)
        };
        let inst = measure("instantiate", &|| {
            plugin.instantiate().map_err(|e| anyhow!("{e}"))
        })?;
        let describe = measure("instantiate+describe", &|| {
            plugin.describe().map(|_| ()).map_err(|e| anyhow!("{e}"))
        })?;
        let classify = measure("instantiate+classify", &|| {
            plugin
                .classify(&classify_input, 1)
                .map(|_| ())
                .map_err(|e| anyhow!("{e}"))
        })?;
        let build = measure("instantiate+build-payload", &|| {
            plugin
                .build_payload(&message, &cfg)
                .map(|_| ())
                .map_err(|e| anyhow!("{e}"))
        })?;
        let key = if pooling { "pooling" } else { "on_demand" };
        report.insert(key.into(), json!({"compile_ms": compile_ms, "median_us": {"instantiate": inst, "instantiate+describe": describe, "instantiate+classify": classify, "instantiate+build-payload": build}}));
        lines.push(format!(
            "{key:>9}: compile {compile_ms:.1} ms | median instantiate {inst:.1} µs | +describe {describe:.1} µs | +classify {classify:.1} µs | +build-payload {build:.1} µs"
        ));
    }
    if let (Some(p), Some(o)) = (
        medians.get(&(true, "instantiate+classify".to_string())),
        medians.get(&(false, "instantiate+classify".to_string())),
    ) {
        lines.push(format!(
            "on-demand / pooling (instantiate+classify): {:.2}×",
            o / p
        ));
        report.insert("on_demand_over_pooling".into(), json!(o / p));
    }
    Ok(Outcome {
        code: 0,
        json: None,
        text: Some(format!(
            "{}\n{}",
            lines.join("\n"),
            serde_json::to_string_pretty(&Value::Object(report))?
        )),
    })
}
