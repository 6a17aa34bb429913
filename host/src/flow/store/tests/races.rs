//! The write races PostgreSQL allows between nodes, each interleaving forced: a row held from
//! another connection (as from `psql`) makes the transitions queue in the order that went
//! wrong before every decision was taken under its row's lock, and concurrent nodes race
//! many times over. Whatever the order, a status is applied exactly once, never under a
//! higher one, and a flow whose message was delivered is done.

use super::*;
use crate::flow::store::transitions::same_customer;
use std::sync::Arc;
use std::time::Duration;

/// Another connection that holds an attempt's row until it is dropped (rolled back).
struct RowHeld {
    client: ::postgres::Client,
}

impl RowHeld {
    fn attempt(url: &str, attempt_id: i64) -> RowHeld {
        let mut client = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
        client.batch_execute("BEGIN").unwrap();
        client
            .execute(
                "SELECT 1 FROM attempts WHERE id = $1 FOR UPDATE",
                &[&attempt_id],
            )
            .unwrap();
        RowHeld { client }
    }

    fn release(mut self) {
        self.client.batch_execute("ROLLBACK").unwrap();
    }
}

/// Two nodes on a fresh database, one flow (WhatsApp waiting for `delivered`, then SMS)
/// claimed and handed over.
fn two_nodes_with_a_send_in_flight() -> (String, Arc<Store>, Arc<Store>, Claim) {
    let url = host_testkit::postgres::fresh_database();
    let (a, b) = (
        Arc::new(Store::open(&url).unwrap()),
        Arc::new(Store::open(&url).unwrap()),
    );
    a.submit(&[("f".into(), spec())], NOW).unwrap();
    let c = claim_one(&a, NOW);
    assert!(a.mark_sending(c.attempt_id, NOW).unwrap());
    (url, a, b, c)
}

fn accepted(message_id: &str) -> SendResult {
    SendResult::Classified(classification(
        Disposition::Accepted,
        "accepted",
        Some(message_id),
    ))
}

/// One transition, to run on a thread of its own.
type Step = Box<dyn FnOnce() + Send>;

/// Runs `f` on a thread of its own, and gives it time to reach (and wait on) the held row.
fn queued(f: impl FnOnce() + Send + 'static) -> std::thread::JoinHandle<()> {
    let t = std::thread::spawn(f);
    std::thread::sleep(Duration::from_millis(300));
    t
}

#[test]
fn a_delivered_status_arriving_while_the_answer_is_recorded_is_applied_in_either_order() {
    for status_first in [false, true] {
        let (url, a, b, c) = two_nodes_with_a_send_in_flight();
        let held = RowHeld::attempt(&url, c.attempt_id);
        let record = {
            let a = a.clone();
            move || {
                a.record(c.attempt_id, &accepted("wamid.1"), NOW + 10)
                    .unwrap()
            }
        };
        let delivered = {
            let b = b.clone();
            move || {
                let s = status("wamid.1", "f/0/1", Disposition::Delivered, 3);
                b.apply_statuses("whatsapp", &[s], NOW + 11).unwrap();
            }
        };
        let (first, second): (Step, Step) = if status_first {
            (Box::new(delivered), Box::new(record))
        } else {
            (Box::new(record), Box::new(delivered))
        };
        let (t1, t2) = (queued(first), queued(second));
        held.release();
        t1.join().unwrap();
        t2.join().unwrap();
        let v = a.status("f").unwrap().unwrap();
        assert_eq!(v["state"], "done", "status first: {status_first}: {v}");
        // The step's deadline passes: nothing falls back to SMS.
        let later = b
            .claim_due(NOW + 20_000, 10, &channels(), &pacer(), 0)
            .unwrap();
        assert!(later.is_empty(), "{later:?}");
    }
}

