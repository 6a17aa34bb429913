//! Pacing to the provider's limits: a token bucket per sending number, a minimum gap per
//! customer, and back-offs the provider asks for.
//!
//! | limit | default | source |
//! |---|---|---|
//! | messages per second per sending number | 80 (`serve --rate-per-number`; up to 1,000 as Meta raises it; 20 for numbers also on the Business app) | Meta's throughput tiers (130429 when exceeded) |
//! | messages per customer | one per 6 s (WhatsApp) | Meta's pair rate limit (131056 when exceeded) |
//! | after a 131056 | that customer only waits 4^n s (n = consecutive hits) | Meta's guidance |
//! | after a 130429 or a `Retry-After` | the whole number waits as long as asked | |
//!
//! Each of these is per *lane*: a channel (its default sender), or `channel#sender` for a
//! flow step that names its sending number (`from`), paced at that number's own rate.
//!
//! The pacer only says *when*; work that must wait stays in the store (its wake-up time moves),
//! so nothing queues in memory and one slow customer never holds up the others.

use std::collections::HashMap;

/// One channel's limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChannelPacing {
    /// Sends per second per sending number; 0 for unlimited.
    pub rate_per_second: f64,
    /// Minimum gap between two messages to one customer.
    pub customer_gap_ms: u64,
}

impl ChannelPacing {
    /// WhatsApp: `rate` per second per number, one message per 6 s per customer.
    pub fn whatsapp(rate: f64) -> Self {
        ChannelPacing {
            rate_per_second: rate,
            customer_gap_ms: 6_000,
        }
    }

    /// A channel with only a per-sender rate.
    pub fn rate_only(rate: f64) -> Self {
        ChannelPacing {
            rate_per_second: rate,
            customer_gap_ms: 0,
        }
    }
}

/// Why a send has to wait, and until when (ms since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deferral {
    /// The sending number has no slot before `until`; nothing for it goes before then.
    Sender { until: u64 },
    /// This customer must not get another message before `until`.
    Customer { until: u64 },
}

/// A sending number's schedule: the next free slot, spaced exactly `1 / rate` apart (the
/// generic cell rate algorithm with no burst), so no window of one second holds more than
/// the rate; and the next free departure, the same spacing applied to the moments sends
/// actually leave (a slot says when a send may leave at the earliest, not when it does).
#[derive(Debug, Clone, Copy, Default)]
struct Sender {
    next_slot_ms: f64,
    paused_until: u64,
    next_departure_ms: f64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Customer {
    next_ok_ms: u64,
    pair_limit_hits: u32,
}

/// The pacing state of one node.
#[derive(Debug, Default)]
pub struct Pacer {
    limits: HashMap<String, ChannelPacing>,
    /// Sends per second of named senders (`channel#sender` lanes), as the provider reports
    /// them or the operator sets them; a lane without one paces at its channel's rate.
    lane_rates: HashMap<String, f64>,
    senders: HashMap<String, Sender>,
    customers: HashMap<(String, String), Customer>,
}

impl Pacer {
    pub fn new(limits: HashMap<String, ChannelPacing>) -> Self {
        Pacer {
            limits,
            ..Pacer::default()
        }
    }

    /// The limits of a lane: a channel's own, or a sender's (`channel#sender`: its
    /// channel's, at the sender's own rate when one is known).
    fn limits_of(&self, lane: &str) -> Option<ChannelPacing> {
        if let Some(l) = self.limits.get(lane) {
            return Some(*l);
        }
        let mut l = *self.limits.get(crate::flow::spec::lane_channel(lane))?;
        if let Some(rate) = self.lane_rates.get(lane) {
            l.rate_per_second = *rate;
        }
        Some(l)
    }

    /// Paces the sender lane `channel#sender` at `rate` per second.
    pub fn set_lane_rate(&mut self, lane: &str, rate: f64) {
        self.lane_rates.insert(lane.to_string(), rate);
    }

