//! A tenant's account on a channel, beyond storing it: connecting it (the provider checks the
//! token against the account and each sender, and what it reports is kept), onboarding it
//! through the provider's signup (a one-time code exchanged for the business's token, the app
//! subscribed to the account's webhooks, each sender registered with a PIN the host keeps),
//! and syncing its templates into the store (every page, at connect, on a timer, on demand,
//! and when a template webhook names the account).
//!
//! The plugin speaks the provider's API through the contract's account operations; the host
//! knows no provider URL. Each operation runs in the tenant's own instance of the channel
//! (its secrets, its settings), except the code exchange, which needs the operator's app
//! credentials and runs in serve's.

use super::runner::{Runner, TenantChannel};
use super::store::{AccountFactsPut, AccountPut, NewAccount, SenderRecord, TemplateRecord};
use crate::contract::types::{AccountFacts, Classification, OperationError, TemplateState};
use crate::runtime::CallError;
use crate::services::now_ms;
use serde_json::{Value, json};
use std::sync::Arc;

/// Pages of templates read at most in one sync (a WABA holds at most a few thousand
/// templates: 100 per page, this is far past any real account, and stops a provider that
/// answers `next` forever).
pub const MAX_TEMPLATE_PAGES: usize = 1_000;

/// Why an account operation did not complete, for the operator API.
#[derive(Debug)]
pub enum AccountError {
    /// The tenant has no account on the channel (put one first), or the channel is unknown.
    NoAccount(String),
    /// The channel's plugin has no such operation.
    Unsupported,
    /// An argument or setting the plugin refused (JSON pointers into the plugin's inputs).
    Invalid(Vec<crate::contract::types::FieldError>),
    /// The provider refused or could not be reached.
    Refused(Box<Classification>),
    /// A sender or account another tenant holds.
    OwnedByAnother(String),
    /// The plugin trapped, or the store failed.
    Host(anyhow::Error),
}

impl From<anyhow::Error> for AccountError {
    fn from(e: anyhow::Error) -> Self {
        AccountError::Host(e)
    }
}

impl From<CallError> for AccountError {
    fn from(e: CallError) -> Self {
        AccountError::Host(anyhow::anyhow!("{e}"))
    }
}

impl From<OperationError> for AccountError {
    fn from(e: OperationError) -> Self {
        match e {
            OperationError::Unsupported => AccountError::Unsupported,
            OperationError::Invalid(errors) => AccountError::Invalid(errors),
            OperationError::Refused(c) => AccountError::Refused(Box::new(c)),
        }
    }
}

/// What a template sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReport {
    pub pages: usize,
    pub templates: usize,
    /// Templates the store had that the provider no longer lists.
    pub removed: u64,
}

/// What a signup asks for: the code Embedded Signup gave the business, its account and
/// sender.
#[derive(Debug, Clone)]
pub struct Signup {
    pub code: String,
    pub account_id: String,
    pub sender_id: String,
}

impl Runner {
    /// The tenant's stored account on `channel`, or that it has none.
    async fn account_of(
        &self,
        tenant: &str,
        channel: &str,
    ) -> Result<super::store::AccountRecord, AccountError> {
        let (owned_tenant, owned_channel) = (tenant.to_string(), channel.to_string());
        self.on_store(move |s| s.channel_account(&owned_tenant, &owned_channel))
            .await?
            .ok_or_else(|| AccountError::NoAccount(format!("no {channel} account")))
    }

    /// The tenant's own instance of `channel`, or why there is none.
    async fn own_channel(
        self: &Arc<Self>,
        tenant: &str,
        channel: &str,
    ) -> Result<Arc<super::Channel>, AccountError> {
        self.forget_tenant_channels(tenant);
        // Reading the account reaches the store: off the async workers (the PostgreSQL
        // client blocks).
        let (runner, owned_tenant, owned_channel) =
            (self.clone(), tenant.to_string(), channel.to_string());
        let found = tokio::task::spawn_blocking(move || {
            runner.tenant_channel(&owned_tenant, &owned_channel)
        })
        .await
        .map_err(anyhow::Error::from)??;
        match found {
            TenantChannel::Own(ch) => Ok(ch),
            TenantChannel::Operator => Err(AccountError::NoAccount(format!(
                "tenant {tenant:?} has no account of its own on {channel:?} (put one with PUT /admin/tenants/{tenant}/channels/{channel})"
            ))),
            // An account flagged for a new token is still checked: that is how it is seen to
            // work again once the token is replaced.
            TenantChannel::Refused(reason) => Err(AccountError::NoAccount(format!(
                "tenant {tenant:?} cannot use its {channel:?} account: {}",
                reason.as_str()
            ))),
        }
    }

