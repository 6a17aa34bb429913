//! `host-harness tenant …`: the operator API of a running `serve` from the command line
//! (tenants, their flow API tokens, their channel accounts: put, connect, signup, sync). A
//! thin client: every rule lives in the server.

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
    /// Put the tenant's account on a channel: its id, settings laid over serve's, and
    /// secrets read from environment variables (never from the command line).
    PutAccount {
        id: String,
        #[arg(long, default_value = "whatsapp")]
        channel: String,
        /// The provider's id of the account (a WABA id).
        #[arg(long)]
        account_id: String,
        /// A setting, `name=text` (a string) or `name:=JSON` (any JSON value). Repeatable.
        #[arg(long = "setting")]
        settings: Vec<String>,
        /// A secret, `name=ENV_VAR` (e.g. `access-token=ACME_TOKEN`). Repeatable.
        #[arg(long = "secret-env")]
        secrets: Vec<String>,
    },
    /// Show the tenant's account on a channel (state, facts, senders; never secrets).
    Account {
        id: String,
        #[arg(long, default_value = "whatsapp")]
        channel: String,
    },
    /// Connect the account put before: the provider checks the token against it and each
    /// sender; then its templates are synced.
    Connect {
        id: String,
        #[arg(long, default_value = "whatsapp")]
        channel: String,
        /// A sender to check and route by (a phone number id). Repeatable.
        #[arg(long = "sender-id", required = true)]
        sender_ids: Vec<String>,
    },
    /// Onboard an account through the provider's signup (Embedded Signup on WhatsApp).
    Signup {
        id: String,
        #[arg(long, default_value = "whatsapp")]
        channel: String,
        /// The environment variable holding the one-time code the signup returned.
        #[arg(long)]
        code_env: String,
        #[arg(long)]
        account_id: String,
        #[arg(long)]
        sender_id: String,
    },
    /// Sync the account's templates from the provider now.
    Sync {
        id: String,
        #[arg(long, default_value = "whatsapp")]
        channel: String,
    },
    /// List the account's templates as serve holds them.
    Templates {
        id: String,
        #[arg(long, default_value = "whatsapp")]
        channel: String,
    },
}

/// `name=text` (a string) and `name:=JSON` pairs into a JSON object (httpie's convention: a
/// number id stays the string it is unless asked otherwise).
fn settings_object(pairs: &[String]) -> Result<serde_json::Map<String, Value>> {
    pairs
        .iter()
        .map(|p| {
            let (name, value) = p.split_once('=').ok_or_else(|| {
                UsageError(format!(
                    "--setting takes name=text or name:=JSON, got {p:?}"
                ))
            })?;
            match name.strip_suffix(':') {
                Some(name) => {
                    let value = serde_json::from_str(value)
                        .map_err(|e| UsageError(format!("--setting {name}:= takes JSON: {e}")))?;
                    Ok((name.to_string(), value))
                }
                None => Ok((name.to_string(), Value::String(value.to_string()))),
            }
        })
        .collect()
}

/// `name=ENV_VAR` pairs into secret name → the variable's value.
fn secrets_object(pairs: &[String]) -> Result<serde_json::Map<String, Value>> {
    pairs
        .iter()
        .map(|p| {
            let (name, var) = p
                .split_once('=')
                .ok_or_else(|| UsageError(format!("--secret-env takes name=ENV_VAR, got {p:?}")))?;
            Ok((name.to_string(), Value::String(env_value(var)?)))
        })
        .collect()
}

fn env_value(var: &str) -> Result<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => Err(UsageError(format!("the environment variable {var} is not set")).into()),
    }
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
            TenantCommand::PutAccount {
                id,
                channel,
                account_id,
                settings,
                secrets,
            } => http.put(format!("{tenants}/{id}/channels/{channel}")).json(
                &json!({"account_id": account_id, "settings": settings_object(settings)?,
                    "secrets": secrets_object(secrets)?}),
            ),
            TenantCommand::Account { id, channel } => {
                http.get(format!("{tenants}/{id}/channels/{channel}"))
            }
            TenantCommand::Connect {
                id,
                channel,
                sender_ids,
            } => http
                .post(format!("{tenants}/{id}/channels/{channel}/connect"))
                .json(&json!({ "sender_ids": sender_ids })),
            TenantCommand::Signup {
                id,
                channel,
                code_env,
                account_id,
                sender_id,
            } => http
                .post(format!("{tenants}/{id}/channels/{channel}/signup"))
                .json(
                    &json!({"code": env_value(code_env)?, "account_id": account_id,
                    "sender_id": sender_id}),
                ),
            TenantCommand::Sync { id, channel } => {
                http.post(format!("{tenants}/{id}/channels/{channel}/sync"))
            }
            TenantCommand::Templates { id, channel } => {
                http.get(format!("{tenants}/{id}/channels/{channel}/templates"))
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
