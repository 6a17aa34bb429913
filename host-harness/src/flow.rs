//! The flow runner: one send step tried channel by channel, with retries, timers, a TTL and a
//! per-attempt timeline, its state in SQLite so a restart loses nothing.
//!
//! A flow file names the recipient, the steps (one per channel, in order: the message content
//! for that channel, the status to wait for and how long), the retry budget, the TTL and how
//! long an `unknown` outcome waits for a status:
//!
//! ```json
//! {"id": "order-4711", "recipient": "+15550100001", "ttl_ms": 600000, "max_attempts": 3,
//!  "steps": [
//!    {"channel": "whatsapp", "content": {"type": "template", …}, "wait_for": "delivered", "within_ms": 60000},
//!    {"channel": "sms", "content": {"text": "Your order shipped"}, "wait_for": "delivered", "within_ms": 60000}]}
//! ```
//!
//! Policy: `fallback`/`failed` → next channel; `retry` → same channel after `retry_after_ms`,
//! up to `max_attempts`; `unknown` → wait `unknown_wait_ms` for a status before moving on
//! (never a blind resend); no target status within `within_ms` → next channel; past the TTL
//! nothing more is sent. Webhook events are deduplicated by their `dedupe-key` and applied only
//! if their `precedence` is higher than the attempt's (so replays and disorder change nothing);
//! a `delivered` or `read` for an attempt the flow already moved on from is recorded as a
//! possible duplicate.

use crate::json::disposition_name;
use crate::runtime::Plugin;
use crate::types::{
    ChannelConfig, Classification, Disposition, EventKind, MessageRequest, WebhookEvent,
};
use anyhow::{Context, Result, bail};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Mutex;

fn default_wait_for() -> String {
    "delivered".into()
}
fn default_max_attempts() -> u32 {
    3
}
fn default_unknown_wait_ms() -> u64 {
    30_000
}

/// One channel's part of a flow.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// A channel name the runner knows (`whatsapp`, `sms`).
    pub channel: String,
    /// The message content for that channel.
    pub content: Value,
    /// `accepted`, `sent`, `delivered` or `read`.
    #[serde(default = "default_wait_for")]
    pub wait_for: String,
    /// How long to wait for `wait_for` before trying the next channel.
    pub within_ms: Option<u64>,
}

/// A flow file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowSpec {
    pub id: Option<String>,
    pub recipient: String,
    pub steps: Vec<Step>,
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// After this long nothing more is sent (an OTP is worthless late).
    pub ttl_ms: Option<u64>,
    #[serde(default = "default_unknown_wait_ms")]
    pub unknown_wait_ms: u64,
    /// When the customer last wrote (for the WhatsApp service window).
    pub last_inbound_ms: Option<u64>,
}

fn target_rank(wait_for: &str) -> Option<u8> {
    Some(match wait_for {
        "accepted" => 0,
        "sent" => 1,
        "delivered" => 3,
        "read" => 4,
        _ => return None,
    })
}

impl FlowSpec {
    pub fn check(&self) -> Result<()> {
        if self.steps.is_empty() {
            bail!("/steps: a flow needs at least one step");
        }
        for (i, s) in self.steps.iter().enumerate() {
            if target_rank(&s.wait_for).is_none() {
                bail!(
                    "/steps/{i}/wait_for: must be accepted, sent, delivered or read, got {:?}",
                    s.wait_for
                );
            }
        }
        if self.max_attempts == 0 {
            bail!("/max_attempts: must be at least 1");
        }
        Ok(())
    }
}

/// A channel the runner can send on.
pub struct Channel {
    pub plugin: Plugin,
    pub config: ChannelConfig,
}

