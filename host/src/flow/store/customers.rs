//! What the store keeps per customer and channel, learnt from webhooks: the last time the
//! customer wrote (the service window), the kinds of message they stopped, and who handles
//! the conversation. A customer is keyed by phone number or, without one, by the channel's
//! own user id (WhatsApp's BSUID): an event names both when it knows both, and what it says
//! is kept under each.

use super::{CallbackKind, FlowState, Tx, customer_key, ms};
use crate::args;
use crate::contract::signals::{Handler, Signal};
use crate::types::{Classification, WebhookEvent};
use anyhow::Result;
use serde_json::{Value, json};

/// What a 131050-style refusal (no preference event, just a refused send) stops.
const MARKETING: &str = "marketing";

/// Every key an event names the customer by: its `recipient`, and the phone and user id in
/// `details.customer` (WhatsApp's form; other channels give only `recipient`).
pub(super) fn keys_of(e: &WebhookEvent) -> Vec<String> {
    let details: Value = serde_json::from_str(&e.details).unwrap_or(Value::Null);
    let mut keys: Vec<String> = [
        e.recipient.as_deref(),
        details.pointer("/customer/phone").and_then(Value::as_str),
        details.pointer("/customer/user_id").and_then(Value::as_str),
    ]
    .into_iter()
    .flatten()
    .filter(|k| !k.trim().is_empty())
    .map(customer_key)
    .collect();
    keys.sort();
    keys.dedup();
    keys
}

impl Tx<'_, '_> {
    /// The customer wrote (or called): their service window is open from then.
    pub(super) fn note_inbound(&self, channel: &str, e: &WebhookEvent) -> Result<()> {
        let at = e.occurred_at_ms.unwrap_or(self.now);
        for customer in keys_of(e) {
            self.db.exec(
                "INSERT INTO inbound (channel, customer, last_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT (channel, customer) DO UPDATE SET last_ms = CASE WHEN excluded.last_ms > inbound.last_ms THEN excluded.last_ms ELSE inbound.last_ms END",
                args![channel, customer, ms(at)],
            )?;
        }
        Ok(())
    }

    /// The later of what the flow says and what the channel's webhooks told us.
    pub(super) fn last_inbound(
        &self,
        channel: &str,
        spec: &super::FlowSpec,
    ) -> Result<Option<u64>> {
        let seen = match self.db.query_opt(
            "SELECT last_ms FROM inbound WHERE channel = ?1 AND customer = ?2",
            args![channel, customer_key(&spec.recipient)],
        )? {
            Some(r) => Some(r.int(0)?.max(0) as u64),
            None => None,
        };
        Ok(spec.last_inbound_ms.max(seen))
    }

    /// The kinds of message the customer stopped on this channel.
    pub(super) fn opted_out(&self, channel: &str, recipient: &str) -> Result<Vec<String>> {
        self.db
            .query(
                "SELECT category FROM opt_outs WHERE channel = ?1 AND customer = ?2 ORDER BY category",
                args![channel, customer_key(recipient)],
            )?
            .iter()
            .map(|r| r.text(0))
            .collect()
    }

    fn set_opt_out(&self, channel: &str, customer: &str, category: &str, stop: bool) -> Result<()> {
        if stop {
            self.db.exec(
                "INSERT OR IGNORE INTO opt_outs (channel, customer, category, since_ms) VALUES (?1, ?2, ?3, ?4)",
                args![channel, customer, category, ms(self.now)],
            )?;
        } else {
            self.db.exec(
                "DELETE FROM opt_outs WHERE channel = ?1 AND customer = ?2 AND category = ?3",
                args![channel, customer, category],
            )?;
        }
        Ok(())
    }

