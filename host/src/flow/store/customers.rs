//! What the store keeps per customer and channel, learnt from webhooks: the last time the
//! customer wrote (the service window), the kinds of message they stopped, and who handles
//! the conversation. A customer is keyed by phone number or, without one, by the channel's
//! own user id (WhatsApp's BSUID): an event names both when it knows both, and what it says
//! is kept under each.

use super::transitions::{Tx, customer_key};
use super::{CallbackKind, ms};
use crate::contract::signals::{Handler, Signal};
use crate::contract::types::{Classification, WebhookEvent};
use crate::flow::policy::FlowState;
use anyhow::Result;
use serde_json::{Value, json};

/// What a 131050-style refusal (no preference event, just a refused send) stops.
const MARKETING: &str = "marketing";
/// The kind a channel names when the customer stops or resumes everything on it (an SMS STOP
/// or START).
const ALL_KINDS: &str = "all";

/// Every key an event names the customer by: its `recipient`, and the phone and user id in
/// `details.customer` (WhatsApp's form; other channels give only `recipient`).
/// (`tenant`'s keys: `{tenant}/{key}`, the default tenant's bare.)
pub(super) fn keys_of(tenant: &str, e: &WebhookEvent) -> Vec<String> {
    let details: Value = serde_json::from_str(&e.details).unwrap_or(Value::Null);
    let mut keys: Vec<String> = [
        e.recipient.as_deref(),
        details.pointer("/customer/phone").and_then(Value::as_str),
        details.pointer("/customer/user_id").and_then(Value::as_str),
    ]
    .into_iter()
    .flatten()
    .filter(|k| !k.trim().is_empty())
    .map(|k| crate::tenants::scoped(tenant, &customer_key(k)))
    .collect();
    keys.sort();
    keys.dedup();
    keys
}

impl Tx<'_> {
    /// The customer wrote (or called): their service window is open from then.
    /// Kept under the channel and, when the event names the business number written to,
    /// under that number's lane too (`channel#sender`): a step that names its sender sees the
    /// window of that number only, as Meta keeps it per (number, customer).
    pub(super) fn note_inbound(&self, channel: &str, tenant: &str, e: &WebhookEvent) -> Result<()> {
        let at = e.occurred_at_ms.unwrap_or(self.now);
        let lane = e.sender_id.as_deref().map(|s| format!("{channel}#{s}"));
        for customer in keys_of(tenant, e) {
            self.ops.note_inbound(channel, &customer, ms(at))?;
            if let Some(lane) = &lane {
                self.ops.note_inbound(lane, &customer, ms(at))?;
            }
        }
        Ok(())
    }

    /// The later of what the flow says and what the channel's webhooks told us of the flow's
    /// customer (`customer`: the stored, tenant-scoped key).
    pub(super) fn last_inbound(
        &self,
        channel: &str,
        customer: &str,
        spec: &super::FlowSpec,
    ) -> Result<Option<u64>> {
        let seen = self
            .ops
            .last_inbound(channel, customer)?
            .map(|ms| ms.max(0) as u64);
        Ok(spec.last_inbound_ms.max(seen))
    }

    /// The kinds of message the customer (the stored, tenant-scoped key) stopped on this
    /// channel.
    pub(super) fn opted_out(&self, channel: &str, customer: &str) -> Result<Vec<String>> {
        self.ops.opted_out(channel, customer)
    }

    /// Stops or resumes one kind of message; resuming [`ALL_KINDS`] (an SMS START, which
    /// undoes every stop on the channel) resumes every kind stopped.
    fn set_opt_out(&self, channel: &str, customer: &str, category: &str, stop: bool) -> Result<()> {
        if stop {
            self.ops
                .add_opt_out(channel, customer, category, ms(self.now))
        } else if category == ALL_KINDS {
            for kind in self.ops.opted_out(channel, customer)? {
                self.ops.remove_opt_out(channel, customer, &kind)?;
            }
            Ok(())
        } else {
            self.ops.remove_opt_out(channel, customer, category)
        }
    }

    /// A preference event: stop or resume the kind it names (`details.category`).
    pub(super) fn note_preference(
        &self,
        channel: &str,
        tenant: &str,
        e: &WebhookEvent,
    ) -> Result<()> {
        let details: Value = serde_json::from_str(&e.details).unwrap_or(Value::Null);
        let Some(category) = details.get("category").and_then(Value::as_str) else {
            return Ok(());
        };
        let stop = match Signal::of(&e.classification) {
            Signal::OptedOut => true,
            Signal::OptedIn => false,
            _ => return Ok(()),
        };
        for customer in keys_of(tenant, e) {
            self.set_opt_out(channel, &customer, category, stop)?;
        }
        Ok(())
    }

    /// A send refused because the customer stopped marketing (Meta's 131050, synchronous or
    /// in a status) counts as a marketing stop until the customer resumes.
    /// `customer` is the stored, tenant-scoped key.
    pub(super) fn note_classified_opt_out(
        &self,
        channel: &str,
        customer: Option<&str>,
        c: &Classification,
    ) -> Result<()> {
        // Our own refusal (nothing sent, no provider code) only repeats what is known.
        if Signal::of(c) != Signal::OptedOut || c.provider_code.is_none() {
            return Ok(());
        }
        match customer {
            Some(key) => self.set_opt_out(channel, key, MARKETING, true),
            None => Ok(()),
        }
    }

    /// Someone else handles the conversation: every open flow to this customer stops, with
    /// `handed_over` in its timeline and a callback, whatever step it is on.
    pub(super) fn hand_over(&self, channel: &str, tenant: &str, e: &WebhookEvent) -> Result<()> {
        let keys = keys_of(tenant, e);
        let mut open = Vec::new();
        for key in &keys {
            for (id, state) in self.ops.flows_of_customer(key)? {
                if !state.is_final() {
                    open.push(id);
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
            self.ops.close_step_attempts(&flow.id, flow.step as i64)?;
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
    pub(super) fn rekey(&self, channel: &str, tenant: &str, e: &WebhookEvent) -> Result<()> {
        let details: Value = serde_json::from_str(&e.details).unwrap_or(Value::Null);
        let key = |k: &str| crate::tenants::scoped(tenant, &customer_key(k));
        let new = ["/new/phone", "/new/user_id"]
            .iter()
            .find_map(|p| details.pointer(p).and_then(Value::as_str))
            .map(key);
        let (Some(old), Some(new)) = (e.recipient.as_deref().map(key), new) else {
            return Ok(());
        };
        self.ops.rekey_customer(channel, &old, &new)
    }
}
