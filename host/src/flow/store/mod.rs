//! The flow store: every transition is one transaction that reads the flow's position, asks
//! the [`policy`](super::policy) and writes the answer, the timeline and the outbox together.
//! The transitions ([`transitions`]) are written once, over a driver of named operations
//! ([`driver::Ops`]) with one implementation per database ([`sqlite`], [`postgres`]). Nothing here does network I/O, so no lock or transaction is ever held
//! across a send.
//!
//! A send is claimed in one transaction (the attempt row is written as `claimed`, with its
//! correlation id), marked `sending` in another just before it is handed to the plugin (from
//! then on the request may leave), and recorded in a third. After a crash
//! ([`Store::recover`]) an attempt left `sending` becomes `unknown` — never "not sent", never
//! resent; one left `claimed` never left the host, and is sent again as a new attempt.

use super::pacing::Pacer;
use super::policy::FlowState;
use super::spec::FlowSpec;
use crate::contract::types::{Classification, WebhookEvent};
use anyhow::Result;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

mod customers;
pub mod driver;
mod postgres;
mod sqlite;
mod tenants;
pub use tenants::{AccountFactsPut, AccountPut, Booking, NewAccount};
mod transitions;

pub use driver::{
    AccountRecord, AttemptView, Backend, FlowView, OutboxItem, STATEMENTS, SenderRecord,
    TRANSACTIONS, TemplateChange, TemplateRecord, TimelineEntry, is_postgres_url, redact,
};
use driver::{Ops, TxKind};
use transitions::Tx;
pub use transitions::describe;

/// The lane of flows waiting only for time (status deadlines, unknown outcomes); flows that
/// wait to send are in their channel's lane, so a channel at its rate never holds up timers
/// or other channels.
pub const TIMER_LANE: &str = "timer";

fn lane_for(spec: &FlowSpec, step: usize, state: FlowState) -> Option<std::borrow::Cow<'_, str>> {
    match state {
        FlowState::Ready | FlowState::WaitingRetry => Some(
            spec.steps
                .get(step)
                .map_or(std::borrow::Cow::Borrowed(TIMER_LANE), |s| s.lane()),
        ),
        FlowState::WaitingStatus | FlowState::WaitingUnknown => {
            Some(std::borrow::Cow::Borrowed(TIMER_LANE))
        }
        _ => None,
    }
}

/// Where an attempt is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptPhase {
    /// Booked by the dispatcher (pacing slot, correlation id); nothing handed over yet.
    Claimed,
    /// Handed to the plugin: the request may leave at any moment.
    Sending,
    /// The answer (or the crash rule) is recorded.
    Recorded,
}

impl AttemptPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptPhase::Claimed => "claimed",
            AttemptPhase::Sending => "sending",
            AttemptPhase::Recorded => "recorded",
        }
    }

    pub fn parse(s: &str) -> Option<AttemptPhase> {
        [
            AttemptPhase::Claimed,
            AttemptPhase::Sending,
            AttemptPhase::Recorded,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }
}

/// Milliseconds as SQLite integers: every value the spec admits fits; larger ones saturate.
fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Until when a customer gets no further message on a channel (µs since the epoch), as a
/// send's answer set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerGap {
    pub channel: String,
    pub customer: String,
    pub next_us: i64,
}

/// A send the dispatcher must perform: claimed, recorded as `sending`.
#[derive(Debug, Clone)]
pub struct Claim {
    pub flow_id: String,
    pub attempt_id: i64,
    pub channel: String,
    pub attempt: u32,
    pub correlation_id: String,
    pub recipient: String,
    pub content: String,
    pub last_inbound_ms: Option<u64>,
    /// Kinds of message the customer stopped on this channel (e.g. `marketing`).
    pub opted_out: Vec<String>,
    /// When the pacer lets it leave (ms since the epoch).
    pub slot_ms: u64,
    /// The sender the step names (`from`), resolved to its id.
    pub sender: Option<String>,
    /// Its pacing lane: the channel, or `channel#sender`.
    pub lane: String,
    /// How long after the answer the step waits for its status
    /// ([`Step::status_within_ms`](crate::flow::spec::Step::status_within_ms)).
    pub status_within_ms: Option<u64>,
    /// When the flow expires (ms since the epoch).
    pub expires_ms: Option<u64>,
}

/// What became of a claimed send.
#[derive(Debug, Clone)]
pub enum SendResult {
    /// The channel classified the provider's answer.
    Classified(Classification),
    /// Refused before anything left (field errors, host policy, the plugin failing early).
    NotSent(String),
    /// The call failed after the request may have left: the outcome is unknown.
    MaybeSent(String),
    /// The host stopped before handing the request over: it never left; send it again.
    NeverLeft(String),
}

/// Outcome of submitting one flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    Created,
    /// Same id, same spec: the earlier submission stands (a client retry).
    AlreadyExists,
    /// Same id, another spec.
    Conflict,
}

/// A batch with a conflicting id, carried out of its transaction so that it rolls back.
#[derive(Debug, thiserror::Error)]
#[error("a flow id in the batch is taken by another spec")]
struct BatchRefused(Vec<Submitted>);

/// What a callback event reports (its `kind` in the body the flow engine receives).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackKind {
    /// An attempt's answer was recorded.
    Attempt,
    /// A status for the flow's current attempt.
    Status,
    /// The step's `wait_for` was reached: the flow is done.
    Done,
    /// The TTL passed.
    Expired,
    /// The flow left a channel for the next one.
    FallingBack,
    /// No channel left.
    Exhausted,
    /// A delivery reported for an attempt the flow had moved on from.
    PossibleDuplicate,
    /// Someone else handles the conversation; no more automatic sends.
    HandedOver,
}

impl CallbackKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackKind::Attempt => "attempt",
            CallbackKind::Status => "status",
            CallbackKind::Done => "done",
            CallbackKind::Expired => "expired",
            CallbackKind::FallingBack => "falling_back",
            CallbackKind::Exhausted => "exhausted",
            CallbackKind::PossibleDuplicate => "possible_duplicate",
            CallbackKind::HandedOver => "handed_over",
        }
    }
}

/// One database connection.
enum Conn {
    Sqlite(rusqlite::Connection),
    Postgres(Box<postgres::PgConn>),
}

impl Conn {
    /// Opens (creating if needed) and migrates: a PostgreSQL URL, or a SQLite file.
    fn open(location: &str) -> Result<Conn> {
        if is_postgres_url(location) {
            return Ok(Conn::Postgres(Box::new(postgres::PgConn::open(location)?)));
        }
        Ok(Conn::Sqlite(sqlite::open(location)?))
    }

    fn backend(&self) -> Backend {
        match self {
            Conn::Sqlite(_) => Backend::Sqlite,
            Conn::Postgres(_) => Backend::Postgres,
        }
    }

    fn transaction<R>(&mut self, kind: TxKind, f: impl FnOnce(&dyn Ops) -> Result<R>) -> Result<R> {
        match self {
            Conn::Sqlite(conn) => sqlite::transaction(conn, kind, f),
            Conn::Postgres(pg) => pg.transaction(kind, f),
        }
    }
}

/// The flow store: SQLite (embedded, one node) or PostgreSQL (several nodes), the same
/// transitions on both. Synchronous: call it from a blocking thread (`spawn_blocking`), never
/// from a task on a runtime worker.
pub struct Store {
    /// One connection for SQLite (its writers queue anyway), a few for PostgreSQL.
    conns: Vec<Mutex<Conn>>,
    next_conn: AtomicUsize,
    backend: Backend,
    /// This node's name in leases.
    node: String,
    /// How long a claimed send belongs to this node before another may take it over.
    lease_ms: u64,
}

/// Connections a PostgreSQL store keeps.
const POSTGRES_CONNECTIONS: usize = 4;
/// How long a claim is leased when nobody says otherwise: past the longest plugin call.
pub const DEFAULT_LEASE_MS: u64 = 120_000;
/// The lease a send must still have to be handed over: the longest plugin call (30 s) and a
/// second to record its answer. (`serve` refuses leases under 35 s.)
pub const HANDOVER_MARGIN_MS: u64 = 31_000;

