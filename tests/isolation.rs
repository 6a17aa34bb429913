//! A misbehaving call is an error, never a crash: the host keeps serving.

mod common;

use common::*;
use host_harness::{CallError, Limits};
use std::time::Duration;

#[test]
fn memory_cap_traps_the_call_and_the_host_keeps_serving() {
    let small = plugin().with_limits(Limits {
        memory_bytes: 4 << 20,
        call_timeout: Duration::from_secs(5),
    });
    let huge = format!("{{\"name\":\"{}\"}}", "a".repeat(16 << 20));
    match small.validate_template(&huge) {
        Err(CallError::Trap { .. }) => {}
        other => panic!("expected a trap, got {other:?}"),
    }
    // Same compiled component, next call: fine.
    assert_eq!(small.describe().unwrap().name, "whatsapp");
    assert_eq!(plugin().describe().unwrap().name, "whatsapp");
}

#[test]
fn the_time_limit_interrupts_the_guest() {
    let no_time = plugin().with_limits(Limits {
        memory_bytes: 64 << 20,
        call_timeout: Duration::ZERO,
    });
    match no_time.describe() {
        Err(CallError::Trap { message, .. }) => {
            assert!(message.contains("time limit"), "{message}")
        }
        other => panic!("expected an interrupt, got {other:?}"),
    }
    assert!(plugin().describe().is_ok());
}

#[test]
fn many_calls_in_a_row_each_get_a_fresh_instance() {
    for _ in 0..50 {
        assert!(plugin().validate_template("{}").unwrap().is_err());
    }
}
