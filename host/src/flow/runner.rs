//! The flow runner: a dispatcher that claims due work from the store, sends it with no lock
//! or transaction held, at most `max_in_flight` at a time, and records each answer; webhook
//! statuses applied in one transaction each batch; callbacks delivered from the outbox.

use super::pacing::{ChannelPacing, Pacer};
use super::policy::{self, FlowState};
use super::spec::{FlowSpec, SpecError};
use super::store::{Backend, Write, Written};
use super::store::{
    Claim, CustomerGap, FlowView, OutboxItem, OutboxResult, SendResult, Store, Submitted,
};
use super::writes::Writer;
use crate::contract::signals::{HostReason, Signal};
use crate::contract::types::{
    ChannelConfig, Classification, Disposition, EventKind, MessageRequest, WebhookEvent,
};
use crate::runtime::{CallError, Plugin};
use crate::services::ttl::TtlCache;
use crate::services::vault::Vault;
use crate::services::{AllowRule, Secrets, now_ms};
use crate::tenants;
use anyhow::Result;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, watch};
use zeroize::Zeroizing;

/// The host secret that signs callbacks (`X-Flow-Signature: sha256=<hex>`).
pub const CALLBACK_SECRET_NAME: &str = "flow/callback-secret";

/// The key callbacks are signed with; an error when callback hosts are allowed without one
/// (receivers could not tell our callbacks from anyone's: they are never posted unsigned).
pub fn callback_secret(options: &RunnerOptions, secrets: &Secrets) -> Result<Option<String>> {
    let secret = secrets
        .value(CALLBACK_SECRET_NAME)
        .filter(|s| !s.is_empty());
    if !options.callback_hosts.is_empty() && secret.is_none() {
        anyhow::bail!(
            "callback hosts are allowed but the host secret {CALLBACK_SECRET_NAME} is missing (set FLOW_SECRET_FLOW_CALLBACK_SECRET or add it to --secrets): callbacks are never posted unsigned"
        );
    }
    Ok(secret)
}

/// A channel the runner can send on.
pub struct Channel {
    pub plugin: Plugin,
    /// Its settings, including the cached template catalog that template webhooks update.
    config: std::sync::RwLock<Arc<ChannelConfig>>,
    /// Its pacing; `None` sends as fast as the in-flight bound allows.
    pub pacing: Option<ChannelPacing>,
    /// The id of the last catalog document of the store applied to `config`.
    catalog_seen: std::sync::atomic::AtomicI64,
}

/// Where a channel's settings keep the cached template catalog.
const CATALOG_KEY: &str = "templates";
/// Where a channel's settings name the sender it sends from (WhatsApp's phone number id). A
/// contract-level name would be better; until the contract has one, the host and the channel
/// share this setting's name, as they share `templates`.
const SENDER_KEY: &str = "phone_number_id";

impl Channel {
    pub fn new(plugin: Plugin, config: ChannelConfig, pacing: Option<ChannelPacing>) -> Channel {
        Channel {
            plugin,
            config: std::sync::RwLock::new(Arc::new(config)),
            pacing,
            catalog_seen: std::sync::atomic::AtomicI64::new(0),
        }
    }

    /// The same channel sending from `sender` (its settings' `phone_number_id`), with the
    /// catalog it has now.
    fn sending_from(&self, sender: &str) -> Channel {
        let config = self.config();
        let mut settings = match serde_json::from_str::<Value>(&config.settings) {
            Ok(Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        settings.insert(SENDER_KEY.into(), Value::String(sender.to_string()));
        Channel::new(
            self.plugin.clone(),
            ChannelConfig {
                api_base: config.api_base.clone(),
                settings: Value::Object(settings).to_string(),
            },
            self.pacing,
        )
    }

    /// The settings as they stand now.
    pub fn config(&self) -> Arc<ChannelConfig> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Template events (status, category changes) change the cached catalog: their
    /// `details`, kept in the store in arrival order, are appended to the settings'
    /// `templates` documents, which the channel applies in order (the WhatsApp channel reads
    /// them as status and category updates). `documents` are the store's rows after
    /// [`Channel::catalog_seen`]; a row seen already is skipped.
    fn apply_catalog_documents(&self, documents: &[(i64, String)]) {
        let mut guard = self.config.write().unwrap_or_else(|p| p.into_inner());
        let seen = self.catalog_seen.load(Ordering::Relaxed);
        let fresh: Vec<Value> = documents
            .iter()
            .filter(|(id, _)| *id > seen)
            .filter_map(|(_, doc)| serde_json::from_str(doc).ok())
            .collect();
        if let Some((last, _)) = documents.last() {
            self.catalog_seen.fetch_max(*last, Ordering::Relaxed);
        }
        if fresh.is_empty() {
            return;
        }
        let Ok(Value::Object(mut settings)) = serde_json::from_str::<Value>(&guard.settings) else {
            return;
        };
        let mut catalog = match settings.remove(CATALOG_KEY) {
            Some(Value::Array(docs)) => docs,
            Some(doc) => vec![doc],
            None => Vec::new(),
        };
        catalog.extend(fresh);
        settings.insert(CATALOG_KEY.into(), Value::Array(catalog));
        *guard = Arc::new(ChannelConfig {
            api_base: guard.api_base.clone(),
            settings: Value::Object(settings).to_string(),
        });
    }
}

/// How the runner behaves under load.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Sends in flight at once.
    pub max_in_flight: usize,
    /// Flows not yet final beyond which `submit` refuses new ones (the API answers 429).
    pub max_open_flows: u64,
    /// How far ahead a send may book its pacing slot (it then waits for it).
    pub pacing_horizon_ms: u64,
    /// How often the dispatcher looks for due work when nothing wakes it.
    pub idle_tick: Duration,
    /// Hosts callbacks may be posted to (deny by default).
    pub callback_hosts: Vec<AllowRule>,
    /// How long a claimed send belongs to this node: with several nodes on PostgreSQL,
    /// another takes it over (crash rule) once it has passed. Longer than any plugin call.
    pub lease_ms: u64,
    /// The operator's master key, for the secrets tenants' accounts bring (their callback
    /// keys, their access tokens); `None`: nothing can be sealed.
    pub vault: Option<Vault>,
    /// Channels on which every tenant but the default must send from its own account (a
    /// business's WhatsApp messages come from its own WABA); on the others a tenant without
    /// an account sends from serve's.
    pub own_accounts: Vec<String>,
    /// Where operator events (a tenant's account changing state) are posted, signed with
    /// `flow/callback-secret`; it must be on `callback_hosts`.
    pub operator_callback_url: Option<String>,
    /// How often every tenant's account templates are synced from the provider (`None`:
    /// only at connect, on demand and after template webhooks).
    pub template_sync: Option<Duration>,
    /// Sends per second of named senders (sender id → rate), in place of what the provider
    /// reports for them.
    pub sender_rates: HashMap<String, f64>,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            max_in_flight: 512,
            max_open_flows: 200_000,
            pacing_horizon_ms: 50,
            idle_tick: Duration::from_millis(20),
            callback_hosts: Vec::new(),
            lease_ms: crate::flow::store::DEFAULT_LEASE_MS,
            vault: None,
            own_accounts: Vec::new(),
            operator_callback_url: None,
            template_sync: Some(Duration::from_secs(15 * 60)),
            sender_rates: HashMap::new(),
        }
    }
}

/// Why flows were not accepted.
#[derive(Debug)]
pub enum SubmitError {
    /// Field errors, per flow index (for a batch) with pointers inside that flow.
    Invalid(Vec<(usize, Vec<SpecError>)>),
    /// Too much work waiting: try again after this many seconds.
    Busy {
        retry_after_s: u64,
        open: u64,
    },
    Store(anyhow::Error),
}

/// The outcome of one accepted flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub id: String,
    /// False when the same flow (same id and spec) had been submitted before.
    pub created: bool,
}

