//! The transitions, written once above the [driver](super::driver): each reads the flow's
//! position, asks the [`policy`](crate::flow::policy) and writes the answer, the timeline and
//! the outbox in the one transaction it is given. The flow's row is locked before its
//! attempt's, always (PostgreSQL); SQLite's writers exclude each other whole.

use super::driver::{
    Answer, AttemptRecord, Backend, FlowRecord, NewAttempt, NewCallback, NewFlow, NewNote, Ops,
    StatusRaise,
};
use super::{
    AttemptPhase, CallbackKind, Claim, CustomerGap, SendResult, Submitted, Write, Written,
    customers, lane_for, ms,
};
use crate::contract::signals::HostReason;
use crate::contract::types::{Classification, Disposition, EventKind, WebhookEvent};
use crate::flow::pacing::{Deferral, Pacer};
use crate::flow::policy::{self, FlowState, MoveOnReason, Next, Position};
use crate::flow::spec::FlowSpec;
use crate::json::disposition_name;
use crate::tenants;
use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::cell::RefCell;

/// One open transaction, with what every transition needs to know.
pub(super) struct Tx<'a> {
    pub ops: &'a dyn Ops,
    pub now: u64,
    pub backend: Backend,
    /// This node's name in leases.
    pub node: &'a str,
    pub lease_ms: u64,
    /// The timeline lines and callbacks of this transaction: nothing in it reads them back,
    /// so they are written together, one statement each, when it ends ([`Tx::finish`]).
    notes: RefCell<Vec<NewNote>>,
    callbacks: RefCell<Vec<NewCallback>>,
}

impl<'a> Tx<'a> {
    pub(super) fn new(
        ops: &'a dyn Ops,
        now: u64,
        backend: Backend,
        node: &'a str,
        lease_ms: u64,
    ) -> Tx<'a> {
        Tx {
            ops,
            now,
            backend,
            node,
            lease_ms,
            notes: RefCell::default(),
            callbacks: RefCell::default(),
        }
    }

    /// Writes what the transitions queued; the transaction commits after this.
    pub(super) fn finish(&self) -> Result<()> {
        self.ops.add_notes(&self.notes.take())?;
        self.ops.enqueue_callbacks(&self.callbacks.take())
    }
}

#[derive(Debug, Clone)]
pub(super) struct FlowRow {
    pub id: String,
    pub spec: FlowSpec,
    pub state: FlowState,
    pub step: usize,
    pub attempt: u32,
    pub expires_ms: Option<u64>,
    pub current_attempt: Option<i64>,
    pub callback_url: Option<String>,
    /// The recipient's customer key (what webhooks name).
    pub customer: String,
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

    /// The customer key step `step` sends to: its own `to`'s, else the flow's.
    fn customer_of_step(&self, step: usize) -> String {
        match self.spec.steps.get(step).and_then(|s| s.to.as_deref()) {
            Some(to) => tenants::scoped(tenants::unscoped(&self.id).0, &customer_key(to)),
            None => self.customer.clone(),
        }
    }

    /// The customer keys the flow's steps on `channel` send to (the flow's own when none).
    fn customers_on(&self, channel: &str) -> Vec<String> {
        let mut keys: Vec<String> = (0..self.spec.steps.len())
            .filter(|&i| self.spec.steps[i].channel == channel)
            .map(|i| self.customer_of_step(i))
            .collect();
        if keys.is_empty() {
            keys.push(self.customer.clone());
        }
        keys.dedup();
        keys
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
    provider_message_id: Option<String>,
}

/// A stored flow with its spec read.
fn flow_row(r: FlowRecord) -> Result<FlowRow> {
    Ok(FlowRow {
        spec: serde_json::from_str(&r.spec)
            .with_context(|| format!("flow {} holds a spec this host cannot read", r.id))?,
        state: r.state,
        step: usize::try_from(r.step).unwrap_or(usize::MAX),
        attempt: u32::try_from(r.attempt).unwrap_or(u32::MAX),
        expires_ms: r.expires_ms.map(|e| e.max(0) as u64),
        current_attempt: r.current_attempt,
        callback_url: r.callback_url,
        customer: r.customer,
        id: r.id,
    })
}

impl From<AttemptRecord> for AttemptRow {
    fn from(a: AttemptRecord) -> AttemptRow {
        AttemptRow {
            id: a.id,
            flow_id: a.flow_id,
            channel: a.channel,
            attempt: u32::try_from(a.attempt).unwrap_or(u32::MAX),
            phase: a.phase,
            closed: a.closed,
            status_disposition: a.status_disposition,
            provider_message_id: a.provider_message_id,
        }
    }
}

impl Tx<'_> {
    /// `claimed` → `sending` (on PostgreSQL only while the lease has room for the longest
    /// call); false if it was no longer claimed.
    pub(super) fn mark_sending(&self, attempt_id: i64) -> Result<bool> {
        let lease_needed = self.now.saturating_add(super::HANDOVER_MARGIN_MS);
        self.ops.mark_sending(attempt_id, ms(lease_needed))
    }