    /// A preference event: stop or resume the kind it names (`details.category`).
    pub(super) fn note_preference(&self, channel: &str, e: &WebhookEvent) -> Result<()> {
        let details: Value = serde_json::from_str(&e.details).unwrap_or(Value::Null);
        let Some(category) = details.get("category").and_then(Value::as_str) else {
            return Ok(());
        };
        let stop = match Signal::of(&e.classification) {
            Signal::OptedOut => true,
            Signal::OptedIn => false,
            _ => return Ok(()),
        };
        for customer in keys_of(e) {
            self.set_opt_out(channel, &customer, category, stop)?;
        }
        Ok(())
    }

    /// A send refused because the customer stopped marketing (Meta's 131050, synchronous or
    /// in a status) counts as a marketing stop until the customer resumes.
    pub(super) fn note_classified_opt_out(
        &self,
        channel: &str,
        recipient: Option<&str>,
        c: &Classification,
    ) -> Result<()> {
        // Our own refusal (nothing sent, no provider code) only repeats what is known.
        if Signal::of(c) != Signal::OptedOut || c.provider_code.is_none() {
            return Ok(());
        }
        match recipient {
            Some(r) => self.set_opt_out(channel, &customer_key(r), MARKETING, true),
            None => Ok(()),
        }
    }

    /// Someone else handles the conversation: every open flow to this customer stops, with
    /// `handed_over` in its timeline and a callback, whatever step it is on.
    pub(super) fn hand_over(&self, channel: &str, e: &WebhookEvent) -> Result<()> {
        let keys = keys_of(e);
        let mut open = Vec::new();
        for key in &keys {
            let rows = self.db.query(
                "SELECT id, state FROM flows WHERE recipient = ?1",
                args![key],
            )?;
            for r in &rows {
                if FlowState::parse(&r.text(1)?).is_some_and(|s| !s.is_final()) {
                    open.push(r.text(0)?);
                }
            }
        }
        let handler = match Signal::of_handover(&e.classification) {
            Signal::Handover(handler) => handler,
            _ => Handler::Other,
        };
        let why = format!(
            "handed_over: {channel} {} ({}); no more automatic sends",
            e.classification.reason,
            handler.describe()
        );
        // Locked in id order: two handovers naming the same customers never wait crosswise.
        open.sort();
        open.dedup();
        for id in open {
            let Some(flow) = self.load(&id)? else {
                continue;
            };
            self.note(&flow.id, None, &why)?;
            self.db.exec(
                "UPDATE attempts SET closed = 1 WHERE flow_id = ?1 AND step = ?2",
                args![flow.id, flow.step as i64],
            )?;
            self.set_state(&flow, FlowState::HandedOver, None)?;
            self.emit(
                &flow,
                CallbackKind::HandedOver,
                json!({"channel": channel, "reason": e.classification.reason}),
            )?;
        }
        Ok(())
    }

    /// The customer's identifier changed: what is kept under the old one moves to the new one.
    pub(super) fn rekey(&self, channel: &str, e: &WebhookEvent) -> Result<()> {
        let details: Value = serde_json::from_str(&e.details).unwrap_or(Value::Null);
        let new = ["/new/phone", "/new/user_id"]
            .iter()
            .find_map(|p| details.pointer(p).and_then(Value::as_str))
            .map(customer_key);
        let (Some(old), Some(new)) = (e.recipient.as_deref().map(customer_key), new) else {
            return Ok(());
        };
        // Where the new id already has a row, it wins (it is the newer news).
        self.db.exec(
            "UPDATE inbound SET customer = ?3 WHERE channel = ?1 AND customer = ?2 AND NOT EXISTS (SELECT 1 FROM inbound n WHERE n.channel = ?1 AND n.customer = ?3)",
            args![channel, &old, &new],
        )?;
        self.db.exec(
            "UPDATE opt_outs SET customer = ?3 WHERE channel = ?1 AND customer = ?2 AND NOT EXISTS (SELECT 1 FROM opt_outs n WHERE n.channel = ?1 AND n.customer = ?3 AND n.category = opt_outs.category)",
            args![channel, &old, &new],
        )?;
        Ok(())
    }
}