#[test]
fn a_late_lower_status_never_overwrites_a_higher_one_held_behind_a_lock() {
    let (url, a, b, c) = two_nodes_with_a_send_in_flight();
    a.record(c.attempt_id, &accepted("wamid.1"), NOW + 10)
        .unwrap();
    let held = RowHeld::attempt(&url, c.attempt_id);
    let delivered = {
        let a = a.clone();
        queued(move || {
            let s = status("wamid.1", "f/0/1", Disposition::Delivered, 3);
            a.apply_statuses("whatsapp", &[s], NOW + 20).unwrap();
        })
    };
    let sent = {
        let b = b.clone();
        queued(move || {
            let s = status("wamid.1", "f/0/1", Disposition::Sent, 1);
            b.apply_statuses("whatsapp", &[s], NOW + 21).unwrap();
        })
    };
    held.release();
    delivered.join().unwrap();
    sent.join().unwrap();
    let v = a.status("f").unwrap().unwrap();
    assert_eq!(v["state"], "done", "{v}");
    assert_eq!(v["attempts"][0]["last_status"], "delivered", "{v}");
    assert!(
        b.claim_due(NOW + 20_000, 10, &channels(), &pacer(), 0)
            .unwrap()
            .is_empty()
    );
}

/// Two nodes, many flows: one records each answer while the other applies the `delivered`
/// status that overtook it, at the same moment. Every status answered is applied, once.
#[test]
fn answers_and_overtaking_statuses_racing_on_two_nodes_leave_every_flow_done() {
    const FLOWS: usize = 60;
    let url = host_testkit::postgres::fresh_database();
    let (a, b) = (
        Arc::new(Store::open(&url).unwrap()),
        Arc::new(Store::open(&url).unwrap()),
    );
    let flows: Vec<(String, FlowSpec)> = (0..FLOWS)
        .map(|i| {
            let mut f = spec();
            f.recipient = format!("+1555020{i:04}");
            (format!("r{i}"), f)
        })
        .collect();
    a.submit(&flows, NOW).unwrap();
    let claims = a
        .claim_due(NOW, FLOWS, &channels(), &pacer(), 10_000)
        .unwrap();
    assert_eq!(claims.len(), FLOWS);
    for c in &claims {
        assert!(a.mark_sending(c.attempt_id, NOW).unwrap());
    }
    let barrier = Arc::new(std::sync::Barrier::new(2));
    let recorder = {
        let (a, claims, barrier) = (a.clone(), claims.clone(), barrier.clone());
        std::thread::spawn(move || {
            for c in &claims {
                barrier.wait();
                let id = format!("wamid.{}", c.flow_id);
                a.record(c.attempt_id, &accepted(&id), NOW + 10).unwrap();
            }
        })
    };
    for c in &claims {
        barrier.wait();
        let mut s = status(
            &format!("wamid.{}", c.flow_id),
            &c.correlation_id,
            Disposition::Delivered,
            3,
        );
        s.recipient = Some(c.recipient.clone());
        b.apply_statuses("whatsapp", &[s], NOW + 10).unwrap();
    }
    recorder.join().unwrap();
    for (id, _) in &flows {
        let v = a.status(id).unwrap().unwrap();
        assert_eq!(v["state"], "done", "{v}");
        assert_eq!(v["attempts"][0]["last_status"], "delivered", "{v}");
    }
}

#[test]
fn a_status_naming_another_customer_moves_nothing_and_keeps_no_dedupe_key() {
    let (_url, a, b, c) = two_nodes_with_a_send_in_flight();
    a.record(c.attempt_id, &accepted("wamid.1"), NOW + 10)
        .unwrap();
    let mut forged = status("wamid.1", "f/0/1", Disposition::Fallback, 2);
    forged.recipient = Some("+15550199999".into());
    b.apply_statuses("whatsapp", &[forged.clone()], NOW + 20)
        .unwrap();
    let v = a.status("f").unwrap().unwrap();
    assert_eq!(v["state"], "waiting_status", "{v}");
    assert!(
        v["timeline"].to_string().contains("another customer"),
        "{v}"
    );
    // The same event naming the flow's own customer is applied: no key was kept for it.
    forged.recipient = Some("+15550100001".into());
    b.apply_statuses("whatsapp", &[forged], NOW + 30).unwrap();
    let v = a.status("f").unwrap().unwrap();
    assert_eq!(v["attempts"][0]["last_status"], "failed", "{v}");
}

#[test]
fn mexican_and_argentinian_mobile_numbers_match_in_both_spellings() {
    assert!(same_customer("+5215512345678", "+525512345678"));
    assert!(same_customer("+5491123456789", "+541123456789"));
    assert!(!same_customer("+525512345678", "+525512345679"));
    assert!(!same_customer("+15550100001", "+15550100002"));
}
