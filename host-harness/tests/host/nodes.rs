//! Several `serve` nodes on one PostgreSQL database, faults injected from outside: a node
//! SIGKILLed mid-campaign and another restarted, PostgreSQL itself restarted mid-run. The mock
//! provider counts every request per correlation id: nothing may be sent twice, every flow
//! must end, and every status webhook is applied once whichever node receives it.

use host_harness::mock::{Latency, MockApi, MockConfig, WebhookTargets};
use host_harness::testkit::process::{
    FlowClient, ServeProcess, assert_nothing_sent_twice, delivered_fallback_campaign, free_port,
    wait_requests, write_demo_secrets,
};
use host_harness::testkit::{postgres, timeline_text as timeline};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

const TOKEN: &str = "nodes-test-token";

/// One test at a time: one of them restarts the PostgreSQL server the other uses.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The shortest lease `serve` accepts: a killed node's sends are taken over after it.
const LEASE_MS: &str = "35000";

struct Cluster {
    dir: PathBuf,
    db: String,
    ports: Vec<u16>,
    nodes: Vec<Option<ServeProcess>>,
    mock: MockApi,
}

impl Cluster {
    /// `n` nodes on a fresh database; the provider's webhooks go to the last node.
    fn new(name: &str, n: usize, latency_ms: u64) -> Cluster {
        let ports: Vec<u16> = (0..n).map(|_| free_port().unwrap()).collect();
        let webhook_node = format!("http://127.0.0.1:{}", ports[n - 1]);
        let mock = MockApi::start(
            0,
            MockConfig {
                webhooks: Some(WebhookTargets::demo_serve(
                    &webhook_node,
                    Duration::from_millis(100),
                )),
                latency: Latency::Fixed(latency_ms),
                ..MockConfig::default()
            },
        )
        .unwrap();
        let dir = std::env::temp_dir().join(format!("nodes-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        write_demo_secrets(&dir, TOKEN).unwrap();
        let mut cluster = Cluster {
            dir,
            db: postgres::fresh_database(),
            ports,
            nodes: (0..n).map(|_| None).collect(),
            mock,
        };
        for i in 0..n {
            cluster.start(i);
        }
        cluster
    }

    fn client(&self, i: usize) -> FlowClient {
        FlowClient::new(self.ports[i], TOKEN)
    }

    fn start(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("node-{i}.log")))
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_host-harness"));
        cmd.args(["serve", "--port", &self.ports[i].to_string()])
            .args(["--db", &self.db, "--lease-ms", LEASE_MS])
            .args(["--api-base", &self.mock.base_url()])
            .args(["--allow-host", &self.mock.base_url()])
            .arg("--secrets")
            .arg(self.dir.join("secrets.json"))
            .args(["--rate-per-number", "1000"])
            .stderr(log);
        let node = ServeProcess::start(cmd, self.ports[i])
            .unwrap_or_else(|e| panic!("node {i}: {e:#}: {}", self.log(i)));
        self.nodes[i] = Some(node);
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("node-{i}.log"))).unwrap_or_default()
    }

    /// SIGKILL: nothing finished, nothing flushed, its leases left behind.
    fn kill(&mut self, i: usize) {
        self.nodes[i].take().expect("running").kill().unwrap();
    }

    /// SIGTERM and start again on the same port and database.
    fn restart(&mut self, i: usize) {
        let status = self.nodes[i].take().expect("running").terminate().unwrap();
        assert!(status.success(), "{}", self.log(i));
        self.start(i);
    }

    fn submit(&self, i: usize, flows: &[Value]) {
        let lines: Vec<String> = flows.iter().map(Value::to_string).collect();
        self.client(i).submit(&lines).unwrap();
    }

    fn wait_requests(&self, n: u64) {
        wait_requests(&self.mock, n, Duration::from_secs(60));
    }

    /// Every flow's final status, asked of node `i`.
    fn wait_final(&self, i: usize, ids: &[String], within: Duration) -> Vec<Value> {
        self.client(i).wait_final(ids, within)
    }

    fn assert_nothing_sent_twice(&self) {
        assert_nothing_sent_twice(&self.mock);
    }
}

fn campaign(prefix: &str, n: usize) -> (Vec<String>, Vec<Value>) {
    delivered_fallback_campaign(prefix, n, "+1555030", 60_000)
}

/// No status was applied twice: each attempt's timeline names each status at most once.
fn assert_each_status_applied_once(s: &Value) {
    let mut seen = std::collections::HashSet::new();
    for entry in s["timeline"].as_array().unwrap() {
        let text = entry["entry"].as_str().unwrap_or_default();
        if text.contains(" status ") && !text.contains("arrived late") {
            let key = (entry["attempt_id"].clone().to_string(), text.to_string());
            assert!(seen.insert(key), "applied twice: {}", timeline(s));
        }
    }
}

#[test]
fn a_node_killed_mid_campaign_loses_nothing_and_sends_nothing_twice() {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut cluster = Cluster::new("kill", 3, 200);
    let (ids, flows) = campaign("k", 300);
    // Flows go in through two nodes; any node may claim them.
    cluster.submit(0, &flows[..150]);
    cluster.submit(1, &flows[150..]);
    cluster.wait_requests(100);
    // Node 0 dies with sends in flight; node 1 restarts gracefully.
    cluster.kill(0);
    cluster.restart(1);
    // Node 2 answers for every flow, whichever node ran it; node 0's sends are taken over
    // once its lease passes.
    let finals = cluster.wait_final(2, &ids, Duration::from_secs(150));
    for s in &finals {
        assert_eq!(s["state"], "done", "{}", timeline(s));
        assert_each_status_applied_once(s);
    }
    cluster.assert_nothing_sent_twice();
    let requests = cluster.mock.counters()["requests"].as_u64().unwrap();
    assert!(requests >= 300, "every flow sent: {requests}");
    let log = cluster.log(2) + &cluster.log(1);
    assert!(
        log.contains("took over") || finals.iter().all(|s| !timeline(s).contains("unknown")),
        "a killed node's sends were taken over: {log}"
    );
}

#[test]
fn postgres_restarted_mid_run_the_nodes_reconnect_and_lose_nothing() {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let ctl = std::env::var("FLOW_TEST_POSTGRES_CTL").unwrap_or_else(|_| {
        panic!("FLOW_TEST_POSTGRES_CTL is not set: run the tests with scripts/test.sh, which starts PostgreSQL and says how to restart it")
    });
    let cluster = Cluster::new("pg-restart", 2, 200);
    let (ids, flows) = campaign("p", 200);
    cluster.submit(0, &flows);
    cluster.wait_requests(50);
    let mut args: Vec<&str> = ctl.split_whitespace().collect();
    args.extend(["-m", "fast", "-w", "restart"]);
    let as_user = std::env::var("FLOW_TEST_POSTGRES_AS_USER").unwrap_or_default();
    let status = if as_user.is_empty() {
        Command::new(args[0])
            .args(&args[1..])
            .stdout(Stdio::null())
            .status()
    } else {
        Command::new("runuser")
            .args(["-u", &as_user, "--"])
            .args(&args)
            .stdout(Stdio::null())
            .status()
    }
    .unwrap();
    assert!(status.success(), "restarting PostgreSQL");
    let finals = cluster.wait_final(1, &ids, Duration::from_secs(150));
    for s in &finals {
        assert!(
            matches!(s["state"].as_str(), Some("done")),
            "{}",
            timeline(s)
        );
        assert_each_status_applied_once(s);
    }
    cluster.assert_nothing_sent_twice();
}