    /// Books a slot for a message on `channel` to `customer`: the time (≥ `now`, at most
    /// `horizon_ms` ahead) at which it may leave, or until when it must wait. A refused
    /// booking takes nothing.
    pub fn try_take(
        &mut self,
        channel: &str,
        customer: &str,
        now: u64,
        horizon_ms: u64,
    ) -> Result<u64, Deferral> {
        let Some(limits) = self.limits_of(channel) else {
            return Ok(now);
        };
        let key = (channel.to_string(), customer.to_string());
        if let Some(c) = self.customers.get(&key)
            && c.next_ok_ms > now
        {
            return Err(Deferral::Customer {
                until: c.next_ok_ms,
            });
        }
        let mut slot = now;
        if limits.rate_per_second > 0.0 {
            let sender = self.senders.entry(channel.to_string()).or_default();
            if sender.paused_until > now {
                return Err(Deferral::Sender {
                    until: sender.paused_until,
                });
            }
            let at = sender.next_slot_ms.max(now as f64);
            if at > now.saturating_add(horizon_ms) as f64 {
                return Err(Deferral::Sender {
                    until: (at.ceil() as u64).saturating_sub(horizon_ms),
                });
            }
            sender.next_slot_ms = at + 1_000.0 / limits.rate_per_second;
            slot = at.ceil() as u64;
        }
        if limits.customer_gap_ms > 0 {
            let c = self.customers.entry(key).or_default();
            c.next_ok_ms = slot.saturating_add(limits.customer_gap_ms);
        }
        Ok(slot)
    }

    /// A send booked on `channel` is about to leave at `now` (its slot has come): the moment
    /// it may go (≥ `now`), reserved for it. Sends that left on time leave at once; sends that
    /// a busy host let fall behind their slots (a stall, then several due at once) are spaced
    /// `1 / rate` apart again, so the provider never sees them bunched past the rate.
    pub fn depart(&mut self, channel: &str, now: u64) -> u64 {
        let Some(limits) = self.limits_of(channel) else {
            return now;
        };
        if limits.rate_per_second <= 0.0 {
            return now;
        }
        let sender = self.senders.entry(channel.to_string()).or_default();
        let at = sender.next_departure_ms.max(now as f64);
        sender.next_departure_ms = at + 1_000.0 / limits.rate_per_second;
        at.ceil() as u64
    }

    /// How many sends `channel` can still book within `horizon_ms` of `now`.
    pub fn capacity(&self, channel: &str, now: u64, horizon_ms: u64) -> usize {
        let Some(limits) = self.limits_of(channel) else {
            return usize::MAX;
        };
        if limits.rate_per_second <= 0.0 {
            return usize::MAX;
        }
        let sender = self.senders.get(channel).copied().unwrap_or_default();
        if sender.paused_until > now {
            return 0;
        }
        let start = sender.next_slot_ms.max(now as f64);
        let end = now.saturating_add(horizon_ms) as f64;
        if start > end {
            return 0;
        }
        ((end - start) * limits.rate_per_second / 1_000.0).floor() as usize + 1
    }

    /// The provider said this customer gets too many messages (131056): only they wait,
    /// 4^n seconds for the n-th hit in a row. Returns until when.
    pub fn pair_limit_hit(&mut self, channel: &str, customer: &str, now: u64) -> u64 {
        let c = self
            .customers
            .entry((channel.to_string(), customer.to_string()))
            .or_default();
        c.pair_limit_hits = c.pair_limit_hits.saturating_add(1);
        let wait_ms = 4u64
            .saturating_pow(c.pair_limit_hits.min(8))
            .saturating_mul(1_000);
        c.next_ok_ms = c.next_ok_ms.max(now.saturating_add(wait_ms));
        c.next_ok_ms
    }

    /// A message to this customer went through, answered at `now`: their back-off starts
    /// again from 1, and their gap runs from `now` if that is later than from its slot. (The
    /// provider got the message by `now` at the latest; a send that left late must not bring
    /// the next one closer than the gap — Meta counts 131056 by arrival.)
    pub fn customer_ok(&mut self, channel: &str, customer: &str, now: u64) {
        let gap = self.limits_of(channel).map_or(0, |l| l.customer_gap_ms);
        if let Some(c) = self
            .customers
            .get_mut(&(channel.to_string(), customer.to_string()))
        {
            c.pair_limit_hits = 0;
            if gap > 0 {
                c.next_ok_ms = c.next_ok_ms.max(now.saturating_add(gap));
            }
        }
    }