    /// Records the answer; nodes sharing PostgreSQL also keep where it moved the customer's gap.
    pub(super) fn record_paced(
        &self,
        attempt_id: i64,
        result: &SendResult,
        customer_gap: Option<&CustomerGap>,
    ) -> Result<()> {
        self.record(attempt_id, result)?;
        match customer_gap {
            Some(gap) if self.backend == Backend::Postgres => self.extend_customer_gap(gap),
            _ => Ok(()),
        }
    }

    /// One of a group's writes ([`super::Store::write_batch`]).
    pub(super) fn write(&self, w: &Write) -> Result<Written> {
        match w {
            Write::MarkSending { attempt_id } => {
                Ok(Written::Marked(self.mark_sending(*attempt_id)?))
            }
            Write::Record {
                attempt_id,
                result,
                customer_gap,
            } => {
                self.record_paced(*attempt_id, result, customer_gap.as_ref())?;
                Ok(Written::Recorded)
            }
            Write::Events {
                channel,
                tenant,
                events,
            } => {
                let mut fresh = Vec::new();
                for (i, e) in events.iter().enumerate() {
                    if self.apply_event(channel, tenant.as_deref(), e)? {
                        fresh.push(i);
                    }
                }
                Ok(Written::Applied(fresh))
            }
        }
    }

    pub(super) fn note(&self, flow: &str, attempt: Option<i64>, entry: &str) -> Result<()> {
        self.notes.borrow_mut().push(NewNote {
            flow_id: flow.to_string(),
            at_ms: ms(self.now),
            attempt_id: attempt,
            entry: entry.to_string(),
        });
        Ok(())
    }

    /// Queues a callback for the flow's `callback_url`, if it has one.
    pub(super) fn emit(&self, flow: &FlowRow, kind: CallbackKind, detail: Value) -> Result<()> {
        let Some(url) = &flow.callback_url else {
            return Ok(());
        };
        let event_id = uuid::Uuid::now_v7().to_string();
        // The tenant's own id: the receiver never sees another tenant's keys.
        let (tenant, flow_id) = tenants::unscoped(&flow.id);
        let body = json!({"event_id": event_id, "flow_id": flow_id, "tenant": tenant,
            "kind": kind.as_str(), "at_ms": self.now, "detail": detail});
        self.callbacks.borrow_mut().push(NewCallback {
            flow_id: flow.id.clone(),
            url: url.clone(),
            body: body.to_string(),
            next_at: ms(self.now),
            event_id,
        });
        Ok(())
    }

