//! `host-harness bench load`: `serve` processes (one, or `--nodes N` sharing a PostgreSQL
//! `--db`) against the mock on loopback, measured from outside: sustained sends per second, latency from `POST /flows` to `accepted`, the most the
//! mock saw in any second, its 130429/131056 answers, `serve`'s peak RSS, and — with
//! `--kill-after-ms` — a SIGKILL mid-run and a restart, after which no correlation id may have
//! reached the provider twice.

use crate::common::{Outcome, UsageError};
use anyhow::{Context, Result, bail};
use clap::Args;
use host_testkit::callbacks::CallbackReceiver;
use host_testkit::defaults::{DEMO_ACCESS_TOKEN, DEMO_SMS_API_KEY};
use host_testkit::mock::{Deliveries, Latency, MockApi, MockConfig, MockLimits, WebhookTargets};
use host_testkit::process::{FlowClient, ServeProcess};
use host_testkit::stack::{DEMO_APP_SECRET, DEMO_SMS_WEBHOOK_SECRET};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-token";

/// Measure the runtime under load (see `docs/measurements.md`).
#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Flows in the campaign (each one WhatsApp send waiting for `accepted`).
    #[arg(long, default_value_t = 10_000)]
    pub flows: usize,
    /// The sending number's rate (serve paces to it; the mock enforces it).
    #[arg(long, default_value_t = 1_000)]
    pub rate: u32,
    /// The mock's answer latency: `200` or `100-300` ms.
    #[arg(long, default_value = "200")]
    pub latency_ms: String,
    /// Distinct customers; fewer than flows makes customers repeat (1 per 6 s each).
    #[arg(long)]
    pub customers: Option<usize>,
    /// Only queue the flows (at a rate of 1/s nothing much is sent) and report serve's RSS.
    #[arg(long)]
    pub queue_only: bool,
    /// SIGKILL serve this long after the flows were submitted, then restart it.
    #[arg(long)]
    pub kill_after_ms: Option<u64>,
    /// Submit the flows at this many per second (in tenth-of-a-second batches) instead of all
    /// at once: latency then shows the runtime, not the queue.
    #[arg(long)]
    pub arrival_rate: Option<u32>,
    /// Sends in flight at once in serve.
    #[arg(long, default_value_t = 1_024)]
    pub max_in_flight: usize,
    /// The store: a SQLite file (default: a new one in a temporary directory) or a
    /// `postgres://` URL (an empty database: the bench counts every flow in it).
    #[arg(long)]
    pub db: Option<String>,
    /// `serve` nodes sharing `--db` (PostgreSQL for more than one). Flows are submitted
    /// round-robin; webhooks go to the first node; `--kill-after-ms` kills the last node
    /// (and, with one node, restarts it).
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// What each flow's WhatsApp step waits for: `accepted` (the API's answer) or `delivered`
    /// (the mock posts signed `sent` and `delivered` statuses back, 200 ms apart).
    #[arg(long, default_value = "accepted", value_parser = ["accepted", "delivered"])]
    pub wait_for: String,
    /// Each flow names a `callback_url`: a receiver in this process that checks every event's
    /// signature, as a flow engine would.
    #[arg(long)]
    pub callbacks: bool,
    /// Clients reading `GET /flows/{id}` over every flow, as fast as answers come, while the
    /// campaign sends (a flow engine polling its flows); then, with every flow final, the
    /// same for 3 s with nothing else running, for serve's CPU per read.
    #[arg(long, default_value_t = 0)]
    pub pollers: usize,
    /// Spread the campaign over this many tenants, each its own business on the mock (its
    /// WABA, token and `--numbers` numbers), put and connected through the operator API;
    /// every flow names its number, round-robin. 0: the default tenant's one number.
    #[arg(long, default_value_t = 0)]
    pub tenants: usize,
    /// Numbers per tenant, each paced at `--rate` (and held to it by the mock).
    #[arg(long, default_value_t = 1)]
    pub numbers: usize,
    /// With `--tenants` ≥ 2: the first tenant's `--flows` queued as a backlog, then the second
    /// tenant's 100 flows; their p99 POST→accepted beside the same 100 flows run alone first.
    #[arg(long)]
    pub fairness: bool,
}