impl Store {
    /// Opens (or creates) the store: a `postgres://` URL, or a SQLite file (`:memory:` keeps
    /// it in memory). Migrations are applied first.
    pub fn open(location: &str) -> Result<Store> {
        Self::open_with(location, DEFAULT_LEASE_MS)
    }

    /// [`Store::open`] with the lease of claimed sends. Synchronous, like every call here: on
    /// a runtime, open it through `spawn_blocking`.
    pub fn open_with(location: &str, lease_ms: u64) -> Result<Store> {
        let first = Conn::open(location)?;
        let backend = first.backend();
        let mut conns = vec![Mutex::new(first)];
        if backend == Backend::Postgres {
            for _ in 1..POSTGRES_CONNECTIONS {
                conns.push(Mutex::new(Conn::open(location)?));
            }
        }
        Ok(Store {
            conns,
            next_conn: AtomicUsize::new(0),
            backend,
            node: format!("node-{}", uuid::Uuid::now_v7()),
            lease_ms,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// This node's name in leases.
    pub fn node(&self) -> &str {
        &self.node
    }

    fn with_tx<R>(&self, now: u64, f: impl FnOnce(&Tx) -> Result<R>) -> Result<R> {
        self.in_tx(TxKind::Write, now, f)
    }

    /// A transaction that only reads: no write lock, so readers never queue behind writers.
    fn read<R>(&self, f: impl FnOnce(&dyn Ops) -> Result<R>) -> Result<R> {
        self.in_tx(TxKind::Read, 0, |t| f(t.ops))
    }

    fn in_tx<R>(&self, kind: TxKind, now: u64, f: impl FnOnce(&Tx) -> Result<R>) -> Result<R> {
        let start = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let n = self.conns.len();
        // A free connection if there is one, else wait for the next in turn.
        let mut conn = (0..n)
            .find_map(|i| self.conns[(start + i) % n].try_lock().ok())
            .unwrap_or_else(|| {
                self.conns[start % n]
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
            });
        conn.transaction(kind, |ops| {
            let t = Tx::new(ops, now, self.backend, &self.node, self.lease_ms);
            let r = f(&t)?;
            t.finish()?;
            Ok(r)
        })
    }

    /// Stores new flows, due at once, in one transaction: all of them, or, when any id is
    /// taken by another spec (in the store or earlier in the batch), none. The outcomes say
    /// which; after a conflict nothing was written, so nothing is ever sent for a refused batch.
    pub fn submit(&self, flows: &[(String, FlowSpec)], now: u64) -> Result<Vec<Submitted>> {
        let stored = self.with_tx(now, |t| {
            let mut outcomes = Vec::with_capacity(flows.len());
            let mut in_batch: HashMap<&str, &FlowSpec> = HashMap::new();
            for (id, spec) in flows {
                let outcome = match in_batch.get(id.as_str()) {
                    Some(earlier) if *earlier == spec => Submitted::AlreadyExists,
                    Some(_) => Submitted::Conflict,
                    None => t.submit(id, spec)?,
                };
                in_batch.entry(id).or_insert(spec);
                outcomes.push(outcome);
            }
            if outcomes.contains(&Submitted::Conflict) {
                // An error rolls the transaction back; the outcomes travel inside it.
                return Err(BatchRefused(outcomes).into());
            }
            Ok(outcomes)
        });
        match stored {
            Err(e) => match e.downcast::<BatchRefused>() {
                Ok(BatchRefused(outcomes)) => Ok(outcomes),
                Err(e) => Err(e),
            },
            ok => ok,
        }
    }

    /// After a crash (or, on PostgreSQL, once another node's lease has passed): every
    /// attempt left `sending` may have gone out, so it becomes `unknown` and its flow waits
    /// for a status; one left `claimed` never left, and is sent again once. Returns how many.
    pub fn recover(&self, now: u64) -> Result<usize> {
        self.with_tx(now, |t| {
            let mut taken = 0;
            for id in t.ops.stranded_attempts(ms(now))? {
                taken += usize::from(t.take_over(id)?);
            }
            Ok(taken)
        })
    }

    /// Fires due timers and claims up to `limit` due sends, lane by lane, in one
    /// transaction. A channel's lane gives only as many as its pacing slots allow within
    /// `horizon_ms`; each claim carries its slot.
    pub fn claim_due(
        &self,
        now: u64,
        limit: usize,
        channels: &[String],
        pacer: &Mutex<Pacer>,
        horizon_ms: u64,
    ) -> Result<Vec<Claim>> {
        self.with_tx(now, |t| {
            let mut pacer = pacer.lock().unwrap_or_else(|p| p.into_inner());
            let mut claims = Vec::new();
            let lanes = std::iter::once(TIMER_LANE).chain(channels.iter().map(String::as_str));
            for lane in lanes {
                let room = limit.saturating_sub(claims.len());
                let take = if lane == TIMER_LANE {
                    room
                } else {
                    room.min(pacer.capacity(lane, now, horizon_ms))
                };
                if take == 0 {
                    continue;
                }
                for id in t.due(lane, take)? {
                    if let Some(c) = t.wake(&id, &mut pacer, horizon_ms)? {
                        claims.push(c);
                    }
                }
            }
            Ok(claims)
        })
    }

    /// Marks a claimed send as handed over: from now on, after a crash it is `unknown`.
    /// False if it was no longer claimed.
    ///
    /// On PostgreSQL only while the lease has room for the longest plugin call
    /// ([`HANDOVER_MARGIN_MS`]): a node that stalled between claim and send (frozen, cut off)
    /// must not send what another node may take over meanwhile; the send stays `claimed`, and
    /// the node that takes it over sends it, once.
    pub fn mark_sending(&self, attempt_id: i64, now: u64) -> Result<bool> {
        self.with_tx(now, |t| t.mark_sending(attempt_id))
    }

    /// Records what became of a claimed send and moves the flow on.
    pub fn record(&self, attempt_id: i64, result: &SendResult, now: u64) -> Result<()> {
        self.record_paced(attempt_id, result, now, None)
    }

    /// [`Store::record`], and where the answer moved the customer's gap: nodes sharing
    /// PostgreSQL then all keep it (the watermark booked at the slot is shorter when the
    /// send left late).
    pub fn record_paced(
        &self,
        attempt_id: i64,
        result: &SendResult,
        now: u64,
        customer_gap: Option<&CustomerGap>,
    ) -> Result<()> {
        self.with_tx(now, |t| t.record_paced(attempt_id, result, customer_gap))
    }

    /// Applies webhook events from one channel. Redeliveries (same dedupe key) and statuses
    /// of lower precedence than the attempt holds change nothing. Besides statuses: any event
    /// that opens the service window records the customer's last inbound time; a handover
    /// stops the customer's open flows; opt-outs and resumes are kept per customer and
    /// category; an identity change moves what is kept to the new identifier.
    /// Returns the indices of the events seen for the first time.
    pub fn apply_statuses(
        &self,
        channel: &str,
        events: &[WebhookEvent],
        now: u64,
    ) -> Result<Vec<usize>> {
        self.apply_events(channel, None, events, now)
    }

    /// [`Store::apply_statuses`] for a delivery that came in on `tenant`'s own route
    /// (`/webhooks/{channel}/{tenant}`, checked with that tenant's secrets): its events are
    /// that tenant's, never another's (one naming an account another tenant owns is dropped).
    /// `None`: the channel's shared route, where the account an event names decides.
    pub fn apply_events(
        &self,
        channel: &str,
        tenant: Option<&str>,
        events: &[WebhookEvent],
        now: u64,
    ) -> Result<Vec<usize>> {
        // One transaction per event: each locks only its own flow, so two deliveries naming
        // the same flows in another order never wait on each other crosswise. An error stops
        // here: the provider redelivers, and what was applied is then a redelivery.
        let mut fresh = Vec::new();
        for (i, e) in events.iter().enumerate() {
            if self.with_tx(now, |t| t.apply_event(channel, tenant, e))? {
                fresh.push(i);
            }
        }
        Ok(fresh)
    }

    /// A flow's state.
    pub fn state(&self, id: &str) -> Result<Option<FlowState>> {
        self.read(|ops| ops.flow_state(id))
    }

    /// How many flows are in each state.
    pub fn counts(&self) -> Result<Vec<(String, u64)>> {
        let counts = self.read(|ops| ops.state_counts())?;
        Ok(counts
            .into_iter()
            .map(|(s, n)| (s.as_str().to_string(), n))
            .collect())
    }

    /// Flows not yet final.
    pub fn open_flows(&self) -> Result<u64> {
        let counts = self.read(|ops| ops.state_counts())?;
        Ok(counts
            .into_iter()
            .filter(|(s, _)| !s.is_final())
            .map(|(_, n)| n)
            .sum())
    }

    /// The flow's position, attempts and timeline (`GET /flows/{id}` renders them).
    pub fn flow_view(&self, id: &str) -> Result<Option<FlowView>> {
        self.read(|ops| ops.flow_view(id))
    }

    /// Every send answered `accepted`: when its flow was created and when the answer was
    /// recorded (ms since the epoch), for the load bench.
    pub fn accepted_sends(&self) -> Result<Vec<(i64, i64)>> {
        self.read(|ops| ops.accepted_sends())
    }

    /// Callback deliveries due now, leased to this node (another node skips them until the
    /// lease passes, so each goes out from one node; at least once if this node dies). One
    /// statement: the due rows are picked (locked, skipping rows another node holds) and
    /// leased at once.
    pub fn outbox_due(&self, now: u64, limit: usize) -> Result<Vec<OutboxItem>> {
        self.with_tx(now, |t| {
            t.ops.lease_due_callbacks(
                ms(now),
                i64::try_from(limit).unwrap_or(i64::MAX),
                ms(now.saturating_add(t.lease_ms)),
            )
        })
    }

    /// Records a round of callback deliveries in one transaction: the delivered ones in one
    /// statement, each failed one with its next try (`None`: give up) and its error.
    pub fn outbox_results(&self, now: u64, results: &[OutboxResult]) -> Result<()> {
        if results.is_empty() {
            return Ok(());
        }
        self.with_tx(now, |t| {
            let delivered: Vec<i64> = results
                .iter()
                .filter(|r| r.error.is_none())
                .map(|r| r.id)
                .collect();
            t.ops.callbacks_delivered(&delivered, ms(now))?;
            for r in results {
                if let Some(e) = &r.error {
                    t.ops.callback_failed(r.id, r.retry_at.map(ms), e)?;
                }
            }
            Ok(())
        })
    }
}

/// A write the runner may group with others in one transaction ([`Store::write_batch`]).
#[derive(Debug, Clone)]
pub enum Write {
    /// [`Store::mark_sending`].
    MarkSending { attempt_id: i64 },
    /// [`Store::record_paced`].
    Record {
        attempt_id: i64,
        result: SendResult,
        customer_gap: Option<CustomerGap>,
    },
    /// [`Store::apply_events`].
    Events {
        channel: String,
        /// The tenant whose own route the delivery came in on, checked with its secrets.
        tenant: Option<String>,
        events: std::sync::Arc<Vec<WebhookEvent>>,
    },
}

/// What a [`Write`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// Whether the send was still claimed (and is now `sending`).
    Marked(bool),
    Recorded,
    /// The indices of the events seen for the first time.
    Applied(Vec<usize>),
}

impl Store {
    /// Several writes in one transaction, in their order (group commit: one BEGIN/COMMIT and
    /// one write of the changed pages for all of them), each result as its own call would
    /// have answered. Nothing is decided differently: on SQLite the writes would have queued
    /// for the one writer anyway. If the shared transaction fails, each write is tried again
    /// in a transaction of its own, so a failure is only ever its own write's.
    ///
    /// On PostgreSQL give it one write at a time: several flows' row locks in one
    /// transaction would break the one lock order between nodes.
    pub fn write_batch(&self, now: u64, writes: &[Write]) -> Vec<Result<Written>> {
        if writes.len() > 1 {
            let together = self.with_tx(now, |t| {
                writes
                    .iter()
                    .map(|w| t.write(w))
                    .collect::<Result<Vec<_>>>()
            });
            if let Ok(all) = together {
                return all.into_iter().map(Ok).collect();
            }
        }
        writes
            .iter()
            .map(|w| match w {
                // One transaction per event, as apply_statuses does.
                Write::Events {
                    channel,
                    tenant,
                    events,
                } => self
                    .apply_events(channel, tenant.as_deref(), events, now)
                    .map(Written::Applied),
                _ => self.with_tx(now, |t| t.write(w)),
            })
            .collect()
    }
}

/// How one callback delivery went.
#[derive(Debug, Clone)]
pub struct OutboxResult {
    pub id: i64,
    /// Why it failed (`None`: delivered).
    pub error: Option<String>,
    /// When to try again after a failure (`None`: give up).
    pub retry_at: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::types::{Disposition, EventKind};
    use crate::flow::pacing::ChannelPacing;
    use serde_json::{Value, json};
    use std::collections::HashMap;

    /// A flow as `GET /flows/{id}` shows it, for the assertions.
    trait FlowJson {
        fn status(&self, id: &str) -> Result<Option<Value>>;
    }

    impl FlowJson for Store {
        fn status(&self, id: &str) -> Result<Option<Value>> {
            self.flow_view(id)?
                .map(|v| crate::server::flow_json(&v))
                .transpose()
        }
    }

    /// The write races between nodes, forced (PostgreSQL).
    mod races;

    const NOW: u64 = 1_800_000_000_000;
    /// Past the lease of anything claimed at `NOW`.
    const AFTER_LEASE: u64 = NOW + DEFAULT_LEASE_MS + 1;
    const STATUS_NAMES: [&str; 5] = ["accepted", "sent", "failed", "delivered", "read"];

    fn sqlite_store() -> Store {
        Store::open(":memory:").unwrap()
    }

    fn postgres_store() -> Store {
        Store::open(&host_testkit::postgres::fresh_database()).unwrap()
    }

    /// Each behavioural test runs against SQLite and against PostgreSQL.
    macro_rules! on_both_stores {
        ($($name:ident),* $(,)?) => {
            mod sqlite {
                $(#[test] fn $name() { super::$name(super::sqlite_store()) })*
            }
            mod postgres {
                $(#[test] fn $name() { super::$name(super::postgres_store()) })*
            }
        };
    }

    /// Reads take no write lock: while another connection holds SQLite's write lock, a flow's
    /// status, its state and the counts are still read (they used to queue behind the writer
    /// and fail once the busy timeout ran out).
    #[test]
    fn reads_do_not_wait_for_a_writer_on_sqlite() {
        let dir = std::env::temp_dir().join(format!("read-tx-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("flows.sqlite");
        let store = Store::open(path.to_str().unwrap()).unwrap();
        store.submit(&[("f1".into(), spec())], NOW).unwrap();
        let writer = rusqlite::Connection::open(&path).unwrap();
        writer.execute_batch("BEGIN IMMEDIATE").unwrap();
        assert!(store.status("f1").unwrap().is_some());
        assert!(store.state("f1").unwrap().is_some());
        assert!(!store.counts().unwrap().is_empty());
        writer.execute_batch("ROLLBACK").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A database from before tenants (migrated to V3, its flows and customers written) is
    /// the default tenant's once V4 applies: nothing rewritten, nothing lost.
    #[test]
    fn a_single_business_database_from_before_tenants_is_the_default_tenants_with_nothing_lost() {
        let dir =
            std::env::temp_dir().join(format!("pre-tenants-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("flows.sqlite");
        let path = path.to_str().unwrap();
        {
            let s = Store::open(path).unwrap();
            let mut refused = status("wamid.m", "x", Disposition::Fallback, 2);
            refused.recipient = Some("+15550100001".into());
            refused.classification.reason = "recipient_opted_out".into();
            refused.classification.provider_code = Some("131050".into());
            s.apply_statuses("whatsapp", &[refused], NOW).unwrap();
            s.submit(&[("order-1".into(), spec())], NOW).unwrap();
        }
        // Back to V3: V4 and V5 only add tables (and V5 columns to V4's), so dropping them
        // and their history rows is the database as the last single-business release left it.
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch(
            "DROP TABLE initiated_customers; DROP TABLE unrouted_events;
             DROP TABLE channel_templates; DROP TABLE channel_senders;
             DROP TABLE catalog_documents;
             DROP TABLE channel_accounts; DROP TABLE tenant_secrets; DROP TABLE vault_check;
             DROP TABLE api_tokens; DROP TABLE tenants;
             DELETE FROM refinery_schema_history WHERE version >= 4;",
        )
        .unwrap();
        drop(conn);
        let s = Store::open(path).unwrap();
        assert_eq!(
            s.tenant(crate::tenants::DEFAULT_TENANT)
                .unwrap()
                .unwrap()
                .id,
            "default"
        );
        assert_eq!(s.state("order-1").unwrap(), Some(FlowState::Ready));
        assert!(s.flow_view("order-1").unwrap().is_some());
        // The customer's stop still holds for the default tenant's flow.
        assert_eq!(claim_one(&s, NOW).opted_out, ["marketing"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// One node's pacer for WhatsApp at `rate` per second (and the 6 s customer gap).
    fn whatsapp_pacer(rate: f64) -> Mutex<Pacer> {
        Mutex::new(Pacer::new(HashMap::from([(
            "whatsapp".to_string(),
            ChannelPacing::whatsapp(rate),
        )])))
    }

    /// Two nodes on one PostgreSQL database, each with its own pacer: together they keep one
    /// sender rate and one gap per customer.
    #[test]
    fn two_nodes_share_the_sender_rate_and_the_customer_gap() {
        let url = host_testkit::postgres::fresh_database();
        let (a, b) = (Store::open(&url).unwrap(), Store::open(&url).unwrap());
        let (pa, pb) = (whatsapp_pacer(10.0), whatsapp_pacer(10.0));
        let flows: Vec<(String, FlowSpec)> = (0..40)
            .map(|i| {
                let mut f = spec();
                f.recipient = format!("+1555010{i:04}");
                (format!("f{i}"), f)
            })
            .collect();
        a.submit(&flows, NOW).unwrap();
        let mut slots = Vec::new();
        for round in 0..6 {
            let (store, pacer) = if round % 2 == 0 { (&a, &pa) } else { (&b, &pb) };
            for c in store
                .claim_due(NOW, 100, &channels(), pacer, 1_000)
                .unwrap()
            {
                slots.push(c.slot_ms);
            }
        }
        slots.sort();
        // 10 per second, spaced 100 ms, whichever node booked them: 11 fit in [NOW, NOW + 1 s].
        assert_eq!(slots.len(), 11, "{slots:?}");
        assert!(slots.windows(2).all(|w| w[1] - w[0] >= 100), "{slots:?}");
        // One customer, two flows, two nodes: the second waits the customer's 6 s.
        let url = host_testkit::postgres::fresh_database();
        let (a, b) = (Store::open(&url).unwrap(), Store::open(&url).unwrap());
        let mut same = spec();
        same.recipient = "+15550109999".into();
        a.submit(
            &[("s1".into(), same.clone()), ("s2".into(), same)],
            NOW + 10_000,
        )
        .unwrap();
        let first = a.claim_due(NOW + 10_000, 1, &channels(), &pa, 0).unwrap();
        let second = b.claim_due(NOW + 10_000, 100, &channels(), &pb, 0).unwrap();
        let to_same = |cs: &[Claim]| cs.iter().filter(|c| c.recipient == "+15550109999").count();
        assert_eq!(to_same(&first) + to_same(&second), 1);
    }

    /// A send that left late and was answered 3 s after its slot: the other node holds the
    /// customer a full gap from the answer too, not only from the slot it saw booked.
    #[test]
    fn a_late_answer_holds_the_customer_on_every_node() {
        let url = host_testkit::postgres::fresh_database();
        let (a, b) = (Store::open(&url).unwrap(), Store::open(&url).unwrap());
        let (pa, pb) = (whatsapp_pacer(10.0), whatsapp_pacer(10.0));
        let mut same = spec();
        same.recipient = "+15550109998".into();
        a.submit(&[("first".into(), same.clone())], NOW).unwrap();
        let first = a.claim_due(NOW, 1, &channels(), &pa, 0).unwrap();
        assert_eq!(first.len(), 1);
        a.mark_sending(first[0].attempt_id, NOW).unwrap();
        let answered = NOW + 3_000;
        let next_ms = {
            let mut p = pa.lock().unwrap();
            p.customer_ok("whatsapp", &same.recipient, answered);
            p.customer_next_us("whatsapp", &same.recipient)
        };
        assert_eq!(next_ms, ((answered + 6_000) * 1_000) as i64);
        let gap = CustomerGap {
            channel: "whatsapp".into(),
            customer: same.recipient.clone(),
            next_us: next_ms,
        };
        let accepted = classification(Disposition::Accepted, "accepted", Some("wamid.1"));
        a.record_paced(
            first[0].attempt_id,
            &SendResult::Classified(accepted),
            answered,
            Some(&gap),
        )
        .unwrap();
        b.submit(&[("second".into(), same)], NOW + 6_500).unwrap();
        let early = b.claim_due(NOW + 6_500, 10, &channels(), &pb, 0).unwrap();
        assert!(early.is_empty(), "sent 3.5 s after the answer: {early:?}");
        let on_time = b.claim_due(NOW + 9_000, 10, &channels(), &pb, 0).unwrap();
        assert_eq!(on_time.len(), 1, "{on_time:?}");
    }

    /// Callback events: each due event leased to one node at a time; a round's results land
    /// together; a failed delivery comes back at its next try, a delivered one never.
    fn a_callback_is_leased_to_one_node_and_a_failed_one_comes_back_at_its_next_try(a: Store) {
        a.with_tx(NOW, |t| {
            for i in 0..3 {
                t.ops.enqueue_callbacks(&[driver::NewCallback {
                    event_id: format!("e{i}"),
                    flow_id: "f".into(),
                    url: "http://127.0.0.1/cb".into(),
                    body: "{}".into(),
                    next_at: ms(NOW),
                }])?;
            }
            Ok(())
        })
        .unwrap();
        let due = a.outbox_due(NOW, 2).unwrap();
        assert_eq!(due.len(), 2, "{due:?}");
        let rest = a.outbox_due(NOW, 10).unwrap();
        assert_eq!(
            rest.len(),
            1,
            "the leased two are not handed out again: {rest:?}"
        );
        assert!(a.outbox_due(NOW, 10).unwrap().is_empty());
        let results = vec![
            OutboxResult {
                id: due[0].id,
                error: None,
                retry_at: None,
            },
            OutboxResult {
                id: due[1].id,
                error: Some("HTTP 500".into()),
                retry_at: Some(NOW + 1_000),
            },
            OutboxResult {
                id: rest[0].id,
                error: None,
                retry_at: None,
            },
        ];
        a.outbox_results(NOW, &results).unwrap();
        assert!(a.outbox_due(NOW + 999, 10).unwrap().is_empty());
        let again = a.outbox_due(NOW + 1_000, 10).unwrap();
        assert_eq!(again.len(), 1, "{again:?}");
        assert_eq!((again[0].id, again[0].tries), (due[1].id, 1));
        assert!(
            a.outbox_due(AFTER_LEASE * 2, 10)
                .unwrap()
                .iter()
                .all(|i| i.id == due[1].id)
        );
    }

    /// The values each state column must take (the host writes them) and one it must refuse.
    fn state_column_cases() -> Vec<(&'static str, String, bool)> {
        use crate::json::disposition_name;
        use Disposition::*;
        let mut cases: Vec<(&str, String, bool)> = FlowState::ALL
            .iter()
            .map(|s| {
                (
                    "UPDATE flows SET state = '{}'",
                    s.as_str().to_string(),
                    true,
                )
            })
            .collect();
        for p in [
            AttemptPhase::Claimed,
            AttemptPhase::Sending,
            AttemptPhase::Recorded,
        ] {
            cases.push(("UPDATE attempts SET phase = '{}'", p.as_str().into(), true));
        }
        for d in [
            Accepted, Sent, Delivered, Read, Retry, Fallback, Failed, Unknown,
        ] {
            for column in ["disposition", "status_disposition"] {
                let sql = if column == "disposition" {
                    "UPDATE attempts SET disposition = '{}'"
                } else {
                    "UPDATE attempts SET status_disposition = '{}'"
                };
                cases.push((sql, disposition_name(d).into(), true));
            }
        }
        cases.push(("UPDATE flows SET state = '{}'", "paused".into(), false));
        cases.push(("UPDATE attempts SET phase = '{}'", "sent".into(), false));
        cases.push((
            "UPDATE attempts SET disposition = '{}'",
            "maybe".into(),
            false,
        ));
        cases.push(("UPDATE attempts SET closed = {}", "2".into(), false));
        cases
    }

    /// A store with one flow and its claimed attempt, for the column tests.
    fn one_claimed(s: &Store) {
        s.submit(&[("f".into(), spec())], NOW).unwrap();
        claim_one(s, NOW);
    }

    /// The migrations constrain the state columns to exactly the values of the host's enums:
    /// a row can never hold a state the transitions would have to guess at.
    #[test]
    fn sqlite_state_columns_take_every_known_value_and_refuse_any_other() {
        let dir = std::env::temp_dir().join(format!("checks-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("flows.sqlite");
        one_claimed(&Store::open(path.to_str().unwrap()).unwrap());
        let conn = rusqlite::Connection::open(&path).unwrap();
        for (sql, value, allowed) in state_column_cases() {
            let sql = sql.replace("{}", &value);
            let done = conn.execute_batch(&format!("BEGIN; {sql}; ROLLBACK;"));
            if done.is_err() {
                conn.execute_batch("ROLLBACK").ok();
            }
            assert_eq!(done.is_ok(), allowed, "{sql}: {done:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn postgres_state_columns_take_every_known_value_and_refuse_any_other() {
        let url = host_testkit::postgres::fresh_database();
        one_claimed(&Store::open(&url).unwrap());
        let mut client = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
        for (sql, value, allowed) in state_column_cases() {
            let sql = sql.replace("{}", &value);
            let mut tx = client.transaction().unwrap();
            let done = tx.batch_execute(&sql);
            tx.rollback().unwrap();
            assert_eq!(done.is_ok(), allowed, "{sql}: {done:?}");
        }
    }

    /// Writes grouped in one transaction answer as each would alone, in their order: the
    /// second mark of one send finds it no longer claimed, the answer moves the flow on, and
    /// a webhook's events in the same group see the recorded answer.
    fn a_group_of_writes_answers_as_each_would_alone(s: Store) {
        let mut other = spec();
        other.recipient = "+15550100002".into();
        s.submit(&[("f".into(), spec()), ("g".into(), other)], NOW)
            .unwrap();
        let claims = s.claim_due(NOW, 10, &channels(), &pacer(), 1_000).unwrap();
        assert_eq!(claims.len(), 2, "{claims:?}");
        let (f, g) = (claims[0].attempt_id, claims[1].attempt_id);
        let delivered = status("wamid.f", "f/0/1", Disposition::Delivered, 3);
        let results: Vec<Written> = s
            .write_batch(
                NOW + 10,
                &[
                    Write::MarkSending { attempt_id: f },
                    Write::MarkSending { attempt_id: g },
                    Write::MarkSending { attempt_id: f },
                    Write::Record {
                        attempt_id: f,
                        result: SendResult::Classified(classification(
                            Disposition::Accepted,
                            "accepted",
                            Some("wamid.f"),
                        )),
                        customer_gap: None,
                    },
                    Write::Events {
                        channel: "whatsapp".into(),
                        tenant: None,
                        events: std::sync::Arc::new(vec![delivered.clone(), delivered]),
                    },
                ],
            )
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            results,
            [
                Written::Marked(true),
                Written::Marked(true),
                Written::Marked(false),
                Written::Recorded,
                Written::Applied(vec![0]),
            ]
        );
        assert_eq!(s.state("f").unwrap(), Some(FlowState::Done));
        assert_eq!(s.state("g").unwrap(), Some(FlowState::Sending));
    }

    on_both_stores!(
        a_callback_is_leased_to_one_node_and_a_failed_one_comes_back_at_its_next_try,
        a_send_is_taken_over_only_once_its_lease_has_passed,
        a_claim_cut_off_before_it_was_handed_over_is_sent_again_once,
        a_send_cut_off_after_it_was_handed_over_becomes_unknown_and_is_not_resent,
        a_status_that_overtakes_the_answer_is_applied_when_the_answer_is_recorded,
        a_timer_never_fires_for_a_step_already_moved_past,
        a_status_for_an_attempt_moved_on_from_is_a_possible_duplicate,
        a_customer_who_wrote_has_an_open_window_for_later_sends,
        a_131050_refusal_stops_marketing_for_that_customer_until_a_resume,
        redelivered_and_stale_statuses_change_nothing,
        a_group_of_writes_answers_as_each_would_alone,
        a_tenants_tokens_name_it_until_revoked_and_are_kept_only_as_hashes,
        the_default_tenant_exists_and_tenant_ids_are_unique,
        sealed_secrets_open_with_their_key_and_a_wrong_or_missing_key_is_refused,
        a_tenants_flow_sees_its_own_customers_opt_outs_and_statuses_only,
        a_status_from_another_tenants_account_never_moves_a_flow,
        a_delivery_on_a_tenants_own_route_moves_only_that_tenants_flows,
        an_event_for_an_account_nobody_owns_is_counted_and_dropped_once_the_default_names_its_own,
        a_synced_catalog_is_replaced_whole_and_template_webhooks_change_its_rows,
        the_messaging_limit_counts_unique_customers_over_24_hours_and_follows_tier_changes,
    );

    /// Limit 2: two customers are booked, a third waits, a customer already counted is
    /// free; 24 h later the window has moved; a tier change by webhook applies at once.
    fn the_messaging_limit_counts_unique_customers_over_24_hours_and_follows_tier_changes(
        s: Store,
    ) {
        const DAY: u64 = 24 * 60 * 60 * 1_000;
        account_with_sender(&s, "acme", "111", "1111");
        let book = |who: &str, at: u64| s.book_initiated("acme", "whatsapp", who, at).unwrap();
        let mut limited = status("", "", Disposition::Delivered, 0);
        limited.kind = EventKind::SenderQualityChange;
        limited.provider_message_id = None;
        limited.correlation_id = None;
        limited.account_id = Some("111".into());
        limited.dedupe_key = "limit:2".into();
        limited.details = json!({"event": "DOWNGRADE", "recipient_limit": 2}).to_string();
        s.apply_statuses("whatsapp", &[limited], NOW).unwrap();
        assert_eq!(book("+15550100001", NOW), Booking::Booked);
        assert_eq!(book("+15550100002", NOW + 1), Booking::Booked);
        assert_eq!(book("+15550100003", NOW + 2), Booking::LimitReached(2));
        assert_eq!(
            book("+1 555 010 0001", NOW + 3),
            Booking::Booked,
            "already counted"
        );
        // The second was last messaged at NOW + 1 (the first again at NOW + 3): a day after,
        // its place is free.
        assert_eq!(book("+15550100003", NOW + 2 + DAY), Booking::Booked);
        assert_eq!(
            book("+15550100004", NOW + 2 + DAY),
            Booking::LimitReached(2)
        );
        let mut raised = status("", "", Disposition::Delivered, 0);
        raised.kind = EventKind::SenderQualityChange;
        raised.provider_message_id = None;
        raised.correlation_id = None;
        raised.account_id = Some("111".into());
        raised.dedupe_key = "limit:unlimited".into();
        raised.details = json!({"event": "UPGRADE", "recipient_limit": null}).to_string();
        s.apply_statuses("whatsapp", &[raised], NOW + 3 + DAY)
            .unwrap();
        assert_eq!(book("+15550100004", NOW + 4 + DAY), Booking::Booked);
        // A tenant without an account, or one never checked, has no budget of its own.
        assert_eq!(
            s.book_initiated("nobody", "whatsapp", "+15550100009", NOW)
                .unwrap(),
            Booking::Booked
        );
    }

    /// Puts `tenant`'s WhatsApp account `account` with one sender `sender` (no secrets).
    fn account_with_sender(s: &Store, tenant: &str, account: &str, sender: &str) {
        if tenant != crate::tenants::DEFAULT_TENANT {
            s.create_tenant(tenant, tenant, NOW).unwrap();
        }
        let put = s
            .put_channel_account(
                None,
                &NewAccount {
                    tenant,
                    channel: "whatsapp",
                    account_id: account,
                    settings: "{}",
                    secrets: &[],
                },
                NOW,
            )
            .unwrap();
        assert_eq!(put, AccountPut::Stored);
        let facts = AccountFactsPut {
            tenant: tenant.into(),
            channel: "whatsapp".into(),
            facts: "{}".into(),
            recipient_limit: Some(250),
            senders: vec![SenderRecord {
                channel: "whatsapp".into(),
                sender_id: sender.into(),
                tenant_id: tenant.into(),
                account_id: account.into(),
                display_address: None,
                messages_per_second: Some(80),
                facts: "{}".into(),
                updated_ms: ms(NOW),
            }],
        };
        assert_eq!(
            s.put_account_facts(&facts, NOW).unwrap(),
            AccountPut::Stored
        );
    }

    /// Two tenants' accounts: a status naming acme's message from globex's account (or
    /// sender) is dropped; from acme's own, it applies.
    fn a_status_from_another_tenants_account_never_moves_a_flow(s: Store) {
        account_with_sender(&s, "acme", "111", "1111");
        account_with_sender(&s, "globex", "222", "2221");
        s.submit(&[("acme/f".into(), spec())], NOW).unwrap();
        let c = claim_one(&s, NOW);
        s.mark_sending(c.attempt_id, NOW).unwrap();
        let accepted = classification(Disposition::Accepted, "accepted", Some("wamid.t"));
        s.record(c.attempt_id, &SendResult::Classified(accepted), NOW + 10)
            .unwrap();
        for (account, sender) in [
            (Some("222"), None),
            (None, Some("2221")),
            (Some("111"), Some("2221")),
        ] {
            let mut forged = status("wamid.t", "acme/f/0/1", Disposition::Delivered, 3);
            forged.account_id = account.map(str::to_string);
            forged.sender_id = sender.map(str::to_string);
            s.apply_statuses("whatsapp", &[forged], NOW + 20).unwrap();
            assert_eq!(
                s.state("acme/f").unwrap(),
                Some(FlowState::WaitingStatus),
                "{account:?} {sender:?}"
            );
        }
        let mut own = status("wamid.t", "acme/f/0/1", Disposition::Delivered, 3);
        own.account_id = Some("111".into());
        own.sender_id = Some("1111".into());
        s.apply_statuses("whatsapp", &[own], NOW + 30).unwrap();
        assert_eq!(s.state("acme/f").unwrap(), Some(FlowState::Done));
    }

    /// A delivery on acme's own route (checked with acme's secrets) never moves globex's
    /// flow, even naming its correlation id, nor one naming globex's account; it moves acme's.
    fn a_delivery_on_a_tenants_own_route_moves_only_that_tenants_flows(s: Store) {
        account_with_sender(&s, "globex", "222", "2221");
        let spec_of = |id: &str| -> FlowSpec {
            serde_json::from_value(json!({"recipient": "+15550100001", "steps": [
                {"channel": "whatsapp", "wait_for": "delivered", "within_ms": 600_000,
                 "content": {"text": id}}]}))
            .unwrap()
        };
        // One after the other, a minute apart: each claim is the only one due.
        for (i, (id, text)) in [("acme/f", "a"), ("globex/g", "g")].into_iter().enumerate() {
            let at = NOW + 60_000 * i as u64;
            s.submit(&[(id.into(), spec_of(text))], at).unwrap();
            let c = claim_one(&s, at);
            s.mark_sending(c.attempt_id, at).unwrap();
            let accepted = classification(Disposition::Accepted, "accepted", None);
            s.record(c.attempt_id, &SendResult::Classified(accepted), at + 10)
                .unwrap();
        }
        let delivered = |correlation: &str, account: Option<&str>| {
            let mut e = status(
                &format!("SM-{correlation}"),
                correlation,
                Disposition::Delivered,
                3,
            );
            e.account_id = account.map(str::to_string);
            e.dedupe_key = format!("{correlation}:{account:?}");
            e
        };
        for forged in [
            delivered("globex/g/0/1", None),
            delivered("acme/f/0/1", Some("222")),
        ] {
            s.apply_events("whatsapp", Some("acme"), &[forged], NOW + 70_000)
                .unwrap();
        }
        assert_eq!(s.state("globex/g").unwrap(), Some(FlowState::WaitingStatus));
        assert_eq!(s.state("acme/f").unwrap(), Some(FlowState::WaitingStatus));
        s.apply_events(
            "whatsapp",
            Some("acme"),
            &[delivered("acme/f/0/1", None)],
            NOW + 80_000,
        )
        .unwrap();
        assert_eq!(s.state("acme/f").unwrap(), Some(FlowState::Done));
        s.apply_events(
            "whatsapp",
            Some("globex"),
            &[delivered("globex/g/0/1", None)],
            NOW + 90_000,
        )
        .unwrap();
        assert_eq!(s.state("globex/g").unwrap(), Some(FlowState::Done));
    }

    /// While the default tenant names no account of its own, an unknown account's events
    /// are its (a single business); once it names one, they are nobody's: counted, dropped.
    fn an_event_for_an_account_nobody_owns_is_counted_and_dropped_once_the_default_names_its_own(
        s: Store,
    ) {
        let inbound = |at: u64| {
            let mut e = status("wamid.in", "", Disposition::Delivered, 0);
            e.kind = EventKind::InboundMessage;
            e.correlation_id = None;
            e.recipient = Some("+15550100001".into());
            e.occurred_at_ms = Some(at);
            e.dedupe_key = format!("in:{at}");
            e.account_id = Some("999".into());
            e
        };
        s.apply_statuses("whatsapp", &[inbound(NOW)], NOW).unwrap();
        s.submit(&[("f".into(), spec())], NOW).unwrap();
        assert_eq!(claim_one(&s, NOW).last_inbound_ms, Some(NOW));
        account_with_sender(&s, crate::tenants::DEFAULT_TENANT, "555", "5551");
        s.apply_statuses("whatsapp", &[inbound(NOW + 50)], NOW + 50)
            .unwrap();
        assert_eq!(s.unrouted("whatsapp").unwrap(), [("999".to_string(), 1)]);
        // (Past the customer's pacing gap after the first claim.)
        s.submit(&[("g".into(), spec())], NOW + 60_000).unwrap();
        assert_eq!(claim_one(&s, NOW + 60_000).last_inbound_ms, Some(NOW));
    }

    /// A sync replaces the account's catalog whole (a template gone at the provider goes);
    /// a status webhook changes the row it names, by id or by name and language.
    fn a_synced_catalog_is_replaced_whole_and_template_webhooks_change_its_rows(s: Store) {
        account_with_sender(&s, "acme", "111", "1111");
        let template = |name: &str, status: &str, id: &str| TemplateRecord {
            name: name.into(),
            language: "en_US".into(),
            status: status.into(),
            category: Some("UTILITY".into()),
            template_id: Some(id.into()),
            definition: json!({"name": name, "language": "en_US", "components": []}).to_string(),
        };
        let first = [
            template("a", "APPROVED", "1"),
            template("b", "PENDING", "2"),
        ];
        assert_eq!(
            s.replace_templates("acme", "whatsapp", "111", &first, NOW)
                .unwrap(),
            (2, 0)
        );
        let second = [
            template("b", "PENDING", "2"),
            template("c", "APPROVED", "3"),
        ];
        assert_eq!(
            s.replace_templates("acme", "whatsapp", "111", &second, NOW + 1)
                .unwrap(),
            (2, 1)
        );
        let mut approved = status("", "", Disposition::Delivered, 0);
        approved.kind = EventKind::TemplateStatus;
        approved.provider_message_id = None;
        approved.correlation_id = None;
        approved.account_id = Some("111".into());
        approved.dedupe_key = "tpl:2:approved".into();
        approved.details = json!({"event": "APPROVED", "message_template_id": 2,
            "message_template_name": "b", "message_template_language": "en_US"})
        .to_string();
        s.apply_statuses("whatsapp", &[approved], NOW + 2).unwrap();
        let listed: Vec<(String, String)> = s
            .templates("whatsapp", "111")
            .unwrap()
            .into_iter()
            .map(|t| (t.name, t.status))
            .collect();
        assert_eq!(
            listed,
            [
                ("b".into(), "APPROVED".into()),
                ("c".into(), "APPROVED".into())
            ]
        );
    }

    /// The same phone number is two customers in two tenants: one business's opt-out is not
    /// another's, and a status naming another customer does not move a tenant's flow.
    fn a_tenants_flow_sees_its_own_customers_opt_outs_and_statuses_only(s: Store) {
        let mut refused = status("wamid.m", "x", Disposition::Fallback, 2);
        refused.recipient = Some("+15550100001".into());
        refused.classification.reason = "recipient_opted_out".into();
        refused.classification.provider_code = Some("131050".into());
        // No attempt of ours: the default tenant's customer (the only one a webhook can name
        // until it says which account it is for).
        s.apply_statuses("whatsapp", &[refused], NOW).unwrap();
        s.submit(&[("acme/f".into(), spec())], NOW).unwrap();
        let c = claim_one(&s, NOW);
        assert!(c.opted_out.is_empty(), "{:?}", c.opted_out);
        s.mark_sending(c.attempt_id, NOW).unwrap();
        let accepted = classification(Disposition::Accepted, "accepted", Some("wamid.t"));
        s.record(c.attempt_id, &SendResult::Classified(accepted), NOW + 10)
            .unwrap();
        let mut other = status("wamid.t", "acme/f/0/1", Disposition::Delivered, 3);
        other.recipient = Some("+15550100999".into());
        s.apply_statuses("whatsapp", &[other], NOW + 20).unwrap();
        assert_ne!(s.state("acme/f").unwrap(), Some(FlowState::Done));
        let mut own = status("wamid.t", "acme/f/0/1", Disposition::Delivered, 3);
        own.recipient = Some("+15550100001".into());
        s.apply_statuses("whatsapp", &[own], NOW + 30).unwrap();
        assert_eq!(s.state("acme/f").unwrap(), Some(FlowState::Done));
    }

    fn sealed_secrets_open_with_their_key_and_a_wrong_or_missing_key_is_refused(s: Store) {
        use crate::services::vault::Vault;
        let key = Vault::from_key(&[3u8; 32]).unwrap();
        // Nothing sealed yet: starting without a key is fine.
        s.check_vault(None, NOW).unwrap();
        s.check_vault(Some(&key), NOW).unwrap();
        s.create_tenant("acme", "Acme", NOW).unwrap();
        s.put_tenant_secret(&key, "acme", "callback-secret", "k1", NOW)
            .unwrap();
        s.put_tenant_secret(&key, "acme", "callback-secret", "k2", NOW)
            .unwrap();
        let opened = s
            .tenant_secret(&key, "acme", "callback-secret")
            .unwrap()
            .unwrap();
        assert_eq!(opened.as_str(), "k2");
        assert!(s.tenant_secret(&key, "acme", "other").unwrap().is_none());
        s.check_vault(Some(&key), NOW).unwrap();
        let wrong = Vault::from_key(&[4u8; 32]).unwrap();
        let err = s.check_vault(Some(&wrong), NOW).unwrap_err().to_string();
        assert!(err.contains("not the key"), "{err}");
        let err = s.check_vault(None, NOW).unwrap_err().to_string();
        assert!(err.contains("holds sealed secrets"), "{err}");
        assert!(s.tenant_secret(&wrong, "acme", "callback-secret").is_err());
    }

    fn a_tenants_tokens_name_it_until_revoked_and_are_kept_only_as_hashes(s: Store) {
        assert!(s.create_tenant("acme", "Acme Inc.", NOW).unwrap());
        let (first, record) = s.issue_token("acme", "ci", NOW).unwrap().unwrap();
        let (second, _) = s.issue_token("acme", "rotation", NOW + 1).unwrap().unwrap();
        assert_eq!(record.tenant_id, "acme");
        // Both live at once (rotation), each naming its tenant.
        assert_eq!(
            s.tenant_of_token(&first.token).unwrap().as_deref(),
            Some("acme")
        );
        assert_eq!(
            s.tenant_of_token(&second.token).unwrap().as_deref(),
            Some("acme")
        );
        assert_eq!(s.tenant_of_token("flw_not-a-token").unwrap(), None);
        // Revoked by id, by its own tenant only.
        assert!(!s.revoke_token("default", &first.id, NOW + 2).unwrap());
        assert!(s.revoke_token("acme", &first.id, NOW + 2).unwrap());
        assert!(!s.revoke_token("acme", &first.id, NOW + 3).unwrap());
        assert_eq!(s.tenant_of_token(&first.token).unwrap(), None);
        assert_eq!(
            s.tenant_of_token(&second.token).unwrap().as_deref(),
            Some("acme")
        );
        let listed = s.tokens("acme").unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].revoked_ms, Some(ms(NOW + 2)));
        assert_eq!(listed[1].label, "rotation");
        // No token for a tenant that does not exist.
        assert!(s.issue_token("nobody", "x", NOW).unwrap().is_none());
    }

    fn the_default_tenant_exists_and_tenant_ids_are_unique(s: Store) {
        let default = s.tenant(crate::tenants::DEFAULT_TENANT).unwrap().unwrap();
        assert_eq!(default.name, "default");
        assert!(s.create_tenant("acme", "Acme", NOW).unwrap());
        assert!(!s.create_tenant("acme", "Another Acme", NOW).unwrap());
        assert!(s.rename_tenant("acme", "Acme GmbH", NOW).unwrap());
        assert!(!s.rename_tenant("nobody", "x", NOW).unwrap());
        let ids: Vec<String> = s.tenants().unwrap().into_iter().map(|t| t.id).collect();
        assert_eq!(ids, ["acme", "default"]);
        assert_eq!(s.tenant("acme").unwrap().unwrap().name, "Acme GmbH");
    }

    fn pacer() -> Mutex<Pacer> {
        Mutex::new(Pacer::new(HashMap::from([(
            "whatsapp".to_string(),
            ChannelPacing::whatsapp(1_000.0),
        )])))
    }

    fn spec() -> FlowSpec {
        FlowSpec::from_value(
            json!({"recipient": "+15550100001", "unknown_wait_ms": 5_000, "steps": [
            {"channel": "whatsapp", "content": {}, "wait_for": "delivered", "within_ms": 10_000},
            {"channel": "sms", "content": {}, "wait_for": "delivered"}]}),
        )
        .unwrap()
    }

    fn channels() -> Vec<String> {
        vec!["sms".into(), "whatsapp".into()]
    }

    fn classification(d: Disposition, reason: &str, id: Option<&str>) -> Classification {
        Classification {
            disposition: d,
            reason: reason.into(),
            provider_code: None,
            provider_title: None,
            provider_details: None,
            provider_trace_id: None,
            retry_after_ms: None,
            operator_action: false,
            provider_message_id: id.map(str::to_string),
        }
    }

    fn status(message_id: &str, correlation: &str, d: Disposition, precedence: u8) -> WebhookEvent {
        WebhookEvent {
            kind: EventKind::MessageStatus,
            provider_message_id: Some(message_id.into()),
            recipient: None,
            correlation_id: Some(correlation.into()),
            occurred_at_ms: None,
            classification: classification(d, "status", None),
            precedence,
            dedupe_key: format!("{message_id}:{precedence}"),
            service_window_ends_ms: None,
            details: json!({ "status": STATUS_NAMES[precedence as usize] }).to_string(),
            account_id: None,
            sender_id: None,
        }
    }

    fn claim_one(s: &Store, now: u64) -> Claim {
        let mut claims = s.claim_due(now, 10, &channels(), &pacer(), 0).unwrap();
        assert_eq!(claims.len(), 1, "{claims:?}");
        claims.remove(0)
    }

    fn state(s: &Store) -> FlowState {
        s.state("f").unwrap().unwrap()
    }

    fn a_send_is_taken_over_only_once_its_lease_has_passed(s: Store) {
        s.submit(&[("f".into(), spec())], NOW).unwrap();
        let c = claim_one(&s, NOW);
        assert!(s.mark_sending(c.attempt_id, NOW).unwrap());
        match s.backend() {
            // One node: when it starts, everything unrecorded was its own.
            Backend::Sqlite => assert_eq!(s.recover(NOW + 1).unwrap(), 1),
            // Several nodes: the sending node's lease still holds, then it passes.
            Backend::Postgres => {
                assert_eq!(s.recover(NOW + 1).unwrap(), 0);
                assert_eq!(state(&s), FlowState::Sending);
                assert_eq!(s.recover(AFTER_LEASE).unwrap(), 1);
            }
        }
        assert_eq!(state(&s), FlowState::WaitingUnknown);
        // The node that had it records late: nothing changes (never a second transition).
        s.record(
            c.attempt_id,
            &SendResult::Classified(classification(
                Disposition::Accepted,
                "accepted",
                Some("wamid.late"),
            )),
            AFTER_LEASE + 1,
        )
        .unwrap();
        assert_eq!(state(&s), FlowState::WaitingUnknown);
    }

    fn a_claim_cut_off_before_it_was_handed_over_is_sent_again_once(s: Store) {
        s.submit(&[("f".into(), spec())], NOW).unwrap();
        let first = claim_one(&s, NOW);
        assert_eq!(first.correlation_id, "f/0/1");
        assert_eq!(s.recover(AFTER_LEASE).unwrap(), 1);
        assert_eq!(state(&s), FlowState::WaitingRetry);
        let again = claim_one(&s, AFTER_LEASE + 1);
        assert_eq!(
            (again.channel.as_str(), again.correlation_id.as_str()),
            ("whatsapp", "f/0/2")
        );
        let status = s.status("f").unwrap().unwrap();
        assert_eq!(status["attempts"][0]["reason"], "never_sent");
    }

    fn a_send_cut_off_after_it_was_handed_over_becomes_unknown_and_is_not_resent(s: Store) {
        s.submit(&[("f".into(), spec())], NOW).unwrap();
        let c = claim_one(&s, NOW);
        assert!(s.mark_sending(c.attempt_id, NOW).unwrap());
        assert_eq!(s.recover(AFTER_LEASE).unwrap(), 1);
        assert_eq!(state(&s), FlowState::WaitingUnknown);
        // Nothing is due before the unknown wait ends: no resend.
        assert!(
            s.claim_due(AFTER_LEASE + 4_000, 10, &channels(), &pacer(), 0)
                .unwrap()
                .is_empty()
        );
        // A status naming the correlation id settles it.
        s.apply_statuses(
            "whatsapp",
            &[status("wamid.1", "f/0/1", Disposition::Delivered, 3)],
            AFTER_LEASE + 4_500,
        )
        .unwrap();
        assert_eq!(state(&s), FlowState::Done);
    }

    fn a_status_that_overtakes_the_answer_is_applied_when_the_answer_is_recorded(s: Store) {
        s.submit(&[("f".into(), spec())], NOW).unwrap();
        let c = claim_one(&s, NOW);
        s.mark_sending(c.attempt_id, NOW).unwrap();
        // Meta's `failed` (not on WhatsApp) arrives before our HTTP answer is recorded.
        s.apply_statuses(
            "whatsapp",
            &[status("wamid.1", "f/0/1", Disposition::Fallback, 2)],
            NOW + 5,
        )
        .unwrap();
        assert_eq!(state(&s), FlowState::Sending);
        let accepted = classification(Disposition::Accepted, "accepted", Some("wamid.1"));
        s.record(c.attempt_id, &SendResult::Classified(accepted), NOW + 10)
            .unwrap();
        // The flow moved on to SMS rather than waiting on WhatsApp.
        let next = claim_one(&s, NOW + 10);
        assert_eq!(next.channel, "sms");
    }

    fn a_timer_never_fires_for_a_step_already_moved_past(s: Store) {
        s.submit(&[("f".into(), spec())], NOW).unwrap();
        let c = claim_one(&s, NOW);
        s.mark_sending(c.attempt_id, NOW).unwrap();
        let accepted = classification(Disposition::Accepted, "accepted", Some("wamid.1"));
        s.record(c.attempt_id, &SendResult::Classified(accepted), NOW + 10)
            .unwrap();
        assert_eq!(state(&s), FlowState::WaitingStatus);
        s.apply_statuses(
            "whatsapp",
            &[status("wamid.1", "f/0/1", Disposition::Delivered, 3)],
            NOW + 20,
        )
        .unwrap();
        assert_eq!(state(&s), FlowState::Done);
        // The step's 10 s deadline passes: nothing happens.
        assert!(
            s.claim_due(NOW + 20_000, 10, &channels(), &pacer(), 0)
                .unwrap()
                .is_empty()
        );
        assert_eq!(state(&s), FlowState::Done);
        let status = s.status("f").unwrap().unwrap();
        assert_eq!(status["attempts"].as_array().unwrap().len(), 1);
    }

    fn a_status_for_an_attempt_moved_on_from_is_a_possible_duplicate(s: Store) {
        s.submit(&[("f".into(), spec())], NOW).unwrap();
        let c = claim_one(&s, NOW);
        s.mark_sending(c.attempt_id, NOW).unwrap();
        s.record(
            c.attempt_id,
            &SendResult::MaybeSent("deadline".into()),
            NOW + 10,
        )
        .unwrap();
        // No status within the unknown wait: on to SMS.
        let sms = claim_one(&s, NOW + 5_010);
        assert_eq!(sms.channel, "sms");
        s.apply_statuses(
            "whatsapp",
            &[status("wamid.9", "f/0/1", Disposition::Delivered, 3)],
            NOW + 6_000,
        )
        .unwrap();
        let v = s.status("f").unwrap().unwrap();
        assert_eq!(v["attempts"][0]["possible_duplicate"], true, "{v}");
        assert!(v["timeline"].to_string().contains("POSSIBLE DUPLICATE"));
    }

    fn a_customer_who_wrote_has_an_open_window_for_later_sends(s: Store) {
        let mut inbound = status("wamid.in", "x", Disposition::Accepted, 0);
        inbound.kind = EventKind::InboundMessage;
        inbound.recipient = Some("+15550100001".into());
        inbound.occurred_at_ms = Some(NOW - 60_000);
        s.apply_statuses("whatsapp", &[inbound], NOW).unwrap();
        let mut spec = spec();
        spec.recipient = "+1 555 010 0001".into();
        s.submit(&[("f".into(), spec)], NOW).unwrap();
        assert_eq!(claim_one(&s, NOW).last_inbound_ms, Some(NOW - 60_000));
    }

    fn a_131050_refusal_stops_marketing_for_that_customer_until_a_resume(s: Store) {
        let mut refused = status("wamid.m", "x", Disposition::Fallback, 2);
        refused.recipient = Some("+15550100001".into());
        refused.classification.reason = "recipient_opted_out".into();
        refused.classification.provider_code = Some("131050".into());
        s.apply_statuses("whatsapp", &[refused], NOW).unwrap();
        s.submit(&[("f".into(), spec())], NOW).unwrap();
        assert_eq!(claim_one(&s, NOW).opted_out, ["marketing"]);
        let mut resume = status("pref", "x", Disposition::Accepted, 0);
        resume.kind = EventKind::RecipientPreference;
        resume.recipient = Some("+15550100001".into());
        resume.classification.reason = "recipient_opted_in".into();
        resume.details = json!({"category": "marketing"}).to_string();
        s.apply_statuses("whatsapp", &[resume], NOW).unwrap();
        s.submit(&[("g".into(), spec())], NOW).unwrap();
        // After the customer's 6 s gap (kept in the database when nodes share it).
        assert!(claim_one(&s, NOW + 7_000).opted_out.is_empty());
    }

    fn redelivered_and_stale_statuses_change_nothing(s: Store) {
        s.submit(&[("f".into(), spec())], NOW).unwrap();
        let c = claim_one(&s, NOW);
        s.mark_sending(c.attempt_id, NOW).unwrap();
        let accepted = classification(Disposition::Accepted, "accepted", Some("wamid.1"));
        s.record(c.attempt_id, &SendResult::Classified(accepted), NOW + 10)
            .unwrap();
        let read = status("wamid.1", "f/0/1", Disposition::Read, 4);
        s.apply_statuses("whatsapp", &[read.clone(), read], NOW + 20)
            .unwrap();
        s.apply_statuses(
            "whatsapp",
            &[status("wamid.1", "f/0/1", Disposition::Fallback, 2)],
            NOW + 30,
        )
        .unwrap();
        assert_eq!(state(&s), FlowState::Done);
        let v = s.status("f").unwrap().unwrap();
        assert_eq!(v["attempts"][0]["last_status"], "read");
    }
}