/// Runs flows.
pub struct Runner {
    store: Arc<Store>,
    /// The sends' and webhooks' writes, committed in groups.
    writer: Writer,
    channels: HashMap<String, Channel>,
    channel_names: Vec<String>,
    pacer: Arc<Mutex<Pacer>>,
    in_flight: Arc<Semaphore>,
    wake: Notify,
    options: RunnerOptions,
    open_flows: AtomicU64,
    callback_secret: Option<String>,
    /// Tenants' channels read recently ((tenant, channel) → what to send with, when read).
    tenant_channels: TtlCache<(String, String, Option<String>), TenantChannel>,
    /// What checks tenants' own accounts' webhooks, read recently ((tenant, channel) → it).
    tenant_hooks: TtlCache<(String, String), Option<Arc<Channel>>>,
    /// The dispatcher's lanes: every channel, and `channel#sender` for every tenant's sender
    /// (refreshed from the store each second).
    lanes: std::sync::RwLock<Vec<String>>,
    /// Claim rounds so far (which lane goes first).
    rounds: AtomicU64,
    /// Tenants' callback keys read recently (tenant → key, when read).
    tenant_keys: TtlCache<String, Option<CallbackKey>>,
    http: reqwest::Client,
}

/// The tenant's senders per channel, read once per submitted batch.
#[derive(Default)]
struct SenderBook {
    by_channel: HashMap<String, Vec<crate::flow::store::SenderRecord>>,
}

impl SenderBook {
    fn of(
        &mut self,
        store: &Store,
        tenant: &str,
        channel: &str,
    ) -> Result<&[crate::flow::store::SenderRecord]> {
        if !self.by_channel.contains_key(channel) {
            let senders = store.senders(tenant, channel)?;
            self.by_channel.insert(channel.to_string(), senders);
        }
        Ok(&self.by_channel[channel])
    }
}

/// What a tenant's step on a channel sends with.
#[derive(Clone)]
pub enum TenantChannel {
    /// The channel as serve configured it.
    Operator,
    /// The tenant's own account: serve's channel with the account's settings laid over and
    /// the account's secrets in place of serve's.
    Own(Arc<Channel>),
    /// Not sent: the step falls back at once, for this reason.
    Refused(HostReason),
}

/// A callback signing key, shared by the posts that use it and wiped when the last goes.
pub type CallbackKey = Arc<Zeroizing<String>>;

/// The name of a tenant's callback key among its sealed secrets.
pub const TENANT_CALLBACK_SECRET: &str = "callback-secret";
/// How long a tenant's callback key is used without reading it again (a rotation on another
/// node reaches this one within it).
const TENANT_KEY_TTL: Duration = Duration::from_secs(5);
/// Tenants' keys and channels remembered at most.
const TENANT_CACHE_MAX: usize = 10_000;

impl Runner {
    /// Opens the store and recovers what a crash left behind: attempts cut off while
    /// sending become `unknown` (never resent blindly); every non-final flow carries on.
    pub async fn open(path: &str, channels: HashMap<String, Channel>) -> Result<Runner> {
        Self::open_with(
            path,
            channels,
            RunnerOptions::default(),
            &Secrets::default(),
        )
        .await
    }