/// Clients polling `GET /flows/{id}` on threads of their own until stopped.
struct Pollers {
    stop: Arc<AtomicBool>,
    reads: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Pollers {
    fn start(count: usize, port: u16, flows: usize) -> Pollers {
        let (stop, reads) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let threads = (0..count)
            .map(|k| {
                let (stop, reads) = (stop.clone(), reads.clone());
                std::thread::spawn(move || {
                    let client = FlowClient::new(port, TOKEN);
                    let mut i = k;
                    while !stop.load(Ordering::Relaxed) {
                        if client
                            .status(&format!("load-{}", i % flows.max(1)))
                            .is_some()
                        {
                            reads.fetch_add(1, Ordering::Relaxed);
                        }
                        i += count;
                    }
                })
            })
            .collect();
        Pollers {
            stop,
            reads,
            threads,
        }
    }

    /// Stops them; the reads answered.
    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().ok();
        }
        self.reads.load(Ordering::Relaxed)
    }
}

/// The secret serve signs the bench's callbacks with.
const CALLBACK_SECRET: &str = "bench-callback-secret";

/// The lease a bench node holds on a send: the shortest serve accepts, so a killed node's
/// sends are taken over soon.
const BENCH_LEASE_MS: &str = "35000";

struct Bench<'a> {
    args: &'a LoadArgs,
    dir: PathBuf,
    ports: Vec<u16>,
    db: String,
    /// Opened once the nodes have created the schema.
    store: std::cell::OnceCell<host::flow::store::Store>,
    mock: MockApi,
    callback_url: Option<String>,
    /// `--tenants`: their businesses on the mock, and (once set up) their tokens.
    businesses: Vec<host_testkit::mock_businesses::MockBusiness>,
    tenant_tokens: std::cell::OnceCell<Vec<String>>,
}

impl LoadArgs {
    pub async fn run(&self, plugin: Option<&Path>) -> Result<Outcome> {
        if self.flows == 0 || self.flows > 1_000_000 || self.rate == 0 {
            return Err(
                UsageError("--flows must be 1 to 1000000 and --rate at least 1".into()).into(),
            );
        }
        let shared = self
            .db
            .as_deref()
            .is_some_and(host::flow::store::is_postgres_url);
        if self.tenants > 100
            || !(1..=50).contains(&self.numbers)
            || (self.fairness && self.tenants < 2)
        {
            return Err(UsageError(
                "--tenants must be at most 100, --numbers 1 to 50, and --fairness needs --tenants 2 or more".into(),
            )
            .into());
        }
        if !(1..=16).contains(&self.nodes) || (self.nodes > 1 && !shared) {
            return Err(UsageError(
                "--nodes must be 1 to 16, and more than one needs a postgres:// --db".into(),
            )
            .into());
        }
        let latency = Latency::parse(&self.latency_ms).map_err(|e| UsageError(format!("{e:#}")))?;
        // The bench drives processes and waits on them: a blocking job, off the runtime's
        // workers.
        let receiver = match self.callbacks {
            true => Some(CallbackReceiver::spawn(CALLBACK_SECRET).await?),
            false => None,
        };
        let callback_url = receiver.as_ref().map(|r| r.url().to_string());
        let (args, plugin) = (self.clone(), plugin.map(Path::to_path_buf));
        let mut report = tokio::task::spawn_blocking(move || {
            let bench = Bench::new(&args, latency, callback_url)?;
            let mut report = bench.run(plugin.as_deref())?;
            if let Some(receiver) = &receiver {
                report["callbacks"] = bench.wait_callbacks_settled(receiver);
            }
            anyhow::Ok(report)
        })
        .await??;
        if let Some(verified) = report["callbacks"]["verified"].as_f64() {
            report["callbacks"]["per_flow"] = json!(verified / self.flows as f64);
        }
        let text = render(&report);
        Ok(Outcome {
            code: 0,
            json: Some(report),
            text: Some(text),
        })
    }
}

