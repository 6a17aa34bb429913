//! Tenants and their flow API tokens, kept beside the flows (every node sees them).

use super::driver::{
    AccountRecord, NewCallback, SenderRecord, TemplateRecord, TenantRecord, TokenRecord,
};
use super::{Store, ms};
use crate::services::vault::{MASTER_KEY_ENV, Vault};
use crate::tenants::{IssuedToken, new_token, token_hash};
use anyhow::{Result, bail};
use zeroize::Zeroizing;

impl Store {
    /// Creates the tenant; false if the id is taken.
    pub fn create_tenant(&self, id: &str, name: &str, now: u64) -> Result<bool> {
        let tenant = TenantRecord {
            id: id.to_string(),
            name: name.to_string(),
            created_ms: ms(now),
        };
        self.with_tx(now, |t| t.ops.insert_tenant(&tenant))
    }

    /// Renames the tenant; false if there is none with that id.
    pub fn rename_tenant(&self, id: &str, name: &str, now: u64) -> Result<bool> {
        self.with_tx(now, |t| t.ops.rename_tenant(id, name))
    }

    pub fn tenant(&self, id: &str) -> Result<Option<TenantRecord>> {
        self.read(|ops| ops.tenant(id))
    }

    pub fn tenants(&self) -> Result<Vec<TenantRecord>> {
        self.read(|ops| ops.tenants())
    }

    /// A new token for the tenant (its secret half is in the answer and nowhere else), or
    /// `None` if there is no such tenant.
    pub fn issue_token(
        &self,
        tenant: &str,
        label: &str,
        now: u64,
    ) -> Result<Option<(IssuedToken, TokenRecord)>> {
        self.with_tx(now, |t| {
            if t.ops.tenant(tenant)?.is_none() {
                return Ok(None);
            }
            let issued = new_token();
            let record = TokenRecord {
                id: issued.id.clone(),
                tenant_id: tenant.to_string(),
                label: label.to_string(),
                created_ms: ms(now),
                revoked_ms: None,
            };
            t.ops.insert_token(&record, &token_hash(&issued.token))?;
            Ok(Some((issued, record)))
        })
    }

    /// Revokes one of the tenant's tokens; false if it has no live token with that id.
    pub fn revoke_token(&self, tenant: &str, id: &str, now: u64) -> Result<bool> {
        self.with_tx(now, |t| t.ops.revoke_token(tenant, id, ms(now)))
    }

    /// The tenant a live token belongs to.
    pub fn tenant_of_token(&self, token: &str) -> Result<Option<String>> {
        self.tenant_of_token_hash(&token_hash(token))
    }

    /// The tenant of the live token with this SHA-256 ([`crate::tenants::token_hash`]).
    pub fn tenant_of_token_hash(&self, hash: &str) -> Result<Option<String>> {
        self.read(|ops| ops.token_tenant(hash))
    }

    /// The tenant's tokens (never their secrets), oldest first.
    pub fn tokens(&self, tenant: &str) -> Result<Vec<TokenRecord>> {
        self.read(|ops| ops.tokens(tenant))
    }
}

/// The purpose a tenant's secret is sealed for: its row and nowhere else.
fn purpose(tenant: &str, name: &str) -> String {
    format!("tenant/{tenant}/{name}")
}

impl Store {
    /// Checks the operator's master key against the store at start-up: the store's check value
    /// must open under it (written now if there is none); without a key, the store must hold
    /// no sealed secret. Either mismatch is an error that says what to do.
    pub fn check_vault(&self, vault: Option<&Vault>, now: u64) -> Result<()> {
        self.with_tx(now, |t| match (vault, t.ops.vault_check()?) {
            (Some(v), Some(check)) if !v.opens_check(&check) => bail!(
                "the master key ({MASTER_KEY_ENV} or --master-key-file) is not the key this store's secrets were sealed with"
            ),
            (Some(v), None) => {
                t.ops.set_vault_check(&v.check_value())?;
                Ok(())
            }
            (None, _) if t.ops.any_sealed_secret()? => bail!(
                "this store holds sealed secrets: start with the master key they were sealed with ({MASTER_KEY_ENV} or --master-key-file)"
            ),
            _ => Ok(()),
        })
    }

    /// Seals `value` as the tenant's secret `name` (replacing any).
    pub fn put_tenant_secret(
        &self,
        vault: &Vault,
        tenant: &str,
        name: &str,
        value: &str,
        now: u64,
    ) -> Result<()> {
        let sealed = vault.seal(&purpose(tenant, name), value.as_bytes());
        self.with_tx(now, |t| {
            t.ops.put_tenant_secret(tenant, name, &sealed, ms(now))
        })
    }

    /// The tenant's secret `name`, opened.
    pub fn tenant_secret(
        &self,
        vault: &Vault,
        tenant: &str,
        name: &str,
    ) -> Result<Option<Zeroizing<String>>> {
        let Some(sealed) = self.read(|ops| ops.tenant_secret(tenant, name))? else {
            return Ok(None);
        };
        let bytes = vault.open(&purpose(tenant, name), &sealed)?;
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| anyhow::anyhow!("the tenant secret {name} is not UTF-8"))?;
        Ok(Some(Zeroizing::new(text)))
    }
}