    /// Asks the provider about the tenant's account and `sender_ids` with the tenant's
    /// credential, and keeps what it reports (the senders route webhooks and pace sends).
    pub async fn check_account(
        self: &Arc<Self>,
        tenant: &str,
        channel: &str,
        sender_ids: &[String],
    ) -> Result<AccountFacts, AccountError> {
        let ch = self.own_channel(tenant, channel).await?;
        let account = self.account_of(tenant, channel).await?;
        let facts = ch
            .plugin
            .check_account(&account.account_id, sender_ids, &ch.config())
            .await??;
        let put = AccountFactsPut {
            tenant: tenant.to_string(),
            channel: channel.to_string(),
            facts: facts_json(&facts).to_string(),
            recipient_limit: facts.recipient_limit.map(|l| l.min(i64::MAX as u64) as i64),
            senders: facts
                .senders
                .iter()
                .map(|s| SenderRecord {
                    channel: channel.to_string(),
                    sender_id: s.sender_id.clone(),
                    tenant_id: tenant.to_string(),
                    account_id: account.account_id.clone(),
                    display_address: s.display_address.clone(),
                    messages_per_second: s.messages_per_second.map(i64::from),
                    facts: s.details.clone(),
                    updated_ms: now_ms() as i64,
                })
                .collect(),
        };
        match self
            .on_store(move |s| s.put_account_facts(&put, now_ms()))
            .await?
        {
            AccountPut::Stored => Ok(facts),
            AccountPut::OwnedByAnother(owner) => Err(AccountError::OwnedByAnother(owner)),
        }
    }

    /// Reads every page of the account's templates and replaces what the store holds with
    /// them (all or nothing: a page that fails leaves the last complete sync in place).
    pub async fn sync_templates(
        self: &Arc<Self>,
        tenant: &str,
        channel: &str,
    ) -> Result<SyncReport, AccountError> {
        let ch = self.own_channel(tenant, channel).await?;
        let account = self.account_of(tenant, channel).await?;
        let config = ch.config();
        let mut templates = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let page = ch
                .plugin
                .list_templates(&account.account_id, cursor.as_deref(), &config)
                .await??;
            pages += 1;
            templates.extend(page.templates.into_iter().map(template_record));
            // The cursor lives for this loop only: a sync always starts from the first page.
            match page.next {
                Some(next) if pages < MAX_TEMPLATE_PAGES && Some(&next) != cursor.as_ref() => {
                    cursor = Some(next)
                }
                Some(_) => {
                    return Err(AccountError::Host(anyhow::anyhow!(
                        "the template listing did not end after {pages} pages (or repeated its cursor): nothing stored"
                    )));
                }
                None => break,
            }
        }
        let (owned_tenant, owned_channel) = (tenant.to_string(), channel.to_string());
        let (kept, removed) = self
            .on_store(move |s| {
                s.replace_templates(
                    &owned_tenant,
                    &owned_channel,
                    &account.account_id,
                    &templates,
                    now_ms(),
                )
            })
            .await?;
        self.forget_tenant_channels(tenant);
        tracing::info!(
            tenant,
            channel,
            pages,
            templates = kept,
            removed,
            "templates synced"
        );
        Ok(SyncReport {
            pages,
            templates: kept,
            removed,
        })
    }

    /// Embedded Signup: the code exchanged for the business's token (in serve's instance,
    /// with the operator's app credentials), the account stored with it, the app subscribed
    /// to the account's webhooks, the sender registered with a fresh PIN the host keeps
    /// sealed, then checked and its templates synced.
    pub async fn sign_up(
        self: &Arc<Self>,
        tenant: &str,
        channel: &str,
        signup: &Signup,
    ) -> Result<(AccountFacts, SyncReport), AccountError> {
        let Some(base) = self.channel(channel) else {
            return Err(AccountError::NoAccount(format!("no channel {channel:?}")));
        };
        if self.vault().is_none() {
            return Err(AccountError::Host(anyhow::anyhow!(
                "serve has no master key ({} or --master-key-file): the business's token cannot be sealed",
                crate::services::vault::MASTER_KEY_ENV
            )));
        }
        let credential = base
            .plugin
            .exchange_code(&signup.code, &base.config())
            .await??;
        let pin = register_pin();
        let secrets = vec![
            ("access-token".to_string(), credential.token.clone()),
            (format!("register-pin-{}", signup.sender_id), pin.clone()),
        ];
        let settings = json!({"phone_number_id": signup.sender_id}).to_string();
        let (runner, owned_tenant, owned_channel, account_id) = (
            self.clone(),
            tenant.to_string(),
            channel.to_string(),
            signup.account_id.clone(),
        );
        let put = tokio::task::spawn_blocking(move || {
            runner.store().put_channel_account(
                runner.vault(),
                &NewAccount {
                    tenant: &owned_tenant,
                    channel: &owned_channel,
                    account_id: &account_id,
                    settings: &settings,
                    secrets: &secrets,
                },
                now_ms(),
            )
        })
        .await
        .map_err(anyhow::Error::from)??;
        if let AccountPut::OwnedByAnother(owner) = put {
            return Err(AccountError::OwnedByAnother(owner));
        }
        let ch = self.own_channel(tenant, channel).await?;
        let config = ch.config();
        ch.plugin
            .subscribe_webhooks(&signup.account_id, &config)
            .await??;
        ch.plugin
            .register_sender(&signup.sender_id, &pin, &config)
            .await??;
        let facts = self
            .check_account(tenant, channel, std::slice::from_ref(&signup.sender_id))
            .await?;
        let synced = self.sync_templates(tenant, channel).await?;
        Ok((facts, synced))
    }

    /// Syncs every active tenant account's templates on the channel (each node runs it; the
    /// store keeps one catalog per account whichever node wrote it).
    pub async fn sync_due_accounts(self: &Arc<Self>, channel: &str) {
        let owned = channel.to_string();
        let accounts = match self.on_store(move |s| s.accounts_on(&owned)).await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    channel,
                    "listing accounts to sync failed"
                );
                return;
            }
        };
        for account in accounts {
            if account.state != "active" || account.tenant_id == crate::tenants::DEFAULT_TENANT {
                continue;
            }
            if let Err(e) = self.sync_templates(&account.tenant_id, channel).await {
                tracing::warn!(tenant = %account.tenant_id, channel, error = ?e, "template sync failed; the last complete one stays");
            }
        }
    }
}

