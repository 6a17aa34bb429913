//! Several `serve` nodes on one PostgreSQL database, with no fault and with faults injected
//! from outside: a node SIGKILLed mid-campaign and another restarted, a node frozen (SIGSTOP)
//! past its lease, a node killed while it stores a batch, PostgreSQL itself restarted mid-run.
//! The provider delivers statuses as Meta does to an app behind several nodes: each to a
//! node picked at random, some twice, some in reverse order, again while not answered 200.
//! Every scenario asserts, per flow: final; nothing sent twice; no customer reached on SMS
//! after WhatsApp delivered; every status answered 200 applied; none written over a higher.

use host_testkit::mock::{Deliveries, Latency, MockApi, MockConfig, WebhookTargets};
use host_testkit::mock_businesses::MockBusiness;
use host_testkit::process::{
    FlowClient, ServeProcess, assert_nothing_sent_twice, delivered_fallback_campaign, free_port,
    wait_requests, wait_sends, write_demo_secrets,
};
use host_testkit::{postgres, timeline_text as timeline};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

const TOKEN: &str = "nodes-test-token";
const ADMIN_TOKEN: &str = "nodes-test-admin-token";
const MASTER_KEY: &str = "6262626262626262626262626262626262626262626262626262626262626262";

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
    /// `n` nodes on a fresh database; statuses go to every node (see the module's doc).
    fn new(name: &str, n: usize, latency_ms: u64) -> Cluster {
        Cluster::serving(name, n, latency_ms, Vec::new())
    }

    /// The same, the mock also serving `businesses` (each its own WABA, token and numbers)
    /// and the nodes holding a master key and the operator API for their tenants.
    fn serving(name: &str, n: usize, latency_ms: u64, businesses: Vec<MockBusiness>) -> Cluster {
        let ports: Vec<u16> = (0..n).map(|_| free_port().unwrap()).collect();
        let nodes: Vec<String> = ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect();
        let mut targets = WebhookTargets::demo_serve(&nodes[0], Duration::from_millis(100));
        targets.deliveries = Some(Deliveries {
            nodes,
            duplicate_one_in: 4,
            reverse_one_in: 5,
            retries: 12,
        });
        let mock = MockApi::start(
            0,
            MockConfig {
                webhooks: Some(targets),
                latency: Latency::Fixed(latency_ms),
                businesses,
                ..MockConfig::default()
            },
        )
        .unwrap();
        let dir = std::env::temp_dir().join(format!("nodes-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let secrets = write_demo_secrets(&dir, TOKEN).unwrap();
        let mut all: Value = serde_json::from_slice(&std::fs::read(&secrets).unwrap()).unwrap();
        all["flow/admin-token"] = Value::from(ADMIN_TOKEN);
        std::fs::write(&secrets, all.to_string()).unwrap();
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
            .env("FLOW_MASTER_KEY", MASTER_KEY)
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

/// WhatsApp's statuses in precedence order.
const STATUS_ORDER: [&str; 3] = ["sent", "delivered", "read"];

impl Cluster {
    /// The guarantees of the module's doc, over every flow's final status, read again once
    /// the provider has delivered every status it had to deliver.
    fn assert_campaign(&self, finals: &[Value]) {
        let mut delivered = usize::MAX;
        while self.mock.deliveries().len() != delivered {
            delivered = self.mock.deliveries().len();
            std::thread::sleep(Duration::from_secs(2));
        }
        let ids: Vec<String> = finals
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect();
        let live = (0..self.nodes.len())
            .find(|i| self.nodes[*i].is_some())
            .unwrap();
        let finals = self.wait_final(live, &ids, Duration::from_secs(10));
        self.assert_nothing_sent_twice();
        let mut answered: HashMap<String, Vec<String>> = HashMap::new();
        for d in self
            .mock
            .deliveries()
            .into_iter()
            .filter(|d| d.http_status == 200)
        {
            answered.entry(d.message_id).or_default().push(d.status);
        }
        let sent_to: HashSet<String> = self
            .mock
            .requests()
            .iter()
            .filter_map(|r| r.correlation_id())
            .collect();
        for s in &finals {
            let id = s["id"].as_str().unwrap();
            assert!(
                matches!(s["state"].as_str(), Some("done" | "exhausted" | "expired")),
                "not final: {}",
                timeline(s)
            );
            assert_each_status_applied_once(s);
            let whatsapp = s["attempts"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["channel"] == "whatsapp");
            for a in whatsapp {
                let Some(wamid) = a["provider_message_id"].as_str() else {
                    continue;
                };
                let statuses = answered.get(wamid).cloned().unwrap_or_default();
                for status in &statuses {
                    assert!(
                        timeline(s).contains(&format!("whatsapp status {status}")),
                        "{status} of {wamid} answered 200 but not applied: {}",
                        timeline(s)
                    );
                }
                let highest = STATUS_ORDER
                    .iter()
                    .rev()
                    .find(|st| statuses.iter().any(|x| x == *st));
                if let Some(highest) = highest {
                    assert_eq!(
                        a["last_status"],
                        **highest,
                        "a lower status overwrote {highest}: {}",
                        timeline(s)
                    );
                }
                if highest.is_some_and(|h| *h != "sent") {
                    let sms = sent_to.iter().find(|c| c.starts_with(&format!("{id}/1/")));
                    assert!(
                        sms.is_none(),
                        "{id}: SMS {sms:?} after WhatsApp {wamid} was delivered: {}",
                        timeline(s)
                    );
                    assert_eq!(s["state"], "done", "{}", timeline(s));
                }
            }
        }
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
    }
    cluster.assert_campaign(&finals);
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
        assert_eq!(s["state"], "done", "{}", timeline(s));
    }
    cluster.assert_campaign(&finals);
}

#[test]
fn three_nodes_with_no_fault_never_reach_a_customer_on_sms_after_whatsapp_delivered() {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let cluster = Cluster::new("no-fault", 3, 100);
    let (ids, flows) = campaign("n", 600);
    for (i, chunk) in flows.chunks(100).enumerate() {
        cluster.submit(i % 3, chunk);
    }
    let finals = cluster.wait_final(1, &ids, Duration::from_secs(120));
    for s in &finals {
        assert_eq!(s["state"], "done", "{}", timeline(s));
        // Never SMS. (A node the shared machine stalls for seconds between claiming a send
        // and handing it over gives it up, unsent, by the lease rule: a second WhatsApp
        // attempt then sends it, once. That is the rule working, not a fault of the cluster.)
        let channels = host_testkit::attempt_channels(s);
        assert!(channels.iter().all(|c| c == "whatsapp"), "{}", timeline(s));
        let handed_over = s["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["reason"] != "never_sent")
            .count();
        assert_eq!(handed_over, 1, "{}", timeline(s));
    }
    cluster.assert_campaign(&finals);
    let twice = cluster.mock.deliveries().len() as u64;
    assert!(
        twice > 600 * 3,
        "statuses were delivered more than once: {twice}"
    );
}

/// SIGSTOP one node of three for 45 s, past its 35 s lease, while flows keep arriving: the
/// others keep sending throughout (a frozen node's locks are bounded by the server's idle
/// timeouts), they take over its sends, and it carries on when it wakes.
#[test]
fn a_node_frozen_past_its_lease_costs_the_others_seconds_and_its_sends_are_taken_over() {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let cluster = Cluster::new("freeze", 3, 100);
    let (ids, flows) = campaign("z", 400);
    cluster.submit(0, &flows[..100]);
    cluster.wait_requests(40);
    let frozen = cluster.nodes[0].as_ref().unwrap();
    frozen.pause().unwrap();
    let started = std::time::Instant::now();
    // A wave of 20 flows every 3 s through the live nodes; each must reach the provider
    // within a few seconds although a third of the statuses go to the frozen node first.
    let mut waves = Vec::new();
    for (w, wave) in flows[100..].chunks(20).enumerate() {
        let before = cluster.mock.counters()["requests"].as_u64().unwrap();
        let at = started.elapsed();
        cluster.submit(1 + w % 2, wave);
        let deadline = std::time::Instant::now() + Duration::from_secs(8);
        while cluster.mock.counters()["requests"].as_u64().unwrap() < before + 20 {
            assert!(
                std::time::Instant::now() < deadline,
                "wave {w} ({at:?} into the freeze) not sent within 8 s: {}",
                cluster.mock.counters()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        waves.push((at, started.elapsed() - at));
        std::thread::sleep(Duration::from_secs(3).saturating_sub(started.elapsed() - at));
        if started.elapsed() > Duration::from_secs(45) {
            break;
        }
    }
    frozen.resume().unwrap();
    assert!(waves.len() >= 10, "{waves:?}");
    let submitted = 100 + waves.len() * 20;
    let finals = cluster.wait_final(2, &ids[..submitted], Duration::from_secs(150));
    for s in &finals {
        assert_eq!(s["state"], "done", "{}", timeline(s));
    }
    cluster.assert_campaign(&finals);
    eprintln!("waves (start into the freeze, time to reach the provider): {waves:?}");
}

/// A node SIGKILLed while it stores a batch: the batch is all or nothing, and the client's
/// retry of the same batch through another node starts each flow once.
#[test]
fn a_node_killed_while_storing_a_batch_loses_it_whole_and_the_retry_sends_each_once() {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut cluster = Cluster::new("batch-kill", 3, 100);
    let (ids, flows) = campaign("b", 2_000);
    let lines: Vec<String> = flows.iter().map(Value::to_string).collect();
    let client = cluster.client(0);
    let batch = lines.clone();
    let posting = std::thread::spawn(move || client.submit(&batch));
    std::thread::sleep(Duration::from_millis(150));
    cluster.kill(0);
    let _ = posting.join().unwrap();
    // The client does not know what happened: it posts the same batch again elsewhere.
    let mut r = cluster.client(1).submit(&lines);
    for _ in 0..10 {
        if r.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        r = cluster.client(1).submit(&lines);
    }
    r.expect("the retried batch is accepted");
    let finals = cluster.wait_final(2, &ids, Duration::from_secs(150));
    for s in &finals {
        assert_eq!(s["state"], "done", "{}", timeline(s));
    }
    cluster.assert_campaign(&finals);
}

impl Cluster {
    /// Creates tenant `id` through node 0's operator API, puts its WhatsApp account with
    /// `business`'s token and connects its numbers; the tenant's flow API token.
    fn connect_tenant(&self, id: &str, business: &MockBusiness) -> String {
        let http = reqwest::blocking::Client::new();
        let base = format!("http://127.0.0.1:{}", self.ports[0]);
        let admin = |method: reqwest::Method, path: &str, body: Value| {
            let r = http
                .request(method, format!("{base}{path}"))
                .bearer_auth(ADMIN_TOKEN)
                .json(&body)
                .send()
                .unwrap();
            let status = r.status().as_u16();
            let text = r.text().unwrap();
            assert!(status < 300, "{path}: {status} {text}\n{}", self.log(0));
            serde_json::from_str::<Value>(&text).unwrap_or(Value::Null)
        };
        admin(
            reqwest::Method::POST,
            "/admin/tenants",
            serde_json::json!({"id": id}),
        );
        let token = admin(
            reqwest::Method::POST,
            &format!("/admin/tenants/{id}/tokens"),
            serde_json::json!({}),
        )["token"]
            .as_str()
            .unwrap()
            .to_string();
        let numbers: Vec<&str> = business.numbers.iter().map(|n| n.id.as_str()).collect();
        admin(
            reqwest::Method::PUT,
            &format!("/admin/tenants/{id}/channels/whatsapp"),
            serde_json::json!({"account_id": business.waba_id,
                "settings": {"phone_number_id": numbers[0]},
                "secrets": {"access-token": business.access_token}}),
        );
        admin(
            reqwest::Method::POST,
            &format!("/admin/tenants/{id}/channels/whatsapp/connect"),
            serde_json::json!({"sender_ids": numbers}),
        );
        token
    }
}

/// Two tenants' campaigns, each over its two numbers, through two PostgreSQL nodes; one
/// node SIGKILLed with sends at the provider, then started again: every flow of each tenant
/// ends delivered on WhatsApp from the number it named, none sent twice or by SMS, and each
/// tenant reads only its own flows.
#[test]
fn a_node_killed_mid_campaign_of_two_tenants_loses_nothing_and_sends_nothing_twice() {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let businesses = vec![
        MockBusiness::new("3003", 2, 2),
        MockBusiness::new("4004", 2, 2),
    ];
    let mut cluster = Cluster::serving("tenants-kill", 2, 2_000, businesses.clone());
    let tenants = ["acme", "globex"];
    let tokens: Vec<String> = tenants
        .iter()
        .zip(&businesses)
        .map(|(id, b)| cluster.connect_tenant(id, b))
        .collect();
    let mut ids: Vec<Vec<String>> = vec![Vec::new(), Vec::new()];
    for i in 0..80 {
        let t = i % 2;
        let number = &businesses[t].numbers[(i / 2) % 2].id;
        let id = format!("tk-{i}");
        let flow = serde_json::json!({"id": id, "recipient": format!("+1555031{i:04}"),
            "ttl_ms": 120_000, "steps": [
            {"channel": "whatsapp", "from": number, "wait_for": "delivered", "within_ms": 90_000,
             "content": {"type": "template", "template": {"name": "t1", "language": "en_US",
                "components": [{"type": "body", "parameters": [{"type": "text", "text": "A-7"}]}]}}},
            {"channel": "sms", "wait_for": "accepted", "content": {"text": "Your order A-7 shipped."}}]});
        FlowClient::new(cluster.ports[i % 2], &tokens[t])
            .submit(&[flow.to_string()])
            .unwrap();
        ids[t].push(id);
    }
    // Every send at the provider before the kill (the connect requests count as requests):
    // a send the kill leaves unknown is then settled by its statuses, never by the SMS step.
    wait_sends(&cluster.mock, 80, Duration::from_secs(60));
    cluster.kill(1);
    cluster.start(1);
    for (t, tenant) in tenants.iter().enumerate() {
        let client = FlowClient::new(cluster.ports[0], &tokens[t]);
        let finals = client.wait_final(&ids[t], Duration::from_secs(150));
        for (s, id) in finals.iter().zip(&ids[t]) {
            assert_eq!(s["state"], "done", "{}", timeline(s));
            // Never SMS. A send the killed node had claimed but not handed over is a second
            // WhatsApp attempt of the same step: it never left, so the provider sees one.
            assert!(
                host_testkit::attempt_channels(s)
                    .iter()
                    .all(|c| c == "whatsapp"),
                "{}",
                timeline(s)
            );
            let i: usize = id.trim_start_matches("tk-").parse().unwrap();
            let number = &businesses[t].numbers[(i / 2) % 2].id;
            let requests: Vec<_> = cluster
                .mock
                .requests()
                .into_iter()
                .filter(|r| {
                    r.correlation_id()
                        .is_some_and(|c| c.starts_with(&format!("{tenant}/{id}/")))
                })
                .collect();
            assert_eq!(
                requests.len(),
                1,
                "{id} reached the provider {} times: {}",
                requests.len(),
                timeline(s)
            );
            let sent = &requests[0];
            assert!(
                sent.path.contains(&format!("/{number}/messages")),
                "{}",
                sent.path
            );
        }
        // The other tenant's flows are not this tenant's to read.
        let other = &ids[1 - t][0];
        let status = reqwest::blocking::Client::new()
            .get(format!(
                "http://127.0.0.1:{}/flows/{other}",
                cluster.ports[0]
            ))
            .bearer_auth(&tokens[t])
            .send()
            .unwrap()
            .status();
        assert_eq!(status.as_u16(), 404, "{tenant} read {other}");
    }
    cluster.assert_nothing_sent_twice();
}
