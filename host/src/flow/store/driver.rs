//! The store's driver: every read and write the transitions make, as one named operation
//! (River's `riverdriver` shape), implemented once per database with that database's own SQL
//! ([`sqlite`](super::sqlite), [`postgres`](super::postgres)). Transitions are written once,
//! above this trait ([`super::transitions`]); rows come back as the typed records below, read
//! by column name. An operation that decides something on PostgreSQL takes the row's lock
//! (`lock_*`), or is a conditional update whose row count it returns.

use super::AttemptPhase;
use crate::flow::policy::FlowState;
use anyhow::{Result, bail};
use std::sync::atomic::{AtomicU64, Ordering};

/// Statements and transactions this process ran against its store (each statement is one
/// round trip to PostgreSQL; a transaction adds two, BEGIN and COMMIT). `GET /health`
/// reports them, so a bench can divide by the flows it ran.
pub static STATEMENTS: AtomicU64 = AtomicU64::new(0);
pub static TRANSACTIONS: AtomicU64 = AtomicU64::new(0);

pub(super) fn count_statement() {
    STATEMENTS.fetch_add(1, Ordering::Relaxed);
}

pub(super) fn count_transaction() {
    TRANSACTIONS.fetch_add(1, Ordering::Relaxed);
}

/// Which database a store uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Whether a transaction writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxKind {
    Write,
    Read,
}

/// `postgres://…` and `postgresql://…` name PostgreSQL; anything else is a SQLite file.
pub fn is_postgres_url(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}@{}", &url[..s + 3], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

/// A flow as stored.
#[derive(Debug, Clone)]
pub(super) struct FlowRecord {
    pub id: String,
    /// The spec as submitted (JSON).
    pub spec: String,
    pub state: FlowState,
    pub step: i64,
    pub attempt: i64,
    pub expires_ms: Option<i64>,
    pub current_attempt: Option<i64>,
    pub callback_url: Option<String>,
    /// The recipient's customer key (what webhooks name).
    pub customer: String,
}

/// A flow to store.
pub(super) struct NewFlow<'a> {
    pub id: &'a str,
    pub spec: &'a str,
    pub customer: &'a str,
    pub now_ms: i64,
    pub expires_ms: Option<i64>,
    pub callback_url: Option<&'a str>,
    pub lane: Option<&'a str>,
}

/// An attempt as stored.
#[derive(Debug, Clone)]
pub(super) struct AttemptRecord {
    pub id: i64,
    pub flow_id: String,
    pub channel: String,
    pub attempt: i64,
    pub phase: AttemptPhase,
    pub closed: bool,
    /// The disposition of the highest status applied, if one overtook the answer.
    pub status_disposition: Option<String>,
    pub provider_message_id: Option<String>,
}

/// An attempt to store, `claimed`.
pub(super) struct NewAttempt<'a> {
    pub flow_id: &'a str,
    pub step: i64,
    pub channel: &'a str,
    pub attempt: i64,
    pub correlation_id: &'a str,
    pub slot_ms: i64,
}

/// What an attempt's answer (or the crash rule) recorded.
pub(super) struct Answer<'a> {
    pub disposition: &'a str,
    pub reason: &'a str,
    pub provider_code: Option<&'a str>,
    pub message_id: Option<&'a str>,
    pub at_ms: i64,
}

/// A status applied to an attempt.
pub(super) struct StatusRaise<'a> {
    pub precedence: i64,
    pub status: &'a str,
    pub disposition: &'a str,
}

/// A callback delivery due, leased to this node.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    pub id: i64,
    pub event_id: String,
    /// The flow's stored key (its tenant signs the callback).
    pub flow_id: String,
    pub url: String,
    pub body: String,
    pub tries: u32,
}

/// A callback to queue.
#[derive(Debug, Clone)]
pub(super) struct NewCallback {
    pub event_id: String,
    pub flow_id: String,
    pub url: String,
    pub body: String,
    pub next_at: i64,
}

/// A line to add to a flow's timeline.
#[derive(Debug, Clone)]
pub(super) struct NewNote {
    pub flow_id: String,
    pub at_ms: i64,
    pub attempt_id: Option<i64>,
    pub entry: String,
}

/// A flow as `GET /flows/{id}` shows it: its position, every attempt, its timeline.
#[derive(Debug, Clone)]
pub struct FlowView {
    pub id: String,
    pub spec: String,
    pub state: String,
    pub step: i64,
    pub attempts: Vec<AttemptView>,
    pub timeline: Vec<TimelineEntry>,
}