impl<'a> Bench<'a> {
    fn new(
        args: &'a LoadArgs,
        latency: Latency,
        callback_url: Option<String>,
    ) -> Result<Bench<'a>> {
        let dir = std::env::temp_dir().join(format!("bench-load-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let ports = (0..args.nodes)
            .map(|_| {
                Ok(std::net::TcpListener::bind("127.0.0.1:0")?
                    .local_addr()?
                    .port())
            })
            .collect::<Result<Vec<u16>>>()?;
        let port = ports[0];
        let db = args
            .db
            .clone()
            .unwrap_or_else(|| dir.join("flows.sqlite").to_string_lossy().into_owned());
        let mock = MockApi::start(
            0,
            MockConfig {
                latency,
                limits: Some(MockLimits {
                    rate_per_number: args.rate,
                    pair_gap_ms: 6_000,
                }),
                record: false,
                // Waiting for `accepted`, one status per message: enough to settle sends a
                // kill left unknown. Waiting for `delivered`, Meta's usual two.
                webhooks: Some(WebhookTargets {
                    // Retried while not answered 200, as Meta retries (serve sheds webhooks
                    // past its admission limit with 503).
                    deliveries: Some(Deliveries {
                        nodes: vec![format!("http://127.0.0.1:{port}")],
                        retries: 8,
                        ..Deliveries::default()
                    }),
                    ..WebhookTargets::demo_serve(
                        &format!("http://127.0.0.1:{port}"),
                        Duration::from_millis(if args.wait_for == "delivered" {
                            200
                        } else {
                            500
                        }),
                    )
                }),
                statuses: if args.wait_for == "delivered" {
                    &[("sent", None), ("delivered", None)]
                } else {
                    &[("delivered", None)]
                },
                businesses: super::bench_tenants::businesses(args.tenants, args.numbers),
                ..MockConfig::default()
            },
        )?;
        Ok(Bench {
            args,
            dir,
            ports,
            db,
            store: std::cell::OnceCell::new(),
            mock,
            callback_url,
            businesses: super::bench_tenants::businesses(args.tenants, args.numbers),
            tenant_tokens: std::cell::OnceCell::new(),
        })
    }

    fn store(&self) -> Result<&host::flow::store::Store> {
        if let Some(s) = self.store.get() {
            return Ok(s);
        }
        let opened = host::flow::store::Store::open(&self.db)?;
        Ok(self.store.get_or_init(|| opened))
    }

    fn serve_all(&self, plugin: Option<&Path>, rate: u32) -> Result<Vec<ServeProcess>> {
        (0..self.ports.len())
            .map(|i| self.serve(plugin, rate, i))
            .collect()
    }

    fn serve(&self, plugin: Option<&Path>, rate: u32, node: usize) -> Result<ServeProcess> {
        let port = self.ports[node];
        let exe = std::env::current_exe()?;
        let mut cmd = Command::new(exe);
        if let Some(p) = plugin {
            cmd.arg("--plugin").arg(p);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("serve-{node}.log")))?;
        cmd.args(["serve", "--port", &port.to_string(), "--db", &self.db])
            .args(["--lease-ms", BENCH_LEASE_MS])
            .args([
                "--api-base",
                &self.mock.base_url(),
                "--allow-host",
                &self.mock.base_url(),
            ])
            .args(["--rate-per-number", &rate.to_string()])
            .args(["--max-in-flight", &self.args.max_in_flight.to_string()])
            .args(["--max-queued", "2000000"])
            .env("FLOW_SECRET_FLOW_API_TOKEN", TOKEN)
            .env("FLOW_SECRET_WHATSAPP_ACCESS_TOKEN", DEMO_ACCESS_TOKEN)
            .env("FLOW_SECRET_SMS_API_KEY", DEMO_SMS_API_KEY)
            .env("FLOW_SECRET_WHATSAPP_APP_SECRET", DEMO_APP_SECRET)
            .env("FLOW_SECRET_SMS_WEBHOOK_SECRET", DEMO_SMS_WEBHOOK_SECRET)
            .stderr(log);
        if !self.businesses.is_empty() {
            cmd.env("FLOW_MASTER_KEY", super::bench_tenants::MASTER_KEY)
                .env(
                    "FLOW_SECRET_FLOW_ADMIN_TOKEN",
                    super::bench_tenants::ADMIN_TOKEN,
                )
                .args(["--template-sync-minutes", "0"]);
            for id in super::bench_tenants::number_ids(&self.businesses) {
                cmd.args(["--sender-rate", &format!("{id}={rate}")]);
            }
        }
        if let Some(url) = &self.callback_url {
            let origin = url.trim_end_matches("/callbacks");
            cmd.args(["--allow-callback-host", origin])
                .env("FLOW_SECRET_FLOW_CALLBACK_SECRET", CALLBACK_SECRET);
        }
        ServeProcess::start(cmd, port).with_context(|| {
            format!(
                "see {}",
                self.dir.join(format!("serve-{node}.log")).display()
            )
        })
    }

