//! `host-harness flow start | status`.

use crate::commands::serve::API_TOKEN_SECRET;
use crate::common::{Outcome, UsageError, read_json, secrets_from};
use anyhow::Result;
use clap::Subcommand;
use host::channels::load_channels;
use host::contract::types::{LogLevel, MessageRequest};
use host::flow::spec::FlowSpec;
use host::flow::store::Store;
use host::lockfile::LockFile;
use host::runtime::Runtime;
use host::services::{Secrets, now_ms};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// Flows: start on a running `serve`, or print a flow's timeline.
#[derive(Subcommand, Debug)]
pub enum FlowCommand {
    /// POST a flow file (one flow, a JSON array, or NDJSON) to a running `serve`.
    Start {
        file: String,
        #[arg(long, default_value = "http://127.0.0.1:8788")]
        server: String,
        /// A JSON file of secret name → value holding `flow/api-token` (FLOW_SECRET_FLOW_API_TOKEN is read too).
        #[arg(long)]
        secrets: Option<PathBuf>,
        /// Check each flow first with the plugins of this lock file (the ones `serve --plugins`
        /// runs): its channels must be locked and each step's content must build; nothing is
        /// posted otherwise.
        #[arg(long)]
        plugins: Option<PathBuf>,
        /// An environment variable holding a tenant's flow API token (`flw_…`), used instead
        /// of `flow/api-token` (the default tenant's).
        #[arg(long)]
        token_env: Option<String>,
    },
    /// Print a flow's timeline from the database `serve` uses.
    Status {
        id: String,
        /// A SQLite file or a `postgres://` URL, as for `serve`.
        #[arg(long, env = "DATABASE_URL", default_value = "flows.sqlite")]
        db: String,
        /// Print JSON instead of the readable timeline.
        #[arg(long)]
        json: bool,
        /// The tenant whose flow it is.
        #[arg(long, default_value = host::tenants::DEFAULT_TENANT)]
        tenant: String,
    },
}

impl FlowCommand {
    pub async fn run(&self) -> Result<Outcome> {
        match self {
            FlowCommand::Start {
                file,
                server,
                secrets,
                plugins,
                token_env,
            } => {
                let token = api_token(secrets.as_deref(), token_env.as_deref())?;
                start(file, server, &token, plugins.as_deref()).await
            }
            FlowCommand::Status {
                id,
                db,
                json,
                tenant,
            } => status(id, db, *json, tenant).await,
        }
    }
}

/// The bearer token: a tenant's from `token_env`, else the host secret `flow/api-token`.
fn api_token(secrets: Option<&Path>, token_env: Option<&str>) -> Result<String> {
    if let Some(var) = token_env {
        return std::env::var(var)
            .ok()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                UsageError(format!("the environment variable {var} is not set")).into()
            });
    }
    secrets_from(secrets)?.value(API_TOKEN_SECRET).ok_or_else(|| {
        UsageError(format!(
            "the flow API needs the host secret {API_TOKEN_SECRET} (set FLOW_SECRET_FLOW_API_TOKEN or use --secrets), or a tenant's token (--token-env)"
        ))
        .into()
    })
}

async fn start(file: &str, server: &str, token: &str, plugins: Option<&Path>) -> Result<Outcome> {
    let doc = read_json(file)?;
    if let Some(lock) = plugins {
        let errors = check_with_locked_plugins(&doc, lock).await?;
        if !errors.is_empty() {
            return Ok(Outcome::json(1, json!({ "errors": errors })));
        }
    }
    let resp = reqwest::Client::new()
        .post(format!("{}/flows", server.trim_end_matches('/')))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(doc.to_string())
        .send()
        .await
        .map_err(|e| UsageError(format!("cannot reach {server}: {e}")))?;
    let succeeded = resp.status().is_success();
    let body: Value = serde_json::from_slice(&resp.bytes().await?).unwrap_or(Value::Null);
    Ok(Outcome::json(if succeeded { 0 } else { 1 }, body))
}

