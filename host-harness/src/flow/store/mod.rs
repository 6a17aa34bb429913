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
use super::policy::{self, FlowState, Next, Position};
use super::spec::FlowSpec;
use crate::json::disposition_name;
use crate::types::{Classification, Disposition, EventKind, WebhookEvent};
use anyhow::{Context, Result, bail};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde_json::{Value, json};
use std::sync::Mutex;

mod customers;

/// Bumped when the tables change; an older file is refused with a clear message.
const SCHEMA_VERSION: i64 = 3;
/// Older schemas this one upgrades in place (each only added tables).
const UPGRADABLE_FROM: &[i64] = &[2];

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS flows (
  id TEXT PRIMARY KEY, spec TEXT NOT NULL, recipient TEXT NOT NULL, state TEXT NOT NULL,
  step INTEGER NOT NULL, attempt INTEGER NOT NULL, wake_at INTEGER, created_ms INTEGER NOT NULL,
  expires_ms INTEGER, current_attempt INTEGER, callback_url TEXT, lane TEXT);
CREATE INDEX IF NOT EXISTS flows_due ON flows(lane, wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS flows_by_recipient ON flows(recipient);
CREATE TABLE IF NOT EXISTS attempts (
  id INTEGER PRIMARY KEY AUTOINCREMENT, flow_id TEXT NOT NULL, step INTEGER NOT NULL,
  channel TEXT NOT NULL, attempt INTEGER NOT NULL, correlation_id TEXT NOT NULL UNIQUE,
  phase TEXT NOT NULL, slot_ms INTEGER NOT NULL, provider_message_id TEXT, sent_ms INTEGER NOT NULL,
  recorded_ms INTEGER,
  disposition TEXT, reason TEXT, provider_code TEXT, precedence INTEGER NOT NULL DEFAULT 0,
  status TEXT, status_disposition TEXT, closed INTEGER NOT NULL DEFAULT 0,
  possible_duplicate INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS attempts_by_message ON attempts(channel, provider_message_id);
CREATE INDEX IF NOT EXISTS attempts_by_flow ON attempts(flow_id);
CREATE INDEX IF NOT EXISTS attempts_open ON attempts(phase) WHERE phase <> 'recorded';
CREATE TABLE IF NOT EXISTS timeline (
  id INTEGER PRIMARY KEY AUTOINCREMENT, flow_id TEXT NOT NULL, at_ms INTEGER NOT NULL,
  attempt_id INTEGER, entry TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS timeline_by_flow ON timeline(flow_id);
CREATE TABLE IF NOT EXISTS seen_events (dedupe_key TEXT PRIMARY KEY, at_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS inbound (
  channel TEXT NOT NULL, customer TEXT NOT NULL, last_ms INTEGER NOT NULL,
  PRIMARY KEY (channel, customer));
CREATE TABLE IF NOT EXISTS opt_outs (
  channel TEXT NOT NULL, customer TEXT NOT NULL, category TEXT NOT NULL, since_ms INTEGER NOT NULL,
  PRIMARY KEY (channel, customer, category));
CREATE TABLE IF NOT EXISTS outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, flow_id TEXT NOT NULL,
  url TEXT NOT NULL, body TEXT NOT NULL, tries INTEGER NOT NULL DEFAULT 0,
  next_at INTEGER, delivered_ms INTEGER, last_error TEXT);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(next_at) WHERE next_at IS NOT NULL;
";

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

/// A callback delivery due.
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
    precedence: i64,
    closed: bool,
    status_disposition: Option<String>,
}

/// The SQLite flow store.
pub struct Store {
    conn: Mutex<Connection>,
}

/// One transaction with the helpers every transition uses.
struct Tx<'a> {
    tx: Transaction<'a>,
    now: u64,
}

impl Store {
    /// Opens (or creates) the database. `:memory:` keeps it in memory.
    pub fn open(path: &str) -> Result<Store> {
        let conn =
            Connection::open(path).with_context(|| format!("opening the flow database {path}"))?;
        // `flow status` reads the file while `serve` writes it: wait for locks, don't fail.
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL").ok();
        // WAL + NORMAL: a committed transaction survives the process being killed.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let has_flows: bool = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'flows'",
            [],
            |r| r.get::<_, i64>(0).map(|n| n > 0),
        )?;
        if has_flows && version != SCHEMA_VERSION && !UPGRADABLE_FROM.contains(&version) {
            bail!(
                "{path} was written by another version of host-harness (schema {version}, this one uses {SCHEMA_VERSION}); use a new --db file"
            );
        }
        conn.execute_batch(SCHEMA)
            .context("creating the flow tables")?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn with_tx<R>(&self, now: u64, f: impl FnOnce(&Tx) -> Result<R>) -> Result<R> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let t = Tx { tx, now };
        let r = f(&t)?;
        t.tx.commit()?;
        Ok(r)
    }

    /// Stores new flows, due at once, in one transaction.
    pub fn submit(&self, flows: &[(String, FlowSpec)], now: u64) -> Result<Vec<Submitted>> {
        self.with_tx(now, |t| {
            flows.iter().map(|(id, spec)| t.submit(id, spec)).collect()
        })
    }

    /// After a crash: every attempt left `sending` may have gone out, so it becomes
    /// `unknown` and its flow waits for a status. Returns how many.
    pub fn recover(&self, now: u64) -> Result<usize> {
        self.with_tx(now, |t| {
            let open: Vec<(i64, String)> =
                t.tx.prepare("SELECT id, phase FROM attempts WHERE phase <> 'recorded'")?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?;
            for (id, phase) in &open {
                let result = if AttemptPhase::parse(phase) == Some(AttemptPhase::Claimed) {
                    SendResult::NeverLeft(
                        "the host stopped before this send was handed over".into(),
                    )
                } else {
                    SendResult::MaybeSent("the host stopped while this send was in flight".into())
                };
                t.record(*id, &result)?;
            }
            Ok(open.len())
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
    pub fn mark_sending(&self, attempt_id: i64, now: u64) -> Result<bool> {
        self.with_tx(now, |t| {
            let n =
                t.tx.prepare_cached("UPDATE attempts SET phase = ?2 WHERE id = ?1 AND phase = ?3")?
                    .execute(params![
                        attempt_id,
                        AttemptPhase::Sending.as_str(),
                        AttemptPhase::Claimed.as_str()
                    ])?;
            Ok(n == 1)
        })
    }

    /// Records what became of a claimed send and moves the flow on.
    pub fn record(&self, attempt_id: i64, result: &SendResult, now: u64) -> Result<()> {
        self.with_tx(now, |t| t.record(attempt_id, result))
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
        self.with_tx(now, |t| {
            let mut fresh = Vec::new();
            for (i, e) in events.iter().enumerate() {
                if !t.first_sight(channel, e)? {
                    continue; // a redelivery: already applied
                }
                fresh.push(i);
                if e.kind == EventKind::MessageStatus {
                    t.apply_status(channel, e)?;
                    t.note_classified_opt_out(channel, e.recipient.as_deref(), &e.classification)?;
                    continue;
                }
                // Inbound messages, and anything else that opens the window (a customer's
                // call, a message handled by another app).
                if e.kind == EventKind::InboundMessage || e.service_window_ends_ms.is_some() {
                    t.note_inbound(channel, e)?;
                }
                match e.kind {
                    EventKind::Handover => t.hand_over(channel, e)?,
                    EventKind::RecipientPreference => t.note_preference(channel, e)?,
                    EventKind::IdentityChange => t.rekey(channel, e)?,
                    _ => {}
                }
            }
            Ok(fresh)
        })
    }

    /// A flow's state.
    pub fn state(&self, id: &str) -> Result<Option<FlowState>> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let s: Option<String> = conn
            .query_row("SELECT state FROM flows WHERE id = ?1", params![id], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(s.and_then(|s| FlowState::parse(&s)))
    }

    /// How many flows are in each state.
    pub fn counts(&self) -> Result<Vec<(String, u64)>> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut stmt = conn.prepare("SELECT state, count(*) FROM flows GROUP BY state")?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
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
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        status_json(&conn, id)
    }

    /// Callback deliveries due now.
    pub fn outbox_due(&self, now: u64, limit: usize) -> Result<Vec<OutboxItem>> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut stmt = conn.prepare_cached(
            "SELECT id, event_id, url, body, tries FROM outbox WHERE next_at IS NOT NULL AND next_at <= ?1 ORDER BY next_at LIMIT ?2",
        )?;
        let items = stmt
            .query_map(params![ms(now), limit as i64], |r| {
                Ok(OutboxItem {
                    id: r.get(0)?,
                    event_id: r.get(1)?,
                    url: r.get(2)?,
                    body: r.get(3)?,
                    tries: r.get::<_, i64>(4)? as u32,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(items)
    }

    /// Marks a callback delivered, or schedules its next try (`None`: give up).
    pub fn outbox_result(
        &self,
        id: i64,
        now: u64,
        retry_at: Option<u64>,
        error: Option<&str>,
    ) -> Result<()> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        match error {
            None => conn.execute(
                "UPDATE outbox SET delivered_ms = ?2, next_at = NULL, tries = tries + 1 WHERE id = ?1",
                params![id, ms(now)],
            )?,
            Some(e) => conn.execute(
                "UPDATE outbox SET next_at = ?2, tries = tries + 1, last_error = ?3 WHERE id = ?1",
                params![id, retry_at.map(ms), e],
            )?,
        };
        Ok(())
    }
}

impl Tx<'_> {
    fn note(&self, flow: &str, attempt: Option<i64>, entry: &str) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO timeline (flow_id, at_ms, attempt_id, entry) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![flow, ms(self.now), attempt, entry])?;
        Ok(())
    }

    /// Queues a callback for the flow's `callback_url`, if it has one.
    fn emit(&self, flow: &FlowRow, kind: &str, detail: Value) -> Result<()> {
        let Some(url) = &flow.callback_url else {
            return Ok(());
        };
        let event_id = uuid::Uuid::now_v7().to_string();
        let body = json!({"event_id": event_id, "flow_id": flow.id, "kind": kind,
            "at_ms": self.now, "detail": detail});
        self.tx
            .prepare_cached(
                "INSERT INTO outbox (event_id, flow_id, url, body, next_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![event_id, flow.id, url, body.to_string(), ms(self.now)])?;
        Ok(())
    }

    fn submit(&self, id: &str, spec: &FlowSpec) -> Result<Submitted> {
        let text = serde_json::to_string(spec)?;
        let existing: Option<String> = self
            .tx
            .query_row("SELECT spec FROM flows WHERE id = ?1", params![id], |r| {
                r.get(0)
            })
            .optional()?;
        if let Some(stored) = existing {
            return Ok(if stored == text {
                Submitted::AlreadyExists
            } else {
                Submitted::Conflict
            });
        }
        let expires = spec.ttl_ms.map(|t| self.now.saturating_add(t));
        self.tx
            .prepare_cached(
                "INSERT INTO flows (id, spec, recipient, state, step, attempt, wake_at, created_ms, expires_ms, callback_url, lane) VALUES (?1, ?2, ?3, ?4, 0, 1, ?5, ?5, ?6, ?7, ?8)",
            )?
            // The column holds the customer key (what webhooks name), the spec the address as given.
            .execute(params![id, text, customer_key(&spec.recipient), FlowState::Ready.as_str(), ms(self.now), expires.map(ms), spec.callback_url, lane_for(spec, 0, FlowState::Ready)])?;
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
        let row = self
            .tx
            .prepare_cached(
                "SELECT spec, state, step, attempt, expires_ms, current_attempt, callback_url FROM flows WHERE id = ?1",
            )?
            .query_row(params![id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                ))
            })
            .optional()?;
        let Some((spec, state, step, attempt, expires, current, callback)) = row else {
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
        }))
    }

    fn set_state(&self, flow: &FlowRow, state: FlowState, wake_at: Option<u64>) -> Result<()> {
        let lane = lane_for(&flow.spec, flow.step, state);
        self.tx
            .prepare_cached("UPDATE flows SET state = ?2, wake_at = ?3, lane = ?4 WHERE id = ?1")?
            .execute(params![flow.id, state.as_str(), wake_at.map(ms), lane])?;
        Ok(())
    }

    fn due(&self, lane: &str, limit: usize) -> Result<Vec<String>> {
        let ids = self
            .tx
            .prepare_cached(
                "SELECT id FROM flows WHERE lane = ?1 AND wake_at IS NOT NULL AND wake_at <= ?2 ORDER BY wake_at LIMIT ?3",
            )?
            .query_map(params![lane, ms(self.now), limit as i64], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(ids)
    }

    /// A due flow: fire its timer, or claim its send.
    fn wake(&self, id: &str, pacer: &mut Pacer, horizon_ms: u64) -> Result<Option<Claim>> {
        let Some(mut flow) = self.load(id)? else {
            return Ok(None);
        };
        match policy::on_timer(flow.state, flow.position(), self.now) {
            None => {
                // Not a timer state (final, or sending): it should not be due.
                self.tx.execute(
                    "UPDATE flows SET wake_at = NULL, lane = NULL WHERE id = ?1",
                    params![id],
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
                    why: "no such step".into(),
                },
                None,
            )?;
            return Ok(None);
        };
        let slot = match pacer.try_take(&step.channel, &flow.spec.recipient, self.now, horizon_ms) {
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
        self.tx
            .prepare_cached(
                "INSERT INTO attempts (flow_id, step, channel, attempt, correlation_id, phase, slot_ms, sent_ms) VALUES (?1, ?2, ?3, ?4, ?5, 'claimed', ?6, ?6)",
            )?
            .execute(params![flow.id, flow.step as i64, step.channel, flow.attempt, correlation_id, ms(slot)])?;
        let attempt_id = self.tx.last_insert_rowid();
        self.tx
            .prepare_cached(
                "UPDATE flows SET state = ?2, wake_at = NULL, lane = NULL, current_attempt = ?3 WHERE id = ?1",
            )?
            .execute(params![flow.id, FlowState::Sending.as_str(), attempt_id])?;
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

    fn load_attempt(
        &self,
        sql_where: &str,
        args: impl rusqlite::Params,
    ) -> Result<Option<AttemptRow>> {
        let sql = format!(
            "SELECT id, flow_id, channel, attempt, phase, precedence, closed, status_disposition FROM attempts WHERE {sql_where}"
        );
        Ok(self
            .tx
            .prepare_cached(&sql)?
            .query_row(args, |r| {
                Ok(AttemptRow {
                    id: r.get(0)?,
                    flow_id: r.get(1)?,
                    channel: r.get(2)?,
                    attempt: r.get::<_, i64>(3)? as u32,
                    phase: AttemptPhase::parse(&r.get::<_, String>(4)?)
                        .unwrap_or(AttemptPhase::Recorded),
                    precedence: r.get(5)?,
                    closed: r.get::<_, i64>(6)? != 0,
                    status_disposition: r.get(7)?,
                })
            })
            .optional()?)
    }

    fn record(&self, attempt_id: i64, result: &SendResult) -> Result<()> {
        let Some(a) = self.load_attempt("id = ?1", params![attempt_id])? else {
            return Ok(());
        };
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
            SendResult::NotSent(_) => (Disposition::Failed, "not_sent".into(), None, None, None),
            SendResult::MaybeSent(_) => (
                Disposition::Unknown,
                "outcome_unknown".into(),
                None,
                None,
                None,
            ),
            SendResult::NeverLeft(_) => {
                (Disposition::Failed, "never_sent".into(), None, None, None)
            }
        };
        self.tx
            .prepare_cached(
                "UPDATE attempts SET phase = 'recorded', disposition = ?2, reason = ?3, provider_code = ?4, provider_message_id = coalesce(provider_message_id, ?5), recorded_ms = ?6 WHERE id = ?1",
            )?
            .execute(params![a.id, disposition_name(disposition), reason, code, message_id, ms(self.now)])?;
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
        let Some(flow) = self.load(&a.flow_id)? else {
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
            "attempt",
            json!({"channel": a.channel, "attempt": a.attempt,
            "disposition": disposition_name(disposition), "reason": reason}),
        )?;
        let next = match result {
            SendResult::NotSent(why) => Next::MoveOn {
                why: format!("{} refused the message before sending: {why}", a.channel),
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
                self.emit(flow, "done", json!({"channel": channel}))
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
                self.tx.execute(
                    "UPDATE flows SET state = ?2, attempt = ?3, wake_at = ?4, lane = ?5 WHERE id = ?1",
                    params![flow.id, FlowState::WaitingRetry.as_str(), n, ms(wake), lane],
                )?;
                Ok(())
            }
            Next::MoveOn { why } => self.move_on(flow, &why, attempt),
            Next::Expire => {
                self.note(&flow.id, attempt, "TTL reached: nothing more is sent")?;
                self.set_state(flow, FlowState::Expired, None)?;
                self.emit(flow, "expired", json!({}))
            }
            Next::Send => self.set_state(flow, FlowState::Ready, Some(self.now)),
        }
    }

    fn move_on(&self, flow: &FlowRow, why: &str, attempt: Option<i64>) -> Result<()> {
        self.note(&flow.id, attempt, why)?;
        // Every attempt on the step being left is one the flow moved on from.
        self.tx.execute(
            "UPDATE attempts SET closed = 1 WHERE flow_id = ?1 AND step = ?2",
            params![flow.id, flow.step as i64],
        )?;
        let next_step = flow.step + 1;
        match flow.spec.steps.get(next_step) {
            Some(next) => {
                self.note(
                    &flow.id,
                    attempt,
                    &format!("falling back to {}", next.channel),
                )?;
                self.tx.execute(
                    "UPDATE flows SET step = ?2, attempt = 1, state = ?3, wake_at = ?4, lane = ?5, current_attempt = NULL WHERE id = ?1",
                    params![flow.id, next_step as i64, FlowState::Ready.as_str(), ms(self.now), next.channel],
                )?;
                self.emit(
                    flow,
                    "falling_back",
                    json!({"from": flow.channel(), "to": next.channel, "why": why}),
                )
            }
            None => {
                self.note(
                    &flow.id,
                    attempt,
                    "no channel left: the message could not be delivered",
                )?;
                self.tx.execute(
                    "UPDATE flows SET step = ?2, state = ?3, wake_at = NULL, lane = NULL, current_attempt = NULL WHERE id = ?1",
                    params![flow.id, next_step as i64, FlowState::Exhausted.as_str()],
                )?;
                self.emit(flow, "exhausted", json!({"why": why}))
            }
        }
    }

    /// The attempt a status is about: by the provider's message id, else by the correlation
    /// id the provider echoes (the attempt then adopts the message id).
    fn attempt_for(&self, channel: &str, e: &WebhookEvent) -> Result<Option<AttemptRow>> {
        let Some(message_id) = &e.provider_message_id else {
            return Ok(None);
        };
        if let Some(a) = self.load_attempt(
            "channel = ?1 AND provider_message_id = ?2",
            params![channel, message_id],
        )? {
            return Ok(Some(a));
        }
        let Some(correlation) = &e.correlation_id else {
            return Ok(None);
        };
        let Some(a) = self.load_attempt(
            "correlation_id = ?1 AND channel = ?2 AND provider_message_id IS NULL",
            params![correlation, channel],
        )?
        else {
            return Ok(None);
        };
        self.tx.execute(
            "UPDATE attempts SET provider_message_id = ?2 WHERE id = ?1",
            params![a.id, message_id],
        )?;
        let how = if a.phase != AttemptPhase::Recorded {
            "before its answer was recorded"
        } else {
            "the attempt did go out"
        };
        self.note(
            &a.flow_id,
            Some(a.id),
            &format!("{channel} status names message {message_id} ({how})"),
        )?;
        Ok(Some(a))
    }

    /// Whether this is the first time the event is seen (its dedupe key is then kept).
    fn first_sight(&self, channel: &str, e: &WebhookEvent) -> Result<bool> {
        let fresh = self
            .tx
            .prepare_cached(
                "INSERT OR IGNORE INTO seen_events (dedupe_key, at_ms) VALUES (?1, ?2)",
            )?
            .execute(params![format!("{channel}:{}", e.dedupe_key), ms(self.now)])?;
        Ok(fresh > 0)
    }

    /// Applies a status seen for the first time.
    fn apply_status(&self, channel: &str, e: &WebhookEvent) -> Result<()> {
        let Some(a) = self.attempt_for(channel, e)? else {
            return Ok(());
        };
        let status = status_name(e);
        if i64::from(e.precedence) <= a.precedence {
            return self.note(
                &a.flow_id,
                Some(a.id),
                &format!("{channel} status {status} arrived late (after a higher one): ignored"),
            );
        }
        let disposition = disposition_name(e.classification.disposition);
        self.tx.execute(
            "UPDATE attempts SET precedence = ?2, status = ?3, status_disposition = ?4 WHERE id = ?1",
            params![a.id, e.precedence, status, disposition],
        )?;
        self.note(
            &a.flow_id,
            Some(a.id),
            &format!("{channel} status {status}: {}", describe(&e.classification)),
        )?;
        let Some(flow) = self.load(&a.flow_id)? else {
            return Ok(());
        };
        self.emit(
            &flow,
            "status",
            json!({"channel": channel, "attempt": a.attempt, "status": status,
            "disposition": disposition, "reason": e.classification.reason}),
        )?;
        if a.closed || flow.current_attempt != Some(a.id) {
            return self.possible_duplicate(&flow, &a, channel, &status, e);
        }
        match flow.state {
            FlowState::WaitingStatus | FlowState::WaitingUnknown => {
                let next = policy::after_outcome(
                    flow.position(),
                    e.classification.disposition,
                    e.classification.retry_after_ms,
                    self.now,
                );
                self.apply(&flow, next, Some(a.id))
            }
            // Sending: the recording of the answer applies it. Final: recorded, nothing to do.
            _ => Ok(()),
        }
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
        self.tx.execute(
            "UPDATE attempts SET possible_duplicate = 1 WHERE id = ?1",
            params![a.id],
        )?;
        self.note(
            &flow.id,
            Some(a.id),
            &format!("POSSIBLE DUPLICATE: {channel} {status} after the flow had moved on from it"),
        )?;
        self.emit(
            flow,
            "possible_duplicate",
            json!({"channel": channel, "attempt": a.attempt, "status": status}),
        )
    }
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

fn status_json(conn: &Connection, id: &str) -> Result<Option<Value>> {
    let flow: Option<(String, String, i64)> = conn
        .query_row(
            "SELECT spec, state, step FROM flows WHERE id = ?1",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((spec, state, step)) = flow else {
        return Ok(None);
    };
    let recipient = serde_json::from_str::<FlowSpec>(&spec)?.recipient;
    let mut stmt = conn.prepare_cached("SELECT id, channel, attempt, provider_message_id, sent_ms, disposition, reason, provider_code, status, closed, possible_duplicate, correlation_id, phase FROM attempts WHERE flow_id = ?1 ORDER BY id")?;
    let attempts: Vec<Value> = stmt
        .query_map(params![id], |r| {
            Ok(json!({
                "attempt_id": r.get::<_, i64>(0)?, "channel": r.get::<_, String>(1)?, "attempt": r.get::<_, i64>(2)?,
                "provider_message_id": r.get::<_, Option<String>>(3)?, "sent_ms": r.get::<_, i64>(4)?,
                "disposition": r.get::<_, Option<String>>(5)?.unwrap_or_else(|| "sending".into()),
                "reason": r.get::<_, Option<String>>(6)?, "provider_code": r.get::<_, Option<String>>(7)?,
                "last_status": r.get::<_, Option<String>>(8)?, "moved_on": r.get::<_, i64>(9)? != 0,
                "possible_duplicate": r.get::<_, i64>(10)? != 0, "correlation_id": r.get::<_, String>(11)?,
                "phase": r.get::<_, String>(12)?,
            }))
        })?
        .collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare_cached(
        "SELECT at_ms, attempt_id, entry FROM timeline WHERE flow_id = ?1 ORDER BY id",
    )?;
    let timeline: Vec<Value> = stmt
        .query_map(params![id], |r| Ok(json!({"at_ms": r.get::<_, i64>(0)?, "attempt_id": r.get::<_, Option<i64>>(1)?, "entry": r.get::<_, String>(2)?})))?
        .collect::<Result<_, _>>()?;
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

    const NOW: u64 = 1_800_000_000_000;
    const STATUS_NAMES: [&str; 5] = ["accepted", "sent", "failed", "delivered", "read"];

    fn store() -> Store {
        Store::open(":memory:").unwrap()
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

    #[test]
    fn a_claim_cut_off_before_it_was_handed_over_is_sent_again_once() {
        let s = store();
        s.submit(&[("f".into(), spec())], NOW).unwrap();
        let first = claim_one(&s, NOW);
        assert_eq!(first.correlation_id, "f/0/1");
        assert_eq!(s.recover(NOW + 1).unwrap(), 1);
        assert_eq!(state(&s), FlowState::WaitingRetry);
        let again = claim_one(&s, NOW + 2);
        assert_eq!(
            (again.channel.as_str(), again.correlation_id.as_str()),
            ("whatsapp", "f/0/2")
        );
        let status = s.status("f").unwrap().unwrap();
        assert_eq!(status["attempts"][0]["reason"], "never_sent");
    }

    #[test]
    fn a_send_cut_off_after_it_was_handed_over_becomes_unknown_and_is_not_resent() {
        let s = store();
        s.submit(&[("f".into(), spec())], NOW).unwrap();
        let c = claim_one(&s, NOW);
        assert!(s.mark_sending(c.attempt_id, NOW).unwrap());
        assert_eq!(s.recover(NOW + 1).unwrap(), 1);
        assert_eq!(state(&s), FlowState::WaitingUnknown);
        // Nothing is due before the unknown wait ends: no resend.
        assert!(
            s.claim_due(NOW + 4_000, 10, &channels(), &pacer(), 0)
                .unwrap()
                .is_empty()
        );
        // A status naming the correlation id settles it.
        s.apply_statuses(
            "whatsapp",
            &[status("wamid.1", "f/0/1", Disposition::Delivered, 3)],
            NOW + 4_500,
        )
        .unwrap();
        assert_eq!(state(&s), FlowState::Done);
    }

    #[test]
    fn a_status_that_overtakes_the_answer_is_applied_when_the_answer_is_recorded() {
        let s = store();
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

    #[test]
    fn a_timer_never_fires_for_a_step_already_moved_past() {
        let s = store();
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

    #[test]
    fn a_status_for_an_attempt_moved_on_from_is_a_possible_duplicate() {
        let s = store();
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

    #[test]
    fn a_customer_who_wrote_has_an_open_window_for_later_sends() {
        let s = store();
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

    #[test]
    fn a_131050_refusal_stops_marketing_for_that_customer_until_a_resume() {
        let s = store();
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
        assert!(claim_one(&s, NOW).opted_out.is_empty());
    }

    #[test]
    fn redelivered_and_stale_statuses_change_nothing() {
        let s = store();
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