    /// [`Runner::open`] with options and the host's secrets (the callback secret). The store is
    /// opened on a blocking thread: it is synchronous (see [`Store`]).
    pub async fn open_with(
        path: &str,
        channels: HashMap<String, Channel>,
        options: RunnerOptions,
        secrets: &Secrets,
    ) -> Result<Runner> {
        let callback_secret = callback_secret(&options, secrets)?;
        let (path, lease_ms) = (path.to_string(), options.lease_ms);
        let vault = options.vault.clone();
        let (store, open) = tokio::task::spawn_blocking(move || {
            let store = Store::open_with(&path, lease_ms)?;
            store.check_vault(vault.as_ref(), now_ms())?;
            let recovered = store.recover(now_ms())?;
            if recovered > 0 {
                tracing::warn!(
                    recovered,
                    "recovered send(s) cut off by a stop: their outcome is unknown"
                );
            }
            let open = store.open_flows()?;
            anyhow::Ok((store, open))
        })
        .await??;
        let limits = channels
            .iter()
            .filter_map(|(name, c)| c.pacing.map(|p| (name.clone(), p)))
            .collect();
        let mut channel_names: Vec<String> = channels.keys().cloned().collect();
        channel_names.sort();
        let channel_names_for_lanes = channel_names.clone();
        let store = Arc::new(store);
        let runner = Runner {
            writer: Writer::spawn(store.clone()),
            store,
            channels,
            channel_names,
            pacer: Arc::new(Mutex::new(Pacer::new(limits))),
            in_flight: Arc::new(Semaphore::new(options.max_in_flight.max(1))),
            wake: Notify::new(),
            open_flows: AtomicU64::new(open),
            callback_secret,
            tenant_keys: TtlCache::new(TENANT_KEY_TTL, TENANT_CACHE_MAX),
            tenant_channels: TtlCache::new(TENANT_KEY_TTL, TENANT_CACHE_MAX),
            tenant_hooks: TtlCache::new(TENANT_KEY_TTL, TENANT_CACHE_MAX),
            lanes: std::sync::RwLock::new(channel_names_for_lanes),
            rounds: AtomicU64::new(0),
            options,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(10))
                .build()
                .expect("a plain client builds"),
        };
        // The catalog updates webhooks brought before this start.
        runner.refresh_catalogs().await;
        runner.refresh_lanes().await;
        Ok(runner)
    }

    /// A channel by name.
    pub fn channel(&self, name: &str) -> Option<&Channel> {
        self.channels.get(name)
    }

    /// Checks and stores the tenant's flows (all or none), due at once; wakes the dispatcher.
    /// Ids are the tenant's own: another tenant may use the same ones.
    pub fn submit(
        &self,
        tenant: &str,
        mut specs: Vec<FlowSpec>,
        now: u64,
    ) -> Result<Vec<Accepted>, SubmitError> {
        let names: Vec<&str> = self.channel_names.iter().map(String::as_str).collect();
        let mut invalid = Vec::new();
        let mut senders = SenderBook::default();
        for (i, spec) in specs.iter_mut().enumerate() {
            let mut errors = spec.check(&names);
            if errors.is_empty() {
                self.resolve_senders(tenant, spec, &mut senders, &mut errors)
                    .map_err(SubmitError::Store)?;
            }
            if let Some(url) = &spec.callback_url
                && !self.callback_allowed(url)
            {
                errors.push(SpecError {
                    path: "/callback_url".into(),
                    code: "callback_host_denied",
                    message: format!("{url:?} is not on serve's --allow-callback-host list"),
                });
            }
            if spec.callback_url.is_some()
                && tenant != tenants::DEFAULT_TENANT
                && self
                    .callback_key(tenant)
                    .map_err(SubmitError::Store)?
                    .is_none()
            {
                errors.push(SpecError {
                    path: "/callback_url".into(),
                    code: "callback_secret_missing",
                    message: format!(
                        "tenant {tenant:?} has no callback key to sign with (the operator sets one: POST /admin/tenants/{tenant}/callback-secret)"
                    ),
                });
            }
            if !errors.is_empty() {
                invalid.push((i, errors));
            }
        }
        if !invalid.is_empty() {
            return Err(SubmitError::Invalid(invalid));
        }
        let open = self.open_flows.load(Ordering::Relaxed);
        if open.saturating_add(specs.len() as u64) > self.options.max_open_flows {
            return Err(SubmitError::Busy {
                retry_after_s: 5,
                open,
            });
        }
        let ids: Vec<String> = specs
            .iter()
            .map(|s| {
                s.id.clone()
                    .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
            })
            .collect();
        let with_keys: Vec<(String, FlowSpec)> = ids
            .iter()
            .map(|id| tenants::scoped(tenant, id))
            .zip(specs)
            .collect();
        let results = self
            .store
            .submit(&with_keys, now)
            .map_err(SubmitError::Store)?;
        let mut accepted = Vec::new();
        let mut conflicts = Vec::new();
        for (i, (id, r)) in ids.iter().zip(&results).enumerate() {
            match r {
                Submitted::Created => accepted.push(Accepted {
                    id: id.clone(),
                    created: true,
                }),
                Submitted::AlreadyExists => accepted.push(Accepted {
                    id: id.clone(),
                    created: false,
                }),
                Submitted::Conflict => conflicts.push((
                    i,
                    vec![SpecError {
                        path: "/id".into(),
                        code: "id_in_use",
                        message: format!("a different flow with id {id:?} exists already"),
                    }],
                )),
            }
        }
        if !conflicts.is_empty() {
            return Err(SubmitError::Invalid(conflicts));
        }
        let created = accepted.iter().filter(|a| a.created).count() as u64;
        self.open_flows.fetch_add(created, Ordering::Relaxed);
        self.wake.notify_one();
        Ok(accepted)
    }

    /// Each step's `from` resolved to one of the tenant's senders on that channel, by its id
    /// or its display number (stored as the id, so the flow keeps sending from the same
    /// number whatever is renamed later); a sender the tenant does not have is a field error.
    fn resolve_senders(
        &self,
        tenant: &str,
        spec: &mut FlowSpec,
        book: &mut SenderBook,
        errors: &mut Vec<SpecError>,
    ) -> Result<()> {
        for (i, step) in spec.steps.iter_mut().enumerate() {
            let Some(from) = step.from.clone() else {
                continue;
            };
            let known = book.of(&self.store, tenant, &step.channel)?;
            let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
            let found = known.iter().find(|s| {
                s.sender_id == from
                    || s.display_address
                        .as_deref()
                        .is_some_and(|d| !digits(d).is_empty() && digits(d) == digits(&from))
            });
            match found {
                Some(s) => step.from = Some(s.sender_id.clone()),
                None => errors.push(SpecError {
                    path: format!("/steps/{i}/from"),
                    code: "unknown_sender",
                    message: format!(
                        "the tenant has no {} sender {from:?} (its senders: {:?}); connect it first",
                        step.channel,
                        known.iter().map(|s| s.sender_id.as_str()).collect::<Vec<_>>()
                    ),
                }),
            }
        }
        Ok(())
    }

    /// Each step's content checked by its own channel (`build-payload`) as the flow arrives,
    /// so content a channel cannot send is a field error now, not a silent fall-back later.
    /// Only the shape: the settings' template catalog is left out (approval is a send-time
    /// matter: a template may be approved or paused meanwhile). Identical (channel,
    /// recipient, content) triples are checked once; a plugin failure is left to send time.
    pub async fn check_contents(&self, specs: &[FlowSpec]) -> Vec<(usize, Vec<SpecError>)> {
        use futures::StreamExt;
        let configs: HashMap<&str, ChannelConfig> = self
            .channels
            .iter()
            .map(|(name, ch)| (name.as_str(), shape_only(&ch.config())))
            .collect();
        // Owned keys: the futures below must be `Send` for every lifetime axum asks about.
        let mut checks: HashMap<(String, String, String), Vec<(usize, usize)>> = HashMap::new();
        for (i, spec) in specs.iter().enumerate() {
            for (s, step) in spec.steps.iter().enumerate() {
                let key = (
                    step.channel.clone(),
                    spec.recipient_of(s).to_string(),
                    step.content.to_string(),
                );
                checks.entry(key).or_default().push((i, s));
            }
        }
        let verdicts: Vec<_> = futures::stream::iter(checks)
            .map(|((channel, recipient, content), at)| {
                let configs = &configs;
                async move {
                    let (Some(ch), Some(config)) =
                        (self.channels.get(&channel), configs.get(channel.as_str()))
                    else {
                        return (at, Vec::new());
                    };
                    let request = MessageRequest {
                        recipient,
                        correlation_id: None,
                        content,
                        last_inbound_ms: None,
                        now_ms: now_ms(),
                        opted_out: Vec::new(),
                        deadline_ms: None,
                    };
                    match ch.plugin.build_payload(&request, config).await {
                        Ok(Err(errors)) => (at, errors),
                        _ => (at, Vec::new()),
                    }
                }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        let mut invalid: HashMap<usize, Vec<SpecError>> = HashMap::new();
        for (at, errors) in verdicts.into_iter().filter(|(_, e)| !e.is_empty()) {
            for (i, s) in at {
                let step = &specs[i].steps[s];
                invalid
                    .entry(i)
                    .or_default()
                    .extend(errors.iter().map(|e| content_error(s, step, e)));
            }
        }
        let mut invalid: Vec<_> = invalid.into_iter().collect();
        invalid.sort_by_key(|(i, _)| *i);
        invalid
    }

    fn callback_allowed(&self, url: &str) -> bool {
        reqwest::Url::parse(url)
            .is_ok_and(|u| crate::services::http::url_allowed(&self.options.callback_hosts, &u))
    }

    /// Runs a store operation on the blocking pool, off the async workers.
    pub(super) async fn on_store<R: Send + 'static>(
        &self,
        op: impl FnOnce(&Store) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || op(&store)).await?
    }

    /// A write (committed with whatever else is queued), retried after each of `delays_ms`
    /// while the store fails (each failure logged); `None` once every try failed.
    async fn write_retrying(&self, what: &str, delays_ms: &[u64], write: Write) -> Option<Written> {
        for delay_ms in delays_ms {
            tokio::time::sleep(Duration::from_millis(*delay_ms)).await;
            match self.writer.write(write.clone()).await {
                Ok(r) => return Some(r),
                Err(e) => tracing::error!(error = format!("{e:#}"), "{what}"),
            }
        }
        None
    }

    /// Applies a channel's status events.
    pub async fn on_events(
        self: &Arc<Self>,
        channel: &str,
        events: Vec<WebhookEvent>,
    ) -> Result<()> {
        self.on_events_of(channel, None, events).await
    }

    /// [`Runner::on_events`] for a delivery on `tenant`'s own route (checked with its
    /// secrets; [`Store::apply_events`](crate::flow::store::Store::apply_events)).
    pub async fn on_events_of(
        self: &Arc<Self>,
        channel: &str,
        tenant: Option<&str>,
        events: Vec<WebhookEvent>,
    ) -> Result<()> {
        let events = Arc::new(events);
        let write = Write::Events {
            channel: channel.to_string(),
            tenant: tenant.map(str::to_string),
            events: events.clone(),
        };
        let fresh = match self.writer.write(write).await? {
            Written::Applied(fresh) => fresh,
            other => anyhow::bail!("the store answered {other:?} to a webhook's events"),
        };
        let template_accounts: Vec<Option<String>> = fresh
            .iter()
            .map(|&i| &events[i])
            .filter(|e| {
                matches!(
                    e.kind,
                    EventKind::TemplateStatus
                        | EventKind::TemplateCategoryChange
                        | EventKind::TemplateComponentsChange
                )
            })
            .map(|e| e.account_id.clone())
            .collect();
        if !template_accounts.is_empty() {
            self.refresh_catalog(channel).await?;
            self.resync_accounts(channel, template_accounts).await;
        }
        let fresh_events: Vec<&WebhookEvent> = fresh.iter().map(|&i| &events[i]).collect();
        self.account_webhooks(channel, &fresh_events).await;
        self.wake.notify_one();
        Ok(())
    }

    /// A template webhook named these accounts: the tenants owning them see the change at
    /// once on this node (the store already holds it), and their catalogs are synced again
    /// in the background (a webhook says that something changed, the listing says what).
    async fn resync_accounts(self: &Arc<Self>, channel: &str, accounts: Vec<Option<String>>) {
        let mut owners = Vec::new();
        for account in accounts.into_iter().flatten() {
            let (store, ch) = (self.store.clone(), channel.to_string());
            let owner =
                tokio::task::spawn_blocking(move || store.owner_of(&ch, Some(&account), None))
                    .await;
            if let Ok(Ok(Some(owner))) = owner
                && owner != tenants::DEFAULT_TENANT
                && !owners.contains(&owner)
            {
                owners.push(owner);
            }
        }
        for owner in owners {
            self.forget_tenant_channels(&owner);
            let (runner, channel) = (self.clone(), channel.to_string());
            tokio::spawn(async move {
                if let Err(e) = runner.sync_templates(&owner, &channel).await {
                    tracing::warn!(tenant = %owner, channel, error = ?e, "template sync after a webhook failed; the timer tries again");
                }
            });
        }
    }

    /// Applies the channel's catalog documents the store has and this node has not yet
    /// applied (written by any node's webhooks, before or since this start).
    async fn refresh_catalog(&self, channel: &str) -> Result<()> {
        let Some(ch) = self.channels.get(channel) else {
            return Ok(());
        };
        let after = ch.catalog_seen.load(Ordering::Relaxed);
        let owned = channel.to_string();
        let documents = self
            .on_store(move |s| s.catalog_documents(tenants::DEFAULT_TENANT, &owned, after))
            .await?;
        ch.apply_catalog_documents(&documents);
        Ok(())
    }

    /// [`Runner::refresh_catalog`] for every channel; a failure is logged and tried again at
    /// the next refresh.
    async fn refresh_catalogs(&self) {
        for name in &self.channel_names {
            if let Err(e) = self.refresh_catalog(name).await {
                tracing::error!(error = format!("{e:#}"), channel = %name, "reading the template catalog failed");
            }
        }
    }

    /// The tenant's flow: its state, attempts and timeline ([`crate::server::flow_json`]
    /// renders them), under the tenant's own id. Another tenant's flow is `None`, as one that
    /// does not exist.
    pub fn flow_view(&self, tenant: &str, id: &str) -> Result<Option<FlowView>> {
        let view = self.store.flow_view(&tenants::scoped(tenant, id))?;
        Ok(view.map(|v| FlowView {
            id: id.to_string(),
            ..v
        }))
    }

    /// Whether the tenant's flow reached a final state.
    pub fn is_final(&self, tenant: &str, id: &str) -> Result<bool> {
        let state = self.store.state(&tenants::scoped(tenant, id))?;
        Ok(state.is_some_and(FlowState::is_final))
    }

    /// The store (tenants and their tokens live there too).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The operator's master key, if `serve` was given one.
    pub fn vault(&self) -> Option<&Vault> {
        self.options.vault.as_ref()
    }

    /// The key a tenant's callbacks are signed with: the default tenant's is the host secret
    /// `flow/callback-secret`, every other tenant's its own sealed key (none without one:
    /// a tenant's receiver must never accept another tenant's signature). Read from the store
    /// at most every [`TENANT_KEY_TTL`]; synchronous (a store read on a miss).
    pub fn callback_key(&self, tenant: &str) -> Result<Option<CallbackKey>> {
        if let Some(key) = self.known_callback_key(tenant) {
            return Ok(key);
        }
        let key = read_tenant_key(&self.store, self.vault(), tenant)?;
        self.remember_callback_key(tenant, key.clone());
        Ok(key)
    }

    /// [`Runner::callback_key`] off the async workers.
    async fn callback_key_async(&self, tenant: &str) -> Result<Option<CallbackKey>> {
        if let Some(key) = self.known_callback_key(tenant) {
            return Ok(key);
        }
        let (store, vault, owned) = (
            self.store.clone(),
            self.options.vault.clone(),
            tenant.to_string(),
        );
        let key =
            tokio::task::spawn_blocking(move || read_tenant_key(&store, vault.as_ref(), &owned))
                .await??;
        self.remember_callback_key(tenant, key.clone());
        Ok(key)
    }

    /// The tenant's key without reading the store: the host's for the default tenant, else
    /// what was read within the TTL (`None`: read it).
    fn known_callback_key(&self, tenant: &str) -> Option<Option<CallbackKey>> {
        if tenant == tenants::DEFAULT_TENANT {
            return Some(
                self.callback_secret
                    .as_ref()
                    .map(|s| Arc::new(Zeroizing::new(s.clone()))),
            );
        }
        self.tenant_keys.get(tenant)
    }

    fn remember_callback_key(&self, tenant: &str, key: Option<CallbackKey>) {
        self.tenant_keys.put(tenant.to_string(), key);
    }

    /// What the tenant's steps on `channel` send with (read from the store at most every
    /// [`TENANT_KEY_TTL`]; synchronous on a miss).
    pub fn tenant_channel(&self, tenant: &str, channel: &str) -> Result<TenantChannel> {
        self.tenant_sender_channel(tenant, channel, None)
    }

    /// [`Runner::tenant_channel`] sending from one of the tenant's senders (`from`, resolved
    /// when the flow was accepted): the same account with that sender in its settings.
    pub fn tenant_sender_channel(
        &self,
        tenant: &str,
        channel: &str,
        sender: Option<&str>,
    ) -> Result<TenantChannel> {
        if tenant == tenants::DEFAULT_TENANT && sender.is_none() {
            return Ok(TenantChannel::Operator);
        }
        let key = (
            tenant.to_string(),
            channel.to_string(),
            sender.map(str::to_string),
        );
        if let Some(c) = self.tenant_channels.get(&key) {
            return Ok(c);
        }
        let account = if tenant == tenants::DEFAULT_TENANT {
            TenantChannel::Operator
        } else {
            self.read_tenant_channel(tenant, channel)?
        };
        let resolved = match (sender, account) {
            (Some(sender), TenantChannel::Own(ch)) => {
                TenantChannel::Own(Arc::new(ch.sending_from(sender)))
            }
            (Some(sender), TenantChannel::Operator) => match self.channels.get(channel) {
                Some(base) => TenantChannel::Own(Arc::new(base.sending_from(sender))),
                None => TenantChannel::Operator,
            },
            (_, other) => other,
        };
        self.tenant_channels.put(key, resolved.clone());
        Ok(resolved)
    }

    /// Forgets what was read of the tenant's channels (an account was put on this node).
    pub fn forget_tenant_channels(&self, tenant: &str) {
        self.tenant_channels.retain(|(t, _, _), _| t != tenant);
        self.tenant_hooks.retain(|(t, _), _| t != tenant);
    }

    fn read_tenant_channel(&self, tenant: &str, channel: &str) -> Result<TenantChannel> {
        let Some(base) = self.channels.get(channel) else {
            return Ok(TenantChannel::Operator);
        };
        let Some(account) = self.store.channel_account(tenant, channel)? else {
            let own = self.options.own_accounts.iter().any(|c| c == channel);
            return Ok(if own {
                TenantChannel::Refused(HostReason::NoChannelAccount)
            } else {
                TenantChannel::Operator
            });
        };
        match account.state.as_str() {
            "needs_reauth" => return Ok(TenantChannel::Refused(HostReason::AccountNeedsReauth)),
            "disabled" => return Ok(TenantChannel::Refused(HostReason::AccountDisabled)),
            _ => {}
        }
        let own = self.account_channel(tenant, channel, base, &account)?;
        Ok(TenantChannel::Own(Arc::new(own)))
    }

    /// The channel over the tenant's own account: the operator's plugin with the tenant's
    /// secrets (only those the plugin is granted), the account's settings over the operator's,
    /// its synced templates, and a status callback of its own
    /// ([`tenant_status_callback`]).
    fn account_channel(
        &self,
        tenant: &str,
        channel: &str,
        base: &Channel,
        account: &crate::flow::store::AccountRecord,
    ) -> Result<Channel> {
        let secrets = match self.vault() {
            Some(vault) => self.store.channel_secrets(vault, tenant, channel)?,
            None => Vec::new(),
        };
        let services = base.plugin.services();
        let (view, refused) = services.secrets.with_values(
            secrets
                .into_iter()
                .map(|(name, value)| (name, value.as_str().to_string())),
        );
        if !refused.is_empty() {
            tracing::warn!(
                tenant,
                channel,
                ?refused,
                "tenant secrets the channel is not granted: not used"
            );
        }
        let services = Arc::new(crate::services::HostServices::new(
            services.http.clone(),
            view,
            services.log.like(),
        ));
        let mut config = with_settings(&base.config(), &account.settings);
        config.settings = tenant_status_callback(&config.settings, &account.settings, tenant);
        let templates = self.store.templates(channel, &account.account_id)?;
        if !templates.is_empty() {
            config = with_synced_catalog(&config, &templates);
        }
        Ok(Channel::new(
            base.plugin.with_services(services),
            config,
            base.pacing,
        ))
    }

    /// What checks the webhooks of the tenant's own account on `channel`
    /// (`/webhooks/{channel}/{tenant}`): its channel whatever the account's state (a flagged
    /// account still receives), or `None` when the tenant has no account there. Read from the
    /// store at most every [`TENANT_KEY_TTL`], off the async workers.
    pub async fn tenant_webhook_channel(
        self: &Arc<Self>,
        tenant: &str,
        channel: &str,
    ) -> Result<Option<Arc<Channel>>> {
        let key = (tenant.to_string(), channel.to_string());
        if let Some(known) = self.tenant_hooks.get(&key) {
            return Ok(known);
        }
        let runner = self.clone();
        let (t, ch) = key.clone();
        let found = tokio::task::spawn_blocking(move || -> Result<Option<Arc<Channel>>> {
            let Some(base) = runner.channels.get(&ch) else {
                return Ok(None);
            };
            let Some(account) = runner.store.channel_account(&t, &ch)? else {
                return Ok(None);
            };
            Ok(Some(Arc::new(
                runner.account_channel(&t, &ch, base, &account)?,
            )))
        })
        .await??;
        self.tenant_hooks.put(key, found.clone());
        Ok(found)
    }

    /// Seals a new callback key for the tenant and uses it from now on (on this node at once,
    /// on the others within [`TENANT_KEY_TTL`]); the key, to show once.
    pub fn rotate_callback_key(&self, tenant: &str) -> Result<Zeroizing<String>> {
        let Some(vault) = self.vault() else {
            anyhow::bail!(
                "serve has no master key ({} or --master-key-file): a tenant's callback key cannot be sealed",
                crate::services::vault::MASTER_KEY_ENV
            );
        };
        let key = Zeroizing::new(crate::services::vault::random_secret());
        self.store
            .put_tenant_secret(vault, tenant, TENANT_CALLBACK_SECRET, &key, now_ms())?;
        self.tenant_keys.retain(|t, _| t != tenant);
        Ok(key)
    }

    /// Runs the dispatcher and the callback sender until `stop` turns true, then lets every
    /// send in flight finish and be recorded.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) -> Result<()> {
        let outbox = tokio::spawn(self.clone().deliver_callbacks(stop.clone()));
        // Takeover has a task of its own: a claim round stalled on a lock another node holds
        // never holds up taking over what a dead or frozen node left behind.
        let takeover = (self.store.backend() == Backend::Postgres)
            .then(|| tokio::spawn(self.clone().take_over_expired_until(stop.clone())));
        let syncs = self
            .options
            .template_sync
            .map(|every| tokio::spawn(self.clone().sync_templates_every(every, stop.clone())));
        let mut last_refresh = now_ms();
        while !*stop.borrow() {
            // A store that went away (PostgreSQL restarting) costs a pause, never the runner.
            let claimed = match self.dispatch_round().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(
                        error = format!("{e:#}"),
                        "dispatch failed; trying again shortly"
                    );
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    0
                }
            };
            let now = now_ms();
            if now.saturating_sub(last_refresh) > 1_000 {
                last_refresh = now;
                self.refresh_counts().await;
                // What other nodes' webhooks changed in the catalogs.
                self.refresh_catalogs().await;
            }
            if claimed == 0 {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(self.options.idle_tick) => {}
                    _ = stop.changed() => {}
                }
            } else {
                tokio::task::yield_now().await;
            }
        }
        // Graceful stop: every send already claimed finishes and is recorded.
        let all = u32::try_from(self.options.max_in_flight.max(1)).unwrap_or(u32::MAX);
        let _drained = self.in_flight.acquire_many(all).await;
        outbox.abort();
        for task in [takeover, syncs].into_iter().flatten() {
            task.abort();
        }
        Ok(())
    }

    /// Syncs every tenant account's templates every `every` until stopped.
    async fn sync_templates_every(
        self: Arc<Self>,
        every: Duration,
        mut stop: watch::Receiver<bool>,
    ) {
        while !*stop.borrow() {
            tokio::select! {
                _ = tokio::time::sleep(every) => {
                    for channel in &self.channel_names {
                        self.sync_due_accounts(channel).await;
                    }
                }
                _ = stop.changed() => {}
            }
        }
    }

    /// Takes over expired leases every quarter lease (at least every second) until stopped.
    async fn take_over_expired_until(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let every = Duration::from_millis((self.options.lease_ms / 4).clamp(1_000, 10_000));
        while !*stop.borrow() {
            tokio::select! {
                _ = tokio::time::sleep(every) => self.take_over_expired().await,
                _ = stop.changed() => {}
            }
        }
    }

    /// Sends whose node let its lease pass (it died, or lost the database) are taken over
    /// with the crash rule: never handed over → sent again once; maybe sent → unknown.
    async fn take_over_expired(&self) {
        match self.on_store(|store| store.recover(now_ms())).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(
                    sends = n,
                    "took over {n} send(s) whose node's lease had passed"
                );
                self.wake.notify_one();
            }
            Err(e) => tracing::error!(
                error = format!("{e:#}"),
                "taking over expired leases failed"
            ),
        }
    }

    /// The senders' lanes and rates, as connects on any node stored them: each paced at the
    /// rate the provider reported for it, or the operator's `sender_rates`, at most
    /// `max_sender_rate`.
    async fn refresh_lanes(&self) {
        let senders = match self.on_store(|store| store.all_senders()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "reading the senders failed");
                return;
            }
        };
        let mut lanes = self.channel_names.clone();
        let mut pacer = self.pacer.lock().unwrap_or_else(|p| p.into_inner());
        for s in senders
            .iter()
            .filter(|s| self.channels.contains_key(&s.channel))
        {
            let lane = format!("{}#{}", s.channel, s.sender_id);
            let rate = self
                .options
                .sender_rates
                .get(&s.sender_id)
                .copied()
                .or(s.messages_per_second.map(|r| r as f64));
            if let Some(rate) = rate.filter(|r| *r > 0.0) {
                pacer.set_lane_rate(&lane, rate);
            }
            lanes.push(lane);
        }
        drop(pacer);
        *self.lanes.write().unwrap_or_else(|p| p.into_inner()) = lanes;
    }

    async fn refresh_counts(&self) {
        if let Ok(open) = self.on_store(|store| store.open_flows()).await {
            self.open_flows.store(open, Ordering::Relaxed);
        }
        self.refresh_lanes().await;
        let now = now_ms();
        self.pacer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .forget_idle(now);
    }

    /// One claim round; returns how many sends it started.
    async fn dispatch_round(self: &Arc<Self>) -> Result<usize> {
        let room = self.in_flight.available_permits().min(256);
        if room == 0 {
            // Wait for one send to finish instead of spinning.
            let permit = self.in_flight.acquire().await?;
            drop(permit);
            return Ok(0);
        }
        // Lanes take turns at going first: when a round has less room than the lanes could
        // fill, no number (no tenant) always comes last behind another's backlog.
        let mut names = self.lanes.read().unwrap_or_else(|p| p.into_inner()).clone();
        if !names.is_empty() {
            let first = self.rounds.fetch_add(1, Ordering::Relaxed) as usize % names.len();
            names.rotate_left(first);
        }
        let (pacer, horizon) = (self.pacer.clone(), self.options.pacing_horizon_ms);
        let claims = self
            .on_store(move |store| store.claim_due(now_ms(), room, &names, &pacer, horizon))
            .await?;
        let n = claims.len();
        for claim in claims {
            let permit = self.in_flight.clone().acquire_owned().await?;
            let runner = self.clone();
            tokio::spawn(async move {
                runner.send_one(claim).await;
                drop(permit);
            });
        }
        Ok(n)
    }

    /// Sends one claimed attempt at its slot and records the answer.
    #[tracing::instrument(name = "send", skip_all, fields(
        flow_id = %claim.flow_id,
        correlation_id = %claim.correlation_id,
        channel = %claim.channel,
    ))]
    async fn send_one(self: Arc<Self>, claim: Claim) {
        sleep_until_ms(claim.slot_ms).await;
        let own = match self.tenant_channel_of(&claim).await {
            Ok(TenantChannel::Own(channel)) => Some(channel),
            Ok(TenantChannel::Operator) => None,
            Ok(TenantChannel::Refused(reason)) => {
                return self.record_refused(&claim, reason).await;
            }
            Err(e) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    "reading the tenant's account failed"
                );
                return self.record_refused(&claim, HostReason::HostBusy).await;
            }
        };
        if own.is_some() && !self.within_budget(&claim).await {
            return self
                .record_refused(&claim, HostReason::MessagingLimitReached)
                .await;
        }
        let channel = own.as_deref().or_else(|| self.channels.get(&claim.channel));
        let result = match channel {
            None => SendResult::NotSent(format!("unknown channel {:?}", claim.channel)),
            Some(channel) => {
                // Still `claimed` until here: a crash before leaves it to be sent once.
                if !self.mark_sending(&claim).await {
                    // Still `claimed` in the store: the next start sends it, once.
                    return;
                }
                // The departure is taken after the write (whose group commit takes a
                // variable time), so requests leave as evenly spaced as the pacer says.
                self.wait_for_departure(&claim.lane).await;
                self.call_channel(channel, &claim).await
            }
        };
        let result = match own {
            Some(_) => self.account_health(&claim, result).await,
            None => result,
        };
        let customer_gap = match &result {
            SendResult::Classified(c) => self.pace_after(&claim, c),
            _ => None,
        };
        let what = format!("recording attempt {}", claim.attempt_id);
        let record = Write::Record {
            attempt_id: claim.attempt_id,
            result,
            customer_gap,
        };
        let recorded = self
            .write_retrying(&what, &[0, 100, 500, 2_000, 5_000], record)
            .await;
        if recorded.is_some() {
            self.wake.notify_one();
            return;
        }
        // Left `sending`: the next start's recovery makes it unknown, never resends it.
        tracing::error!(
            flow_id = %claim.flow_id,
            correlation_id = %claim.correlation_id,
            "the attempt could not be recorded; it stays `sending` until the next start"
        );
    }

    /// Waits for the lane's next departure. A send woken late (a busy machine) would leave
    /// bunched with the sends woken on time after it, past the number's rate in that second:
    /// it takes a fresh departure instead, a few times at most (it never waits forever).
    async fn wait_for_departure(&self, lane: &str) {
        const LATE_MS: u64 = 2;
        for _ in 0..4 {
            let departure = self
                .pacer
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .depart(lane, now_ms());
            sleep_until_ms(departure).await;
            if now_ms() <= departure + LATE_MS {
                return;
            }
        }
    }

    /// Whether a tenant's send fits its portfolio's messaging limit: a reply inside the
    /// customer's 24 h window always does; a business-initiated one is booked against the
    /// unique customers of the last 24 h ([`Store::book_initiated`]). A store that cannot
    /// answer lets it go (Meta enforces the limit too: it would answer 131048).
    async fn within_budget(self: &Arc<Self>, claim: &Claim) -> bool {
        const WINDOW_MS: u64 = 24 * 60 * 60 * 1_000;
        let now = now_ms();
        if claim
            .last_inbound_ms
            .is_some_and(|t| now.saturating_sub(t) < WINDOW_MS)
        {
            return true;
        }
        let tenant = tenants::unscoped(&claim.flow_id).0.to_string();
        let (store, channel, recipient) = (
            self.store.clone(),
            claim.channel.clone(),
            claim.recipient.clone(),
        );
        match tokio::task::spawn_blocking(move || {
            store.book_initiated(&tenant, &channel, &recipient, now)
        })
        .await
        {
            Ok(Ok(crate::flow::store::Booking::Booked)) => true,
            Ok(Ok(crate::flow::store::Booking::LimitReached(limit))) => {
                tracing::info!(flow_id = %claim.flow_id, limit, "messaging limit reached: a new customer waits for the 24 h window to move");
                false
            }
            Ok(Err(e)) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    "booking against the messaging limit failed; sending"
                );
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "booking against the messaging limit failed; sending");
                true
            }
        }
    }

    /// What the claim's tenant sends with on its channel (off the async workers on a miss).
    async fn tenant_channel_of(self: &Arc<Self>, claim: &Claim) -> Result<TenantChannel> {
        let tenant = tenants::unscoped(&claim.flow_id).0;
        if tenant == tenants::DEFAULT_TENANT && claim.sender.is_none() {
            return Ok(TenantChannel::Operator);
        }
        let (runner, tenant, channel, sender) = (
            self.clone(),
            tenant.to_string(),
            claim.channel.clone(),
            claim.sender.clone(),
        );
        tokio::task::spawn_blocking(move || {
            runner.tenant_sender_channel(&tenant, &channel, sender.as_deref())
        })
        .await?
    }

    /// Records a send the host refused itself (nothing left): the tenant's account is
    /// missing or not usable, so the step falls back (or, when the account could not be read,
    /// is tried again soon).
    async fn record_refused(&self, claim: &Claim, reason: HostReason) {
        let busy = reason == HostReason::HostBusy;
        let disposition = if busy {
            Disposition::Retry
        } else {
            Disposition::Fallback
        };
        let c = Classification {
            retry_after_ms: busy.then_some(1_000),
            // The limit moves by itself (the window rolls, Meta raises the tier).
            operator_action: !busy && reason != HostReason::MessagingLimitReached,
            ..host_classification(disposition, reason)
        };
        let what = format!("recording attempt {}", claim.attempt_id);
        let record = Write::Record {
            attempt_id: claim.attempt_id,
            result: SendResult::Classified(c),
            customer_gap: None,
        };
        if self
            .write_retrying(&what, &[0, 100, 500, 2_000, 5_000], record)
            .await
            .is_some()
        {
            self.wake.notify_one();
        }
    }

    /// A tenant's own account whose credentials the provider refused becomes `needs_reauth`,
    /// one the provider restricted `disabled`: its later steps fall back without reaching the
    /// provider, and this one falls back too (nothing was delivered). The change is reported
    /// once, by the node whose conditional update made it. Timeouts, 5xx and every other
    /// answer leave the account alone.
    async fn account_health(self: &Arc<Self>, claim: &Claim, result: SendResult) -> SendResult {
        let SendResult::Classified(mut c) = result else {
            return result;
        };
        let to = match Signal::of(&c) {
            Signal::CredentialsRejected => "needs_reauth",
            Signal::AccountRestricted => "disabled",
            _ => return SendResult::Classified(c),
        };
        let tenant = tenants::unscoped(&claim.flow_id).0.to_string();
        self.flag_account(&tenant, &claim.channel, to, &c).await;
        c.disposition = Disposition::Fallback;
        SendResult::Classified(c)
    }

    /// Moves the tenant's account to `to` (`needs_reauth`, `disabled`) for the refusal `c`;
    /// the node whose conditional update made the change reports it, once: a log line and
    /// the operator's callback queued in the same transaction.
    async fn flag_account(
        self: &Arc<Self>,
        tenant: &str,
        channel: &str,
        to: &'static str,
        c: &Classification,
    ) {
        let (runner, t, ch) = (self.clone(), tenant.to_string(), channel.to_string());
        let event = serde_json::json!({"kind": "account_state", "tenant": tenant,
            "channel": channel, "state": to, "reason": c.reason,
            "provider_code": c.provider_code, "at_ms": now_ms()});
        let changed = tokio::task::spawn_blocking(move || {
            let notify = runner
                .options
                .operator_callback_url
                .as_deref()
                .map(|url| (url, event));
            let changed = runner.store.flag_account(&t, &ch, to, notify, now_ms())?;
            runner.forget_tenant_channels(&t);
            anyhow::Ok(changed)
        })
        .await;
        match changed {
            Ok(Ok(true)) => tracing::warn!(
                tenant,
                channel,
                state = to,
                reason = %c.reason,
                provider_code = c.provider_code.as_deref().unwrap_or(""),
                "operator event: the tenant's account is now {to}; its steps on this channel fall back until the operator puts the account again"
            ),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::error!(error = format!("{e:#}"), "flagging the account failed"),
            Err(e) => tracing::error!(error = %e, "flagging the account failed"),
        }
    }

    /// Account webhooks (Meta sends them to the app's URL) that ban, restrict or remove a
    /// tenant's account disable it, as a refused send would.
    async fn account_webhooks(self: &Arc<Self>, channel: &str, events: &[&WebhookEvent]) {
        for e in events {
            if e.kind != EventKind::AccountUpdate
                || Signal::of(&e.classification) != Signal::AccountRestricted
            {
                continue;
            }
            let Some(account) = e.account_id.clone() else {
                continue;
            };
            let (store, ch) = (self.store.clone(), channel.to_string());
            let owner =
                tokio::task::spawn_blocking(move || store.owner_of(&ch, Some(&account), None))
                    .await;
            if let Ok(Ok(Some(owner))) = owner {
                self.flag_account(&owner, channel, "disabled", &e.classification)
                    .await;
            }
        }
    }

    /// Records that the send is handed over (after a crash it is then `unknown`).
    async fn mark_sending(&self, claim: &Claim) -> bool {
        let attempt_id = claim.attempt_id;
        let what = format!("marking attempt {attempt_id} as sending");
        let mark = Write::MarkSending { attempt_id };
        match self.write_retrying(&what, &[0, 50, 200, 1_000], mark).await {
            Some(Written::Marked(marked)) => return marked,
            Some(other) => tracing::error!(?other, "{what}: the store answered another write"),
            None => {}
        }
        tracing::error!(
            flow_id = %claim.flow_id,
            correlation_id = %claim.correlation_id,
            "the attempt was not sent: the store is unavailable; it is sent after the next start"
        );
        false
    }

    async fn call_channel(&self, channel: &Channel, claim: &Claim) -> SendResult {
        let now = now_ms();
        let request = MessageRequest {
            recipient: claim.recipient.clone(),
            correlation_id: Some(claim.correlation_id.clone()),
            content: claim.content.clone(),
            last_inbound_ms: claim.last_inbound_ms,
            now_ms: now,
            opted_out: claim.opted_out.clone(),
            deadline_ms: policy::send_deadline(claim.status_within_ms, claim.expires_ms, now),
        };
        match channel
            .plugin
            .send(&request, &channel.config(), claim.attempt)
            .await
        {
            Ok(Ok(c)) => SendResult::Classified(c),
            Ok(Err(errors)) => SendResult::NotSent(
                errors
                    .first()
                    .map(|e| format!("{} [{}] {}", e.path, e.code, e.message))
                    .unwrap_or_else(|| "field errors".into()),
            ),
            // The request may have left: never treat it as not sent.
            Err(e) if e.request_sent() => {
                SendResult::MaybeSent(format!("{} plugin: {e}", claim.channel))
            }
            // The host could not run the plugin now (busy): nothing ran, so try again soon,
            // on the same channel, as a new attempt.
            Err(e @ CallError::Host(_)) => SendResult::Classified(host_busy(&e)),
            Err(e) => SendResult::NotSent(format!(
                "{} plugin failed before sending: {e}",
                claim.channel
            )),
        }
    }

    /// Feeds the provider's rate answers back into pacing; returns the customer's gap when a
    /// message reached them (for the other nodes).
    fn pace_after(&self, claim: &Claim, c: &Classification) -> Option<CustomerGap> {
        let now = now_ms();
        let mut pacer = self.pacer.lock().unwrap_or_else(|p| p.into_inner());
        match (Signal::of(c), c.disposition) {
            (Signal::RecipientRateLimited, _) => {
                pacer.pair_limit_hit(&claim.lane, &claim.recipient, now);
            }
            (Signal::SenderRateLimited { wait_ms }, _) => {
                pacer.pause_sender(&claim.lane, now.saturating_add(wait_ms));
                // Refused at the door: the customer got nothing, so no gap is owed.
                pacer.release_customer(&claim.lane, &claim.recipient);
            }
            (_, d) if super::policy::reached(d).is_some() => {
                pacer.customer_ok(&claim.lane, &claim.recipient, now);
                let next_us = pacer.customer_next_us(&claim.lane, &claim.recipient);
                return (next_us > 0).then(|| CustomerGap {
                    channel: claim.lane.clone(),
                    customer: claim.recipient.clone(),
                    next_us,
                });
            }
            (_, Disposition::Retry | Disposition::Fallback | Disposition::Failed) => {
                pacer.release_customer(&claim.lane, &claim.recipient)
            }
            _ => {}
        }
        None
    }

    /// Posts outbox events to their callback URLs, signed, at least once, with back-off. Up to
    /// [`CALLBACKS_IN_FLIGHT`] posts are under way at once and topped up as they finish (a
    /// slow receiver holds up only its own posts); what finished together is recorded in one
    /// transaction. Posts cut off by a stop stay leased, then are due again: never lost.
    async fn deliver_callbacks(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut in_flight = tokio::task::JoinSet::new();
        while !*stop.borrow() {
            let room = CALLBACKS_IN_FLIGHT - in_flight.len();
            let due = if room == 0 {
                Vec::new()
            } else {
                match self
                    .on_store(move |store| store.outbox_due(now_ms(), room))
                    .await
                {
                    Ok(due) => due,
                    Err(e) => {
                        tracing::error!(
                            error = format!("{e:#}"),
                            "reading the callback outbox failed"
                        );
                        Vec::new()
                    }
                }
            };
            let topped_up = !due.is_empty();
            for item in due {
                let runner = self.clone();
                in_flight.spawn(async move { runner.deliver_one(&item).await });
            }
            let pause = Duration::from_millis(if topped_up { 5 } else { 100 });
            let mut results = Vec::new();
            tokio::select! {
                Some(Ok(r)) = in_flight.join_next(), if !in_flight.is_empty() => results.push(r),
                _ = tokio::time::sleep(pause) => {}
                _ = stop.changed() => {}
            }
            while let Some(Ok(r)) = in_flight.try_join_next() {
                results.push(r);
            }
            self.record_callbacks(results).await;
        }
    }

    /// Records finished posts in one transaction.
    async fn record_callbacks(&self, results: Vec<OutboxResult>) {
        if results.is_empty() {
            return;
        }
        let now = now_ms();
        if let Err(e) = self
            .on_store(move |store| store.outbox_results(now, &results))
            .await
        {
            // The events stay leased, then due again: posted again (at least once, never
            // lost).
            tracing::error!(error = format!("{e:#}"), "recording callbacks failed");
        }
    }

    async fn deliver_one(&self, item: &OutboxItem) -> OutboxResult {
        let mut request = self
            .http
            .post(&item.url)
            .header("content-type", "application/json")
            .header("x-flow-event-id", &item.event_id);
        let tenant = tenants::unscoped(&item.flow_id).0.to_string();
        let key = match self.callback_key_async(&tenant).await {
            Ok(key) => key,
            Err(e) => {
                // Not posted unsigned: tried again later, like a receiver that failed.
                return self.callback_retry(item, Some(format!("reading the callback key: {e:#}")));
            }
        };
        let Some(key) = key else {
            return self.callback_retry(item, Some("the tenant has no callback key".into()));
        };
        request = request.header(
            "x-flow-signature",
            crate::services::signing::signature(&key, item.body.as_bytes()),
        );
        let error = match request.body(item.body.clone()).send().await {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => Some(format!("HTTP {}", r.status().as_u16())),
            Err(e) => Some(e.to_string()),
        };
        self.callback_retry(item, error)
    }

    /// A post's result: done, or (with its error) due again after a back-off.
    fn callback_retry(&self, item: &OutboxItem, error: Option<String>) -> OutboxResult {
        // 1 s, 2 s, 4 s … up to 5 min between tries; given up after a day's worth.
        let retry_at = (item.tries < 300).then(|| {
            now_ms().saturating_add(1_000u64.saturating_mul(1 << item.tries.min(8)).min(300_000))
        });
        OutboxResult {
            id: item.id,
            error,
            retry_at,
        }
    }
}