    pub(super) fn submit(&self, id: &str, spec: &FlowSpec) -> Result<Submitted> {
        let text = serde_json::to_string(spec)?;
        let expires = spec.ttl_ms.map(|t| self.now.saturating_add(t));
        // Insert-if-absent, then look: two nodes submitting one id at once never both create
        // it (PostgreSQL makes the second wait for the first's commit on the key).
        // The column holds the customer key (what webhooks name), the spec the address as given.
        let inserted = self.ops.insert_flow(&NewFlow {
            id,
            spec: &text,
            customer: &tenants::scoped(tenants::unscoped(id).0, &customer_key(&spec.recipient)),
            now_ms: ms(self.now),
            expires_ms: expires.map(ms),
            callback_url: spec.callback_url.as_deref(),
            lane: lane_for(spec, 0, FlowState::Ready).as_deref(),
        })?;
        if !inserted {
            let stored = self.ops.flow_spec(id)?;
            return Ok(if stored.as_deref() == Some(text.as_str()) {
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

    pub(super) fn load(&self, id: &str) -> Result<Option<FlowRow>> {
        // Every load decides something: on PostgreSQL the row stays locked until commit.
        self.ops.lock_flow(id)?.map(flow_row).transpose()
    }

    pub(super) fn set_state(
        &self,
        flow: &FlowRow,
        state: FlowState,
        wake_at: Option<u64>,
    ) -> Result<()> {
        let lane = lane_for(&flow.spec, flow.step, state);
        self.ops
            .set_flow_state(&flow.id, state, wake_at.map(ms), lane.as_deref())
    }

    pub(super) fn due(&self, lane: &str, limit: usize) -> Result<Vec<String>> {
        self.ops
            .due_flows(lane, ms(self.now), i64::try_from(limit).unwrap_or(i64::MAX))
    }

    /// A due flow: fire its timer, or claim its send.
    pub(super) fn wake(
        &self,
        id: &str,
        pacer: &mut Pacer,
        horizon_ms: u64,
    ) -> Result<Option<Claim>> {
        let Some(mut flow) = self.load(id)? else {
            return Ok(None);
        };
        match policy::on_timer(flow.state, flow.position(), self.now) {
            None => {
                // Not a timer state (final, or sending): it should not be due.
                self.ops.clear_wake(id)?;
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
        // Each sending number has its own pace and its own gap per customer (Meta counts
        // both per business number).
        let lane = step.lane();
        let (recipient, customer) = (
            flow.spec.recipient_of(flow.step),
            flow.customer_of_step(flow.step),
        );
        let shared = self.backend == Backend::Postgres;
        if shared {
            self.adopt_shared_pacing(&lane, recipient, pacer)?;
        }
        let taken = pacer.try_take(&lane, recipient, self.now, horizon_ms);
        if shared && taken.is_ok() {
            self.share_pacing(&lane, recipient, pacer)?;
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
        let attempt_id = self.ops.insert_attempt(&NewAttempt {
            flow_id: &flow.id,
            step: flow.step as i64,
            channel: &step.channel,
            attempt: i64::from(flow.attempt),
            correlation_id: &correlation_id,
            slot_ms: ms(slot),
        })?;
        // The flow is this node's until the lease passes.
        self.ops.lease_flow(
            &flow.id,
            attempt_id,
            self.node,
            ms(self.now.saturating_add(self.lease_ms)),
        )?;
        Ok(Some(Claim {
            flow_id: flow.id.clone(),
            attempt_id,
            channel: step.channel.clone(),
            attempt: flow.attempt,
            correlation_id,
            recipient: flow.spec.recipient_of(flow.step).to_string(),
            content: step.content.to_string(),
            last_inbound_ms: self.last_inbound(&lane, &customer, &flow.spec)?,
            opted_out: self.opted_out(&step.channel, &customer)?,
            slot_ms: slot,
            sender: step.from.clone(),
            lane: lane.into_owned(),
            status_within_ms: step.status_within_ms(),
            expires_ms: flow.expires_ms,
        }))
    }

    /// Nodes sharing PostgreSQL share the pacing schedule: the sender's and the customer's
    /// watermarks are locked (sender first, always, so two claims never wait on each other
    /// crosswise) and adopted before booking, and written back after.
    fn adopt_shared_pacing(&self, channel: &str, customer: &str, pacer: &mut Pacer) -> Result<()> {
        let [sender, customer_row] = pacing_keys(channel, customer);
        pacer.adopt_sender_next(channel, self.ops.lock_pacing(&sender)?);
        pacer.adopt_customer_next(channel, customer, self.ops.lock_pacing(&customer_row)?);
        Ok(())
    }

    pub(super) fn extend_customer_gap(&self, gap: &CustomerGap) -> Result<()> {
        let [_, key] = pacing_keys(&gap.channel, &gap.customer);
        self.ops.raise_pacing(&key, gap.next_us)
    }

    fn share_pacing(&self, channel: &str, customer: &str, pacer: &Pacer) -> Result<()> {
        let [sender, customer_row] = pacing_keys(channel, customer);
        self.ops
            .set_pacing(&sender, pacer.sender_next_us(channel))?;
        self.ops
            .set_pacing(&customer_row, pacer.customer_next_us(channel, customer))
    }

    /// The flow and the attempt, both locked, in the one order every transition takes:
    /// the flow's row first, then its attempt's (PostgreSQL; SQLite's writers exclude each
    /// other whole). Everything decided after this reads rows no other node can change.
    fn lock_attempt(&self, attempt_id: i64) -> Result<Option<(Option<FlowRow>, AttemptRow)>> {
        self.lock_attempt_of(None, attempt_id)
    }

    /// [`Tx::lock_attempt`], with the attempt's flow when the caller knows it.
    fn lock_attempt_of(
        &self,
        flow_id: Option<&str>,
        attempt_id: i64,
    ) -> Result<Option<(Option<FlowRow>, AttemptRow)>> {
        let Some((flow, a)) = self.ops.lock_attempt_and_flow(attempt_id, flow_id)? else {
            return Ok(None);
        };
        let flow = flow.map(flow_row).transpose()?;
        Ok(Some((flow, AttemptRow::from(a))))
    }

    /// The crash rule, on a send whose node stopped or whose lease passed, decided on the
    /// attempt's phase read under its lock (a node that marks it `sending` at that moment
    /// either does so first, and the send is `unknown`, or finds it recorded, and does not
    /// send). False if it was recorded meanwhile.
    pub(super) fn take_over(&self, attempt_id: i64) -> Result<bool> {
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

    pub(super) fn record(&self, attempt_id: i64, result: &SendResult) -> Result<()> {
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
        self.ops.record_answer(
            a.id,
            &Answer {
                disposition: disposition_name(disposition),
                reason: &reason,
                provider_code: code.as_deref(),
                message_id: message_id.as_deref(),
                at_ms: ms(self.now),
            },
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
            let customer = flow.customer_of_step(flow.step);
            self.note_classified_opt_out(&a.channel, Some(&customer), c)?;
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
                self.ops
                    .schedule_retry(&flow.id, i64::from(n), ms(wake), lane.as_deref())
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
        self.ops.close_step_attempts(&flow.id, flow.step as i64)?;
        let next_step = flow.step + 1;
        match flow.spec.steps.get(next_step) {
            Some(next) => {
                self.note(
                    &flow.id,
                    attempt,
                    &format!("falling back to {}", next.channel),
                )?;
                self.ops
                    .advance_step(&flow.id, next_step as i64, ms(self.now), &next.lane())?;
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
                self.ops.exhaust(&flow.id, next_step as i64)?;
                self.emit(flow, CallbackKind::Exhausted, json!({"why": why}))
            }
        }
    }

    /// The attempt a status is about: by the provider's message id, or by the correlation
    /// id the provider echoes while the attempt has no message id yet (the status overtook
    /// the answer). One statement, so one snapshot: an answer committing meanwhile cannot make
    /// the attempt invisible to both halves. Not locked: [`Tx::apply_status`] locks it.
    fn attempt_for(&self, channel: &str, e: &WebhookEvent) -> Result<Option<(i64, String)>> {
        let Some(message_id) = &e.provider_message_id else {
            return Ok(None);
        };
        self.ops
            .attempt_for_status(channel, message_id, e.correlation_id.as_deref())
    }

    /// Whether this is the first time the event is seen (its dedupe key is then kept).
    fn first_sight(&self, channel: &str, e: &WebhookEvent) -> Result<bool> {
        self.ops
            .first_sight(&format!("{channel}:{}", e.dedupe_key), ms(self.now))
    }

    /// The tenant an event belongs to, decided in the transaction that applies it: the
    /// tenant owning the sender it names, else the account; one naming an account nobody
    /// registered is the default tenant's while the default tenant has named none of its own
    /// on the channel (a single business, whose account is serve's), and otherwise counted
    /// and dropped, never applied to another tenant. An event naming neither (a channel
    /// without accounts, SMS say) has no owner of its own: a status is its attempt's, anything
    /// else the default tenant's.
    fn tenant_of_event(&self, channel: &str, e: &WebhookEvent) -> Result<EventOwner> {
        let Some(route) = self.route_of(channel, e)? else {
            return Ok(EventOwner::Unnamed);
        };
        if let Some(owner) = route.by_sender.or(route.by_account) {
            return Ok(EventOwner::Tenant(owner));
        }
        if !route.default_named {
            return Ok(EventOwner::Tenant(tenants::DEFAULT_TENANT.to_string()));
        }
        let named = e
            .account_id
            .as_deref()
            .or(e.sender_id.as_deref())
            .unwrap_or_default();
        self.ops.count_unrouted(channel, named, ms(self.now))?;
        tracing::debug!(
            channel,
            account = named,
            "webhook event for an account no tenant owns: dropped"
        );
        Ok(EventOwner::Nobody)
    }

    /// Who owns the account and the sender the event names; `None` when it names neither.
    fn route_of(&self, channel: &str, e: &WebhookEvent) -> Result<Option<super::driver::RouteRow>> {
        let (account, sender) = (e.account_id.as_deref(), e.sender_id.as_deref());
        if account.is_none() && sender.is_none() {
            return Ok(None);
        }
        self.ops.route(channel, account, sender).map(Some)
    }

    /// Whether the event names an account or sender that a tenant other than `tenant` owns
    /// (a delivery on `tenant`'s own route never moves another tenant's flows).
    fn owned_by_another(&self, channel: &str, e: &WebhookEvent, tenant: &str) -> Result<bool> {
        let other = self.route_of(channel, e)?.is_some_and(|route| {
            route
                .by_sender
                .or(route.by_account)
                .is_some_and(|owner| owner != tenant)
        });
        if other {
            tracing::warn!(
                channel,
                tenant,
                "an event on a tenant's own webhook names another tenant's account: dropped"
            );
        }
        Ok(other)
    }

    /// Applies one webhook event; whether it was seen for the first time.
    pub(super) fn apply_event(
        &self,
        channel: &str,
        arrived_for: Option<&str>,
        e: &WebhookEvent,
    ) -> Result<bool> {
        let owner = match arrived_for {
            Some(tenant) if self.owned_by_another(channel, e, tenant)? => return Ok(false),
            Some(tenant) => Some(tenant.to_string()),
            None => match self.tenant_of_event(channel, e)? {
                EventOwner::Nobody => return Ok(false),
                EventOwner::Tenant(t) => Some(t),
                EventOwner::Unnamed => None,
            },
        };
        let tenant = owner.as_deref().unwrap_or(tenants::DEFAULT_TENANT);
        if e.kind == EventKind::MessageStatus {
            let outcome = self.apply_status(channel, owner.as_deref(), e)?;
            if outcome != StatusOutcome::Applied {
                // What became of a status that changed nothing: the trail to follow when a
                // provider's status seems lost.
                tracing::debug!(
                    channel,
                    ?outcome,
                    message_id = e.provider_message_id.as_deref().unwrap_or(""),
                    correlation_id = e.correlation_id.as_deref().unwrap_or(""),
                    "status not applied"
                );
            }
            if outcome == StatusOutcome::NoAttempt {
                // Idempotent: a redelivery of a status of no attempt stops nothing twice. (An
                // applied status noted it under its flow's customer.)
                let customer = e
                    .recipient
                    .as_deref()
                    .map(|r| tenants::scoped(tenant, &customer_key(r)));
                self.note_classified_opt_out(channel, customer.as_deref(), &e.classification)?;
            }
            return Ok(outcome == StatusOutcome::Applied);
        }
        if !self.first_sight(channel, e)? {
            return Ok(false); // a redelivery: already applied
        }
        // Inbound messages, and anything else that opens the window (a customer's call, a
        // message handled by another app).
        if e.kind == EventKind::InboundMessage || e.service_window_ends_ms.is_some() {
            self.note_inbound(channel, tenant, e)?;
        }
        match e.kind {
            EventKind::Handover => self.hand_over(channel, tenant, e)?,
            EventKind::RecipientPreference => self.note_preference(channel, tenant, e)?,
            EventKind::IdentityChange => self.rekey(channel, tenant, e)?,
            EventKind::TemplateStatus | EventKind::TemplateCategoryChange => {
                self.note_template_change(channel, tenant, e)?
            }
            EventKind::SenderQualityChange => self.note_limit_change(channel, e)?,
            _ => {}
        }
        Ok(true)
    }

    /// The portfolio's messaging limit changed (`details.recipient_limit`: customers per
    /// 24 h, `null` for unlimited): the account's budget follows at once.
    fn note_limit_change(&self, channel: &str, e: &WebhookEvent) -> Result<()> {
        let details: serde_json::Value =
            serde_json::from_str(&e.details).unwrap_or(serde_json::Value::Null);
        let (Some(account), Some(limit)) =
            (e.account_id.as_deref(), details.get("recipient_limit"))
        else {
            return Ok(());
        };
        let limit = match limit {
            serde_json::Value::Null => None,
            v => match v.as_u64() {
                Some(n) => Some(i64::try_from(n).unwrap_or(i64::MAX)),
                None => return Ok(()),
            },
        };
        self.ops
            .set_account_limit(channel, account, limit, ms(self.now))
    }

    /// A template's status or category changed. A tenant's registered account keeps its
    /// templates in `channel_templates` (the change applied to the row, the next sync
    /// confirms it); the default tenant's unnamed account keeps catalog documents, the
    /// catalog every node and every restart rebuilds from the seed and them. Both in this
    /// transaction, with the event.
    fn note_template_change(&self, channel: &str, tenant: &str, e: &WebhookEvent) -> Result<()> {
        let account = e.account_id.as_deref();
        let registered = match account {
            Some(a) => self.ops.account_owner(channel, a)?.is_some(),
            None => false,
        };
        if !registered {
            return self
                .ops
                .add_catalog_document(tenant, channel, &e.details, ms(self.now));
        }
        let details: serde_json::Value =
            serde_json::from_str(&e.details).unwrap_or(serde_json::Value::Null);
        let text = |keys: &[&str]| {
            keys.iter().find_map(|k| {
                details.get(*k).and_then(|v| match v {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
            })
        };
        let template_id = text(&["message_template_id", "template_id", "id"]);
        let name = text(&["message_template_name", "template_name", "name"]);
        let language =
            text(&["message_template_language", "language"]).map(|l| l.replace('-', "_"));
        let status = match e.kind {
            EventKind::TemplateStatus => text(&["event", "status"]).map(|s| s.to_ascii_uppercase()),
            _ => None,
        };
        let category = match e.kind {
            EventKind::TemplateCategoryChange => {
                text(&["new_category", "category"]).map(|c| c.to_ascii_uppercase())
            }
            _ => None,
        };
        let changed = self.ops.change_template(
            channel,
            account.unwrap_or_default(),
            &super::driver::TemplateChange {
                template_id: template_id.as_deref(),
                name: name.as_deref(),
                language: language.as_deref(),
                status: status.as_deref(),
                category: category.as_deref(),
            },
        )?;
        if !changed {
            tracing::info!(
                channel,
                tenant,
                template = name.as_deref().unwrap_or(""),
                "a template change names a template not synced yet: the next sync brings it"
            );
        }
        Ok(())
    }

    /// Applies a status: decided with the flow and the attempt locked, and its dedupe key
    /// kept only when it is applied (a status that names no attempt of ours, or another
    /// customer, leaves no key behind, so it changes nothing now and nothing later).
    /// (`owner`: the tenant whose account sent it, when it names one.)
    fn apply_status(
        &self,
        channel: &str,
        owner: Option<&str>,
        e: &WebhookEvent,
    ) -> Result<StatusOutcome> {
        let Some((id, flow_id)) = self.attempt_for(channel, e)? else {
            return Ok(StatusOutcome::NoAttempt);
        };
        // A status from one tenant's account never moves another tenant's flow, whatever
        // message id it names.
        if owner.is_some_and(|t| tenants::unscoped(&flow_id).0 != t) {
            return Ok(StatusOutcome::OtherTenant);
        }
        let Some((Some(flow), a)) = self.lock_attempt_of(Some(&flow_id), id)? else {
            return Ok(StatusOutcome::NoAttempt);
        };
        let status = status_name(e);
        // The customer keys the flow sends to on this channel, without its tenant: what the
        // event names.
        let customers = flow.customers_on(channel);
        let Some(customer) = customers
            .iter()
            .find(|c| names_customer(e, tenants::unscoped(c).1))
        else {
            self.note(
                &flow.id,
                Some(a.id),
                &format!(
                    "{channel} status {status} names another customer than this flow's: ignored"
                ),
            )?;
            return Ok(StatusOutcome::OtherCustomer);
        };
        if !self.first_sight(channel, e)? {
            return Ok(StatusOutcome::Redelivery);
        }
        self.adopt_message_id(channel, &a, e)?;
        self.note_classified_opt_out(channel, Some(customer), &e.classification)?;
        // Conditional on the precedence the row holds, and the row count checked: a lower
        // status never overwrites a higher one, whatever arrives in which order.
        let disposition = disposition_name(e.classification.disposition);
        let raised = self.ops.raise_status(
            a.id,
            &StatusRaise {
                precedence: i64::from(e.precedence),
                status: &status,
                disposition,
            },
        )?;
        if !raised {
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
        // Read under the attempt's lock: one already named keeps its id.
        if a.provider_message_id.is_some() || !self.ops.adopt_message_id(a.id, message_id)? {
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
        self.ops.mark_possible_duplicate(a.id)?;
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
/// Whose a webhook event is ([`Tx::tenant_of_event`]).
enum EventOwner {
    /// The tenant owning the account or sender it names.
    Tenant(String),
    /// It names an account no tenant owns: dropped.
    Nobody,
    /// It names no account at all.
    Unnamed,
}

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
    /// Came from another tenant's account than the attempt's flow: dropped whole.
    OtherTenant,
}

/// Whether a status may be about the flow's customer: every customer key it names of the
/// flow's kind (a phone number, or a user id) is the flow's. A status naming only a user id
/// for a flow sent to a phone number (WhatsApp leaves phone numbers out for some users) is
/// not refused, since the message id already names the attempt.
/// (`flow_customer` and the keys compared are without their tenant.)
pub(super) fn names_customer(e: &WebhookEvent, flow_customer: &str) -> bool {
    let is_phone = |k: &str| k.starts_with('+');
    let named = customers::keys_of(crate::tenants::DEFAULT_TENANT, e);
    let comparable: Vec<&String> = named
        .iter()
        .filter(|k| is_phone(k) == is_phone(flow_customer))
        .collect();
    comparable.is_empty() || comparable.iter().any(|k| same_customer(k, flow_customer))
}

/// Equal keys, or one phone number in both of the spellings WhatsApp uses for Mexico (`+52 1`
/// and `+52`) and Argentina (`+54 9` and `+54`) mobile numbers.
pub(super) fn same_customer(a: &str, b: &str) -> bool {
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
pub(super) fn pacing_keys(channel: &str, customer: &str) -> [String; 2] {
    [
        format!("sender:{channel}"),
        format!("customer:{channel}:{}", customer_key(customer)),
    ]
}

/// One key per customer whatever the spelling: `+<digits>` for a phone number (as webhooks
/// give it), the id itself otherwise (a BSUID).
pub(super) fn customer_key(recipient: &str) -> String {
    let r = recipient.trim();
    match r.strip_prefix('+').or_else(|| r.strip_prefix("00")) {
        Some(rest) => format!(
            "+{}",
            rest.chars()
                .filter(char::is_ascii_digit)
                .collect::<String>()
        ),
        // Never a '/': tenants' keys are `{tenant}/{key}` and the default tenant's bare, so a
        // bare key with a '/' could meet another tenant's (crate::tenants).
        None => r.replace('%', "%25").replace('/', "%2F"),
    }
}

pub(super) fn parse_disposition(s: &str) -> Option<Disposition> {
    use Disposition::*;
    [
        Accepted, Sent, Delivered, Read, Retry, Fallback, Failed, Unknown,
    ]
    .into_iter()
    .find(|d| disposition_name(*d) == s)
}

pub(super) fn status_name(e: &WebhookEvent) -> String {
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
