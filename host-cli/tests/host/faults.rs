//! Faults injected from outside the process: `serve` is SIGKILLed while sends are in flight
//! (between send and record), while a retry is in flight, and while a fallback send is in
//! flight, then restarted on the same database. The mock provider (its own runtime, not
//! killed) counts every request per correlation id: nothing may be sent twice, and every flow
//! must end.

use host_testkit::mock::{Deliveries, Latency, MockApi, MockConfig, MockLimits, WebhookTargets};
use host_testkit::process::{
    FlowClient, ServeProcess, assert_nothing_sent_twice, delivered_fallback_campaign,
    delivered_fallback_flow, free_port, wait_requests, write_demo_secrets,
};
use host_testkit::{attempt_channels as channels, timeline_text as timeline};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const TOKEN: &str = "fault-test-token";

struct Rig {
    dir: PathBuf,
    port: u16,
    mock: MockApi,
    client: FlowClient,
    /// `serve --rate-per-number`.
    rate: u32,
}

impl Rig {
    fn new(name: &str, latency_ms: u64) -> Rig {
        Rig::with_limits(name, latency_ms, None)
    }

    /// A rig whose provider enforces `limits` (130429 past its rate), and whose `serve` paces
    /// at that rate.
    fn with_limits(name: &str, latency_ms: u64, limits: Option<MockLimits>) -> Rig {
        Rig::build(name, latency_ms, limits, false)
    }

    /// A rig whose provider posts each webhook again until `serve` answers 200, as providers
    /// retry: statuses posted while `serve` is down arrive once it is back.
    fn redelivering(name: &str, latency_ms: u64) -> Rig {
        Rig::build(name, latency_ms, None, true)
    }

    fn build(name: &str, latency_ms: u64, limits: Option<MockLimits>, redeliver: bool) -> Rig {
        let port = free_port().unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let targets = WebhookTargets {
            deliveries: redeliver.then(|| Deliveries {
                nodes: vec![url.clone()],
                retries: 8,
                ..Deliveries::default()
            }),
            ..WebhookTargets::demo_serve(&url, Duration::from_millis(100))
        };
        let mock = MockApi::start(
            0,
            MockConfig {
                webhooks: Some(targets),
                latency: Latency::Fixed(latency_ms),
                limits,
                ..MockConfig::default()
            },
        )
        .unwrap();
        let dir = std::env::temp_dir().join(format!("faults-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        write_demo_secrets(&dir, TOKEN).unwrap();
        Rig {
            dir,
            port,
            mock,
            client: FlowClient::new(port, TOKEN),
            rate: limits.map_or(1_000, |l| l.rate_per_number),
        }
    }

    /// Starts `serve` on the rig's database and waits until it answers.
    fn serve(&self, run: usize) -> ServeProcess {
        let log = std::fs::File::create(self.dir.join(format!("serve-{run}.log"))).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_host-harness"));
        cmd.args(["serve", "--port", &self.port.to_string(), "--db"])
            .arg(self.dir.join("flows.sqlite"))
            .args(["--api-base", &self.mock.base_url()])
            .args(["--allow-host", &self.mock.base_url()])
            .arg("--secrets")
            .arg(self.dir.join("secrets.json"))
            .args(["--rate-per-number", &self.rate.to_string()])
            .stderr(log);
        ServeProcess::start(cmd, self.port).unwrap_or_else(|e| panic!("{e:#}: {}", self.log(run)))
    }

    fn log(&self, run: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("serve-{run}.log"))).unwrap_or_default()
    }

    fn start(&self, flows: &[Value]) {
        let lines: Vec<String> = flows.iter().map(Value::to_string).collect();
        self.client.submit(&lines).unwrap();
    }

    /// Waits until the mock has received `n` requests (they are in flight: latency).
    fn wait_requests(&self, n: u64) {
        wait_requests(&self.mock, n, Duration::from_secs(30));
    }

    fn wait_final(&self, ids: &[String]) -> Vec<Value> {
        self.client.wait_final(ids, Duration::from_secs(60))
    }