    /// The provider refused the message outright: the customer got nothing, so the gap
    /// booked for it is given back (a back-off for that customer stays).
    pub fn release_customer(&mut self, channel: &str, customer: &str) {
        if let Some(c) = self
            .customers
            .get_mut(&(channel.to_string(), customer.to_string()))
            && c.pair_limit_hits == 0
        {
            c.next_ok_ms = 0;
        }
    }

    /// The provider asked the whole sending number to wait (130429, `Retry-After`).
    pub fn pause_sender(&mut self, channel: &str, until: u64) {
        let s = self.senders.entry(channel.to_string()).or_default();
        s.paused_until = s.paused_until.max(until);
    }

    /// The sending number's next free slot, in µs since the epoch (what nodes sharing one
    /// database exchange: see [`Pacer::adopt_sender_next`]).
    pub fn sender_next_us(&self, channel: &str) -> i64 {
        let s = self.senders.get(channel).copied().unwrap_or_default();
        (s.next_slot_ms * 1_000.0) as i64
    }

    /// Another node booked slots up to `next_us`: ours start after them.
    pub fn adopt_sender_next(&mut self, channel: &str, next_us: i64) {
        let s = self.senders.entry(channel.to_string()).or_default();
        s.next_slot_ms = s.next_slot_ms.max(next_us as f64 / 1_000.0);
    }

    /// The customer's earliest next message, in µs since the epoch.
    pub fn customer_next_us(&self, channel: &str, customer: &str) -> i64 {
        self.customers
            .get(&(channel.to_string(), customer.to_string()))
            .map_or(0, |c| (c.next_ok_ms as i64).saturating_mul(1_000))
    }

    /// Another node sent to this customer: the gap runs from its message.
    pub fn adopt_customer_next(&mut self, channel: &str, customer: &str, next_us: i64) {
        let next_ms = u64::try_from(next_us / 1_000).unwrap_or(0);
        if next_ms == 0 {
            return;
        }
        let c = self
            .customers
            .entry((channel.to_string(), customer.to_string()))
            .or_default();
        c.next_ok_ms = c.next_ok_ms.max(next_ms);
    }