    /// The campaign's flows, each with the token that posts it.
    fn flows(&self) -> Vec<(String, String)> {
        if !self.businesses.is_empty() {
            // With --fairness the campaign is the first tenant's backlog.
            let only = self.args.fairness.then_some(0);
            return self.tenant_flows("load", 0..self.args.flows, only);
        }
        let customers = self.args.customers.unwrap_or(self.args.flows).max(1);
        (0..self.args.flows)
            .map(|i| {
                let mut flow = json!({"id": format!("load-{i}"), "recipient": format!("+1555{:07}", i % customers),
                    "unknown_wait_ms": 60_000, "steps": [{"channel": "whatsapp", "wait_for": self.args.wait_for,
                    "content": {"type": "template", "template": {"name": "order_update", "language": "en_US"}}}]});
                if let Some(url) = &self.callback_url {
                    flow["callback_url"] = json!(url);
                }
                (TOKEN.to_string(), flow.to_string())
            })
            .collect()
    }

    /// Tenant flows `load-{i}`: round-robin over the tenants (or only `only`) and, within a
    /// tenant, over its numbers.
    fn tenant_flows(
        &self,
        prefix: &str,
        range: std::ops::Range<usize>,
        only: Option<usize>,
    ) -> Vec<(String, String)> {
        let tokens = self.tenant_tokens.get().cloned().unwrap_or_default();
        let customers = self.args.customers.unwrap_or(usize::MAX).max(1);
        range
            .map(|i| {
                let t = only.unwrap_or(i % self.businesses.len());
                let numbers = &self.businesses[t].numbers;
                let from = &numbers[(i / self.businesses.len()) % numbers.len()].id;
                let recipient = format!("+1556{:07}", (i % customers) % 10_000_000);
                let flow = super::bench_tenants::flow(
                    &format!("{prefix}-{i}"),
                    &recipient,
                    from,
                    &self.args.wait_for,
                );
                (tokens.get(t).cloned().unwrap_or_default(), flow)
            })
            .collect()
    }

    /// Submits in batches of 10,000 (NDJSON), or at `--arrival-rate`; returns the time it took.
    fn submit(&self) -> Result<Duration> {
        self.submit_flows(&self.flows())
    }

    /// Posts flows in batches (each batch one tenant's), or at `--arrival-rate`.
    fn submit_flows(&self, flows: &[(String, String)]) -> Result<Duration> {
        let started = Instant::now();
        let batch = self
            .args
            .arrival_rate
            .map_or(10_000, |r| (r as usize / 10).clamp(1, 10_000));
        let mut by_token: Vec<(String, Vec<String>)> = Vec::new();
        for (token, flow) in flows {
            match by_token.iter_mut().find(|(t, _)| t == token) {
                Some((_, list)) => list.push(flow.clone()),
                None => by_token.push((token.clone(), vec![flow.clone()])),
            }
        }
        let mut i = 0;
        for (token, list) in &by_token {
            for chunk in list.chunks(batch) {
                if self.args.arrival_rate.is_some() {
                    let due = started + Duration::from_millis(100 * i as u64);
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                }
                FlowClient::new(self.ports[i % self.ports.len()], token).submit(chunk)?;
                i += 1;
            }
        }
        Ok(started.elapsed())
    }

    fn open_flows(&self) -> Result<u64> {
        self.store()?.open_flows()
    }

    /// Store statements and transactions of every node still running.
    fn store_work(&self) -> (u64, u64) {
        let mut total = (0, 0);
        for port in &self.ports {
            if let Some(v) = FlowClient::new(*port, TOKEN).health() {
                total.0 += v["store"]["statements"].as_u64().unwrap_or(0);
                total.1 += v["store"]["transactions"].as_u64().unwrap_or(0);
            }
        }
        total
    }