/// One attempt of a [`FlowView`].
#[derive(Debug, Clone)]
pub struct AttemptView {
    pub id: i64,
    pub channel: String,
    pub attempt: i64,
    pub provider_message_id: Option<String>,
    pub sent_ms: i64,
    pub disposition: Option<String>,
    pub reason: Option<String>,
    pub provider_code: Option<String>,
    pub status: Option<String>,
    pub closed: bool,
    pub possible_duplicate: bool,
    pub correlation_id: String,
    pub phase: String,
}

/// One line of a flow's timeline.
#[derive(Debug, Clone)]
pub struct TimelineEntry {
    pub at_ms: i64,
    pub attempt_id: Option<i64>,
    pub entry: String,
}

/// A result row's columns by name, whichever driver read it: the records are read from rows
/// once, for both databases.
pub(super) trait Columns {
    fn int(&self, name: &str) -> Result<i64>;
    fn opt_int(&self, name: &str) -> Result<Option<i64>>;
    fn text(&self, name: &str) -> Result<String>;
    fn opt_text(&self, name: &str) -> Result<Option<String>>;

    /// A 0/1 flag column.
    fn flag(&self, name: &str) -> Result<bool> {
        Ok(self.int(name)? != 0)
    }
}

impl FlowRecord {
    /// From a row of `flows` (its `id` and `attempt` under the names given: a join with
    /// `attempts` renames them).
    pub(super) fn read(r: &dyn Columns, id: &str, attempt: &str) -> Result<FlowRecord> {
        Ok(FlowRecord {
            id: r.text(id)?,
            spec: r.text("spec")?,
            state: flow_state(&r.text("state")?)?,
            step: r.int("step")?,
            attempt: r.int(attempt)?,
            expires_ms: r.opt_int("expires_ms")?,
            current_attempt: r.opt_int("current_attempt")?,
            callback_url: r.opt_text("callback_url")?,
            customer: r.text("recipient")?,
        })
    }
}

impl AttemptRecord {
    /// From a row of `attempts` (its `id` and `attempt` under the names given).
    pub(super) fn read(r: &dyn Columns, id: &str, attempt: &str) -> Result<AttemptRecord> {
        Ok(AttemptRecord {
            id: r.int(id)?,
            flow_id: r.text("flow_id")?,
            channel: r.text("channel")?,
            attempt: r.int(attempt)?,
            phase: attempt_phase(&r.text("phase")?)?,
            closed: r.flag("closed")?,
            status_disposition: r.opt_text("status_disposition")?,
            provider_message_id: r.opt_text("provider_message_id")?,
        })
    }
}

impl AttemptView {
    pub(super) fn read(r: &dyn Columns) -> Result<AttemptView> {
        Ok(AttemptView {
            id: r.int("id")?,
            channel: r.text("channel")?,
            attempt: r.int("attempt")?,
            provider_message_id: r.opt_text("provider_message_id")?,
            sent_ms: r.int("sent_ms")?,
            disposition: r.opt_text("disposition")?,
            reason: r.opt_text("reason")?,
            provider_code: r.opt_text("provider_code")?,
            status: r.opt_text("status")?,
            closed: r.flag("closed")?,
            possible_duplicate: r.flag("possible_duplicate")?,
            correlation_id: r.text("correlation_id")?,
            phase: r.text("phase")?,
        })
    }
}

impl TimelineEntry {
    pub(super) fn read(r: &dyn Columns) -> Result<TimelineEntry> {
        Ok(TimelineEntry {
            at_ms: r.int("at_ms")?,
            attempt_id: r.opt_int("attempt_id")?,
            entry: r.text("entry")?,
        })
    }
}

impl OutboxItem {
    pub(super) fn read(r: &dyn Columns) -> Result<OutboxItem> {
        Ok(OutboxItem {
            id: r.int("id")?,
            event_id: r.text("event_id")?,
            flow_id: r.text("flow_id")?,
            url: r.text("url")?,
            body: r.text("body")?,
            tries: u32::try_from(r.int("tries")?).unwrap_or(u32::MAX),
        })
    }
}

/// A tenant as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRecord {
    pub id: String,
    pub name: String,
    pub created_ms: i64,
}

/// A flow API token as stored: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub tenant_id: String,
    pub label: String,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
}

impl TenantRecord {
    pub(super) fn read(r: &dyn Columns) -> Result<TenantRecord> {
        Ok(TenantRecord {
            id: r.text("id")?,
            name: r.text("name")?,
            created_ms: r.int("created_ms")?,
        })
    }
}