/// Every problem the locked plugins find in the flows of `doc` (one flow or an array), as
/// field errors with JSON pointers into the file.
async fn check_with_locked_plugins(doc: &Value, lock: &Path) -> Result<Vec<Value>> {
    let usage = |e: anyhow::Error| UsageError(format!("{e:#}"));
    let setups = LockFile::setups_from(lock).map_err(usage)?;
    let channels = load_channels(
        &Runtime::new()?,
        &Secrets::default(),
        LogLevel::Error,
        &setups,
    )
    .await
    .map_err(usage)?;
    let names: Vec<&str> = setups.iter().map(|s| s.name.as_str()).collect();
    let flows: Vec<(String, &Value)> = match doc {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, f)| (format!("/{i}"), f))
            .collect(),
        one => vec![(String::new(), one)],
    };
    let mut errors = Vec::new();
    for (at, flow) in flows {
        let spec = match FlowSpec::from_value(flow.clone()) {
            Ok(spec) => spec,
            Err(e) => {
                errors.extend(e.iter().map(|e| json!({"path": format!("{at}{}", e.path), "code": e.code, "message": e.message})));
                continue;
            }
        };
        for e in spec.check(&names) {
            errors.push(
                json!({"path": format!("{at}{}", e.path), "code": e.code, "message": e.message}),
            );
        }
        for (i, step) in spec.steps.iter().enumerate() {
            let Some(channel) = channels.get(&step.channel) else {
                continue;
            };
            let request = MessageRequest {
                recipient: spec.recipient.clone(),
                correlation_id: None,
                content: step.content.to_string(),
                last_inbound_ms: None,
                now_ms: now_ms(),
                opted_out: Vec::new(),
                deadline_ms: None,
            };
            if let Err(field_errors) = channel
                .plugin
                .build_payload(&request, &channel.config())
                .await?
            {
                let entry = setups.iter().position(|s| s.name == step.channel);
                for e in field_errors {
                    errors.push(step_error(&at, i, entry, &e));
                }
            }
        }
    }
    // Each plugin reads the recipient: say each problem once.
    let mut seen = std::collections::HashSet::new();
    errors.retain(|e| seen.insert((e["path"].clone(), e["lock"].clone())));
    Ok(errors)
}

/// A plugin's field error for step `i` of the flow at `at`: its pointer into the flow file,
/// or, for the channel's settings, into the lock file (`"lock"`).
fn step_error(
    at: &str,
    i: usize,
    entry: Option<usize>,
    e: &host::contract::types::FieldError,
) -> Value {
    let (key, path) = if let Some(rest) = e.path.strip_prefix("/settings") {
        (
            "lock",
            format!("/plugins/{}/settings{rest}", entry.unwrap_or(0)),
        )
    } else if e.path.starts_with("/recipient") {
        ("path", format!("{at}{}", e.path))
    } else {
        let rest = e.path.strip_prefix("/content").unwrap_or(&e.path);
        ("path", format!("{at}/steps/{i}/content{rest}"))
    };
    json!({key: path, "code": e.code, "message": e.message})
}

async fn status(id: &str, db: &str, as_json: bool, tenant: &str) -> Result<Outcome> {
    if let Some(message) = host::tenants::tenant_id_error(tenant) {
        return Err(UsageError(format!("--tenant: {message}")).into());
    }
    if !host::flow::store::is_postgres_url(db) && !Path::new(db).exists() {
        return Err(UsageError(format!("no flow database at {db} (see --db)")).into());
    }
    let (owned_db, key) = (db.to_string(), host::tenants::scoped(tenant, id));
    // The store is synchronous: off the runtime's workers.
    let status = tokio::task::spawn_blocking(move || Store::open(&owned_db)?.flow_view(&key))
        .await??
        .map(|view| {
            host::server::flow_json(&host::flow::store::FlowView {
                id: id.to_string(),
                ..view
            })
        })
        .transpose()?;
    match status {
        None => Ok(Outcome::json(
            1,
            json!({"error": format!("no flow {id:?} in {}", host::flow::store::redact(db))}),
        )),
        Some(s) if as_json => Ok(Outcome::json(0, s)),
        Some(s) => Ok(Outcome::text(host::flow::render_timeline(&s))),
    }
}
