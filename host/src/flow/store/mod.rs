//! The flow store (SQLite): every transition is one transaction that reads the flow's
//! position, asks the [`policy`](super::policy) and writes the answer, the timeline and the
//! outbox together. Nothing here does network I/O, so no lock or transaction is ever held
//! across a send.
//!
//! A send is claimed in one transaction (the attempt row is written as `claimed`, with its
//! correlation id), marked `sending` in another just before it is handed to the plugin (from
//! then on the request may leave), and recorded in a third. After a crash
//! ([`Store::recover`]) an attempt left `sending` becomes `unknown` — never "not sent", never
//! resent; one left `claimed` never left the host, and is sent again as a new attempt.

use super::pacing::{Deferral, Pacer};
use super::policy::{self, FlowState, MoveOnReason, Next, Position};
use super::spec::FlowSpec;
use crate::contract::signals::HostReason;
use crate::json::disposition_name;
use crate::types::{Classification, Disposition, EventKind, WebhookEvent};
use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

mod customers;
pub mod db;

use crate::args;
use db::{Backend, Conn, ToArg, TxKind};

/// The lane of flows waiting only for time (status deadlines, unknown outcomes); flows that
/// wait to send are in their channel's lane, so a channel at its rate never holds up timers
/// or other channels.
pub const TIMER_LANE: &str = "timer";

fn lane_for(spec: &FlowSpec, step: usize, state: FlowState) -> Option<&str> {
    match state {
        FlowState::Ready | FlowState::WaitingRetry => Some(
            spec.steps
                .get(step)
                .map_or(TIMER_LANE, |s| s.channel.as_str()),
        ),
        FlowState::WaitingStatus | FlowState::WaitingUnknown => Some(TIMER_LANE),
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
#[derive(Debug)]
struct BatchRefused(Vec<Submitted>);

impl std::fmt::Display for BatchRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a flow id in the batch is taken by another spec")
    }
}

impl std::error::Error for BatchRefused {}

/// A callback delivery due.
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

#[derive(Debug, Clone)]
pub struct OutboxItem {
    pub id: i64,
    pub event_id: String,
    pub url: String,
    pub body: String,
    pub tries: u32,
}

#[derive(Debug, Clone)]
struct FlowRow {
    id: String,
    spec: FlowSpec,
    state: FlowState,
    step: usize,
    attempt: u32,
    expires_ms: Option<u64>,
    current_attempt: Option<i64>,
    callback_url: Option<String>,
    /// The recipient's customer key (what webhooks name).
    customer: String,
}

impl FlowRow {
    fn position(&self) -> Position<'_> {
        Position {
            spec: &self.spec,
            step: self.step,
            attempt: self.attempt,
            expires_ms: self.expires_ms,
        }
    }

    fn channel(&self) -> &str {
        self.spec
            .steps
            .get(self.step)
            .map(|s| s.channel.as_str())
            .unwrap_or("?")
    }
}

#[derive(Debug, Clone)]
struct AttemptRow {
    id: i64,
    flow_id: String,
    channel: String,
    attempt: u32,
    phase: AttemptPhase,
    closed: bool,
    status_disposition: Option<String>,
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

/// One transaction with the helpers every transition uses.
struct Tx<'a, 'c> {
    db: &'a db::Tx<'c>,
    now: u64,
    backend: Backend,
    node: &'a str,
    lease_ms: u64,
}

impl Store {
    /// Opens (or creates) the store: a `postgres://` URL, or a SQLite file (`:memory:` keeps
    /// it in memory). Migrations are applied first.
    pub fn open(location: &str) -> Result<Store> {
        Self::open_with(location, DEFAULT_LEASE_MS)
    }

    /// [`Store::open`] with the lease of claimed sends.
    pub fn open_with(location: &str, lease_ms: u64) -> Result<Store> {
        if db::is_postgres_url(location) && tokio::runtime::Handle::try_current().is_ok() {
            // See `with_tx`: the driver may not block a thread that drives tasks.
            return std::thread::scope(|s| {
                s.spawn(|| Self::open_with_here(location, lease_ms))
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            });
        }
        Self::open_with_here(location, lease_ms)
    }