impl TokenRecord {
    pub(super) fn read(r: &dyn Columns) -> Result<TokenRecord> {
        Ok(TokenRecord {
            id: r.text("id")?,
            tenant_id: r.text("tenant_id")?,
            label: r.text("label")?,
            created_ms: r.int("created_ms")?,
            revoked_ms: r.opt_int("revoked_ms")?,
        })
    }
}

/// A tenant's account on a channel, as stored (its secrets are sealed apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRecord {
    pub tenant_id: String,
    pub channel: String,
    /// The provider's id of the account (a WABA id).
    pub account_id: String,
    /// A JSON object laid over the channel's settings for this tenant's sends.
    pub settings: String,
    /// `active`, `needs_reauth` or `disabled`.
    pub state: String,
    pub updated_ms: i64,
    /// What the provider reported of it at the last check (JSON), if it was checked.
    pub facts: Option<String>,
    /// The portfolio's messaging limit (unique customers per rolling 24 h); `None` with
    /// `checked_ms` set: no limit.
    pub recipient_limit: Option<i64>,
    /// When the provider was last asked; `None`: never (no limit is enforced).
    pub checked_ms: Option<i64>,
}

impl AccountRecord {
    pub(super) fn read(r: &dyn Columns) -> Result<AccountRecord> {
        Ok(AccountRecord {
            tenant_id: r.text("tenant_id")?,
            channel: r.text("channel")?,
            account_id: r.text("account_id")?,
            settings: r.text("settings")?,
            state: r.text("state")?,
            updated_ms: r.int("updated_ms")?,
            facts: r.opt_text("facts")?,
            recipient_limit: r.opt_int("recipient_limit")?,
            checked_ms: r.opt_int("checked_ms")?,
        })
    }
}

/// One sender of a tenant's account (a WhatsApp phone number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderRecord {
    pub channel: String,
    pub sender_id: String,
    pub tenant_id: String,
    pub account_id: String,
    /// The address customers see (`+1 555-0100`).
    pub display_address: Option<String>,
    /// The rate the provider reports for it.
    pub messages_per_second: Option<i64>,
    /// What the provider reported (JSON).
    pub facts: String,
    pub updated_ms: i64,
}

impl SenderRecord {
    pub(super) fn read(r: &dyn Columns) -> Result<SenderRecord> {
        Ok(SenderRecord {
            channel: r.text("channel")?,
            sender_id: r.text("sender_id")?,
            tenant_id: r.text("tenant_id")?,
            account_id: r.text("account_id")?,
            display_address: r.opt_text("display_address")?,
            messages_per_second: r.opt_int("messages_per_second")?,
            facts: r.text("facts")?,
            updated_ms: r.int("updated_ms")?,
        })
    }
}

/// One template of an account as the provider holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRecord {
    pub name: String,
    pub language: String,
    /// Upper-case, e.g. `APPROVED`.
    pub status: String,
    pub category: Option<String>,
    pub template_id: Option<String>,
    /// The provider's definition (JSON), as the channel's `templates` setting takes it.
    pub definition: String,
}

impl TemplateRecord {
    pub(super) fn read(r: &dyn Columns) -> Result<TemplateRecord> {
        Ok(TemplateRecord {
            name: r.text("name")?,
            language: r.text("language")?,
            status: r.text("status")?,
            category: r.opt_text("category")?,
            template_id: r.opt_text("template_id")?,
            definition: r.text("definition")?,
        })
    }
}

/// What [`Ops::route`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteRow {
    pub by_sender: Option<String>,
    pub by_account: Option<String>,
    pub default_named: bool,
}

/// A template's status or category changed (a webhook), matched by the provider's id, else by
/// name and language.
#[derive(Debug, Clone, Copy)]
pub struct TemplateChange<'a> {
    pub template_id: Option<&'a str>,
    pub name: Option<&'a str>,
    pub language: Option<&'a str>,
    pub status: Option<&'a str>,
    pub category: Option<&'a str>,
}