/// The outbox's "flow" for operator events: a bare key, so the default tenant's (the host's)
/// callback key signs them.
pub const OPERATOR_EVENTS: &str = "operator-events";

/// What putting an account did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountPut {
    Stored,
    /// The account belongs to another tenant: nothing was written.
    OwnedByAnother(String),
}

/// A tenant's account on a channel, to store.
pub struct NewAccount<'a> {
    pub tenant: &'a str,
    pub channel: &'a str,
    pub account_id: &'a str,
    /// A JSON object.
    pub settings: &'a str,
    /// Secret names under the channel (`access-token`) and their values, to seal.
    pub secrets: &'a [(String, String)],
}

impl Store {
    /// Stores the tenant's account on a channel, `active` (a new token clears `needs_reauth`),
    /// with its secrets sealed as `{channel}/{name}`; all or nothing. An account id another
    /// tenant holds is refused (one business's account is never another's).
    pub fn put_channel_account(
        &self,
        vault: Option<&Vault>,
        account: &NewAccount,
        now: u64,
    ) -> Result<AccountPut> {
        if !account.secrets.is_empty() && vault.is_none() {
            bail!(
                "serve has no master key ({MASTER_KEY_ENV} or --master-key-file): an account's secrets cannot be sealed"
            );
        }
        let sealed: Vec<(String, String)> = account
            .secrets
            .iter()
            .map(|(name, value)| {
                let full = format!("{}/{name}", account.channel);
                let v = vault.expect("checked above");
                let sealed = v.seal(&purpose(account.tenant, &full), value.as_bytes());
                (full, sealed)
            })
            .collect();
        self.with_tx(now, |t| {
            if let Some(owner) = t.ops.account_owner(account.channel, account.account_id)?
                && owner != account.tenant
            {
                return Ok(AccountPut::OwnedByAnother(owner));
            }
            t.ops.put_account(&AccountRecord {
                tenant_id: account.tenant.to_string(),
                channel: account.channel.to_string(),
                account_id: account.account_id.to_string(),
                settings: account.settings.to_string(),
                state: "active".into(),
                updated_ms: ms(now),
                facts: None,
                recipient_limit: None,
                checked_ms: None,
            })?;
            for (name, sealed) in &sealed {
                t.ops
                    .put_tenant_secret(account.tenant, name, sealed, ms(now))?;
            }
            Ok(AccountPut::Stored)
        })
    }

    /// Moves an `active` account to `to` (`needs_reauth`, `disabled`); whether this call
    /// changed it (a conditional update: of several nodes, one reports the change). With
    /// `notify` (a URL and a JSON body), the change's operator event is queued in the same
    /// transaction: it is posted once per change, at least once, signed with the host's key.
    pub fn flag_account(
        &self,
        tenant: &str,
        channel: &str,
        to: &str,
        notify: Option<(&str, serde_json::Value)>,
        now: u64,
    ) -> Result<bool> {
        self.with_tx(now, |t| {
            let changed = t
                .ops
                .set_account_state(tenant, channel, "active", to, ms(now))?;
            if let (true, Some((url, mut body))) = (changed, notify) {
                let event_id = uuid::Uuid::now_v7().to_string();
                body["event_id"] = serde_json::json!(event_id);
                t.ops.enqueue_callbacks(&[NewCallback {
                    event_id,
                    // Not a flow's: the default tenant's key (the host's) signs it.
                    flow_id: OPERATOR_EVENTS.to_string(),
                    url: url.to_string(),
                    body: body.to_string(),
                    next_at: ms(now),
                }])?;
            }
            Ok(changed)
        })
    }

    /// The tenant's template catalog documents for the channel after `after`, in arrival
    /// order, with their ids.
    pub fn catalog_documents(
        &self,
        tenant: &str,
        channel: &str,
        after: i64,
    ) -> Result<Vec<(i64, String)>> {
        self.read(|ops| ops.catalog_documents(tenant, channel, after))
    }

    pub fn channel_account(&self, tenant: &str, channel: &str) -> Result<Option<AccountRecord>> {
        self.read(|ops| ops.account(tenant, channel))
    }

    /// The tenant's secrets for a channel (`{channel}/…`), opened.
    pub fn channel_secrets(
        &self,
        vault: &Vault,
        tenant: &str,
        channel: &str,
    ) -> Result<Vec<(String, Zeroizing<String>)>> {
        let prefix = format!("{channel}/");
        let rows = self.read(|ops| ops.tenant_secrets_under(tenant, &prefix))?;
        rows.into_iter()
            .map(|(name, sealed)| {
                let bytes = vault.open(&purpose(tenant, &name), &sealed)?;
                let text = String::from_utf8(bytes.to_vec())
                    .map_err(|_| anyhow::anyhow!("the tenant secret {name} is not UTF-8"))?;
                Ok((name, Zeroizing::new(text)))
            })
            .collect()
    }