    /// Drops customers whose gap has passed (keeps memory flat on long campaigns).
    pub fn forget_idle(&mut self, now: u64) {
        self.customers
            .retain(|_, c| c.next_ok_ms > now || c.pair_limit_hits > 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pacer(rate: f64) -> Pacer {
        Pacer::new(HashMap::from([
            ("whatsapp".to_string(), ChannelPacing::whatsapp(rate)),
            ("sms".to_string(), ChannelPacing::rate_only(0.0)),
        ]))
    }

    #[test]
    fn the_bucket_never_lets_more_than_the_rate_through_in_any_second() {
        let mut p = pacer(80.0);
        let mut sent_at = Vec::new();
        let mut now = 1_000_000;
        let mut customer = 0u64;
        while now < 1_000_000 + 10_000 {
            match p.try_take("whatsapp", &format!("+1{customer}"), now, 50) {
                Ok(slot) => {
                    assert!(slot >= now && slot <= now + 50);
                    sent_at.push(slot);
                    customer += 1;
                }
                Err(Deferral::Sender { until }) => now = until,
                Err(other) => panic!("{other:?}"),
            }
        }
        for w in sent_at.windows(81) {
            assert!(w[80] - w[0] >= 1_000, "81 sends within {} ms", w[80] - w[0]);
        }
        assert!(sent_at.len() >= 790, "{} sends in 10 s", sent_at.len());
    }

    #[test]
    fn sends_that_fell_behind_their_slots_leave_spaced_at_the_rate() {
        let mut p = pacer(20.0);
        let slots: Vec<u64> = (0..5)
            .map(|i| p.try_take("whatsapp", &format!("+{i}"), 0, 1_000).unwrap())
            .collect();
        assert_eq!(slots, [0, 50, 100, 150, 200]);
        // On time: each leaves at its slot.
        assert_eq!(p.depart("whatsapp", 0), 0);
        assert_eq!(p.depart("whatsapp", 50), 50);
        // The host stalled until 300: the three left are due at once, and go 50 ms apart.
        let late: Vec<u64> = (0..3).map(|_| p.depart("whatsapp", 300)).collect();
        assert_eq!(late, [300, 350, 400]);
        // Later sends that are on time again leave at once.
        assert_eq!(p.depart("whatsapp", 1_000), 1_000);
        assert_eq!(p.depart("sms", 1_000), 1_000, "sms has no rate");
    }

    #[test]
    fn one_customer_gets_one_message_per_six_seconds_without_holding_others() {
        let mut p = pacer(80.0);
        assert_eq!(p.try_take("whatsapp", "+1", 0, 0), Ok(0));
        assert_eq!(
            p.try_take("whatsapp", "+1", 10, 0),
            Err(Deferral::Customer { until: 6_000 })
        );
        assert_eq!(p.try_take("whatsapp", "+2", 13, 0), Ok(13));
        assert_eq!(p.try_take("whatsapp", "+1", 6_000, 0), Ok(6_000));
        assert_eq!(
            p.try_take("sms", "+1", 6_001, 0),
            Ok(6_001),
            "sms has no gap"
        );
    }

    #[test]
    fn pair_limit_backoff_grows_per_customer() {
        let mut p = pacer(80.0);
        assert_eq!(p.pair_limit_hit("whatsapp", "+1", 0), 4_000);
        assert_eq!(p.pair_limit_hit("whatsapp", "+1", 4_000), 4_000 + 16_000);
        assert!(p.try_take("whatsapp", "+2", 100, 0).is_ok());
        p.customer_ok("whatsapp", "+1", 4_000);
        assert_eq!(p.pair_limit_hit("whatsapp", "+1", 20_000), 24_000);
    }

    #[test]
    fn a_send_answered_late_holds_the_customer_a_full_gap_from_the_answer() {
        let mut p = pacer(80.0);
        assert_eq!(p.try_take("whatsapp", "+1", 0, 0), Ok(0));
        // The send left late and was answered at 1.5 s: the provider may have got it then.
        p.customer_ok("whatsapp", "+1", 1_500);
        assert_eq!(
            p.try_take("whatsapp", "+1", 6_000, 0),
            Err(Deferral::Customer { until: 7_500 })
        );
        assert_eq!(p.try_take("whatsapp", "+1", 7_500, 0), Ok(7_500));
        // Every answer holds the customer a full gap from it (an answer comes after its slot).
        p.customer_ok("whatsapp", "+1", 7_600);
        assert_eq!(p.customer_next_us("whatsapp", "+1"), 13_600_000);
    }

    #[test]
    fn a_refused_message_owes_the_customer_no_gap() {
        let mut p = pacer(80.0);
        assert!(p.try_take("whatsapp", "+1", 0, 0).is_ok());
        p.release_customer("whatsapp", "+1");
        assert!(p.try_take("whatsapp", "+1", 100, 0).is_ok());
        // A pair-limit back-off is not given back.
        p.pair_limit_hit("whatsapp", "+1", 200);
        p.release_customer("whatsapp", "+1");
        assert!(p.try_take("whatsapp", "+1", 300, 0).is_err());
    }

    #[test]
    fn a_paused_number_waits_as_asked() {
        let mut p = pacer(80.0);
        assert!(p.try_take("whatsapp", "+1", 0, 0).is_ok());
        p.pause_sender("whatsapp", 5_000);
        assert_eq!(
            p.try_take("whatsapp", "+2", 100, 0),
            Err(Deferral::Sender { until: 5_000 })
        );
        assert!(p.try_take("whatsapp", "+2", 5_000, 0).is_ok());
    }
}
