//! `serve` as a child process, for the fault tests and the load bench: started and awaited,
//! killed (SIGKILL) or stopped (SIGTERM) from outside, and talked to over its HTTP API.

use crate::mock::MockApi;
use crate::stack::{DEMO_APP_SECRET, DEMO_SMS_WEBHOOK_SECRET};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The flow states after which nothing more happens.
const FINAL_STATES: [&str; 4] = ["done", "exhausted", "expired", "handed_over"];

/// Writes the secrets `serve` needs against the mock (demo values, `token` for its API).
pub fn write_demo_secrets(dir: &Path, token: &str) -> Result<PathBuf> {
    let path = dir.join("secrets.json");
    std::fs::write(
        &path,
        json!({"whatsapp/access-token": "mock-access-token", "whatsapp/app-secret": DEMO_APP_SECRET,
            "whatsapp/verify-token": "t", "sms/api-key": "mock-sms-key",
            "sms/webhook-secret": DEMO_SMS_WEBHOOK_SECRET, "flow/api-token": token,
            "sms/account-sid": crate::mock_twilio::DEMO_ACCOUNT_SID,
            "sms/auth-token": crate::mock_twilio::DEMO_AUTH_TOKEN,
            "email/api-key": crate::mock_sendgrid::DEMO_API_KEY,
            "email/webhook-public-key": crate::mock_sendgrid::demo_event_public_key()})
        .to_string(),
    )?;
    Ok(path)
}

/// A free loopback port.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `serve --plugins LOCK` (the `host-harness` binary at `bin`) with its SQLite file, the demo
/// secrets (API token `token`) and its log `serve.log` in `dir`; started and awaited.
pub fn serve_locked(
    bin: &Path,
    dir: &Path,
    lock: &Path,
    token: &str,
) -> Result<(ServeProcess, FlowClient)> {
    write_demo_secrets(dir, token)?;
    let port = free_port()?;
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--port", &port.to_string(), "--db"])
        .arg(dir.join("flows.sqlite"))
        .arg("--plugins")
        .arg(lock)
        .arg("--secrets")
        .arg(dir.join("secrets.json"))
        .stderr(std::fs::File::create(dir.join("serve.log"))?);
    Ok((
        ServeProcess::start(cmd, port)?,
        FlowClient::new(port, token),
    ))
}

/// Posts a flow WhatsApp → SMS to a recipient the mock does not know on WhatsApp (131026) and
/// checks it ends `done` after one attempt on each channel.
pub fn assert_whatsapp_falls_back_to_sms(client: &FlowClient, id: &str) {
    let flow = serde_json::json!({"id": id, "recipient": "+15550100002", "steps": [
        {"channel": "whatsapp", "wait_for": "accepted", "content": {"type": "template",
            "template": {"name": "order_update", "language": "en_US"}}},
        {"channel": "sms", "wait_for": "accepted", "content": {"text": "Your order shipped."}}]});
    client
        .submit(&[flow.to_string()])
        .expect("the flow is accepted");
    let done = &client.wait_final(&[id.to_string()], Duration::from_secs(30))[0];
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(crate::attempt_channels(done), ["whatsapp", "sms"]);
}

/// The fault tests' flow: a WhatsApp template awaited until delivered, then SMS, each step and
/// an unknown outcome waiting at most `wait_ms`, up to three attempts per channel.
pub fn delivered_fallback_flow(id: &str, recipient: &str, wait_ms: u64) -> Value {
    json!({"id": id, "recipient": recipient, "unknown_wait_ms": wait_ms, "max_attempts": 3, "steps": [
        {"channel": "whatsapp", "wait_for": "delivered", "within_ms": wait_ms, "content": {"type": "template",
            "template": {"name": "order_update", "language": "en_US",
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "Pablo"}]}]}}},
        {"channel": "sms", "wait_for": "delivered", "within_ms": wait_ms, "content": {"text": "Your order shipped."}}]})
}

/// `n` fallback flows `{prefix}-{i}` (see [`delivered_fallback_flow`]), each to its own
/// number `{numbers}{i:04}`: their ids and specs.
pub fn delivered_fallback_campaign(
    prefix: &str,
    n: usize,
    numbers: &str,
    wait_ms: u64,
) -> (Vec<String>, Vec<Value>) {
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    let flows = ids
        .iter()
        .enumerate()
        .map(|(i, id)| delivered_fallback_flow(id, &format!("{numbers}{i:04}"), wait_ms))
        .collect();
    (ids, flows)
}