/// `config` with the keys of `overlay` (a JSON object, a tenant's account settings) in place
/// of its settings' own. The operator's template catalog is never a tenant's: Meta approves
/// templates per WABA, so the tenant's catalog is what its own settings carry.
fn with_settings(config: &ChannelConfig, overlay: &str) -> ChannelConfig {
    let mut settings = match serde_json::from_str::<Value>(&config.settings) {
        Ok(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    settings.remove(CATALOG_KEY);
    if let Ok(Value::Object(extra)) = serde_json::from_str::<Value>(overlay) {
        settings.extend(extra);
    }
    ChannelConfig {
        api_base: config.api_base.clone(),
        settings: Value::Object(settings).to_string(),
    }
}

/// The settings of a tenant's own account with its status callback: a provider told per
/// message where to post statuses (Twilio) posts a tenant's to `{the operator's}/{tenant}`,
/// where the tenant's own secret checks them, unless the account's settings name one.
fn tenant_status_callback(settings: &str, account_settings: &str, tenant: &str) -> String {
    const KEY: &str = "status_callback";
    let named = serde_json::from_str::<Value>(account_settings)
        .ok()
        .is_some_and(|v| v.get(KEY).is_some());
    match serde_json::from_str::<Value>(settings) {
        Ok(Value::Object(mut map)) if !named => {
            let Some(mut url) = map
                .get(KEY)
                .and_then(Value::as_str)
                .and_then(|u| url::Url::parse(u).ok())
            else {
                return settings.to_string();
            };
            if let Ok(mut path) = url.path_segments_mut() {
                path.pop_if_empty().push(tenant);
            }
            map.insert(KEY.into(), url.to_string().into());
            Value::Object(map).to_string()
        }
        _ => settings.to_string(),
    }
}

/// `config` with the account's synced templates after whatever its own settings seed the
/// catalog with (a later definition of the same template replaces an earlier one).
fn with_synced_catalog(
    config: &ChannelConfig,
    templates: &[crate::flow::store::TemplateRecord],
) -> ChannelConfig {
    let mut settings = match serde_json::from_str::<Value>(&config.settings) {
        Ok(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let mut catalog = match settings.remove(CATALOG_KEY) {
        Some(Value::Array(docs)) => docs,
        Some(doc) => vec![doc],
        None => Vec::new(),
    };
    catalog.push(super::accounts::catalog_document(templates));
    settings.insert(CATALOG_KEY.into(), Value::Array(catalog));
    ChannelConfig {
        api_base: config.api_base.clone(),
        settings: Value::Object(settings).to_string(),
    }
}

/// A tenant's sealed callback key, opened (none without a master key or a key).
fn read_tenant_key(
    store: &Store,
    vault: Option<&Vault>,
    tenant: &str,
) -> Result<Option<CallbackKey>> {
    match vault {
        Some(vault) => Ok(store
            .tenant_secret(vault, tenant, TENANT_CALLBACK_SECRET)?
            .map(Arc::new)),
        None => Ok(None),
    }
}

/// Callback posts under way at once.
const CALLBACKS_IN_FLIGHT: usize = 256;

/// A channel's settings without its template catalog: what checks a content's shape.
fn shape_only(config: &ChannelConfig) -> ChannelConfig {
    let settings = match serde_json::from_str::<Value>(&config.settings) {
        Ok(Value::Object(mut settings)) => {
            settings.remove(CATALOG_KEY);
            Value::Object(settings).to_string()
        }
        _ => config.settings.clone(),
    };
    ChannelConfig {
        api_base: config.api_base.clone(),
        settings,
    }
}

/// A channel's field error about a step, as a flow's field error: a path into the message
/// (`/content/…`) becomes a path into the step (`/steps/1/content/…`).
/// A channel's field error about a step, at the flow's pointer: the step's content, or its
/// recipient (the step's `to`, else the flow's `recipient`).
fn content_error(
    index: usize,
    step: &super::spec::Step,
    e: &crate::contract::types::FieldError,
) -> SpecError {
    let channel = &step.channel;
    if e.path == "/recipient" {
        return SpecError {
            path: match step.to {
                Some(_) => format!("/steps/{index}/to"),
                None => "/recipient".into(),
            },
            code: "invalid_recipient",
            message: format!("{channel} cannot send to it ({}): {}", e.code, e.message),
        };
    }
    let path = match e.path.strip_prefix("/content") {
        Some(rest) => format!("/steps/{index}/content{rest}"),
        None => format!("/steps/{index}/content"),
    };
    SpecError {
        path,
        code: "invalid_content",
        message: format!(
            "{channel} cannot send this ({} at {}): {}",
            e.code, e.path, e.message
        ),
    }
}

/// A retry classification for a send the host could not start.
fn host_busy(e: &CallError) -> Classification {
    Classification {
        provider_details: Some(e.to_string()),
        retry_after_ms: Some(250),
        ..host_classification(Disposition::Retry, HostReason::HostBusy)
    }
}

/// A classification the host makes itself: a disposition and its reason, nothing from a
/// provider.
fn host_classification(disposition: Disposition, reason: HostReason) -> Classification {
    Classification {
        disposition,
        reason: reason.as_str().into(),
        provider_code: None,
        provider_title: None,
        provider_details: None,
        provider_trace_id: None,
        retry_after_ms: None,
        operator_action: false,
        provider_message_id: None,
    }
}

/// Sleeps until `at_ms` (ms since the epoch), at once if that has passed.
async fn sleep_until_ms(at_ms: u64) {
    let wait = at_ms.saturating_sub(now_ms());
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenants_own_account_gets_its_own_status_callback_unless_it_names_one() {
        let operator = r#"{"from":"+1","status_callback":"https://h.example/webhooks/sms?x=1"}"#;
        let own: Value =
            serde_json::from_str(&tenant_status_callback(operator, "{}", "acme")).unwrap();
        assert_eq!(
            own["status_callback"],
            "https://h.example/webhooks/sms/acme?x=1"
        );
        let named = r#"{"status_callback":"https://mine.example/cb"}"#;
        assert_eq!(tenant_status_callback(operator, named, "acme"), operator);
        assert_eq!(tenant_status_callback("{}", "{}", "acme"), "{}");
    }
}
