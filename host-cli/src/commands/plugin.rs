//! The commands that call one export of one plugin: `inspect`, `validate-template`, `build`,
//! `templates check`, `classify`, `webhook`, `send`.

use crate::common::{
    GRAPH_HOST, Outcome, UsageError, check_api_base_allowed, load_plugin, read_input, read_json,
    scoped_secrets, secrets_from, settings_from,
};
use anyhow::Result;
use host::contract::types::{ChannelConfig, Header, WebhookOutcome, WebhookRequest};
use host::json;
use host::runtime::Plugin;
use host::services::{
    APP_SECRET_NAME, HostServices, HttpClient, HttpPolicy, Log, Secrets, VERIFY_TOKEN_NAME, now_ms,
};
use serde_json::{Value, json};
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `send`'s arguments.
#[derive(clap::Args, Debug)]
pub struct SendArgs {
    pub file: String,
    /// Provider API base URL (it must be on the allowlist: see --allow-host).
    #[arg(long)]
    pub api_base: Option<String>,
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Allowlist entries besides graph.facebook.com (e.g. http://127.0.0.1:8787).
    #[arg(long = "allow-host")]
    pub allow_hosts: Vec<String>,
    /// A JSON file of secret name → value (FLOW_SECRET_* variables are read too).
    #[arg(long)]
    pub secrets: Option<PathBuf>,
    /// Attempt number, for back-off.
    #[arg(long, default_value_t = 1)]
    pub attempt: u32,
}

impl SendArgs {
    /// The message file through the plugin, with the grants the flags give it.
    pub async fn run(&self, plugin: Plugin, log: Log) -> Result<Outcome> {
        let doc = read_json(&self.file)?;
        let settings = settings_from(self.config.as_deref())?;
        let plugin = with_send_grants(
            plugin,
            log,
            self.api_base.as_deref(),
            &self.allow_hosts,
            self.secrets.as_deref(),
        )
        .await?;
        send(
            &plugin,
            &doc,
            &settings,
            self.api_base.clone(),
            self.attempt,
        )
        .await
    }
}

/// The `webhook` command's arguments.
pub struct WebhookArgs<'a> {
    pub file: &'a str,
    pub url: Option<&'a str>,
    pub headers: &'a [String],
    pub secrets: Option<&'a Path>,
    pub config: Option<&'a Path>,
    pub signature: Option<&'a str>,
    pub app_secret_env: Option<&'a str>,
    pub verify_token_env: Option<&'a str>,
    pub method: &'a str,
    pub query: &'a [String],
}

/// `webhook`: the request as the provider sent it, the secrets from the file and the named
/// environment variables, then the plugin's verdict.
pub async fn webhook_command(
    plugin_path: Option<&Path>,
    log: Log,
    args: WebhookArgs<'_>,
) -> Result<Outcome> {
    let body = read_input(args.file)?;
    let mut secrets = Secrets::default().with_env();
    if let Some(file) = args.secrets {
        for (name, value) in secrets_file(file)? {
            secrets.insert(name, value);
        }
    }
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
    let plugin = load_plugin(
        plugin_path,
        HostServices::new(HttpClient::new(HttpPolicy::default()), secrets, log),
    )?;
    let channel = plugin.describe().await?.name;
    let settings = match args.config {
        Some(file) => read_json(&file.to_string_lossy())?,
        None => demo_channel_settings(&channel, signed),
    };
    let request = webhook_request(&args, body)?;
    webhook(&plugin, &request, &settings).await
}

/// The embedded demo settings of a built-in channel (WhatsApp's without an app secret
/// checks no signature, as before).
fn demo_channel_settings(channel: &str, signed: bool) -> Value {
    match channel {
        "sms" => host_testkit::stack::demo_sms_settings(),
        "email" => host_testkit::stack::demo_email_settings(),
        _ if signed => json!({}),
        _ => {
            eprintln!(
                "note: no app secret configured (--app-secret-env); the signature is not checked"
            );
            json!({ "app_secret": null })
        }
    }
}

/// `{"name": "value", …}` from a file.
fn secrets_file(file: &Path) -> Result<Vec<(String, String)>> {
    let doc = read_json(&file.to_string_lossy())?;
    let Value::Object(map) = doc else {
        return Err(UsageError(format!(
            "{} must be a JSON object of secret name → value",
            file.display()
        ))
        .into());
    };
    map.into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            other => Err(UsageError(format!(
                "{}: the secret {k:?} must be a string, got {other}",
                file.display()
            ))
            .into()),
        })
        .collect()
}