/// A running `serve`; killed when dropped.
pub struct ServeProcess {
    child: Child,
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServeProcess {
    /// Runs `command` (a `serve` invocation, stderr already routed) and waits until
    /// `GET /health` on `port` answers.
    pub fn start(mut command: Command, port: u16) -> Result<ServeProcess> {
        let child = ServeProcess {
            child: command
                .stdout(Stdio::null())
                .spawn()
                .context("starting serve")?,
        };
        let client = FlowClient::new(port, "");
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if client.healthy() {
                return Ok(child);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("serve on port {port} did not start")
    }

    /// SIGKILL: no shutdown, no flush, nothing finished.
    pub fn kill(mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(mut self) -> Result<ExitStatus> {
        self.signal("-TERM")?;
        Ok(self.child.wait()?)
    }

    /// SIGSTOP: the process is frozen (its timers, its sends, everything) until
    /// [`ServeProcess::resume`]; the kernel keeps its connections open.
    pub fn pause(&self) -> Result<()> {
        self.signal("-STOP")
    }

    /// SIGCONT after [`ServeProcess::pause`].
    pub fn resume(&self) -> Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, which: &str) -> Result<()> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args([which, &pid]).status()?;
        if !sent.success() {
            bail!("kill {which} {pid} failed");
        }
        Ok(())
    }

    /// CPU time used so far (user + system), seconds.
    pub fn cpu_s(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        Some(ticks / 100.0)
    }

    /// Peak resident memory (VmHWM), bytes.
    pub fn peak_rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb * 1024)
    }
}

/// `serve`'s HTTP API, with its bearer token.
pub struct FlowClient {
    base: String,
    token: String,
    http: reqwest::blocking::Client,
}

impl FlowClient {
    pub fn new(port: u16, token: &str) -> FlowClient {
        FlowClient {
            base: format!("http://127.0.0.1:{port}"),
            token: token.to_string(),
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .expect("an HTTP client"),
        }
    }

    pub fn healthy(&self) -> bool {
        self.http
            .get(format!("{}/health", self.base))
            .send()
            .is_ok_and(|r| r.status() == 200)
    }

    /// `GET /health`'s JSON.
    pub fn health(&self) -> Option<Value> {
        let r = self.http.get(format!("{}/health", self.base)).send().ok()?;
        serde_json::from_slice(&r.bytes().ok()?).ok()
    }

    /// `POST /flows` of a batch (NDJSON); anything but 201 (created) or 200 (every flow
    /// stored already, a retry) is an error with the answer.
    pub fn submit(&self, flows: &[String]) -> Result<()> {
        let r = self
            .http
            .post(format!("{}/flows", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/x-ndjson")
            .body(flows.join("\n"))
            .send()?;
        let status = r.status();
        if status != 201 && status != 200 {
            bail!("POST /flows: {status} {}", r.text()?);
        }
        Ok(())
    }

    /// `GET /flows/{id}`, if it answers with JSON.
    pub fn status(&self, id: &str) -> Option<Value> {
        self.poll_status(id).ok()
    }

    /// One status read, bounded to 10 s (a node that stops answering shows as errors, not as
    /// one read hanging for the client's whole timeout); why it failed otherwise.
    fn poll_status(&self, id: &str) -> Result<Value, String> {
        let r = self
            .http
            .get(format!("{}/flows/{id}", self.base))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(10))
            .send()
            .map_err(|e| format!("{e:?}"))?;
        let status = r.status();
        let bytes = r.bytes().map_err(|e| format!("reading the body: {e:?}"))?;
        serde_json::from_slice(&bytes)
            .map_err(|_| format!("{status}: {}", String::from_utf8_lossy(&bytes)))
    }

    /// Every flow's status once final; panics naming the first that is not within `within`,
    /// with its last answer, or the last error and how many reads failed.
    pub fn wait_final(&self, ids: &[String], within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        ids.iter()
            .map(|id| {
                let mut failed = 0;
                loop {
                    let s = self.poll_status(id);
                    if let Ok(s) = &s
                        && s["state"]
                            .as_str()
                            .is_some_and(|st| FINAL_STATES.contains(&st))
                    {
                        break s.clone();
                    }
                    failed += usize::from(s.is_err());
                    assert!(
                        Instant::now() < deadline,
                        "flow {id} did not finish at {} within {within:?} ({failed} reads failed): {s:?}",
                        self.base
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
            .collect()
    }
}

/// Waits until the mock has received `n` requests (sent, perhaps not yet answered).
pub fn wait_requests(mock: &MockApi, n: u64, within: Duration) {
    let deadline = Instant::now() + within;
    while mock.counters()["requests"].as_u64().unwrap_or(0) < n {
        assert!(Instant::now() < deadline, "{}", mock.counters());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until the provider has received sends for `n` distinct correlation ids (onboarding
/// requests, which carry none, do not count).
pub fn wait_sends(mock: &MockApi, n: u64, within: Duration) {
    let deadline = Instant::now() + within;
    while mock.counters()["distinct_correlation_ids"]
        .as_u64()
        .unwrap_or(0)
        < n
    {
        assert!(Instant::now() < deadline, "{}", mock.counters());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// No correlation id reached the provider twice.
pub fn assert_nothing_sent_twice(mock: &MockApi) {
    let c = mock.counters();
    assert_eq!(
        c["correlation_ids_sent_more_than_once"],
        json!({}),
        "sent twice: {c}"
    );
}