    /// The names (never the values) of the tenant's secrets for a channel.
    pub fn channel_secret_names(&self, tenant: &str, channel: &str) -> Result<Vec<String>> {
        let prefix = format!("{channel}/");
        let rows = self.read(|ops| ops.tenant_secrets_under(tenant, &prefix))?;
        Ok(rows.into_iter().map(|(name, _)| name).collect())
    }

    /// Stores what the provider reported of the tenant's account and its senders (a check at
    /// connect or sync); all or nothing. A sender another tenant holds is refused.
    pub fn put_account_facts(&self, facts: &AccountFactsPut, now: u64) -> Result<AccountPut> {
        self.with_tx(now, |t| {
            for sender in &facts.senders {
                if let Some(owner) = t.ops.sender_owner(&sender.channel, &sender.sender_id)?
                    && owner != facts.tenant
                {
                    return Ok(AccountPut::OwnedByAnother(owner));
                }
            }
            for sender in &facts.senders {
                t.ops.put_sender(sender)?;
            }
            t.ops.set_account_facts(
                &facts.tenant,
                &facts.channel,
                &facts.facts,
                facts.recipient_limit,
                ms(now),
            )?;
            Ok(AccountPut::Stored)
        })
    }

    /// Books a business-initiated send to `recipient` against the tenant's messaging limit
    /// (unique customers per rolling 24 h across its numbers): a customer already counted
    /// in the window is free; a new one is counted while the budget has room. Decided with
    /// the account's row locked, so nodes never overbook the last places.
    pub fn book_initiated(
        &self,
        tenant: &str,
        channel: &str,
        recipient: &str,
        now: u64,
    ) -> Result<Booking> {
        const DAY_MS: u64 = 24 * 60 * 60 * 1_000;
        let customer = super::transitions::customer_key(recipient);
        self.with_tx(now, |t| {
            let Some(Some(limit)) = t.ops.lock_account_limit(tenant, channel)? else {
                return Ok(Booking::Booked);
            };
            let since = ms(now.saturating_sub(DAY_MS));
            t.ops.prune_initiated(tenant, channel, since)?;
            if !t.ops.initiated_since(tenant, channel, &customer, since)?
                && t.ops.count_initiated(tenant, channel, since)? >= limit
            {
                return Ok(Booking::LimitReached(limit));
            }
            t.ops.note_initiated(tenant, channel, &customer, ms(now))?;
            Ok(Booking::Booked)
        })
    }

    /// Every tenant's account on the channel.
    pub fn accounts_on(&self, channel: &str) -> Result<Vec<AccountRecord>> {
        self.read(|ops| ops.accounts_on(channel))
    }

    /// Every tenant's senders (their lanes and rates).
    pub fn all_senders(&self) -> Result<Vec<SenderRecord>> {
        self.read(|ops| ops.all_senders())
    }

    /// The tenant's senders on the channel.
    pub fn senders(&self, tenant: &str, channel: &str) -> Result<Vec<SenderRecord>> {
        self.read(|ops| ops.senders(tenant, channel))
    }

    /// Who owns what a webhook event names: the sender's tenant, else the account's.
    pub fn owner_of(
        &self,
        channel: &str,
        account_id: Option<&str>,
        sender_id: Option<&str>,
    ) -> Result<Option<String>> {
        self.read(|ops| {
            if let Some(sender) = sender_id
                && let Some(owner) = ops.sender_owner(channel, sender)?
            {
                return Ok(Some(owner));
            }
            match account_id {
                Some(account) => ops.account_owner(channel, account),
                None => Ok(None),
            }
        })
    }

    /// Replaces the account's synced templates with a complete listing (one transaction:
    /// every node sees the old catalog or the new, never half); how many it kept and removed.
    pub fn replace_templates(
        &self,
        tenant: &str,
        channel: &str,
        account_id: &str,
        templates: &[TemplateRecord],
        now: u64,
    ) -> Result<(usize, u64)> {
        self.with_tx(now, |t| {
            for template in templates {
                t.ops
                    .put_template(channel, account_id, tenant, template, ms(now))?;
            }
            let removed = t
                .ops
                .delete_templates_before(channel, account_id, ms(now))?;
            Ok((templates.len(), removed))
        })
    }

    /// The account's templates as last synced and changed by webhooks.
    pub fn templates(&self, channel: &str, account_id: &str) -> Result<Vec<TemplateRecord>> {
        self.read(|ops| ops.templates(channel, account_id))
    }

    /// Webhook events dropped per account on the channel, because no tenant owns it.
    pub fn unrouted(&self, channel: &str) -> Result<Vec<(String, i64)>> {
        self.read(|ops| ops.unrouted(channel))
    }
}

/// What [`Store::book_initiated`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Booking {
    /// Within the limit (or none applies): send.
    Booked,
    /// The portfolio messaged this many customers in 24 h already: a new one must wait.
    LimitReached(i64),
}

/// What [`Store::put_account_facts`] stores.
#[derive(Debug, Clone)]
pub struct AccountFactsPut {
    pub tenant: String,
    pub channel: String,
    /// JSON.
    pub facts: String,
    pub recipient_limit: Option<i64>,
    pub senders: Vec<SenderRecord>,
}