/// Flow states.
pub mod state {
    pub const WAITING_STATUS: &str = "waiting_status";
    pub const WAITING_RETRY: &str = "waiting_retry";
    pub const WAITING_UNKNOWN: &str = "waiting_unknown";
    pub const DONE: &str = "done";
    pub const EXHAUSTED: &str = "exhausted";
    pub const EXPIRED: &str = "expired";
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS flows (
  id TEXT PRIMARY KEY, spec TEXT NOT NULL, state TEXT NOT NULL, step INTEGER NOT NULL,
  attempt INTEGER NOT NULL, wake_at INTEGER, created_ms INTEGER NOT NULL, expires_ms INTEGER);
CREATE TABLE IF NOT EXISTS attempts (
  id INTEGER PRIMARY KEY AUTOINCREMENT, flow_id TEXT NOT NULL, step INTEGER NOT NULL,
  channel TEXT NOT NULL, attempt INTEGER NOT NULL, provider_message_id TEXT, sent_ms INTEGER NOT NULL,
  disposition TEXT NOT NULL, reason TEXT NOT NULL, provider_code TEXT,
  precedence INTEGER NOT NULL DEFAULT 0, status TEXT, closed INTEGER NOT NULL DEFAULT 0,
  possible_duplicate INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS attempts_by_message ON attempts(channel, provider_message_id);
CREATE TABLE IF NOT EXISTS timeline (
  id INTEGER PRIMARY KEY AUTOINCREMENT, flow_id TEXT NOT NULL, at_ms INTEGER NOT NULL,
  attempt_id INTEGER, entry TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS seen_events (dedupe_key TEXT PRIMARY KEY, at_ms INTEGER NOT NULL);
";

/// Runs flows; every method takes `now_ms` so tests and the demo control time.
pub struct Runner {
    db: Mutex<Connection>,
    channels: HashMap<String, Channel>,
}

struct FlowRow {
    spec: FlowSpec,
    state: String,
    step: usize,
    attempt: u32,
    expires_ms: Option<u64>,
}

impl Runner {
    /// Opens (or creates) the state database. `:memory:` keeps it in memory.
    pub fn open(path: &str, channels: HashMap<String, Channel>) -> Result<Runner> {
        let db =
            Connection::open(path).with_context(|| format!("opening the flow database {path}"))?;
        // `flow status` reads the file while `serve` writes it: wait for locks, don't fail.
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.execute_batch(SCHEMA)
            .context("creating the flow tables")?;
        db.pragma_update(None, "journal_mode", "WAL").ok();
        Ok(Runner {
            db: Mutex::new(db),
            channels,
        })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn note(
        db: &Connection,
        flow: &str,
        now: u64,
        attempt: Option<i64>,
        entry: &str,
    ) -> Result<()> {
        db.execute(
            "INSERT INTO timeline (flow_id, at_ms, attempt_id, entry) VALUES (?1, ?2, ?3, ?4)",
            params![flow, now as i64, attempt, entry],
        )?;
        Ok(())
    }

    fn load(db: &Connection, id: &str) -> Result<Option<FlowRow>> {
        db.query_row(
            "SELECT spec, state, step, attempt, expires_ms FROM flows WHERE id = ?1",
            params![id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                ))
            },
        )
        .optional()?
        .map(|(spec, state, step, attempt, expires)| {
            Ok(FlowRow {
                spec: serde_json::from_str(&spec)?,
                state,
                step: step as usize,
                attempt: attempt as u32,
                expires_ms: expires.map(|e| e as u64),
            })
        })
        .transpose()
    }

    fn set_state(db: &Connection, id: &str, state: &str, wake_at: Option<u64>) -> Result<()> {
        db.execute(
            "UPDATE flows SET state = ?2, wake_at = ?3 WHERE id = ?1",
            params![id, state, wake_at.map(|w| w as i64)],
        )?;
        Ok(())
    }

    /// Starts a flow and makes its first attempt; returns its id.
    pub fn start(&self, spec: FlowSpec, now: u64) -> Result<String> {
        spec.check()?;
        let id = spec
            .id
            .clone()
            .unwrap_or_else(|| format!("flow-{now}-{}", std::process::id()));
        let db = self.db();
        let expires = spec.ttl_ms.map(|t| now + t);
        db.execute(
            "INSERT INTO flows (id, spec, state, step, attempt, wake_at, created_ms, expires_ms) VALUES (?1, ?2, 'starting', 0, 1, NULL, ?3, ?4)",
            params![id, serde_json::to_string(&spec)?, now as i64, expires.map(|e| e as i64)],
        )
        .with_context(|| format!("a flow with id {id:?} exists already"))?;
        Self::note(
            &db,
            &id,
            now,
            None,
            &format!(
                "flow started for {} ({} step(s))",
                spec.recipient,
                spec.steps.len()
            ),
        )?;
        self.attempt(&db, &id, now)?;
        Ok(id)
    }

    /// Sends the flow's current step, attempt number as stored, and acts on the answer.
    fn attempt(&self, db: &Connection, id: &str, now: u64) -> Result<()> {
        let Some(flow) = Self::load(db, id)? else {
            return Ok(());
        };
        if flow.expires_ms.is_some_and(|e| now >= e) {
            Self::note(db, id, now, None, "TTL reached: nothing more is sent")?;
            return Self::set_state(db, id, state::EXPIRED, None);
        }
        let Some(step) = flow.spec.steps.get(flow.step) else {
            Self::note(
                db,
                id,
                now,
                None,
                "no channel left: the message could not be delivered",
            )?;
            return Self::set_state(db, id, state::EXHAUSTED, None);
        };
        let Some(channel) = self.channels.get(&step.channel) else {
            return self.give_up_on_channel(
                db,
                id,
                now,
                &format!("unknown channel {:?}", step.channel),
            );
        };
        let request = MessageRequest {
            recipient: flow.spec.recipient.clone(),
            correlation_id: Some(format!("{id}/{}", flow.step)),
            content: step.content.to_string(),
            last_inbound_ms: flow.spec.last_inbound_ms,
            now_ms: now,
        };
        let c = match channel.plugin.send(&request, &channel.config, flow.attempt) {
            Ok(Ok(c)) => c,
            Ok(Err(errors)) => {
                let first = errors
                    .first()
                    .map(|e| format!("{} [{}] {}", e.path, e.code, e.message))
                    .unwrap_or_default();
                return self.give_up_on_channel(
                    db,
                    id,
                    now,
                    &format!(
                        "{} refused the message before sending: {first}",
                        step.channel
                    ),
                );
            }
            Err(trap) => {
                return self.give_up_on_channel(
                    db,
                    id,
                    now,
                    &format!("{} plugin failed: {trap}", step.channel),
                );
            }
        };
        db.execute(
            "INSERT INTO attempts (flow_id, step, channel, attempt, provider_message_id, sent_ms, disposition, reason, provider_code) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![id, flow.step as i64, step.channel, flow.attempt, c.provider_message_id, now as i64, disposition_name(c.disposition), c.reason, c.provider_code],
        )?;
        let attempt_id = db.last_insert_rowid();
        Self::note(
            db,
            id,
            now,
            Some(attempt_id),
            &format!(
                "{} attempt {}: {}",
                step.channel,
                flow.attempt,
                describe(&c)
            ),
        )?;
        self.act(db, id, &flow, step, attempt_id, &c, now)
    }

    /// Applies a classification to the flow's current attempt.
    #[allow(clippy::too_many_arguments)]
    fn act(
        &self,
        db: &Connection,
        id: &str,
        flow: &FlowRow,
        step: &Step,
        attempt_id: i64,
        c: &Classification,
        now: u64,
    ) -> Result<()> {
        let target = target_rank(&step.wait_for).unwrap_or(3);
        match c.disposition {
            Disposition::Accepted
            | Disposition::Sent
            | Disposition::Delivered
            | Disposition::Read => {
                let reached = match c.disposition {
                    Disposition::Accepted => 0,
                    Disposition::Sent => 1,
                    Disposition::Delivered => 3,
                    _ => 4,
                };
                if reached >= target {
                    Self::note(
                        db,
                        id,
                        now,
                        Some(attempt_id),
                        &format!("{} on {}: done", step.wait_for, step.channel),
                    )?;
                    return Self::set_state(db, id, state::DONE, None);
                }
                let deadline = step.within_ms.map(|w| now + w).or(flow.expires_ms);
                Self::set_state(db, id, state::WAITING_STATUS, deadline)
            }
            Disposition::Retry if flow.attempt < flow.spec.max_attempts => {
                let wait = c.retry_after_ms.unwrap_or(1_000);
                Self::note(
                    db,
                    id,
                    now,
                    Some(attempt_id),
                    &format!("retrying {} in {wait} ms", step.channel),
                )?;
                Self::set_state(db, id, state::WAITING_RETRY, Some(now + wait))
            }
            Disposition::Retry => {
                Self::note(
                    db,
                    id,
                    now,
                    Some(attempt_id),
                    &format!(
                        "{} attempts used on {}",
                        flow.spec.max_attempts, step.channel
                    ),
                )?;
                self.move_on(db, id, now, Some(attempt_id))
            }
            Disposition::Unknown => {
                Self::note(
                    db,
                    id,
                    now,
                    Some(attempt_id),
                    &format!(
                        "outcome unknown: waiting up to {} ms for a status before moving on",
                        flow.spec.unknown_wait_ms
                    ),
                )?;
                Self::set_state(
                    db,
                    id,
                    state::WAITING_UNKNOWN,
                    Some(now + flow.spec.unknown_wait_ms),
                )
            }
            Disposition::Fallback | Disposition::Failed => {
                self.move_on(db, id, now, Some(attempt_id))
            }
        }
    }

    /// Notes why the current channel cannot be used, and moves on.
    fn give_up_on_channel(&self, db: &Connection, id: &str, now: u64, why: &str) -> Result<()> {
        Self::note(db, id, now, None, why)?;
        self.move_on(db, id, now, None)
    }

    /// Leaves the current channel for the next one.
    fn move_on(&self, db: &Connection, id: &str, now: u64, attempt_id: Option<i64>) -> Result<()> {
        // Every earlier attempt is now one the flow moved on from.
        db.execute(
            "UPDATE attempts SET closed = 1 WHERE flow_id = ?1",
            params![id],
        )?;
        db.execute(
            "UPDATE flows SET step = step + 1, attempt = 1 WHERE id = ?1",
            params![id],
        )?;
        let Some(flow) = Self::load(db, id)? else {
            return Ok(());
        };
        if let Some(next) = flow.spec.steps.get(flow.step) {
            Self::note(
                db,
                id,
                now,
                attempt_id,
                &format!("falling back to {}", next.channel),
            )?;
        }
        self.attempt(db, id, now)
    }

    /// Applies webhook events from one channel.
    pub fn on_events(&self, channel: &str, events: &[WebhookEvent], now: u64) -> Result<()> {
        let db = self.db();
        for e in events {
            if e.kind != EventKind::MessageStatus {
                continue;
            }
            let fresh = db.execute(
                "INSERT OR IGNORE INTO seen_events (dedupe_key, at_ms) VALUES (?1, ?2)",
                params![format!("{channel}:{}", e.dedupe_key), now as i64],
            )?;
            if fresh == 0 {
                continue; // a redelivery: already applied
            }
            let Some(message_id) = &e.provider_message_id else {
                continue;
            };
            let found = match Self::attempt_by_message(&db, channel, message_id)? {
                Some(found) => Some(found),
                None => Self::adopt_unknown_attempt(
                    &db,
                    channel,
                    message_id,
                    e.correlation_id.as_deref(),
                    now,
                )?,
            };
            let Some((attempt_id, flow_id, precedence, closed)) = found else {
                continue;
            };
            let status = serde_json::from_str::<Value>(&e.details)
                .ok()
                .and_then(|d| d.get("status").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_else(|| e.classification.reason.clone());
            if i64::from(e.precedence) <= precedence {
                Self::note(
                    &db,
                    &flow_id,
                    now,
                    Some(attempt_id),
                    &format!(
                        "{channel} status {status} arrived late (after a higher one): ignored"
                    ),
                )?;
                continue;
            }
            db.execute(
                "UPDATE attempts SET precedence = ?2, status = ?3 WHERE id = ?1",
                params![attempt_id, e.precedence, status],
            )?;
            Self::note(
                &db,
                &flow_id,
                now,
                Some(attempt_id),
                &format!("{channel} status {status}: {}", describe(&e.classification)),
            )?;
            let Some(flow) = Self::load(&db, &flow_id)? else {
                continue;
            };
            let delivered = matches!(
                e.classification.disposition,
                Disposition::Delivered | Disposition::Read
            );
            if closed {
                if delivered {
                    db.execute(
                        "UPDATE attempts SET possible_duplicate = 1 WHERE id = ?1",
                        params![attempt_id],
                    )?;
                    Self::note(
                        &db,
                        &flow_id,
                        now,
                        Some(attempt_id),
                        &format!(
                            "POSSIBLE DUPLICATE: {channel} {status} after the flow had moved on from it"
                        ),
                    )?;
                }
                continue;
            }
            if !matches!(
                flow.state.as_str(),
                state::WAITING_STATUS | state::WAITING_UNKNOWN
            ) {
                continue;
            }
            let Some(step) = flow.spec.steps.get(flow.step).cloned() else {
                continue;
            };
            self.act(
                &db,
                &flow_id,
                &flow,
                &step,
                attempt_id,
                &e.classification,
                now,
            )?;
        }
        Ok(())
    }

    fn attempt_by_message(
        db: &Connection,
        channel: &str,
        message_id: &str,
    ) -> Result<Option<(i64, String, i64, bool)>> {
        Ok(db
            .query_row(
                "SELECT id, flow_id, precedence, closed FROM attempts WHERE channel = ?1 AND provider_message_id = ?2",
                params![channel, message_id],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)? != 0)),
            )
            .optional()?)
    }