    /// No correlation id reached the provider twice.
    fn assert_nothing_sent_twice(&self) {
        assert_nothing_sent_twice(&self.mock);
    }
}

fn flow(id: &str, recipient: &str) -> Value {
    delivered_fallback_flow(id, recipient, 30_000)
}

fn campaign(prefix: &str, n: usize, numbers: &str) -> (Vec<String>, Vec<Value>) {
    delivered_fallback_campaign(prefix, n, numbers, 30_000)
}

#[test]
fn killed_between_send_and_record_nothing_is_resent_and_every_flow_ends() {
    let rig = Rig::new("in-flight", 3_000);
    let serve = rig.serve(1);
    let (ids, flows) = campaign("inflight", 40, "+1555020");
    rig.start(&flows);
    // Every request reached the provider, none has been answered: kill.
    rig.wait_requests(40);
    serve.kill().unwrap();
    let _serve = rig.serve(2);
    let finals = rig.wait_final(&ids);
    for s in &finals {
        assert_eq!(s["state"], "done", "{}", timeline(s));
        assert_eq!(
            channels(s),
            ["whatsapp"],
            "no resend, no fallback: {}",
            timeline(s)
        );
        assert_eq!(s["attempts"][0]["disposition"], "unknown");
        assert!(timeline(s).contains("host stopped"), "{}", timeline(s));
    }
    rig.assert_nothing_sent_twice();
    assert_eq!(rig.mock.counters()["requests"], 40);
}

#[test]
fn killed_during_a_retry_the_retry_is_not_sent_again() {
    // +15550100010 is rate-limited once (130429), then accepted.
    let rig = Rig::new("retry", 1_500);
    let serve = rig.serve(1);
    rig.start(&[flow("retry-1", "+15550100010")]);
    // The first attempt is answered 130429 after 1.5 s; the retry follows; once it is in
    // flight, kill.
    rig.wait_requests(2);
    serve.kill().unwrap();
    let _serve = rig.serve(2);
    let s = &rig.wait_final(&["retry-1".to_string()])[0];
    assert_eq!(s["state"], "done", "{}", timeline(s));
    assert_eq!(channels(s), ["whatsapp", "whatsapp"], "{}", timeline(s));
    assert_eq!(s["attempts"][1]["disposition"], "unknown");
    rig.assert_nothing_sent_twice();
    assert_eq!(rig.mock.counters()["requests"], 2, "no third attempt");
}

#[test]
fn killed_during_a_fallback_send_the_fallback_is_not_sent_again() {
    // +15550100002 is not on WhatsApp (131026): the flow falls back to SMS.
    let rig = Rig::new("fallback", 1_500);
    let serve = rig.serve(1);
    rig.start(&[flow("fallback-1", "+15550100002")]);
    rig.wait_requests(2);
    serve.kill().unwrap();
    let _serve = rig.serve(2);
    let s = &rig.wait_final(&["fallback-1".to_string()])[0];
    assert_eq!(s["state"], "done", "{}", timeline(s));
    assert_eq!(channels(s), ["whatsapp", "sms"], "{}", timeline(s));
    assert_eq!(s["attempts"][1]["disposition"], "unknown");
    assert!(
        timeline(s).contains("sms status delivered"),
        "{}",
        timeline(s)
    );
    rig.assert_nothing_sent_twice();
}