/// The named operations, inside one open transaction.
pub(super) trait Ops {
    // Flows.
    /// Inserts the flow unless its id exists; whether it did.
    fn insert_flow(&self, flow: &NewFlow) -> Result<bool>;
    /// The stored spec of a flow (to tell a client's retry from a conflict).
    fn flow_spec(&self, id: &str) -> Result<Option<String>>;
    /// The flow, its row locked until commit (PostgreSQL).
    fn lock_flow(&self, id: &str) -> Result<Option<FlowRecord>>;
    fn flow_state(&self, id: &str) -> Result<Option<FlowState>>;
    fn set_flow_state(
        &self,
        id: &str,
        state: FlowState,
        wake_at: Option<i64>,
        lane: Option<&str>,
    ) -> Result<()>;
    /// Not due any more (it was due in no timer state).
    fn clear_wake(&self, id: &str) -> Result<()>;
    fn schedule_retry(
        &self,
        id: &str,
        attempt: i64,
        wake_at: i64,
        lane: Option<&str>,
    ) -> Result<()>;
    /// On to `step`, attempt 1, ready at `wake_at` in `lane`.
    fn advance_step(&self, id: &str, step: i64, wake_at: i64, lane: &str) -> Result<()>;
    /// Past the last step: no channel left.
    fn exhaust(&self, id: &str, step: i64) -> Result<()>;
    /// Flows of `lane` due by `now`, oldest first; on PostgreSQL locked, skipping rows another
    /// node holds.
    fn due_flows(&self, lane: &str, now: i64, limit: i64) -> Result<Vec<String>>;
    /// The flow is sending `attempt_id`, this node's until `until`.
    fn lease_flow(&self, id: &str, attempt_id: i64, owner: &str, until: i64) -> Result<()>;
    /// Every flow to this customer, with its state.
    fn flows_of_customer(&self, customer: &str) -> Result<Vec<(String, FlowState)>>;
    fn state_counts(&self) -> Result<Vec<(FlowState, u64)>>;
    /// When each flow with an accepted send was created, and when the answer was recorded.
    fn accepted_sends(&self) -> Result<Vec<(i64, i64)>>;
    fn flow_view(&self, id: &str) -> Result<Option<FlowView>>;

    // Attempts.
    fn insert_attempt(&self, attempt: &NewAttempt) -> Result<i64>;
    /// The attempt and its flow (`flow_id`, when the caller knows it), both locked in the one
    /// order: the flow's row, then the attempt's.
    fn lock_attempt_and_flow(
        &self,
        id: i64,
        flow_id: Option<&str>,
    ) -> Result<Option<(Option<FlowRecord>, AttemptRecord)>>;
    /// Attempts left unrecorded that this node may take over: on SQLite every one (one
    /// node, at its start); on PostgreSQL those whose flow's lease passed before `now`,
    /// locked, skipping flows another node holds.
    fn stranded_attempts(&self, now: i64) -> Result<Vec<i64>>;
    /// `claimed` → `sending`; false if it was no longer claimed. On PostgreSQL only while the
    /// flow's lease runs past `lease_needed_until`.
    fn mark_sending(&self, id: i64, lease_needed_until: i64) -> Result<bool>;
    fn record_answer(&self, id: i64, answer: &Answer) -> Result<()>;
    /// Every attempt of the flow's `step` is one the flow moved on from.
    fn close_step_attempts(&self, flow_id: &str, step: i64) -> Result<()>;
    /// The attempt a status is about, and its flow: by message id, or by the correlation id
    /// while the attempt has no message id yet. One statement, so one snapshot.
    fn attempt_for_status(
        &self,
        channel: &str,
        message_id: &str,
        correlation_id: Option<&str>,
    ) -> Result<Option<(i64, String)>>;
    /// Takes the message id if the attempt has none; whether it did.
    fn adopt_message_id(&self, id: i64, message_id: &str) -> Result<bool>;
    /// Raises the attempt's status if `raise.precedence` is above the one held; whether it did.
    fn raise_status(&self, id: i64, raise: &StatusRaise) -> Result<bool>;
    fn mark_possible_duplicate(&self, id: i64) -> Result<()>;

    // Timeline, callbacks, events.
    /// Adds the lines in their order, in one statement.
    fn add_notes(&self, notes: &[NewNote]) -> Result<()>;
    /// Queues the callbacks, in one statement.
    fn enqueue_callbacks(&self, callbacks: &[NewCallback]) -> Result<()>;
    /// Picks up to `limit` callbacks due by `now` and leases them until `lease_until`, in one
    /// statement (PostgreSQL skips rows another node is picking).
    fn lease_due_callbacks(
        &self,
        now: i64,
        limit: i64,
        lease_until: i64,
    ) -> Result<Vec<OutboxItem>>;
    fn callbacks_delivered(&self, ids: &[i64], at: i64) -> Result<()>;
    fn callback_failed(&self, id: i64, next_at: Option<i64>, error: &str) -> Result<()>;
    /// Keeps the dedupe key; whether it was new.
    fn first_sight(&self, key: &str, at: i64) -> Result<bool>;