    /// A status for a message id we never learned (the send's outcome was `unknown`) finds its
    /// attempt through the correlation id the runner sent (`{flow}/{step}`), which the provider
    /// echoes: the attempt adopts the id, so "did it go out?" gets its answer.
    fn adopt_unknown_attempt(
        db: &Connection,
        channel: &str,
        message_id: &str,
        correlation: Option<&str>,
        now: u64,
    ) -> Result<Option<(i64, String, i64, bool)>> {
        let Some((flow_id, step)) = correlation.and_then(|c| c.rsplit_once('/')) else {
            return Ok(None);
        };
        let Ok(step) = step.parse::<i64>() else {
            return Ok(None);
        };
        let adopted = db
            .query_row(
                "SELECT id FROM attempts WHERE flow_id = ?1 AND step = ?2 AND channel = ?3 AND provider_message_id IS NULL AND disposition = 'unknown' ORDER BY id DESC LIMIT 1",
                params![flow_id, step, channel],
                |r| r.get::<_, i64>(0),
            )
            .optional()?;
        let Some(attempt_id) = adopted else {
            return Ok(None);
        };
        db.execute(
            "UPDATE attempts SET provider_message_id = ?2 WHERE id = ?1",
            params![attempt_id, message_id],
        )?;
        Self::note(
            db,
            flow_id,
            now,
            Some(attempt_id),
            &format!("{channel} status names message {message_id}: the unknown attempt did go out"),
        )?;
        Self::attempt_by_message(db, channel, message_id)
    }