#[test]
fn killed_during_the_email_fallback_the_email_is_not_sent_again() {
    // Not on WhatsApp (131026) → SMS undelivered (30003, by Twilio's callback) → email.
    let rig = Rig::redelivering("email", 1_500);
    let serve = rig.serve(1);
    let spec = serde_json::json!({"id": "email-1", "recipient": "+15550100002",
        "unknown_wait_ms": 30_000, "steps": [
        {"channel": "whatsapp", "wait_for": "delivered", "within_ms": 30_000,
         "content": {"type": "template", "template": {"name": "order_update", "language": "en_US",
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "Pablo"}]}]}}},
        {"channel": "sms", "to": "+15550600003", "wait_for": "delivered", "within_ms": 30_000,
         "content": {"text": "Your order shipped."}},
        {"channel": "email", "to": "pablo@example.com", "wait_for": "delivered", "within_ms": 30_000,
         "content": {"subject": "Your order shipped", "text": "Your order shipped."}}]});
    rig.start(&[spec]);
    // WhatsApp and SMS answered, the email request reached SendGrid, unanswered: kill.
    rig.wait_requests(3);
    serve.kill().unwrap();
    let _serve = rig.serve(2);
    let s = &rig.wait_final(&["email-1".to_string()])[0];
    assert_eq!(s["state"], "done", "{}", timeline(s));
    assert_eq!(channels(s), ["whatsapp", "sms", "email"], "{}", timeline(s));
    assert_eq!(
        s["attempts"][2]["disposition"],
        "unknown",
        "{}",
        timeline(s)
    );
    assert!(
        timeline(s).contains("email status delivered"),
        "{}",
        timeline(s)
    );
    rig.assert_nothing_sent_twice();
    let emails = rig
        .mock
        .requests()
        .iter()
        .filter(|r| r.is_email_send())
        .count();
    assert_eq!(emails, 1, "the email went once");
    assert_eq!(rig.mock.counters()["requests"], 3);
}

#[test]
fn a_provider_slower_than_the_call_budget_never_turns_into_a_second_channel() {
    // The old host trapped a call that waited on the provider past its 5 s CPU deadline and
    // fell back to SMS although WhatsApp had the message. Here the provider answers after
    // 6 s: the host waits (waiting costs no guest CPU), and the flow ends on WhatsApp alone.
    let rig = Rig::new("slow", 6_000);
    let _serve = rig.serve(1);
    rig.start(&[flow("slow-1", "+15550100001")]);
    let s = &rig.wait_final(&["slow-1".to_string()])[0];
    assert_eq!(channels(s), ["whatsapp"], "{}", timeline(s));
    assert_eq!(s["state"], "done", "{}", timeline(s));
    rig.assert_nothing_sent_twice();
    assert_eq!(rig.mock.counters()["requests"], 1);
}

#[test]
fn sigterm_finishes_the_sends_in_flight_before_exiting() {
    let rig = Rig::new("sigterm", 1_500);
    let serve = rig.serve(1);
    let (ids, flows) = campaign("term", 10, "+1555040");
    rig.start(&flows);
    rig.wait_requests(10);
    let status = serve.terminate().unwrap();
    assert!(status.success(), "{status:?}: {}", rig.log(1));
    // Every answer was recorded before the exit: nothing is unknown after the restart.
    let _serve = rig.serve(2);
    for s in rig.wait_final(&ids) {
        assert_eq!(
            s["attempts"][0]["disposition"],
            "accepted",
            "{}",
            timeline(&s)
        );
        assert_eq!(s["state"], "done");
    }
    rig.assert_nothing_sent_twice();
}

/// `serve` frozen (SIGSTOP) for 1.5 s mid-campaign, then let go (SIGCONT): every send whose
/// slot passed meanwhile is due at once. They leave spaced at the number's rate again, so the
/// provider sees no second past its rate and refuses nothing (it allows 1% over, as Meta's
/// limiter is not millisecond-exact either).
#[test]
fn a_host_frozen_mid_campaign_does_not_burst_past_the_rate_when_it_resumes() {
    let limits = MockLimits {
        rate_per_number: 20,
        pair_gap_ms: 0,
    };
    let rig = Rig::with_limits("frozen", 50, Some(limits));
    let serve = rig.serve(1);
    let (ids, flows) = campaign("frozen", 80, "+1555040");
    rig.start(&flows);
    rig.wait_requests(15);
    serve.pause().unwrap();
    std::thread::sleep(Duration::from_millis(1_500));
    serve.resume().unwrap();
    let finals = rig.wait_final(&ids);
    for s in &finals {
        assert_eq!(s["state"], "done", "{}", timeline(s));
    }
    let counters = rig.mock.counters();
    assert_eq!(counters["by_code"].get("130429"), None, "{counters}");
    assert!(
        counters["max_per_second"].as_u64().unwrap() <= 21,
        "{counters}"
    );
    rig.assert_nothing_sent_twice();
}