/// The request as the provider sent it: method, URL (its query, then `--query`), headers
/// (`--header`, then WhatsApp's `--signature`), body.
fn webhook_request(args: &WebhookArgs<'_>, body: Vec<u8>) -> Result<WebhookRequest> {
    let mut headers = args
        .headers
        .iter()
        .map(|h| {
            h.split_once(':')
                .filter(|(n, _)| !n.trim().is_empty())
                .map(|(n, v)| Header {
                    name: n.trim().to_string(),
                    value: v.trim().to_string(),
                })
                .ok_or_else(|| UsageError(format!("--header takes 'Name: value', got {h:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("content-type"))
    {
        headers.push(Header {
            name: "content-type".into(),
            value: "application/json".into(),
        });
    }
    if let Some(sig) = args.signature {
        headers.push(Header {
            name: "X-Hub-Signature-256".into(),
            value: sig.to_string(),
        });
    }
    let mut query = Vec::new();
    if let Some(url) = args.url {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| UsageError(format!("--url {url:?} is not a URL: {e}")))?;
        query.extend(
            parsed
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned())),
        );
    }
    for q in args.query {
        let (k, v) = q
            .split_once('=')
            .ok_or_else(|| UsageError(format!("--query takes name=value, got {q:?}")))?;
        query.push((k.to_string(), v.to_string()));
    }
    Ok(WebhookRequest {
        method: args.method.to_ascii_uppercase(),
        url: args.url.map(str::to_string),
        headers,
        query,
        body,
    })
}

/// The plugin with `send`'s services: the allowlist (graph.facebook.com and `--allow-host`,
/// which the API base must be on), and the secrets under the plugin's own name, sendable
/// only there.
pub async fn with_send_grants(
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
    let name = plugin.describe().await?.name;
    let secrets = scoped_secrets(&secrets_from(secrets)?, &name, &allow)?;
    Ok(plugin.with_services(Arc::new(HostServices::new(
        HttpClient::new(policy),
        secrets,
        log,
    ))))
}

/// `inspect`.
pub async fn inspect(plugin: &Plugin, path: Option<&Path>) -> Result<Outcome> {
    let path = path
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(host_testkit::WHATSAPP_CHANNEL_WASM));
    let bytes = std::fs::read(&path)?;
    let info = plugin.describe().await?;
    let ty = plugin.component().component_type();
    let engine = plugin.engine();
    let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    // The version the component was linked as (read from its exports when it loaded).
    let contract = plugin.contract().name();
    // The hosts and secrets it asks to be granted (its `flow-channel-manifest` section).
    let requests = host::plugin_manifest::PluginManifest::from_component(&bytes)
        .map_err(|e| UsageError(format!("{}: {e:#}", path.display())))?;
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
            "metadata": host::registry::artifact::component_metadata(&bytes),
            "requests": requests,
            "path": path.display().to_string(),
            "size_bytes": bytes.len(),
            "sha256": hex::encode(sha2::Sha256::digest(&bytes)),
        }),
    ))
}

/// `validate-template`.
pub async fn validate_template(plugin: &Plugin, text: &str) -> Result<Outcome> {
    Ok(match plugin.validate_template(text).await? {
        Ok(()) => Outcome::json(0, json!({"valid": true})),
        Err(errors) => Outcome::json(
            1,
            json!({"valid": false, "errors": json::field_errors(&errors)}),
        ),
    })
}

pub fn config(settings: &Value, api_base: Option<String>) -> ChannelConfig {
    ChannelConfig {
        api_base,
        settings: settings.to_string(),
    }
}

/// `build`.
pub async fn build(
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
        match plugin
            .build_payload(&request, &config(settings, api_base))
            .await?
        {
            Ok(http) => Outcome::json(0, json::http_request(&http)),
            Err(errors) => Outcome::json(1, json!({"errors": json::field_errors(&errors)})),
        },
    )
}

/// Reads a message file, or gives the exit-1 outcome that lists its problems (with
/// `"valid": false` for the check commands).
pub fn message_file(
    doc: &Value,
    check: bool,
) -> std::result::Result<host::contract::types::MessageRequest, Outcome> {
    json::message_request(doc, now_ms()).map_err(|errors| {
        let mut out = json!({"errors": json::field_errors(&errors)});
        if check {
            out["valid"] = json!(false);
        }
        Outcome::json(1, out)
    })
}

/// `templates check`: build the message against the catalog and report only the verdict.
pub async fn check_template_message(
    plugin: &Plugin,
    doc: &Value,
    settings: &Value,
) -> Result<Outcome> {
    let request = match message_file(doc, true) {
        Ok(r) => r,
        Err(invalid) => return Ok(invalid),
    };
    Ok(
        match plugin
            .build_payload(&request, &config(settings, None))
            .await?
        {
            Ok(_) => Outcome::json(0, json!({"valid": true})),
            Err(errors) => Outcome::json(
                1,
                json!({"valid": false, "errors": json::field_errors(&errors)}),
            ),
        },
    )
}

/// `classify`.
pub async fn classify(plugin: &Plugin, doc: &Value) -> Result<Outcome> {
    let (outcome, attempt) = json::send_outcome(doc).map_err(|e| UsageError(format!("{e:#}")))?;
    Ok(Outcome::json(
        0,
        json::classification(&plugin.classify(&outcome, attempt).await?),
    ))
}

/// `webhook`.
pub async fn webhook(
    plugin: &Plugin,
    request: &WebhookRequest,
    settings: &Value,
) -> Result<Outcome> {
    Ok(
        match plugin
            .parse_webhook(request, &config(settings, None))
            .await?
        {
            Ok(WebhookOutcome::Verification(challenge)) => {
                Outcome::json(0, json!({"verification": challenge}))
            }
            Ok(WebhookOutcome::Events(events)) => Outcome::json(
                0,
                json!({"events": events.iter().map(json::webhook_event).collect::<Vec<_>>()}),
            ),
            Err(e) => {
                let answer = host::contract::WebhookErrorAnswer::of(&e);
                Outcome::json(answer.exit_code, answer.body)
            }
        },
    )
}

/// `send`.
pub async fn send(
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
        match plugin
            .send(&request, &config(settings, api_base), attempt)
            .await?
        {
            Ok(c) => Outcome::json(0, json::classification(&c)),
            Err(errors) => Outcome::json(1, json!({"errors": json::field_errors(&errors)})),
        },
    )
}