    /// Fires due timers: status deadlines, retries, unknown-outcome waits, TTLs.
    pub fn tick(&self, now: u64) -> Result<usize> {
        let db = self.db();
        let due: Vec<(String, String)> = {
            let mut stmt = db.prepare(
                "SELECT id, state FROM flows WHERE state IN ('waiting_status', 'waiting_retry', 'waiting_unknown')
                 AND ((wake_at IS NOT NULL AND wake_at <= ?1) OR (expires_ms IS NOT NULL AND expires_ms <= ?1))",
            )?;
            stmt.query_map(params![now as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?
        };
        for (id, st) in &due {
            let Some(flow) = Self::load(&db, id)? else {
                continue;
            };
            if flow.expires_ms.is_some_and(|e| now >= e) {
                Self::note(&db, id, now, None, "TTL reached: nothing more is sent")?;
                Self::set_state(&db, id, state::EXPIRED, None)?;
                continue;
            }
            let step = flow.spec.steps.get(flow.step);
            match st.as_str() {
                state::WAITING_RETRY => {
                    db.execute(
                        "UPDATE flows SET attempt = attempt + 1 WHERE id = ?1",
                        params![id],
                    )?;
                    self.attempt(&db, id, now)?;
                }
                state::WAITING_STATUS => {
                    let (channel, wait_for, within) = step
                        .map(|s| {
                            (
                                s.channel.as_str(),
                                s.wait_for.as_str(),
                                s.within_ms.unwrap_or(0),
                            )
                        })
                        .unwrap_or(("?", "?", 0));
                    Self::note(
                        &db,
                        id,
                        now,
                        None,
                        &format!("timer: {channel} not {wait_for} within {within} ms"),
                    )?;
                    self.move_on(&db, id, now, None)?;
                }
                _ => {
                    Self::note(
                        &db,
                        id,
                        now,
                        None,
                        &format!(
                            "no status within {} ms after an unknown outcome",
                            flow.spec.unknown_wait_ms
                        ),
                    )?;
                    self.move_on(&db, id, now, None)?;
                }
            }
        }
        Ok(due.len())
    }

    /// The flow's state, attempts and timeline.
    pub fn status(&self, id: &str) -> Result<Option<Value>> {
        let db = self.db();
        let Some(flow) = Self::load(&db, id)? else {
            return Ok(None);
        };
        let mut stmt = db.prepare("SELECT id, channel, attempt, provider_message_id, sent_ms, disposition, reason, provider_code, status, closed, possible_duplicate FROM attempts WHERE flow_id = ?1 ORDER BY id")?;
        let attempts: Vec<Value> = stmt
            .query_map(params![id], |r| {
                Ok(json!({
                    "attempt_id": r.get::<_, i64>(0)?, "channel": r.get::<_, String>(1)?, "attempt": r.get::<_, i64>(2)?,
                    "provider_message_id": r.get::<_, Option<String>>(3)?, "sent_ms": r.get::<_, i64>(4)?,
                    "disposition": r.get::<_, String>(5)?, "reason": r.get::<_, String>(6)?, "provider_code": r.get::<_, Option<String>>(7)?,
                    "last_status": r.get::<_, Option<String>>(8)?, "moved_on": r.get::<_, i64>(9)? != 0, "possible_duplicate": r.get::<_, i64>(10)? != 0,
                }))
            })?
            .collect::<Result<_, _>>()?;
        let mut stmt = db.prepare(
            "SELECT at_ms, attempt_id, entry FROM timeline WHERE flow_id = ?1 ORDER BY id",
        )?;
        let timeline: Vec<Value> = stmt
            .query_map(params![id], |r| Ok(json!({"at_ms": r.get::<_, i64>(0)?, "attempt_id": r.get::<_, Option<i64>>(1)?, "entry": r.get::<_, String>(2)?})))?
            .collect::<Result<_, _>>()?;
        Ok(Some(
            json!({"id": id, "recipient": flow.spec.recipient, "state": flow.state, "step": flow.step, "attempts": attempts, "timeline": timeline}),
        ))
    }

    /// A channel by name.
    pub fn channel(&self, name: &str) -> Option<&Channel> {
        self.channels.get(name)
    }

    /// Whether a flow reached a final state.
    pub fn is_final(&self, id: &str) -> Result<bool> {
        let db = self.db();
        Ok(Self::load(&db, id)?.is_some_and(|f| {
            matches!(
                f.state.as_str(),
                state::DONE | state::EXHAUSTED | state::EXPIRED
            )
        }))
    }
}

fn describe(c: &Classification) -> String {
    let mut s = format!("{} / {}", disposition_name(c.disposition), c.reason);
    if let Some(code) = &c.provider_code {
        s.push_str(&format!(" (code {code})"));
    }
    if let Some(id) = &c.provider_message_id {
        s.push_str(&format!(" id {id}"));
    }
    s
}

/// A flow's timeline as readable text.
pub fn render_timeline(status: &Value) -> String {
    let mut out = format!(
        "flow {} → {}: {}\n",
        status["id"].as_str().unwrap_or(""),
        status["recipient"].as_str().unwrap_or(""),
        status["state"].as_str().unwrap_or("")
    );
    let start = status["timeline"][0]["at_ms"].as_i64().unwrap_or(0);
    for t in status["timeline"].as_array().into_iter().flatten() {
        let dt = t["at_ms"].as_i64().unwrap_or(0) - start;
        out.push_str(&format!(
            "  +{:>6} ms  {}\n",
            dt,
            t["entry"].as_str().unwrap_or("")
        ));
    }
    out
}
