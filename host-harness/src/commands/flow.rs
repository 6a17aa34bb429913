//! `host-harness flow start | status`.

use crate::cli::{Outcome, UsageError, read_json, secrets_from};
use crate::commands::serve::API_TOKEN_SECRET;
use crate::flow::store::Store;
use anyhow::Result;
use clap::Subcommand;
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
    },
}

impl FlowCommand {
    pub fn run(&self) -> Result<Outcome> {
        match self {
            FlowCommand::Start {
                file,
                server,
                secrets,
            } => start(file, server, secrets.as_deref()),
            FlowCommand::Status { id, db, json } => status(id, db, *json),
        }
    }
}

fn start(file: &str, server: &str, secrets: Option<&Path>) -> Result<Outcome> {
    let doc = read_json(file)?;
    let token = secrets_from(secrets)?.value(API_TOKEN_SECRET).ok_or_else(|| {
        UsageError(format!(
            "the flow API needs the host secret {API_TOKEN_SECRET} (set FLOW_SECRET_FLOW_API_TOKEN or use --secrets)"
        ))
    })?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent
        .post(&format!("{}/flows", server.trim_end_matches('/')))
        .header("authorization", &format!("Bearer {token}"))
        .header("content-type", "application/json")
        .send(doc.to_string().as_bytes())
        .map_err(|e| UsageError(format!("cannot reach {server}: {e}")))?;
    let body: Value =
        serde_json::from_slice(&resp.body_mut().read_to_vec()?).unwrap_or(Value::Null);
    Ok(Outcome::json(
        if resp.status().is_success() { 0 } else { 1 },
        body,
    ))
}

fn status(id: &str, db: &str, as_json: bool) -> Result<Outcome> {
    if !crate::flow::store::db::is_postgres_url(db) && !Path::new(db).exists() {
        return Err(UsageError(format!("no flow database at {db} (see --db)")).into());
    }
    match Store::open(db)?.status(id)? {
        None => Ok(Outcome::json(
            1,
            json!({"error": format!("no flow {id:?} in {}", crate::flow::store::db::redact(db))}),
        )),
        Some(s) if as_json => Ok(Outcome::json(0, s)),
        Some(s) => Ok(Outcome::text(crate::flow::render_timeline(&s))),
    }
}