    fn open_with_here(location: &str, lease_ms: u64) -> Result<Store> {
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

    fn with_tx<R: Send>(&self, now: u64, f: impl FnOnce(&Tx) -> Result<R> + Send) -> Result<R> {
        self.in_tx(TxKind::Write, now, f)
    }

    /// A transaction that only reads: no write lock, so readers never queue behind writers.
    fn read<R: Send>(&self, f: impl FnOnce(&Tx) -> Result<R> + Send) -> Result<R> {
        self.in_tx(TxKind::Read, 0, f)
    }

    fn in_tx<R: Send>(
        &self,
        kind: TxKind,
        now: u64,
        f: impl FnOnce(&Tx) -> Result<R> + Send,
    ) -> Result<R> {
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
        let conn: &mut Conn = &mut conn;
        let run = move || {
            conn.transaction(kind, |db| {
                f(&Tx {
                    db,
                    now,
                    backend: self.backend,
                    node: &self.node,
                    lease_ms: self.lease_ms,
                })
            })
        };
        // No thread of its own: the store is synchronous and its callers run it off the
        // runtime's workers (the runner through `spawn_blocking`). On a worker, the PostgreSQL
        // driver (which blocks on a runtime of its own) would panic, as tokio forbids it.
        run()
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
            // SQLite has one node: at its start, everything unrecorded was its own. On
            // PostgreSQL a send is taken over only once its node's lease has passed.
            let rows = match t.backend {
                Backend::Sqlite => t.db.query(
                    "SELECT id FROM attempts WHERE phase <> 'recorded' ORDER BY id",
                    &[],
                )?,
                Backend::Postgres => t.db.query(
                    "SELECT a.id FROM attempts a JOIN flows f ON f.current_attempt = a.id WHERE a.phase <> 'recorded' AND f.lease_until < ?1 ORDER BY f.id FOR UPDATE OF f SKIP LOCKED",
                    args![ms(now)],
                )?,
            };
            let mut taken = 0;
            for row in &rows {
                taken += usize::from(t.take_over(row.int(0)?)?);
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
        self.with_tx(now, |t| {
            let (sending, claimed) = (
                AttemptPhase::Sending.as_str(),
                AttemptPhase::Claimed.as_str(),
            );
            let n = match t.backend {
                Backend::Sqlite => t.db.exec(
                    "UPDATE attempts SET phase = ?2 WHERE id = ?1 AND phase = ?3",
                    args![attempt_id, sending, claimed],
                )?,
                Backend::Postgres => t.db.exec(
                    "UPDATE attempts SET phase = ?2 WHERE id = ?1 AND phase = ?3 AND EXISTS (SELECT 1 FROM flows f WHERE f.id = attempts.flow_id AND f.current_attempt = attempts.id AND f.lease_until > ?4)",
                    args![attempt_id, sending, claimed, ms(now.saturating_add(HANDOVER_MARGIN_MS))],
                )?,
            };
            Ok(n == 1)
        })
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
        self.with_tx(now, |t| {
            t.record(attempt_id, result)?;
            match customer_gap {
                Some(gap) if t.backend == Backend::Postgres => t.extend_customer_gap(gap),
                _ => Ok(()),
            }
        })
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
        // One transaction per event: each locks only its own flow, so two deliveries naming
        // the same flows in another order never wait on each other crosswise. An error stops
        // here: the provider redelivers, and what was applied is then a redelivery.
        let mut fresh = Vec::new();
        for (i, e) in events.iter().enumerate() {
            if self.with_tx(now, |t| t.apply_event(channel, e))? {
                fresh.push(i);
            }
        }
        Ok(fresh)
    }

    /// A flow's state.
    pub fn state(&self, id: &str) -> Result<Option<FlowState>> {
        self.read(|t| {
            let row =
                t.db.query_opt("SELECT state FROM flows WHERE id = ?1", args![id])?;
            Ok(match row {
                Some(r) => FlowState::parse(&r.text(0)?),
                None => None,
            })
        })
    }

    /// How many flows are in each state.
    pub fn counts(&self) -> Result<Vec<(String, u64)>> {
        self.read(|t| {
            t.db.query("SELECT state, count(*) FROM flows GROUP BY state", &[])?
                .iter()
                .map(|r| Ok((r.text(0)?, r.int(1)?.max(0) as u64)))
                .collect()
        })
    }

    /// Flows not yet final.
    pub fn open_flows(&self) -> Result<u64> {
        Ok(self
            .counts()?
            .into_iter()
            .filter(|(s, _)| FlowState::parse(s).is_some_and(|s| !s.is_final()))
            .map(|(_, n)| n)
            .sum())
    }

    /// The flow's state, attempts and timeline, as `GET /flows/{id}` answers.
    pub fn status(&self, id: &str) -> Result<Option<Value>> {
        self.read(|t| status_json(t.db, id))
    }

    /// Every send answered `accepted`: when its flow was created and when the answer was
    /// recorded (ms since the epoch), for the load bench.
    pub fn accepted_sends(&self) -> Result<Vec<(i64, i64)>> {
        self.read(|t| {
            t.db.query(
                "SELECT f.created_ms, a.recorded_ms FROM flows f JOIN attempts a ON a.flow_id = f.id WHERE a.disposition = 'accepted' AND a.recorded_ms IS NOT NULL",
                &[],
            )?
            .iter()
            .map(|r| Ok((r.int(0)?, r.int(1)?)))
            .collect()
        })
    }

    /// Callback deliveries due now, leased to this node (another node skips them until the
    /// lease passes, so each goes out from one node; at least once if this node dies). One
    /// statement: the due rows are picked (locked, skipping rows another node holds) and
    /// leased at once.
    pub fn outbox_due(&self, now: u64, limit: usize) -> Result<Vec<OutboxItem>> {
        self.with_tx(now, |t| {
            let lock = t.skip_locked();
            let rows = t.db.query(
                &format!("UPDATE outbox SET next_at = ?3 WHERE id IN (SELECT id FROM outbox WHERE next_at IS NOT NULL AND next_at <= ?1 ORDER BY next_at LIMIT ?2{lock}) RETURNING id, event_id, url, body, tries"),
                args![ms(now), limit as i64, ms(now.saturating_add(t.lease_ms))],
            )?;
            rows.iter()
                .map(|r| {
                    Ok(OutboxItem {
                        id: r.int(0)?,
                        event_id: r.text(1)?,
                        url: r.text(2)?,
                        body: r.text(3)?,
                        tries: u32::try_from(r.int(4)?).unwrap_or(u32::MAX),
                    })
                })
                .collect()
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
            if !delivered.is_empty() {
                let list = (0..delivered.len())
                    .map(|i| format!("?{}", i + 2))
                    .collect::<Vec<_>>()
                    .join(", ");
                let mut bound = vec![ms(now).to_arg()];
                bound.extend(delivered.iter().map(ToArg::to_arg));
                t.db.exec(
                    &format!("UPDATE outbox SET delivered_ms = ?1, next_at = NULL, tries = tries + 1 WHERE id IN ({list})"),
                    &bound,
                )?;
            }
            for r in results {
                if let Some(e) = &r.error {
                    t.db.exec(
                        "UPDATE outbox SET next_at = ?2, tries = tries + 1, last_error = ?3 WHERE id = ?1",
                        args![r.id, r.retry_at.map(ms), e],
                    )?;
                }
            }
            Ok(())
        })
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

impl Tx<'_, '_> {
    fn note(&self, flow: &str, attempt: Option<i64>, entry: &str) -> Result<()> {
        self.db.exec(
            "INSERT INTO timeline (flow_id, at_ms, attempt_id, entry) VALUES (?1, ?2, ?3, ?4)",
            args![flow, ms(self.now), attempt, entry],
        )?;
        Ok(())
    }

    /// Queues a callback for the flow's `callback_url`, if it has one.
    fn emit(&self, flow: &FlowRow, kind: CallbackKind, detail: Value) -> Result<()> {
        let Some(url) = &flow.callback_url else {
            return Ok(());
        };
        let event_id = uuid::Uuid::now_v7().to_string();
        let body = json!({"event_id": event_id, "flow_id": flow.id, "kind": kind.as_str(),
            "at_ms": self.now, "detail": detail});
        self.db.exec(
                "INSERT INTO outbox (event_id, flow_id, url, body, next_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                args![event_id, flow.id, url, body.to_string(), ms(self.now)],
            )?;
        Ok(())
    }

    fn submit(&self, id: &str, spec: &FlowSpec) -> Result<Submitted> {
        let text = serde_json::to_string(spec)?;
        let expires = spec.ttl_ms.map(|t| self.now.saturating_add(t));
        // Insert-if-absent, then look: two nodes submitting one id at once never both create
        // it (PostgreSQL makes the second wait for the first's commit on the key).
        // The column holds the customer key (what webhooks name), the spec the address as given.
        let inserted = self.db.exec(
                "INSERT OR IGNORE INTO flows (id, spec, recipient, state, step, attempt, wake_at, created_ms, expires_ms, callback_url, lane) VALUES (?1, ?2, ?3, ?4, 0, 1, ?5, ?5, ?6, ?7, ?8)",
                args![id, text, customer_key(&spec.recipient), FlowState::Ready.as_str(), ms(self.now), expires.map(ms), spec.callback_url, lane_for(spec, 0, FlowState::Ready)],
            )?;
        if inserted == 0 {
            let stored = self
                .db
                .query_one("SELECT spec FROM flows WHERE id = ?1", args![id])?
                .text(0)?;
            return Ok(if stored == text {
                Submitted::AlreadyExists
            } else {
                Submitted::Conflict
            });
        }
        self.note(
            id,
            None,
            &format!(
                "flow started for {} ({} step(s))",
                spec.recipient,
                spec.steps.len()
            ),
        )?;
        Ok(Submitted::Created)
    }

    fn load(&self, id: &str) -> Result<Option<FlowRow>> {
        // Every load decides something: on PostgreSQL the row stays locked until commit.
        let row = self.db.query_opt(
            &format!("SELECT spec, state, step, attempt, expires_ms, current_attempt, callback_url, recipient FROM flows WHERE id = ?1{}", self.for_update()),
            args![id],
        )?;
        let row = match row {
            Some(r) => Some((
                r.text(0)?,
                r.text(1)?,
                r.int(2)?,
                r.int(3)?,
                r.opt_int(4)?,
                r.opt_int(5)?,
                r.opt_text(6)?,
                r.text(7)?,
            )),
            None => None,
        };
        let Some((spec, state, step, attempt, expires, current, callback, customer)) = row else {
            return Ok(None);
        };
        Ok(Some(FlowRow {
            id: id.to_string(),
            spec: serde_json::from_str(&spec)?,
            state: FlowState::parse(&state)
                .with_context(|| format!("flow {id} has an unknown state {state:?}"))?,
            step: usize::try_from(step).unwrap_or(usize::MAX),
            attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
            expires_ms: expires.map(|e| e.max(0) as u64),
            current_attempt: current,
            callback_url: callback,
            customer,
        }))
    }

    fn set_state(&self, flow: &FlowRow, state: FlowState, wake_at: Option<u64>) -> Result<()> {
        let lane = lane_for(&flow.spec, flow.step, state);
        self.db.exec(
            "UPDATE flows SET state = ?2, wake_at = ?3, lane = ?4 WHERE id = ?1",
            args![flow.id, state.as_str(), wake_at.map(ms), lane],
        )?;
        Ok(())
    }

    fn due(&self, lane: &str, limit: usize) -> Result<Vec<String>> {
        // Other nodes skip the rows this transaction holds (PostgreSQL).
        let lock = self.skip_locked();
        self.db
            .query(
                &format!("SELECT id FROM flows WHERE lane = ?1 AND wake_at IS NOT NULL AND wake_at <= ?2 ORDER BY wake_at LIMIT ?3{lock}"),
                args![lane, ms(self.now), limit as i64],
            )?
            .iter()
            .map(|r| r.text(0))
            .collect()
    }

    /// A due flow: fire its timer, or claim its send.
    fn wake(&self, id: &str, pacer: &mut Pacer, horizon_ms: u64) -> Result<Option<Claim>> {
        let Some(mut flow) = self.load(id)? else {
            return Ok(None);
        };
        match policy::on_timer(flow.state, flow.position(), self.now) {
            None => {
                // Not a timer state (final, or sending): it should not be due.
                self.db.exec(
                    "UPDATE flows SET wake_at = NULL, lane = NULL WHERE id = ?1",
                    args![id],
                )?;
                Ok(None)
            }
            Some(Next::Send) => self.claim(&flow, pacer, horizon_ms),
            Some(next) => {
                self.apply(&flow, next, None)?;
                // Moving on makes the next step due now: claim it in the same transaction.
                flow = match self.load(id)? {
                    Some(f) if f.state == FlowState::Ready => f,
                    _ => return Ok(None),
                };
                self.claim(&flow, pacer, horizon_ms)
            }
        }
    }

    /// Books a pacing slot and writes the attempt as `sending`; or moves the wake-up time.
    fn claim(&self, flow: &FlowRow, pacer: &mut Pacer, horizon_ms: u64) -> Result<Option<Claim>> {
        let Some(step) = flow.spec.steps.get(flow.step) else {
            self.apply(
                flow,
                Next::MoveOn {
                    why: MoveOnReason::NoSuchStep,
                },
                None,
            )?;
            return Ok(None);
        };
        let shared = self.backend == Backend::Postgres;
        if shared {
            self.adopt_shared_pacing(&step.channel, &flow.spec.recipient, pacer)?;
        }
        let taken = pacer.try_take(&step.channel, &flow.spec.recipient, self.now, horizon_ms);
        if shared && taken.is_ok() {
            self.share_pacing(&step.channel, &flow.spec.recipient, pacer)?;
        }
        let slot = match taken {
            Ok(slot) => slot,
            // The number is at its rate: the flow stays due and goes in a later round.
            Err(Deferral::Sender { .. }) => return Ok(None),
            Err(Deferral::Customer { until }) => {
                self.note(
                    &flow.id,
                    None,
                    &format!(
                        "pacing: the next {} message to this customer may go in {} ms",
                        step.channel,
                        until.saturating_sub(self.now)
                    ),
                )?;
                self.set_state(flow, flow.state, Some(until))?;
                return Ok(None);
            }
        };
        let correlation_id = format!("{}/{}/{}", flow.id, flow.step, flow.attempt);
        let attempt_id = self
            .db
            .query_one(
                "INSERT INTO attempts (flow_id, step, channel, attempt, correlation_id, phase, slot_ms, sent_ms) VALUES (?1, ?2, ?3, ?4, ?5, 'claimed', ?6, ?6) RETURNING id",
                args![&flow.id, flow.step as i64, &step.channel, flow.attempt, &correlation_id, ms(slot)],
            )?
            .int(0)?;
        // The flow is this node's until the lease passes.
        self.db.exec(
            "UPDATE flows SET state = ?2, wake_at = NULL, lane = NULL, current_attempt = ?3, lease_owner = ?4, lease_until = ?5 WHERE id = ?1",
            args![&flow.id, FlowState::Sending.as_str(), attempt_id, self.node, ms(self.now.saturating_add(self.lease_ms))],
        )?;
        Ok(Some(Claim {
            flow_id: flow.id.clone(),
            attempt_id,
            channel: step.channel.clone(),
            attempt: flow.attempt,
            correlation_id,
            recipient: flow.spec.recipient.clone(),
            content: step.content.to_string(),
            last_inbound_ms: self.last_inbound(&step.channel, &flow.spec)?,
            opted_out: self.opted_out(&step.channel, &flow.spec.recipient)?,
            slot_ms: slot,
        }))
    }

    fn load_attempt(&self, sql_where: &str, args: &[db::Arg]) -> Result<Option<AttemptRow>> {
        let sql = format!(
            "SELECT id, flow_id, channel, attempt, phase, closed, status_disposition FROM attempts WHERE {sql_where}"
        );
        let Some(r) = self.db.query_opt(&sql, args)? else {
            return Ok(None);
        };
        Ok(Some(AttemptRow {
            id: r.int(0)?,
            flow_id: r.text(1)?,
            channel: r.text(2)?,
            attempt: u32::try_from(r.int(3)?).unwrap_or(u32::MAX),
            phase: AttemptPhase::parse(&r.text(4)?).unwrap_or(AttemptPhase::Recorded),
            closed: r.int(5)? != 0,
            status_disposition: r.opt_text(6)?,
        }))
    }

    /// Nodes sharing PostgreSQL share the pacing schedule: the sender's and the customer's
    /// watermarks are locked (sender first, always, so two claims never wait on each other
    /// crosswise) and adopted before booking, and written back after.
    fn adopt_shared_pacing(&self, channel: &str, customer: &str, pacer: &mut Pacer) -> Result<()> {
        let keys = pacing_keys(channel, customer);
        for key in &keys {
            self.db.exec(
                "INSERT OR IGNORE INTO pacing (key, next_us) VALUES (?1, 0)",
                args![key],
            )?;
        }
        let sender = self
            .db
            .query_one(
                "SELECT next_us FROM pacing WHERE key = ?1 FOR UPDATE",
                args![&keys[0]],
            )?
            .int(0)?;
        pacer.adopt_sender_next(channel, sender);
        let next = self
            .db
            .query_one(
                "SELECT next_us FROM pacing WHERE key = ?1 FOR UPDATE",
                args![&keys[1]],
            )?
            .int(0)?;
        pacer.adopt_customer_next(channel, customer, next);
        Ok(())
    }

    fn extend_customer_gap(&self, gap: &CustomerGap) -> Result<()> {
        let [_, key] = pacing_keys(&gap.channel, &gap.customer);
        self.db.exec(
            "UPDATE pacing SET next_us = GREATEST(next_us, ?2) WHERE key = ?1",
            args![&key, gap.next_us],
        )?;
        Ok(())
    }

    fn share_pacing(&self, channel: &str, customer: &str, pacer: &Pacer) -> Result<()> {
        let keys = pacing_keys(channel, customer);
        self.db.exec(
            "UPDATE pacing SET next_us = ?2 WHERE key = ?1",
            args![&keys[0], pacer.sender_next_us(channel)],
        )?;
        self.db.exec(
            "UPDATE pacing SET next_us = ?2 WHERE key = ?1",
            args![&keys[1], pacer.customer_next_us(channel, customer)],
        )?;
        Ok(())
    }

    /// ` FOR UPDATE` on PostgreSQL: the row read is locked until commit. SQLite's immediate
    /// transactions already exclude each other.
    fn for_update(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        }
    }

    /// ` FOR UPDATE SKIP LOCKED` where several nodes claim from one table; SQLite's
    /// immediate transactions already exclude each other.
    fn skip_locked(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        }
    }

    /// The flow and the attempt, both locked, in the one order every transition takes:
    /// the flow's row first, then its attempt's (PostgreSQL; SQLite's writers exclude each
    /// other whole). Everything decided after this reads rows no other node can change.
    fn lock_attempt(&self, attempt_id: i64) -> Result<Option<(Option<FlowRow>, AttemptRow)>> {
        // An attempt's flow never changes: this read needs no lock.
        let Some(row) = self.db.query_opt(
            "SELECT flow_id FROM attempts WHERE id = ?1",
            args![attempt_id],
        )?
        else {
            return Ok(None);
        };
        let flow = self.load(&row.text(0)?)?;
        let lock = self.for_update();
        let attempt = self.load_attempt(&format!("id = ?1{lock}"), args![attempt_id])?;
        Ok(attempt.map(|a| (flow, a)))
    }

    /// The crash rule, on a send whose node stopped or whose lease passed, decided on the
    /// attempt's phase read under its lock (a node that marks it `sending` at that moment
    /// either does so first, and the send is `unknown`, or finds it recorded, and does not
    /// send). False if it was recorded meanwhile.
    fn take_over(&self, attempt_id: i64) -> Result<bool> {
        let Some((flow, a)) = self.lock_attempt(attempt_id)? else {
            return Ok(false);
        };
        let result = match a.phase {
            AttemptPhase::Recorded => return Ok(false),
            AttemptPhase::Claimed => {
                SendResult::NeverLeft("the host stopped before this send was handed over".into())
            }
            AttemptPhase::Sending => {
                SendResult::MaybeSent("the host stopped while this send was in flight".into())
            }
        };
        self.record_locked(flow, a, &result)?;
        Ok(true)
    }

    fn record(&self, attempt_id: i64, result: &SendResult) -> Result<()> {
        match self.lock_attempt(attempt_id)? {
            Some((flow, a)) => self.record_locked(flow, a, result),
            None => Ok(()),
        }
    }

    fn record_locked(
        &self,
        flow: Option<FlowRow>,
        a: AttemptRow,
        result: &SendResult,
    ) -> Result<()> {
        if a.phase == AttemptPhase::Recorded {
            return Ok(()); // recorded already
        }
        let (disposition, reason, code, message_id, retry_after) = match result {
            SendResult::Classified(c) => (
                c.disposition,
                c.reason.clone(),
                c.provider_code.clone(),
                c.provider_message_id.clone(),
                c.retry_after_ms,
            ),
            SendResult::NotSent(_) => (
                Disposition::Failed,
                HostReason::NotSent.as_str().into(),
                None,
                None,
                None,
            ),
            SendResult::MaybeSent(_) => (
                Disposition::Unknown,
                HostReason::OutcomeUnknown.as_str().into(),
                None,
                None,
                None,
            ),
            SendResult::NeverLeft(_) => (
                Disposition::Failed,
                HostReason::NeverSent.as_str().into(),
                None,
                None,
                None,
            ),
        };
        self.db.exec(
                "UPDATE attempts SET phase = 'recorded', disposition = ?2, reason = ?3, provider_code = ?4, provider_message_id = coalesce(provider_message_id, ?5), recorded_ms = ?6 WHERE id = ?1",
                args![a.id, disposition_name(disposition), reason, code, message_id, ms(self.now)],
            )?;
        let what = match result {
            SendResult::Classified(c) => describe(c),
            SendResult::NotSent(why) => format!("not sent: {why}"),
            SendResult::MaybeSent(why) => format!(
                "unknown / outcome_unknown: {why}; the request may have left, so it is never resent blindly"
            ),
            SendResult::NeverLeft(why) => format!("not sent: {why}; it is sent again"),
        };
        self.note(
            &a.flow_id,
            Some(a.id),
            &format!("{} attempt {}: {what}", a.channel, a.attempt),
        )?;
        let Some(flow) = flow else {
            return Ok(());
        };
        if let SendResult::Classified(c) = result {
            self.note_classified_opt_out(&a.channel, Some(&flow.spec.recipient), c)?;
        }
        if flow.state != FlowState::Sending || flow.current_attempt != Some(a.id) {
            return Ok(());
        }
        self.emit(
            &flow,
            CallbackKind::Attempt,
            json!({"channel": a.channel, "attempt": a.attempt,
            "disposition": disposition_name(disposition), "reason": reason}),
        )?;
        let next = match result {
            SendResult::NotSent(why) => Next::MoveOn {
                why: MoveOnReason::RefusedBeforeSending {
                    channel: a.channel.clone(),
                    why: why.clone(),
                },
            },
            // A host stop is not the customer's attempt: the same channel, at once.
            SendResult::NeverLeft(_) => Next::Retry {
                attempt: a.attempt.saturating_add(1),
                at: self.now,
            },
            _ => {
                // A status that overtook the answer (the webhook came first) is newer news.
                let effective = a
                    .status_disposition
                    .as_deref()
                    .and_then(parse_disposition)
                    .unwrap_or(disposition);
                policy::after_outcome(flow.position(), effective, retry_after, self.now)
            }
        };
        self.apply(&flow, next, Some(a.id))
    }

    /// Writes a policy decision.
    fn apply(&self, flow: &FlowRow, next: Next, attempt: Option<i64>) -> Result<()> {
        let channel = flow.channel().to_string();
        match next {
            Next::Done => {
                let wait_for = flow.spec.steps.get(flow.step).map(|s| s.wait_for.as_str());
                self.note(
                    &flow.id,
                    attempt,
                    &format!("{} on {channel}: done", wait_for.unwrap_or("?")),
                )?;
                self.set_state(flow, FlowState::Done, None)?;
                self.emit(flow, CallbackKind::Done, json!({"channel": channel}))
            }
            Next::Wait { state, until } => self.set_state(flow, state, until),
            Next::Retry { attempt: n, at } => {
                let wait = at.saturating_sub(self.now);
                self.note(
                    &flow.id,
                    attempt,
                    &format!("retrying {channel} in {wait} ms"),
                )?;
                let wake = flow.expires_ms.map_or(at, |e| e.min(at));
                let lane = lane_for(&flow.spec, flow.step, FlowState::WaitingRetry);
                self.db.exec(
                "UPDATE flows SET state = ?2, attempt = ?3, wake_at = ?4, lane = ?5 WHERE id = ?1",
                args![flow.id, FlowState::WaitingRetry.as_str(), n, ms(wake), lane],
            )?;
                Ok(())
            }
            Next::MoveOn { why } => self.move_on(flow, &why.to_string(), attempt),
            Next::Expire => {
                self.note(&flow.id, attempt, "TTL reached: nothing more is sent")?;
                self.set_state(flow, FlowState::Expired, None)?;
                self.emit(flow, CallbackKind::Expired, json!({}))
            }
            Next::Send => self.set_state(flow, FlowState::Ready, Some(self.now)),
        }
    }

    fn move_on(&self, flow: &FlowRow, why: &str, attempt: Option<i64>) -> Result<()> {
        self.note(&flow.id, attempt, why)?;
        // Every attempt on the step being left is one the flow moved on from.
        self.db.exec(
            "UPDATE attempts SET closed = 1 WHERE flow_id = ?1 AND step = ?2",
            args![flow.id, flow.step as i64],
        )?;
        let next_step = flow.step + 1;
        match flow.spec.steps.get(next_step) {
            Some(next) => {
                self.note(
                    &flow.id,
                    attempt,
                    &format!("falling back to {}", next.channel),
                )?;
                self.db.exec(
                "UPDATE flows SET step = ?2, attempt = 1, state = ?3, wake_at = ?4, lane = ?5, current_attempt = NULL WHERE id = ?1",
                args![flow.id, next_step as i64, FlowState::Ready.as_str(), ms(self.now), next.channel],
            )?;
                self.emit(
                    flow,
                    CallbackKind::FallingBack,
                    json!({"from": flow.channel(), "to": next.channel, "why": why}),
                )
            }
            None => {
                self.note(
                    &flow.id,
                    attempt,
                    "no channel left: the message could not be delivered",
                )?;
                self.db.exec(
                "UPDATE flows SET step = ?2, state = ?3, wake_at = NULL, lane = NULL, current_attempt = NULL WHERE id = ?1",
                args![flow.id, next_step as i64, FlowState::Exhausted.as_str()],
            )?;
                self.emit(flow, CallbackKind::Exhausted, json!({"why": why}))
            }
        }
    }

    /// The attempt a status is about: by the provider's message id, or by the correlation
    /// id the provider echoes while the attempt has no message id yet (the status overtook
    /// the answer). One statement, so one snapshot: an answer committing meanwhile cannot make
    /// the attempt invisible to both halves. Not locked: [`Tx::apply_status`] locks it.
    fn attempt_for(&self, channel: &str, e: &WebhookEvent) -> Result<Option<i64>> {
        let Some(message_id) = &e.provider_message_id else {
            return Ok(None);
        };
        let row = self.db.query_opt(
            "SELECT id FROM attempts WHERE channel = ?1 AND (provider_message_id = ?2 OR (correlation_id = ?3 AND provider_message_id IS NULL)) ORDER BY id LIMIT 1",
            args![channel, message_id, e.correlation_id.as_deref()],
        )?;
        row.map(|r| r.int(0)).transpose()
    }

    /// Whether this is the first time the event is seen (its dedupe key is then kept).
    fn first_sight(&self, channel: &str, e: &WebhookEvent) -> Result<bool> {
        let fresh = self.db.exec(
            "INSERT OR IGNORE INTO seen_events (dedupe_key, at_ms) VALUES (?1, ?2)",
            args![format!("{channel}:{}", e.dedupe_key), ms(self.now)],
        )?;
        Ok(fresh > 0)
    }

    /// Applies one webhook event; whether it was seen for the first time.
    fn apply_event(&self, channel: &str, e: &WebhookEvent) -> Result<bool> {
        if e.kind == EventKind::MessageStatus {
            let outcome = self.apply_status(channel, e)?;
            if matches!(outcome, StatusOutcome::Applied | StatusOutcome::NoAttempt) {
                // Idempotent: a redelivery of a status of no attempt stops nothing twice.
                self.note_classified_opt_out(channel, e.recipient.as_deref(), &e.classification)?;
            }
            return Ok(outcome == StatusOutcome::Applied);
        }
        if !self.first_sight(channel, e)? {
            return Ok(false); // a redelivery: already applied
        }
        // Inbound messages, and anything else that opens the window (a customer's call, a
        // message handled by another app).
        if e.kind == EventKind::InboundMessage || e.service_window_ends_ms.is_some() {
            self.note_inbound(channel, e)?;
        }
        match e.kind {
            EventKind::Handover => self.hand_over(channel, e)?,
            EventKind::RecipientPreference => self.note_preference(channel, e)?,
            EventKind::IdentityChange => self.rekey(channel, e)?,
            _ => {}
        }
        Ok(true)
    }

    /// Applies a status: decided with the flow and the attempt locked, and its dedupe key
    /// kept only when it is applied (a status that names no attempt of ours, or another
    /// customer, leaves no key behind, so it changes nothing now and nothing later).
    fn apply_status(&self, channel: &str, e: &WebhookEvent) -> Result<StatusOutcome> {
        let Some(id) = self.attempt_for(channel, e)? else {
            return Ok(StatusOutcome::NoAttempt);
        };
        let Some((Some(flow), a)) = self.lock_attempt(id)? else {
            return Ok(StatusOutcome::NoAttempt);
        };
        let status = status_name(e);
        if !names_customer(e, &flow.customer) {
            self.note(
                &flow.id,
                Some(a.id),
                &format!(
                    "{channel} status {status} names another customer than this flow's: ignored"
                ),
            )?;
            return Ok(StatusOutcome::OtherCustomer);
        }
        if !self.first_sight(channel, e)? {
            return Ok(StatusOutcome::Redelivery);
        }
        self.adopt_message_id(channel, &a, e)?;
        // Conditional on the precedence the row holds, and the row count checked: a lower
        // status never overwrites a higher one, whatever arrives in which order.
        let disposition = disposition_name(e.classification.disposition);
        let raised = self.db.exec(
            "UPDATE attempts SET precedence = ?2, status = ?3, status_disposition = ?4 WHERE id = ?1 AND precedence < ?2",
            args![a.id, e.precedence, status, disposition],
        )?;
        if raised == 0 {
            self.note(
                &a.flow_id,
                Some(a.id),
                &format!("{channel} status {status} arrived late (after a higher one): ignored"),
            )?;
            return Ok(StatusOutcome::Applied);
        }
        self.note(
            &a.flow_id,
            Some(a.id),
            &format!("{channel} status {status}: {}", describe(&e.classification)),
        )?;
        self.emit(
            &flow,
            CallbackKind::Status,
            json!({"channel": channel, "attempt": a.attempt, "status": status,
            "disposition": disposition, "reason": e.classification.reason}),
        )?;
        if a.closed || flow.current_attempt != Some(a.id) {
            self.possible_duplicate(&flow, &a, channel, &status, e)?;
            return Ok(StatusOutcome::Applied);
        }
        match flow.state {
            FlowState::WaitingStatus | FlowState::WaitingUnknown => {
                let next = policy::after_outcome(
                    flow.position(),
                    e.classification.disposition,
                    e.classification.retry_after_ms,
                    self.now,
                );
                self.apply(&flow, next, Some(a.id))?;
            }
            // Sending: recording the answer applies it (it reads the status under the same
            // locks). Final: recorded, nothing to do.
            _ => {}
        }
        Ok(StatusOutcome::Applied)
    }

    /// A status that overtook the answer names the message id first: the attempt adopts it.
    fn adopt_message_id(&self, channel: &str, a: &AttemptRow, e: &WebhookEvent) -> Result<()> {
        let Some(message_id) = &e.provider_message_id else {
            return Ok(());
        };
        let adopted = self.db.exec(
            "UPDATE attempts SET provider_message_id = ?2 WHERE id = ?1 AND provider_message_id IS NULL",
            args![a.id, message_id],
        )?;
        if adopted == 0 {
            return Ok(());
        }
        let how = if a.phase != AttemptPhase::Recorded {
            "before its answer was recorded"
        } else {
            "the attempt did go out"
        };
        self.note(
            &a.flow_id,
            Some(a.id),
            &format!("{channel} status names message {message_id} ({how})"),
        )
    }

    /// A status that shows a message went out on an attempt the flow had moved on from: the
    /// customer may have it twice. Always recorded, never silent.
    fn possible_duplicate(
        &self,
        flow: &FlowRow,
        a: &AttemptRow,
        channel: &str,
        status: &str,
        e: &WebhookEvent,
    ) -> Result<()> {
        if policy::reached(e.classification.disposition).is_none() {
            return Ok(());
        }
        self.db.exec(
            "UPDATE attempts SET possible_duplicate = 1 WHERE id = ?1",
            args![a.id],
        )?;
        self.note(
            &flow.id,
            Some(a.id),
            &format!("POSSIBLE DUPLICATE: {channel} {status} after the flow had moved on from it"),
        )?;
        self.emit(
            flow,
            CallbackKind::PossibleDuplicate,
            json!({"channel": channel, "attempt": a.attempt, "status": status}),
        )
    }
}

/// What became of a status event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusOutcome {
    /// Seen for the first time and applied (or found late: a higher one is held).
    Applied,
    /// Seen before: applied then.
    Redelivery,
    /// Names no attempt of ours: what it says of the customer (an opt-out) still holds.
    NoAttempt,
    /// Names another customer than the attempt's flow: dropped whole.
    OtherCustomer,
}

/// Whether a status may be about the flow's customer: every customer key it names of the
/// flow's kind (a phone number, or a user id) is the flow's. A status naming only a user id
/// for a flow sent to a phone number (WhatsApp leaves phone numbers out for some users) is
/// not refused, since the message id already names the attempt.
fn names_customer(e: &WebhookEvent, flow_customer: &str) -> bool {
    let is_phone = |k: &str| k.starts_with('+');
    let named = customers::keys_of(e);
    let comparable: Vec<&String> = named
        .iter()
        .filter(|k| is_phone(k) == is_phone(flow_customer))
        .collect();
    comparable.is_empty() || comparable.iter().any(|k| same_customer(k, flow_customer))
}

/// Equal keys, or one phone number in both of the spellings WhatsApp uses for Mexico (`+52 1`
/// and `+52`) and Argentina (`+54 9` and `+54`) mobile numbers.
fn same_customer(a: &str, b: &str) -> bool {
    fn canonical(k: &str) -> std::borrow::Cow<'_, str> {
        for (country, mobile) in [("+52", '1'), ("+54", '9')] {
            if let Some(rest) = k.strip_prefix(country)
                && let Some(national) = rest.strip_prefix(mobile)
                && national.len() == 10
            {
                return format!("{country}{national}").into();
            }
        }
        k.into()
    }
    a == b || canonical(a) == canonical(b)
}

/// The pacing rows of a send: its sending number's, its customer's.
fn pacing_keys(channel: &str, customer: &str) -> [String; 2] {
    [
        format!("sender:{channel}"),
        format!("customer:{channel}:{}", customer_key(customer)),
    ]
}

/// One key per customer whatever the spelling: `+<digits>` for a phone number (as webhooks
/// give it), the id itself otherwise (a BSUID).
fn customer_key(recipient: &str) -> String {
    let r = recipient.trim();
    match r.strip_prefix('+').or_else(|| r.strip_prefix("00")) {
        Some(rest) => format!(
            "+{}",
            rest.chars()
                .filter(char::is_ascii_digit)
                .collect::<String>()
        ),
        None => r.to_string(),
    }
}

fn parse_disposition(s: &str) -> Option<Disposition> {
    use Disposition::*;
    [
        Accepted, Sent, Delivered, Read, Retry, Fallback, Failed, Unknown,
    ]
    .into_iter()
    .find(|d| disposition_name(*d) == s)
}

fn status_name(e: &WebhookEvent) -> String {
    serde_json::from_str::<Value>(&e.details)
        .ok()
        .and_then(|d| d.get("status").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| e.classification.reason.clone())
}

/// A classification in one line, for timelines.
pub fn describe(c: &Classification) -> String {
    let mut s = format!("{} / {}", disposition_name(c.disposition), c.reason);
    if let Some(code) = &c.provider_code {
        s.push_str(&format!(" (code {code})"));
    }
    if let Some(id) = &c.provider_message_id {
        s.push_str(&format!(" id {id}"));
    }
    s
}

fn status_json(db: &db::Tx, id: &str) -> Result<Option<Value>> {
    let Some(flow) = db.query_opt(
        "SELECT spec, state, step FROM flows WHERE id = ?1",
        args![id],
    )?
    else {
        return Ok(None);
    };
    let recipient = serde_json::from_str::<FlowSpec>(&flow.text(0)?)?.recipient;
    let (state, step) = (flow.text(1)?, flow.int(2)?);
    let attempts: Vec<Value> = db
        .query("SELECT id, channel, attempt, provider_message_id, sent_ms, disposition, reason, provider_code, status, closed, possible_duplicate, correlation_id, phase FROM attempts WHERE flow_id = ?1 ORDER BY id", args![id])?
        .iter()
        .map(|r| {
            Ok(json!({
                "attempt_id": r.int(0)?, "channel": r.text(1)?, "attempt": r.int(2)?,
                "provider_message_id": r.opt_text(3)?, "sent_ms": r.int(4)?,
                "disposition": r.opt_text(5)?.unwrap_or_else(|| "sending".into()),
                "reason": r.opt_text(6)?, "provider_code": r.opt_text(7)?,
                "last_status": r.opt_text(8)?, "moved_on": r.int(9)? != 0,
                "possible_duplicate": r.int(10)? != 0, "correlation_id": r.text(11)?,
                "phase": r.text(12)?,
            }))
        })
        .collect::<Result<_>>()?;
    let timeline: Vec<Value> = db
        .query(
            "SELECT at_ms, attempt_id, entry FROM timeline WHERE flow_id = ?1 ORDER BY id",
            args![id],
        )?
        .iter()
        .map(|r| Ok(json!({"at_ms": r.int(0)?, "attempt_id": r.opt_int(1)?, "entry": r.text(2)?})))
        .collect::<Result<_>>()?;
    Ok(Some(
        json!({"id": id, "recipient": recipient, "state": state, "step": step,
        "attempts": attempts, "timeline": timeline}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::pacing::ChannelPacing;
    use std::collections::HashMap;

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
                t.db.exec(
                    "INSERT INTO outbox (event_id, flow_id, url, body, next_at) VALUES (?1, 'f', 'http://127.0.0.1/cb', '{}', ?2)",
                    args![format!("e{i}"), ms(NOW)],
                )?;
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
    );

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