    // Customers.
    /// The customer wrote at `at` (kept if later than what is stored).
    fn note_inbound(&self, channel: &str, customer: &str, at: i64) -> Result<()>;
    fn last_inbound(&self, channel: &str, customer: &str) -> Result<Option<i64>>;
    fn opted_out(&self, channel: &str, customer: &str) -> Result<Vec<String>>;
    fn add_opt_out(&self, channel: &str, customer: &str, category: &str, since: i64) -> Result<()>;
    fn remove_opt_out(&self, channel: &str, customer: &str, category: &str) -> Result<()>;
    /// What is kept under `old` moves to `new` (where `new` has nothing of its own).
    fn rekey_customer(&self, channel: &str, old: &str, new: &str) -> Result<()>;

    // Tenants and their tokens.
    /// Inserts the tenant unless its id exists; whether it did.
    fn insert_tenant(&self, tenant: &TenantRecord) -> Result<bool>;
    /// Renames the tenant; whether it exists.
    fn rename_tenant(&self, id: &str, name: &str) -> Result<bool>;
    fn tenant(&self, id: &str) -> Result<Option<TenantRecord>>;
    /// Every tenant, by id.
    fn tenants(&self) -> Result<Vec<TenantRecord>>;
    fn insert_token(&self, token: &TokenRecord, hash: &str) -> Result<()>;
    /// Revokes the tenant's token at `at` unless it was; whether it did.
    fn revoke_token(&self, tenant: &str, id: &str, at: i64) -> Result<bool>;
    /// The tenant of the live token with this hash.
    fn token_tenant(&self, hash: &str) -> Result<Option<String>>;
    /// The tenant's tokens, oldest first.
    fn tokens(&self, tenant: &str) -> Result<Vec<TokenRecord>>;

    // Sealed secrets (host/src/services/vault.rs).
    /// The store's sealed check value, if one was written.
    fn vault_check(&self) -> Result<Option<String>>;
    /// Writes the check value unless there is one; whether it did.
    fn set_vault_check(&self, check: &str) -> Result<bool>;
    /// Whether any secret is sealed in the store.
    fn any_sealed_secret(&self) -> Result<bool>;
    fn put_tenant_secret(&self, tenant: &str, name: &str, sealed: &str, at: i64) -> Result<()>;
    fn tenant_secret(&self, tenant: &str, name: &str) -> Result<Option<String>>;
    /// The names and sealed values of the tenant's secrets whose names start with `prefix`.
    fn tenant_secrets_under(&self, tenant: &str, prefix: &str) -> Result<Vec<(String, String)>>;

    // Template catalogs.
    fn add_catalog_document(
        &self,
        tenant: &str,
        channel: &str,
        document: &str,
        at: i64,
    ) -> Result<()>;
    /// The tenant's documents for the channel with an id above `after`, in order.
    fn catalog_documents(
        &self,
        tenant: &str,
        channel: &str,
        after: i64,
    ) -> Result<Vec<(i64, String)>>;

    // Channel accounts.
    /// The tenant of the account with this id on the channel.
    fn account_owner(&self, channel: &str, account_id: &str) -> Result<Option<String>>;
    /// Inserts or replaces the tenant's account on its channel.
    fn put_account(&self, account: &AccountRecord) -> Result<()>;
    fn account(&self, tenant: &str, channel: &str) -> Result<Option<AccountRecord>>;
    /// Moves the account from `from` to `to` at `at`; whether it was in `from` (so exactly
    /// one of several nodes seeing the same refusal reports the change).
    fn set_account_state(
        &self,
        tenant: &str,
        channel: &str,
        from: &str,
        to: &str,
        at: i64,
    ) -> Result<bool>;

