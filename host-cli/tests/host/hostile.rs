//! Hostile guests (the `hostile-channel` fixture): an infinite loop, a memory bomb, deep
//! recursion, a panic, a 100 MB log flood, a host import called a million times. Each is
//! contained within its limit with a clear error, and the host serves other calls meanwhile.

use host::contract::types::{HttpResponse, SendOutcome};
use host::services::{HostServices, HttpClient, HttpPolicy, Log, Secrets};
use host::{CallError, Limits, Runtime};
use host_testkit::BlockingPlugin;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

fn load(wasm: &str, log: Log) -> BlockingPlugin {
    let services = HostServices::new(
        HttpClient::new(HttpPolicy::default()),
        Secrets::default(),
        log,
    );
    runtime()
        .load_file(Path::new(wasm), Arc::new(services), Limits::default())
        .unwrap()
        .into()
}

fn runtime() -> &'static Runtime {
    static RUNTIME: std::sync::OnceLock<Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::new().unwrap())
}

fn hostile() -> BlockingPlugin {
    load(host_testkit::HOSTILE_CHANNEL_WASM, Log::memory())
}

fn trap_message(
    result: Result<Result<(), Vec<host::contract::types::FieldError>>, CallError>,
) -> String {
    match result {
        Err(e @ CallError::Trap { .. }) => e.to_string(),
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn an_infinite_loop_uses_up_its_cpu_budget_while_other_calls_are_served() {
    let whatsapp = load(host_testkit::WHATSAPP_CHANNEL_WASM, Log::memory());
    let loop_done = Arc::new(AtomicBool::new(false));
    let flag = loop_done.clone();
    let spinning = std::thread::spawn(move || {
        // A budget long enough (seconds) that the other call surely lands while it spins.
        let long = hostile().with_limits(Limits {
            cpu_time: Duration::from_secs(3),
            ..Limits::default()
        });
        let r = long.validate_template("loop");
        flag.store(true, Ordering::SeqCst);
        r
    });
    // While the guest spins, another component answers.
    std::thread::sleep(Duration::from_millis(50));
    let served = whatsapp
        .classify(
            &SendOutcome::Response(HttpResponse {
                status: 200,
                headers: vec![],
                body: br#"{"messaging_product":"whatsapp","messages":[{"id":"wamid.X"}]}"#.to_vec(),
            }),
            1,
        )
        .unwrap();
    assert_eq!(served.reason, "accepted");
    assert!(
        !loop_done.load(Ordering::SeqCst),
        "the loop was still running while the other call was served"
    );
    let msg = trap_message(spinning.join().unwrap());
    assert!(msg.contains("CPU budget"), "{msg}");
}

#[test]
fn time_spent_waiting_for_a_busy_executor_is_not_charged_to_the_guest() {
    // One executor thread shared with a task that blocks it for 100 ms whenever it runs: the
    // spinning guest gets ~10 ms (one yield interval) in every ~110. Its 200 ms CPU budget
    // must then last ~2 s of wall time; charging the waits would stop it after ~200 ms.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let budget = Duration::from_millis(200);
    let spinning = hostile().with_limits(Limits {
        cpu_time: budget,
        ..Limits::default()
    });
    let (result, wall) = rt.block_on(async {
        let hog = tokio::spawn(async {
            loop {
                std::thread::sleep(Duration::from_millis(100));
                tokio::task::yield_now().await;
            }
        });
        let started = std::time::Instant::now();
        let result = spinning.0.validate_template("loop").await;
        hog.abort();
        (result, started.elapsed())
    });
    let msg = trap_message(result);
    assert!(msg.contains("CPU budget"), "{msg}");
    assert!(
        wall >= budget * 5,
        "stopped after {wall:?} of wall time: the waits were charged as guest CPU"
    );
}

#[test]
fn a_memory_bomb_hits_the_memory_cap() {
    let msg = trap_message(hostile().validate_template("memory"));
    assert!(!msg.is_empty());
    // The same compiled component is fine on its next call.
    assert_eq!(hostile().validate_template("nothing").unwrap(), Ok(()));
}

#[test]
fn deep_recursion_exhausts_the_stack_and_traps() {
    // The guest's stack lives in its linear memory: running past it traps (stack overflow,
    // or the out-of-bounds access just below it), never touching the host.
    let msg = trap_message(hostile().validate_template("recursion"));
    assert!(
        msg.contains("stack") || msg.contains("out of bounds"),
        "{msg}"
    );
}

#[test]
fn a_panic_traps_the_call_and_is_not_a_host_crash() {
    let msg = trap_message(hostile().validate_template("panic"));
    assert!(
        msg.contains("unreachable") || msg.contains("panic"),
        "{msg}"
    );
}

#[test]
fn a_100_mb_log_flood_is_cut_to_the_call_budget() {
    let plugin = hostile();
    assert_eq!(plugin.validate_template("log-flood").unwrap(), Ok(()));
    let log = &plugin.services().log;
    let kept: usize = log.lines().iter().map(|(_, l)| l.len()).sum();
    assert!(
        kept <= 80 * 1024,
        "the host kept {kept} bytes of a 100 MB flood"
    );
    assert!(
        log.lines().iter().any(|(_, l)| l.contains("dropped")),
        "the cut is said: {:?}",
        log.lines().last()
    );
}

#[test]
fn a_million_host_calls_finish_or_stop_at_a_budget_never_hang() {
    match hostile().validate_template("imports") {
        Ok(Ok(())) => {}
        Err(e @ (CallError::Trap { .. } | CallError::Deadline { .. })) => {
            assert!(!e.to_string().is_empty())
        }
        other => panic!("{other:?}"),
    }
}
