//! `host-harness tenant …`: the operator API of a running `serve` from the command line
//! (tenants, their flow API tokens). A thin client: every rule lives in the server.

use crate::commands::serve::ADMIN_TOKEN_SECRET;
use crate::common::{Outcome, UsageError, secrets_from};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::path::PathBuf;

/// Tenants and their flow API tokens, through a running `serve`'s operator API.
#[derive(Args, Debug)]
pub struct TenantArgs {
    /// The `serve` to talk to.
    #[arg(long, default_value = "http://127.0.0.1:8788")]
    pub server: String,
    /// A JSON file of secret name → value holding `flow/admin-token`
    /// (FLOW_SECRET_FLOW_ADMIN_TOKEN is read too).
    #[arg(long)]
    pub secrets: Option<PathBuf>,
    #[command(subcommand)]
    pub action: TenantCommand,
}

#[derive(Subcommand, Debug)]
pub enum TenantCommand {
    /// Create a tenant.
    Create {
        id: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// Rename a tenant.
    Update {
        id: String,
        #[arg(long)]
        name: String,
    },
    /// Show a tenant and its tokens (never their secrets).
    Show { id: String },
    /// List the tenants.
    List,
    /// Issue a flow API token for the tenant: printed once, kept by the server only as a hash.
    IssueToken {
        id: String,
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Revoke one of the tenant's tokens by its id (`tok_…`).
    RevokeToken { id: String, token_id: String },
}

impl TenantArgs {
    pub async fn run(&self) -> Result<Outcome> {
        let token = secrets_from(self.secrets.as_deref())?
            .value(ADMIN_TOKEN_SECRET)
            .ok_or_else(|| {
                UsageError(format!(
                    "the operator API needs the host secret {ADMIN_TOKEN_SECRET} (set FLOW_SECRET_FLOW_ADMIN_TOKEN or use --secrets)"
                ))
            })?;
        let base = self.server.trim_end_matches('/');
        let http = reqwest::Client::new();
        let tenants = format!("{base}/admin/tenants");
        let request = match &self.action {
            TenantCommand::Create { id, name } => http
                .post(&tenants)
                .json(&json!({"id": id, "name": name.clone().unwrap_or_else(|| id.clone())})),
            TenantCommand::Update { id, name } => http
                .patch(format!("{tenants}/{id}"))
                .json(&json!({ "name": name })),
            TenantCommand::Show { id } => http.get(format!("{tenants}/{id}")),
            TenantCommand::List => http.get(&tenants),
            TenantCommand::IssueToken { id, label } => http
                .post(format!("{tenants}/{id}/tokens"))
                .json(&json!({ "label": label })),
            TenantCommand::RevokeToken { id, token_id } => {
                http.delete(format!("{tenants}/{id}/tokens/{token_id}"))
            }
        };
        let response = request
            .bearer_auth(token)
            .send()
            .await
            .with_context(|| format!("reaching {base}"))?;
        let status = response.status();
        let text = response.text().await?;
        let body = if text.is_empty() {
            json!({"ok": status.is_success()})
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        // 0 done; 1 refused (the answer says why); 2 not allowed (a usage matter).
        let code = match status.as_u16() {
            200..=299 => 0,
            401 | 403 => 2,
            _ => 1,
        };
        Ok(Outcome::json(code, body))
    }
}