    /// The receiver's counts once no callback arrived for two seconds (at most two minutes).
    fn wait_callbacks_settled(&self, receiver: &CallbackReceiver) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut last = receiver.counts();
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_secs(2));
            let now = receiver.counts();
            if now == last {
                break;
            }
            last = now;
        }
        last
    }

    fn wait_all_final(&self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        while self.open_flows()? > 0 {
            if Instant::now() > deadline {
                bail!("{} flows still open after {limit:?}", self.open_flows()?);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    fn run(&self, plugin: Option<&Path>) -> Result<Value> {
        let rate = if self.args.queue_only {
            1
        } else {
            self.args.rate
        };
        let mut nodes = self.serve_all(plugin, rate)?;
        if !self.businesses.is_empty() {
            let base = format!("http://127.0.0.1:{}", self.ports[0]);
            let tokens = super::bench_tenants::set_up(&base, &self.businesses)?;
            let _ = self.tenant_tokens.set(tokens);
            // Every node reads the new senders' lanes within a second.
            std::thread::sleep(Duration::from_millis(1_500));
        }
        let fairness = match self.args.fairness {
            true => Some(self.fairness_baseline()?),
            false => None,
        };
        let started = Instant::now();
        let pollers = (self.args.pollers > 0)
            .then(|| Pollers::start(self.args.pollers, self.ports[0], self.args.flows));
        let submit = self.submit()?;
        if self.args.queue_only {
            std::thread::sleep(Duration::from_secs(2));
            return Ok(
                json!({"flows_queued": self.args.flows, "submit_s": submit.as_secs_f64(),
                "serve_peak_rss_bytes": nodes[0].peak_rss(), "open_flows": self.open_flows()?}),
            );
        }
        let mut killed = None;
        if let Some(after) = self.args.kill_after_ms {
            std::thread::sleep(Duration::from_millis(after));
            let open = self.open_flows()?;
            let last = nodes.len() - 1;
            nodes.pop().expect("a node").kill()?;
            killed = Some(json!({"after_ms": after, "open_flows_at_kill": open, "node": last}));
            if last == 0 {
                nodes.push(self.serve(plugin, rate, 0)?);
            }
        }
        let minutes = (self.args.flows as u64 / u64::from(self.args.rate)).max(1) * 3 + 60;
        let fairness = match fairness {
            Some(alone) => Some(self.fairness_under_backlog(alone)?),
            None => None,
        };
        self.wait_all_final(Duration::from_secs(minutes))?;
        let end_to_end = started.elapsed();
        let polled = pollers.map(Pollers::stop);
        let mut report = self.figures()?;
        if let Some(reads) = polled {
            report["status_reads"] = self.quiet_reads(&nodes[0], reads, end_to_end);
        }
        let (statements, transactions) = self.store_work();
        let flows = self.args.flows as f64;
        report["nodes"] = json!(self.ports.len());
        report["store"] = json!({"statements": statements, "transactions": transactions,
            "round_trips_per_flow": (statements + 2 * transactions) as f64 / flows});
        report["submit_s"] = json!(submit.as_secs_f64());
        report["serve_peak_rss_bytes"] =
            json!(nodes.iter().filter_map(ServeProcess::peak_rss).max());
        let cpu_s = nodes.iter().filter_map(ServeProcess::cpu_s).sum::<f64>();
        report["serve_cpu_s"] = json!(cpu_s);
        report["serve_cpu_us_per_flow"] = json!(cpu_s * 1e6 / flows);
        report["wait_for"] = json!(self.args.wait_for);
        // From the first submission to the last flow seen final (polled every 100 ms).
        report["flows_per_s_end_to_end"] = json!(flows / end_to_end.as_secs_f64());
        report["killed"] = killed.unwrap_or(Value::Null);
        report["fairness"] = fairness.unwrap_or(Value::Null);
        if !self.businesses.is_empty() {
            let own = super::bench_tenants::own_cpu_s().unwrap_or(0.0);
            let sends = report["accepted"].as_f64().unwrap_or(0.0).max(1.0);
            report["tenants"] = json!({"tenants": self.businesses.len(), "numbers_per_tenant": self.args.numbers,
                "serve_cpu_us_per_send": cpu_s * 1e6 / sends,
                "bench_process_cpu_us_per_send": own * 1e6 / sends,
                "sends_per_s_per_serve_core": sends / cpu_s.max(1e-9)});
        }
        report["mock"] = self.mock.counters();
        let mut answers = std::collections::BTreeMap::<String, u64>::new();
        for d in self.mock.deliveries() {
            *answers.entry(d.http_status.to_string()).or_default() += 1;
        }
        // What serve answered each status webhook (0: no answer), retries included.
        report["webhook_answers"] = json!(answers);
        report["mock"]
            .as_object_mut()
            .map(|m| m.remove("per_second"));
        Ok(report)
    }

    /// The second tenant's 100 flows alone: their POST→accepted, before any backlog.
    fn fairness_baseline(&self) -> Result<Value> {
        let flows = self.tenant_flows("alone", 0..100, Some(1));
        self.submit_flows(&flows)?;
        let ids: Vec<String> = (0..100).map(|i| format!("alone-{i}")).collect();
        let token = self
            .tenant_tokens
            .get()
            .map(|t| t[1].clone())
            .unwrap_or_default();
        super::bench_tenants::latencies(self.ports[0], &token, &ids, Duration::from_secs(60))
    }

    /// The first tenant's campaign (submitted just before) is queued; the second tenant's
    /// 100 flows go in behind it: their POST→accepted beside `alone`.
    fn fairness_under_backlog(&self, alone: Value) -> Result<Value> {
        let backlog = self.open_flows()?;
        let flows = self.tenant_flows("beside", 0..100, Some(1));
        self.submit_flows(&flows)?;
        let ids: Vec<String> = (0..100).map(|i| format!("beside-{i}")).collect();
        let token = self
            .tenant_tokens
            .get()
            .map(|t| t[1].clone())
            .unwrap_or_default();
        let beside =
            super::bench_tenants::latencies(self.ports[0], &token, &ids, Duration::from_secs(600))?;
        Ok(json!({"other_tenant_backlog_open": backlog, "alone": alone, "beside_backlog": beside}))
    }

    /// The campaign's reads, and serve's CPU per read measured with nothing else running.
    fn quiet_reads(&self, node: &ServeProcess, during: u64, campaign: Duration) -> Value {
        let cpu_before = node.cpu_s().unwrap_or(0.0);
        let quiet = Pollers::start(self.args.pollers, self.ports[0], self.args.flows);
        std::thread::sleep(Duration::from_secs(3));
        let reads = quiet.stop();
        let cpu = node.cpu_s().unwrap_or(0.0) - cpu_before;
        json!({"during_campaign": during, "during_campaign_per_s": during as f64 / campaign.as_secs_f64(),
            "quiet": reads, "quiet_per_s": reads as f64 / 3.0,
            "serve_cpu_us_per_read": cpu * 1e6 / reads.max(1) as f64})
    }

    /// Throughput and latency from the store: creation to the recorded answer.
    fn figures(&self) -> Result<Value> {
        let store = self.store()?;
        let rows = store.accepted_sends()?;
        let mut latencies: Vec<i64> = rows.iter().map(|(c, r)| r - c).collect();
        latencies.sort_unstable();
        let pct = |p: f64| {
            latencies
                .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
                .copied()
        };
        // Sustained rate: answers recorded per second between the first and the last one.
        let first = rows.iter().map(|r| r.1).min().unwrap_or(0);
        let last = rows.iter().map(|r| r.1).max().unwrap_or(0);
        let span_s = (last - first).max(1) as f64 / 1_000.0;
        let states = store.counts()?;
        Ok(json!({
            "flows": self.args.flows, "rate": self.args.rate, "latency_ms": self.args.latency_ms,
            "arrival_rate": self.args.arrival_rate,
            "accepted": rows.len(),
            "sends_per_s": rows.len().saturating_sub(1) as f64 / span_s,
            "p50_ms_post_to_accepted": pct(0.50), "p99_ms_post_to_accepted": pct(0.99),
            "states": states.into_iter().map(|(s, n)| (s, json!(n))).collect::<serde_json::Map<String, Value>>(),
        }))
    }
}

fn render(r: &Value) -> String {
    let reads = match r["status_reads"].as_object() {
        Some(p) => format!(
            "; GET /flows/{{id}} {:.0}/s during the campaign, {:.0}/s alone at {:.0} µs of serve CPU each",
            p["during_campaign_per_s"].as_f64().unwrap_or(0.0),
            p["quiet_per_s"].as_f64().unwrap_or(0.0),
            p["serve_cpu_us_per_read"].as_f64().unwrap_or(0.0)
        ),
        None => String::new(),
    };
    if r.get("flows_queued").is_some() {
        return format!(
            "queued {} flows in {:.1} s; serve peak RSS {:.0} MB",
            r["flows_queued"],
            r["submit_s"].as_f64().unwrap_or(0.0),
            r["serve_peak_rss_bytes"].as_f64().unwrap_or(0.0) / 1e6
        );
    }
    let main = format!(
        "{} flows on {} node(s) at rate {} (mock latency {} ms, waiting for {}): {:.0} sends/s sustained, {:.0} flows/s end to end, serve CPU {:.0} µs and {:.1} store round trips per flow{}; POST→accepted p50 {} ms, p99 {} ms; mock max {} in one second, 130429×{}, 131056×{}; correlation ids sent twice: {}; serve peak RSS {:.0} MB{}{}",
        r["flows"],
        r["nodes"],
        r["rate"],
        r["latency_ms"].as_str().unwrap_or(""),
        r["wait_for"].as_str().unwrap_or("accepted"),
        r["sends_per_s"].as_f64().unwrap_or(0.0),
        r["flows_per_s_end_to_end"].as_f64().unwrap_or(0.0),
        r["serve_cpu_us_per_flow"].as_f64().unwrap_or(0.0),
        r["store"]["round_trips_per_flow"].as_f64().unwrap_or(0.0),
        match r["callbacks"].as_object() {
            Some(c) => format!(
                "; callbacks verified {} ({:.1} per flow), refused {}",
                c["verified"],
                c["per_flow"].as_f64().unwrap_or(0.0),
                c["refused"]
            ),
            None => String::new(),
        },
        r["p50_ms_post_to_accepted"],
        r["p99_ms_post_to_accepted"],
        r["mock"]["max_per_second"],
        r["mock"]["by_code"]["130429"].as_u64().unwrap_or(0),
        r["mock"]["by_code"]["131056"].as_u64().unwrap_or(0),
        r["mock"]["correlation_ids_sent_more_than_once"]
            .as_object()
            .map_or(0, |m| m.len()),
        r["serve_peak_rss_bytes"].as_f64().unwrap_or(0.0) / 1e6,
        match r["webhook_answers"].as_object() {
            Some(a) if a.keys().any(|k| k != "200") =>
                format!("; webhook answers {}", r["webhook_answers"]),
            _ => String::new(),
        },
        if r["killed"].is_null() {
            String::new()
        } else {
            format!(
                "; node {} SIGKILLed at {} ms with {} flows open, {}",
                r["killed"]["node"],
                r["killed"]["after_ms"],
                r["killed"]["open_flows_at_kill"],
                if r["nodes"].as_u64() == Some(1) {
                    "restarted on the same store"
                } else {
                    "not restarted: the others took its sends over (its store work is not counted)"
                }
            )
        },
    );
    let tenants = match r["tenants"].as_object() {
        Some(t) => format!(
            "; {} tenants × {} numbers: the most one number sent in a second {}; serve {:.0} µs and the bench process (mock, client) {:.0} µs of CPU per send, {:.0} sends/s per serve core",
            t["tenants"],
            t["numbers_per_tenant"],
            r["mock"]["max_per_number_second"],
            t["serve_cpu_us_per_send"].as_f64().unwrap_or(0.0),
            t["bench_process_cpu_us_per_send"].as_f64().unwrap_or(0.0),
            t["sends_per_s_per_serve_core"].as_f64().unwrap_or(0.0)
        ),
        None => String::new(),
    };
    let fairness = match r["fairness"].as_object() {
        Some(f) => format!(
            "; fairness: another tenant's 100 flows p99 {} ms alone, {} ms beside {} queued flows of the first",
            f["alone"]["p99_ms"], f["beside_backlog"]["p99_ms"], f["other_tenant_backlog_open"]
        ),
        None => String::new(),
    };
    main + &reads + &tenants + &fairness
}