fn template_record(t: TemplateState) -> TemplateRecord {
    TemplateRecord {
        name: t.name,
        language: t.language,
        status: t.status,
        category: t.category,
        template_id: t.template_id,
        definition: t.definition,
    }
}

/// An account's facts as the operator API shows them and the store keeps them.
pub fn facts_json(f: &AccountFacts) -> Value {
    json!({
        "account_id": f.account_id,
        "name": f.name,
        "recipient_limit": f.recipient_limit,
        "senders": f.senders.iter().map(|s| json!({
            "sender_id": s.sender_id,
            "display_address": s.display_address,
            "verified_name": s.verified_name,
            "quality": s.quality,
            "status": s.status,
            "messages_per_second": s.messages_per_second,
        })).collect::<Vec<_>>(),
        "details": serde_json::from_str::<Value>(&f.details).unwrap_or(Value::Null),
    })
}

/// A six-digit two-step verification PIN from the OS's generator (uniform: rejection of
/// the few values past the largest multiple of 10⁶).
fn register_pin() -> String {
    use chacha20poly1305::aead::rand_core::RngCore;
    loop {
        let n = chacha20poly1305::aead::OsRng.next_u32();
        if n < u32::MAX - (u32::MAX % 1_000_000) {
            return format!("{:06}", n % 1_000_000);
        }
    }
}

/// The catalog of a tenant's account as the channel's `templates` setting takes it: one
/// page document of every synced definition, each with the status and category the store
/// holds (webhooks change those between syncs).
pub fn catalog_document(templates: &[TemplateRecord]) -> Value {
    let data: Vec<Value> = templates
        .iter()
        .filter_map(|t| {
            let mut d: Value = serde_json::from_str(&t.definition).ok()?;
            let obj = d.as_object_mut()?;
            obj.insert("status".into(), json!(t.status));
            if let Some(c) = &t.category {
                obj.insert("category".into(), json!(c));
            }
            Some(d)
        })
        .collect();
    json!({ "data": data })
}