    /// The account's messaging limit, its row locked until commit (PostgreSQL): `None` for
    /// no account; `Some(None)` for no limit (never checked, or unlimited).
    fn lock_account_limit(&self, tenant: &str, channel: &str) -> Result<Option<Option<i64>>>;
    /// Sets the messaging limit of the tenant's account `account_id` (a tier change).
    fn set_account_limit(
        &self,
        channel: &str,
        account_id: &str,
        limit: Option<i64>,
        at: i64,
    ) -> Result<()>;
    /// Forgets business-initiated customers last messaged before `before`.
    fn prune_initiated(&self, tenant: &str, channel: &str, before: i64) -> Result<()>;
    /// Whether the customer had a business-initiated send since `since`.
    fn initiated_since(
        &self,
        tenant: &str,
        channel: &str,
        customer: &str,
        since: i64,
    ) -> Result<bool>;
    /// How many customers had one since `since`.
    fn count_initiated(&self, tenant: &str, channel: &str, since: i64) -> Result<i64>;
    /// The customer had one at `at`.
    fn note_initiated(&self, tenant: &str, channel: &str, customer: &str, at: i64) -> Result<()>;
    /// Every tenant's account on the channel, by tenant.
    fn accounts_on(&self, channel: &str) -> Result<Vec<AccountRecord>>;
    /// Stores what the provider reported of the tenant's account.
    fn set_account_facts(
        &self,
        tenant: &str,
        channel: &str,
        facts: &str,
        recipient_limit: Option<i64>,
        at: i64,
    ) -> Result<()>;

    // Senders and templates of accounts.
    /// The tenant of the sender with this id on the channel.
    fn sender_owner(&self, channel: &str, sender_id: &str) -> Result<Option<String>>;
    /// Inserts or replaces a sender (its owner checked by the caller in the same transaction).
    fn put_sender(&self, sender: &SenderRecord) -> Result<()>;
    /// Every tenant's senders on every channel.
    fn all_senders(&self) -> Result<Vec<SenderRecord>>;
    /// The tenant's senders on the channel, by id.
    fn senders(&self, tenant: &str, channel: &str) -> Result<Vec<SenderRecord>>;
    /// Inserts or replaces one template of the account, marked synced at `at`.
    fn put_template(
        &self,
        channel: &str,
        account_id: &str,
        tenant: &str,
        template: &TemplateRecord,
        at: i64,
    ) -> Result<()>;
    /// Deletes the account's templates not synced since `before` (gone at the provider).
    fn delete_templates_before(&self, channel: &str, account_id: &str, before: i64) -> Result<u64>;
    /// Applies a status or category change; whether a template matched.
    fn change_template(
        &self,
        channel: &str,
        account_id: &str,
        change: &TemplateChange,
    ) -> Result<bool>;
    /// The account's templates, by name and language.
    fn templates(&self, channel: &str, account_id: &str) -> Result<Vec<TemplateRecord>>;
    /// Who owns what an event names, in one statement: the sender's tenant, the account's,
    /// and whether the default tenant has named an account of its own on the channel.
    fn route(
        &self,
        channel: &str,
        account_id: Option<&str>,
        sender_id: Option<&str>,
    ) -> Result<RouteRow>;
    /// Counts an event dropped because no tenant owns its account.
    fn count_unrouted(&self, channel: &str, account_id: &str, at: i64) -> Result<()>;
    /// The dropped events' counts per account on the channel.
    fn unrouted(&self, channel: &str) -> Result<Vec<(String, i64)>>;

    // Pacing shared between nodes (PostgreSQL only: one SQLite node keeps it in memory).
    /// The watermark under `key` (0 if none yet), locked until commit.
    fn lock_pacing(&self, key: &str) -> Result<i64>;
    fn set_pacing(&self, key: &str, next_us: i64) -> Result<()>;
    /// Raises the watermark to `next_us` if it is below.
    fn raise_pacing(&self, key: &str, next_us: i64) -> Result<()>;
}

/// A state column's value, refused (not guessed) when it is none of ours.
pub(super) fn flow_state(text: &str) -> Result<FlowState> {
    match FlowState::parse(text) {
        Some(s) => Ok(s),
        None => bail!("the store holds an unknown flow state {text:?}"),
    }
}

pub(super) fn attempt_phase(text: &str) -> Result<AttemptPhase> {
    match AttemptPhase::parse(text) {
        Some(p) => Ok(p),
        None => bail!("the store holds an unknown attempt phase {text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redact("postgres://flow:s3cret@db:5432/flows"),
            "postgres://flow@db:5432/flows"
        );
        assert_eq!(redact("postgres://db/flows"), "postgres://db/flows");
    }

    #[test]
    fn a_state_the_store_does_not_know_is_an_error_not_a_guess() {
        assert!(flow_state("ready").is_ok());
        assert!(flow_state("readyish").is_err());
        assert!(attempt_phase("sending").is_ok());
        assert!(attempt_phase("").is_err());
    }
}
