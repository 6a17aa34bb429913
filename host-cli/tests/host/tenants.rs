//! Tenants through `serve` as a process: the operator API creates tenants and issues their
//! tokens; each tenant's flow API sees its own flows only (another tenant's id answers as
//! one that does not exist, and two tenants may use the same id); a revoked token is refused.

use host_testkit::callbacks::CallbackReceiver;
use host_testkit::mock::{Latency, MockApi, MockConfig, WebhookTargets};
use host_testkit::process::{FlowClient, ServeProcess, free_port, write_demo_secrets};
use reqwest::blocking::{Client, RequestBuilder};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const API_TOKEN: &str = "tenants-test-default-token";
const ADMIN_TOKEN: &str = "tenants-test-admin-token";

struct Rig {
    dir: PathBuf,
    port: u16,
    base: String,
    http: Client,
    _mock: MockApi,
    _serve: ServeProcess,
}

/// A master key for the tests (32 bytes, hex).
const MASTER_KEY: &str = "4242424242424242424242424242424242424242424242424242424242424242";
const HOST_CALLBACK_KEY: &str = "tenants-test-host-callback-key";

impl Rig {
    fn start(name: &str) -> Rig {
        Rig::start_with(name, true)
    }

    /// `serve` with or without a master key.
    fn start_with(name: &str, master_key: bool) -> Rig {
        Rig::start_with_args(name, master_key, &[])
    }

    /// `serve` with or without a master key, and these arguments besides.
    fn start_with_args(name: &str, master_key: bool, extra: &[&str]) -> Rig {
        let port = free_port().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let mock = MockApi::start(
            0,
            MockConfig {
                webhooks: Some(WebhookTargets::demo_serve(&base, Duration::from_millis(50))),
                latency: Latency::Fixed(20),
                ..MockConfig::default()
            },
        )
        .unwrap();
        let dir = std::env::temp_dir().join(format!("tenants-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let secrets = write_demo_secrets(&dir, API_TOKEN).unwrap();
        let mut all: Value = serde_json::from_slice(&std::fs::read(&secrets).unwrap()).unwrap();
        all["flow/admin-token"] = json!(ADMIN_TOKEN);
        all["flow/callback-secret"] = json!(HOST_CALLBACK_KEY);
        std::fs::write(&secrets, all.to_string()).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_host-harness"));
        cmd.args(["serve", "--port", &port.to_string(), "--db"])
            .arg(dir.join("flows.sqlite"))
            .args(["--api-base", &mock.base_url()])
            .args(["--allow-host", &mock.base_url()])
            .arg("--secrets")
            .arg(&secrets)
            .args(["--allow-callback-host", "http://127.0.0.1"])
            .args(extra)
            .env_remove("FLOW_MASTER_KEY")
            .stderr(std::fs::File::create(dir.join("serve.log")).unwrap());
        if master_key {
            cmd.env("FLOW_MASTER_KEY", MASTER_KEY);
        }
        let serve = ServeProcess::start(cmd, port).unwrap();
        Rig {
            dir,
            port,
            base,
            http: Client::new(),
            _mock: mock,
            _serve: serve,
        }
    }

    fn send(&self, request: RequestBuilder) -> (u16, Value) {
        let r = request.send().unwrap();
        let status = r.status().as_u16();
        let text = r.text().unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn admin_post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(
            self.http
                .post(format!("{}{path}", self.base))
                .bearer_auth(ADMIN_TOKEN)
                .json(&body),
        )
    }

    fn admin_get(&self, path: &str) -> (u16, Value) {
        self.send(
            self.http
                .get(format!("{}{path}", self.base))
                .bearer_auth(ADMIN_TOKEN),
        )
    }

    /// Creates the tenant and issues it a token.
    fn tenant(&self, id: &str) -> String {
        let (status, body) = self.admin_post("/admin/tenants", json!({"id": id, "name": id}));
        assert_eq!(status, 201, "{body}");
        let (status, body) = self.admin_post(
            &format!("/admin/tenants/{id}/tokens"),
            json!({"label": "test"}),
        );
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().unwrap().to_string()
    }

    fn post_flow(&self, token: &str, flow: &Value) -> (u16, Value) {
        self.send(
            self.http
                .post(format!("{}/flows", self.base))
                .bearer_auth(token)
                .json(flow),
        )
    }

    fn get_flow(&self, token: &str, id: &str) -> (u16, Value) {
        self.send(
            self.http
                .get(format!("{}/flows/{id}", self.base))
                .bearer_auth(token),
        )
    }

    /// Puts the tenant's WhatsApp account (the demo number, `token`, account id `waba`).
    fn put_whatsapp_account(&self, tenant: &str, token: &str, waba: &str) -> (u16, Value) {
        self.send(
            self.http
                .put(format!(
                    "{}/admin/tenants/{tenant}/channels/whatsapp",
                    self.base
                ))
                .bearer_auth(ADMIN_TOKEN)
                .json(&json!({"account_id": waba,
                    "settings": {"phone_number_id": host_testkit::defaults::DEMO_PHONE_NUMBER_ID},
                    "secrets": {"access-token": token}})),
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default()
    }
}

fn sms_flow(id: &str, recipient: &str, text: &str) -> Value {
    json!({"id": id, "recipient": recipient, "steps": [
        {"channel": "sms", "wait_for": "accepted", "content": {"text": text}}]})
}

#[test]
fn two_tenants_see_only_their_own_flows_even_under_the_same_id() {
    let rig = Rig::start("isolated");
    let (acme, globex) = (rig.tenant("acme"), rig.tenant("globex"));
    // The same id in two tenants: two flows.
    let (status, body) = rig.post_flow(&acme, &sms_flow("order-1", "+15550100011", "acme"));
    assert_eq!((status, &body["id"]), (201, &json!("order-1")), "{body}");
    let (status, body) = rig.post_flow(&globex, &sms_flow("order-1", "+15550100012", "globex"));
    assert_eq!((status, &body["created"]), (201, &json!(true)), "{body}");
    rig.post_flow(&globex, &sms_flow("globex-only", "+15550100013", "g"));
    for (token, recipient) in [(&acme, "+15550100011"), (&globex, "+15550100012")] {
        let client = FlowClient::new(rig.port, token);
        let done = &client.wait_final(&["order-1".into()], Duration::from_secs(30))[0];
        assert_eq!(done["state"], "done", "{done}\n{}", rig.log());
        assert_eq!(done["id"], "order-1");
        assert!(done.to_string().contains(recipient), "{done}");
    }
    // Another tenant's flow answers exactly as one that does not exist.
    let missing = rig.get_flow(&acme, "no-such-flow");
    assert_eq!(missing.0, 404);
    assert_eq!(rig.get_flow(&acme, "globex-only"), missing);
    // The default tenant (the host secret flow/api-token) sees neither tenant's flows.
    assert_eq!(rig.get_flow(API_TOKEN, "order-1"), missing);
    assert_eq!(rig.get_flow(API_TOKEN, "globex-only"), missing);
    assert_eq!(rig.get_flow(&globex, "globex-only").0, 200);
}

#[test]
fn a_revoked_token_is_refused_and_its_rotation_partner_keeps_working() {
    let rig = Rig::start("revoked");
    let first = rig.tenant("acme");
    let (status, second) = rig.admin_post("/admin/tenants/acme/tokens", json!({"label": "next"}));
    assert_eq!(status, 201, "{second}");
    let second = second["token"].as_str().unwrap().to_string();
    assert_eq!(
        rig.post_flow(&first, &sms_flow("a", "+15550100021", "x")).0,
        201
    );
    let (_, shown) = rig.admin_get("/admin/tenants/acme");
    let tokens = shown["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2, "{shown}");
    // Never shown again, nor its hash.
    assert!(!shown.to_string().contains(&first[4..]), "{shown}");
    let id = tokens[0]["id"].as_str().unwrap();
    let r = rig
        .http
        .delete(format!("{}/admin/tenants/acme/tokens/{id}", rig.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    let (status, body) = rig.get_flow(&first, "a");
    assert_eq!((status, &body["error"]), (401, &json!("unauthorized")));
    assert_eq!(rig.get_flow(&second, "a").0, 200);
    let (_, shown) = rig.admin_get("/admin/tenants/acme");
    assert!(shown["tokens"][0]["revoked_ms"].is_u64(), "{shown}");
}

#[test]
fn the_operator_api_needs_its_own_token_and_says_what_is_wrong() {
    let rig = Rig::start("operator");
    let tenant_token = rig.tenant("acme");
    for token in ["", "wrong", API_TOKEN, tenant_token.as_str()] {
        let (status, body) = rig.send(
            rig.http
                .post(format!("{}/admin/tenants", rig.base))
                .bearer_auth(token)
                .json(&json!({"id": "x"})),
        );
        assert_eq!(
            (status, &body["error"]),
            (401, &json!("unauthorized")),
            "{token:?}"
        );
    }
    let (status, body) = rig.admin_post("/admin/tenants", json!({"id": "Acme/EU"}));
    assert_eq!((status, &body["path"]), (400, &json!("/id")), "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("\"Acme/EU\""),
        "{body}"
    );
    let (status, body) = rig.admin_post("/admin/tenants", json!({"id": "acme"}));
    assert_eq!(
        (status, &body["error"]),
        (409, &json!("tenant_exists")),
        "{body}"
    );
    let (status, body) = rig.admin_post("/admin/tenants", json!({"id": "b", "colour": "red"}));
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("colour"),
        "{body}"
    );
    let (status, body) = rig.admin_get("/admin/tenants/nobody");
    assert_eq!((status, &body["error"]), (404, &json!("no_such_tenant")));
    let (status, body) = rig.admin_get("/admin/tenants");
    assert_eq!(status, 200);
    let ids: Vec<&str> = body["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["acme", "default"]);
}

#[test]
fn the_cli_drives_the_operator_api_and_its_token_works_on_the_flow_api() {
    let rig = Rig::start("cli");
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_host-harness"))
            .args(["tenant", "--server", &rig.base, "--secrets"])
            .arg(rig.dir.join("secrets.json"))
            .args(args)
            .output()
            .unwrap();
        let body: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.code(), body)
    };
    let (code, body) = cli(&["create", "beta", "--name", "Beta Ltd"]);
    assert_eq!(code, Some(0), "{body}");
    assert_eq!(body["name"], "Beta Ltd");
    let (code, body) = cli(&["create", "beta"]);
    assert_eq!((code, &body["error"]), (Some(1), &json!("tenant_exists")));
    let (code, issued) = cli(&["issue-token", "beta", "--label", "ops"]);
    assert_eq!(code, Some(0), "{issued}");
    let token = issued["token"].as_str().unwrap();
    assert_eq!(
        rig.post_flow(token, &sms_flow("b-1", "+15550100031", "hi"))
            .0,
        201
    );
    // `flow start` with the tenant's token, `flow status` of the tenant's own id.
    let flow_file = rig.dir.join("b-2.json");
    std::fs::write(
        &flow_file,
        sms_flow("b-2", "+15550100032", "hi").to_string(),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_host-harness"))
        .args([
            "flow",
            "start",
            "--server",
            &rig.base,
            "--token-env",
            "BETA_TOKEN",
        ])
        .arg(&flow_file)
        .env("BETA_TOKEN", token)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let status = |tenant: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_host-harness"));
        cmd.args(["flow", "status", "b-2", "--json", "--db"])
            .arg(rig.dir.join("flows.sqlite"));
        if let Some(t) = tenant {
            cmd.args(["--tenant", t]);
        }
        let out = cmd.output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.code(), v)
    };
    let (code, shown) = status(Some("beta"));
    assert_eq!((code, &shown["id"]), (Some(0), &json!("b-2")), "{shown}");
    assert_eq!(
        status(None).0,
        Some(1),
        "the default tenant has no flow b-2"
    );
    let (code, body) = cli(&["update", "beta", "--name", "Beta GmbH"]);
    assert_eq!((code, &body["name"]), (Some(0), &json!("Beta GmbH")));
    let (code, body) = cli(&["revoke-token", "beta", issued["id"].as_str().unwrap()]);
    assert_eq!(code, Some(0), "{body}");
    assert_eq!(rig.get_flow(token, "b-1").0, 401);
    let (code, body) = cli(&["list"]);
    assert_eq!(code, Some(0));
    assert_eq!(body["tenants"].as_array().unwrap().len(), 2, "{body}");
}

/// Each tenant's callbacks are signed with its own key (issued when the tenant was created,
/// sealed under the master key): a receiver holding another tenant's key, or the host's,
/// refuses them. The body names the tenant's own flow id and the tenant.
#[test]
fn each_tenants_callbacks_are_signed_with_its_own_key_and_name_its_own_ids() {
    let rig = Rig::start("callbacks");
    let (status, acme) = rig.admin_post("/admin/tenants", json!({"id": "acme"}));
    assert_eq!(status, 201, "{acme}");
    let acme_key = acme["callback_secret"].as_str().unwrap().to_string();
    assert_eq!(acme_key.len(), 64);
    let (_, token) = rig.admin_post("/admin/tenants/acme/tokens", json!({}));
    let token = token["token"].as_str().unwrap().to_string();
    let (own, other, host) = host_testkit::block_on(async {
        (
            CallbackReceiver::spawn(&acme_key).await.unwrap(),
            CallbackReceiver::spawn("another tenant's key")
                .await
                .unwrap(),
            CallbackReceiver::spawn(HOST_CALLBACK_KEY).await.unwrap(),
        )
    });
    for (id, receiver) in [("to-own", &own), ("to-other", &other), ("to-host", &host)] {
        let mut flow = sms_flow(id, "+15550100041", "hi");
        flow["callback_url"] = json!(receiver.url());
        let (status, body) = rig.post_flow(&token, &flow);
        assert_eq!(status, 201, "{body}");
    }
    let client = FlowClient::new(rig.port, &token);
    client.wait_final(
        &["to-own".into(), "to-other".into(), "to-host".into()],
        Duration::from_secs(30),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while own.counts()["verified"].as_u64() < Some(2)
        || other.counts()["refused"] == 0
        || host.counts()["refused"] == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{} {} {}\n{}",
            own.counts(),
            other.counts(),
            host.counts(),
            rig.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(other.counts()["verified"], 0);
    assert_eq!(host.counts()["verified"], 0);
    let body = &own.verified_bodies()[0];
    assert_eq!(
        (&body["flow_id"], &body["tenant"]),
        (&json!("to-own"), &json!("acme")),
        "{body}"
    );
    // A rotated key signs from then on; the old one no longer verifies.
    let (status, rotated) = rig.admin_post("/admin/tenants/acme/callback-secret", json!({}));
    assert_eq!(status, 201, "{rotated}");
    assert_ne!(rotated["callback_secret"], json!(acme_key));
}

/// Without a master key nothing can be sealed: a new tenant has no callback key, so its flows
/// cannot name a callback URL (refused at the door with the path and what the operator must
/// do), and asking for a key says why there is none.
#[test]
fn without_a_master_key_a_tenants_flow_cannot_name_a_callback_url() {
    let rig = Rig::start_with("no-key", false);
    let (status, created) = rig.admin_post("/admin/tenants", json!({"id": "acme"}));
    assert_eq!(status, 201);
    assert!(created.get("callback_secret").is_none(), "{created}");
    let (_, token) = rig.admin_post("/admin/tenants/acme/tokens", json!({}));
    let token = token["token"].as_str().unwrap().to_string();
    let mut flow = sms_flow("cb", "+15550100051", "hi");
    flow["callback_url"] = json!("http://127.0.0.1:9/cb");
    let (status, body) = rig.post_flow(&token, &flow);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["path"], "/callback_url", "{body}");
    assert_eq!(
        body["errors"][0]["code"], "callback_secret_missing",
        "{body}"
    );
    let (status, body) = rig.admin_post("/admin/tenants/acme/callback-secret", json!({}));
    assert_eq!(
        (status, &body["error"]),
        (409, &json!("no_master_key")),
        "{body}"
    );
    // The default tenant signs with the host's secret as before.
    assert_eq!(rig.post_flow(API_TOKEN, &flow).0, 201);
}

/// `serve` on a store whose secrets were sealed under one key refuses to start with another
/// key, or with none, saying which; with the right key it starts.
#[test]
fn serve_refuses_a_wrong_or_missing_master_key_at_start() {
    let rig = Rig::start("wrong-key");
    assert_eq!(
        rig.admin_post("/admin/tenants", json!({"id": "acme"})).0,
        201
    );
    let Rig { dir, _serve, .. } = rig;
    drop(_serve);
    let start = |key: Option<&str>| {
        let port = free_port().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_host-harness"));
        cmd.args(["serve", "--port", &port.to_string(), "--db"])
            .arg(dir.join("flows.sqlite"))
            .arg("--secrets")
            .arg(dir.join("secrets.json"))
            .env_remove("FLOW_MASTER_KEY")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        if let Some(key) = key {
            cmd.env("FLOW_MASTER_KEY", key);
        }
        let mut child = cmd.spawn().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut stderr = String::new();
                std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
                return (status.code(), stderr);
            }
            if FlowClient::new(port, "").healthy() {
                child.kill().unwrap();
                child.wait().unwrap();
                return (None, "serving".into());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "serve neither failed nor served"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let (code, stderr) = start(Some(&"17".repeat(32)));
    assert_ne!(code, Some(0));
    assert!(
        stderr.contains("is not the key this store's secrets were sealed with"),
        "{stderr}"
    );
    let (code, stderr) = start(None);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("holds sealed secrets"), "{stderr}");
    let (code, stderr) = start(Some("short"));
    assert_ne!(code, Some(0));
    assert!(stderr.contains("FLOW_MASTER_KEY"), "{stderr}");
    // The right key: it serves.
    assert_eq!(start(Some(MASTER_KEY)), (None, "serving".to_string()));
}

/// Each attempt's channel and reason.
fn reasons(flow: &Value) -> Vec<(String, String)> {
    flow["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["channel"].as_str().unwrap().to_string(),
                a["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn whatsapp_then_sms(id: &str, recipient: &str) -> Value {
    json!({"id": id, "recipient": recipient, "steps": [
        {"channel": "whatsapp", "wait_for": "accepted", "content": {"type": "template",
            "template": {"name": "order_update", "language": "en_US",
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "Pablo"}]}]}}},
        {"channel": "sms", "wait_for": "accepted", "content": {"text": "Your order shipped."}}]})
}

/// A tenant's WhatsApp steps go out from its own account, with its own token (sealed, never
/// shown): one whose token the provider refuses does not reach a customer on serve's token; a
/// tenant with no account falls back at once without reaching the provider; the default
/// tenant sends from serve's configuration as before.
#[test]
fn a_tenants_whatsapp_steps_use_its_own_account_or_fall_back_without_one() {
    let rig = Rig::start("accounts");
    let (acme, bad, none) = (
        rig.tenant("acme"),
        rig.tenant("badtoken"),
        rig.tenant("none"),
    );
    let put = |tenant: &str, token: &str, waba: &str| rig.put_whatsapp_account(tenant, token, waba);
    let (status, shown) = put(
        "acme",
        host_testkit::defaults::DEMO_ACCESS_TOKEN,
        "waba-acme",
    );
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["secrets"], json!(["whatsapp/access-token"]));
    assert_eq!(shown["state"], "active");
    assert!(
        !shown
            .to_string()
            .contains(host_testkit::defaults::DEMO_ACCESS_TOKEN)
    );
    assert_eq!(put("badtoken", "a-token-meta-refuses", "waba-bad").0, 200);
    // One business's account is never another's.
    let (status, body) = put("none", "x", "waba-acme");
    assert_eq!(
        (status, &body["error"]),
        (409, &json!("account_taken")),
        "{body}"
    );
    for (token, id) in [
        (&acme, "a"),
        (&bad, "b"),
        (&none, "c"),
        (&API_TOKEN.to_string(), "d"),
    ] {
        let (status, body) = rig.post_flow(token, &whatsapp_then_sms(id, "+15550100061"));
        assert_eq!(status, 201, "{body}");
    }
    let wait = |token: &str, id: &str| {
        FlowClient::new(rig.port, token).wait_final(&[id.into()], Duration::from_secs(30))[0]
            .clone()
    };
    let a = wait(&acme, "a");
    assert_eq!(
        host_testkit::attempt_channels(&a),
        ["whatsapp"],
        "{a}\n{}",
        rig.log()
    );
    let b = wait(&bad, "b");
    assert_eq!(host_testkit::attempt_channels(&b)[0], "whatsapp", "{b}");
    assert!(
        b.to_string().contains("190"),
        "the provider saw the tenant's token: {b}"
    );
    let c = wait(&none, "c");
    assert_eq!(
        reasons(&c)[0],
        ("whatsapp".into(), "no_channel_account".into()),
        "{c}"
    );
    assert_eq!(
        host_testkit::attempt_channels(&c),
        ["whatsapp", "sms"],
        "{c}"
    );
    let d = wait(API_TOKEN, "d");
    assert_eq!(host_testkit::attempt_channels(&d), ["whatsapp"], "{d}");
    // Only three WhatsApp requests reached the provider: the tenant without an account none.
    let whatsapp_requests = rig
        ._mock
        .requests()
        .iter()
        .filter(|r| r.correlation_id().is_some_and(|c| c.starts_with("none/")))
        .count();
    assert_eq!(whatsapp_requests, 1, "only its SMS step reached a provider");
}

/// A token the provider refuses (190) flags the tenant's account `needs_reauth` once: that
/// send and every later WhatsApp step of the tenant fall back to SMS, the later ones without
/// reaching the provider, nothing is sent twice, and one operator event is logged. A new
/// token clears it.
#[test]
fn a_refused_token_flags_the_account_once_and_its_steps_fall_back_until_a_new_token() {
    let operator = host_testkit::block_on(CallbackReceiver::spawn(HOST_CALLBACK_KEY)).unwrap();
    let rig = Rig::start_with_args("reauth", true, &["--operator-callback-url", operator.url()]);
    let token = rig.tenant("acme");
    let put = |access: &str| {
        let (status, body) = rig.send(
            rig.http
                .put(format!("{}/admin/tenants/acme/channels/whatsapp", rig.base))
                .bearer_auth(ADMIN_TOKEN)
                .json(&json!({"account_id": "waba-acme", "secrets": {"access-token": access}})),
        );
        assert_eq!(status, 200, "{body}");
    };
    put("revoked-token");
    let client = FlowClient::new(rig.port, &token);
    assert_eq!(
        rig.post_flow(&token, &whatsapp_then_sms("first", "+15550100071"))
            .0,
        201
    );
    let first = &client.wait_final(&["first".into()], Duration::from_secs(30))[0];
    assert_eq!(
        host_testkit::attempt_channels(first),
        ["whatsapp", "sms"],
        "{first}"
    );
    let (_, account) = rig.admin_get("/admin/tenants/acme/channels/whatsapp");
    assert_eq!(account["state"], "needs_reauth", "{account}");
    let ids: Vec<String> = (0..3).map(|i| format!("later-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let flow = whatsapp_then_sms(id, &format!("+1555010008{i}"));
        assert_eq!(rig.post_flow(&token, &flow).0, 201);
    }
    for later in client.wait_final(&ids, Duration::from_secs(30)) {
        assert_eq!(
            host_testkit::attempt_channels(&later),
            ["whatsapp", "sms"],
            "{later}"
        );
        assert_eq!(
            later["attempts"][0]["reason"], "account_needs_reauth",
            "{later}"
        );
    }
    // Only the first flow's WhatsApp request reached the provider.
    let whatsapp: Vec<String> = rig
        ._mock
        .requests()
        .iter()
        .filter_map(|r| r.correlation_id())
        .filter(|c| c.starts_with("acme/") && !c.contains("/1/"))
        .collect();
    assert_eq!(whatsapp.len(), 1, "{whatsapp:?}");
    host_testkit::process::assert_nothing_sent_twice(&rig._mock);
    let events = rig.log().matches("operator event").count();
    assert_eq!(events, 1, "{}", rig.log());
    // The same event, once, to the operator's URL, signed with the host's key.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while operator.verified_bodies().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            operator.counts()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let posted = operator.verified_bodies();
    assert_eq!(posted.len(), 1, "{posted:?}");
    assert_eq!(
        (
            &posted[0]["kind"],
            &posted[0]["tenant"],
            &posted[0]["state"]
        ),
        (
            &json!("account_state"),
            &json!("acme"),
            &json!("needs_reauth")
        ),
        "{posted:?}"
    );
    assert_eq!(posted[0]["provider_code"], "190", "{posted:?}");
    // A new token: active again, and WhatsApp goes out.
    put(host_testkit::defaults::DEMO_ACCESS_TOKEN);
    assert_eq!(
        rig.post_flow(&token, &whatsapp_then_sms("after", "+15550100091"))
            .0,
        201
    );
    let after = &client.wait_final(&["after".into()], Duration::from_secs(30))[0];
    assert_eq!(
        host_testkit::attempt_channels(after),
        ["whatsapp"],
        "{after}"
    );
}

/// A tenant bringing its own Twilio account: its SMS leave under its own credentials and
/// sender, Twilio posts their statuses to the tenant's own webhook (`/webhooks/sms/{tenant}`),
/// where the tenant's auth token checks them; a callback signed with any other token is
/// refused there, a tenant without its own account has no such webhook, and the other tenants'
/// SMS keep the operator's account.
#[test]
fn a_tenants_own_twilio_account_sends_its_sms_and_checks_its_own_callbacks() {
    use host_testkit::mock_twilio::{
        DEMO_ACCOUNT_SID, DEMO_AUTH_TOKEN, TENANT_ACCOUNT_SID, TENANT_AUTH_TOKEN, form_body,
        signature, status_params,
    };
    let rig = Rig::start("own-twilio");
    let (acme, other) = (rig.tenant("acme"), rig.tenant("other"));
    let (status, shown) = rig.send(
        rig.http
            .put(format!("{}/admin/tenants/acme/channels/sms", rig.base))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"account_id": TENANT_ACCOUNT_SID,
                "settings": {"account_sid": TENANT_ACCOUNT_SID, "from": "+15005550009"},
                "secrets": {"account-sid": TENANT_ACCOUNT_SID, "auth-token": TENANT_AUTH_TOKEN}})),
    );
    assert_eq!(status, 200, "{shown}");
    assert!(!shown.to_string().contains(TENANT_AUTH_TOKEN), "{shown}");
    let delivered = |id: &str| {
        json!({"id": id, "recipient": "+15550100071", "steps": [
            {"channel": "sms", "wait_for": "delivered", "within_ms": 30_000,
             "content": {"text": "Your order shipped."}}]})
    };
    for (token, id) in [(&acme, "a-1"), (&other, "o-1")] {
        let (status, body) = rig.post_flow(token, &delivered(id));
        assert_eq!(status, 201, "{body}");
    }
    for (token, id) in [(&acme, "a-1"), (&other, "o-1")] {
        let done =
            FlowClient::new(rig.port, token).wait_final(&[id.into()], Duration::from_secs(30));
        assert_eq!(done[0]["state"], "done", "{}\n{}", done[0], rig.log());
        assert!(
            done[0].to_string().contains("sms status delivered"),
            "{}",
            done[0]
        );
    }
    let sends: Vec<_> = rig
        ._mock
        .requests()
        .into_iter()
        .filter(|r| r.is_sms_send())
        .collect();
    let of = |tenant: &str| {
        sends
            .iter()
            .find(|r| r.correlation_id().is_some_and(|c| c.starts_with(tenant)))
            .unwrap_or_else(|| panic!("no SMS of {tenant}: {sends:?}"))
    };
    let acme_send = of("acme/");
    assert!(
        acme_send.path.contains(TENANT_ACCOUNT_SID),
        "{}",
        acme_send.path
    );
    let form = host_testkit::mock_twilio::form(&acme_send.body);
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("From").as_deref(), Some("+15005550009"));
    let callback = get("StatusCallback").unwrap();
    assert!(
        callback.starts_with(&format!("{}/webhooks/sms/acme?correlation_id=", rig.base)),
        "{callback}"
    );
    assert!(of("other/").path.contains(DEMO_ACCOUNT_SID));

    // The tenant's webhook takes only what its own token signed.
    let post = |path: &str, token: &str| {
        let url = format!("{}{path}", rig.base);
        let params = status_params("SM9", "+15550100071", "+15005550009", "read", None);
        rig.http
            .post(&url)
            .header("X-Twilio-Signature", signature(token, &url, &params))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&params))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(post("/webhooks/sms/acme", TENANT_AUTH_TOKEN), 200);
    assert_eq!(post("/webhooks/sms/acme", DEMO_AUTH_TOKEN), 401);
    assert_eq!(post("/webhooks/sms", TENANT_AUTH_TOKEN), 401);
    assert_eq!(post("/webhooks/sms/other", DEMO_AUTH_TOKEN), 404);
    assert_eq!(post("/webhooks/sms/nobody", TENANT_AUTH_TOKEN), 404);
    assert_eq!(post("/webhooks/sms/..%2Facme", TENANT_AUTH_TOKEN), 404);
}

/// A tenant bringing its own SendGrid account: its email leaves under its own API key, and
/// the events its account's Event Webhook posts to `/webhooks/email/{tenant}` are checked
/// with its own verification key (the operator's key is refused there) and end its flow.
#[test]
fn a_tenants_own_sendgrid_account_sends_its_email_and_checks_its_own_events() {
    use host_testkit::mock_sendgrid::{
        DEFAULT_EMAIL_EVENTS, SIGNATURE_HEADER, TENANT_API_KEY, TIMESTAMP_HEADER, event_body, sign,
        sign_as_tenant, tenant_event_public_key,
    };
    let rig = Rig::start("own-sendgrid");
    let acme = rig.tenant("acme");
    let (status, shown) = rig.send(
        rig.http
            .put(format!("{}/admin/tenants/acme/channels/email", rig.base))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"account_id": "sendgrid-acme",
                "secrets": {"api-key": TENANT_API_KEY,
                            "webhook-public-key": tenant_event_public_key()}})),
    );
    assert_eq!(status, 200, "{shown}");
    let flow = json!({"id": "m-1", "recipient": "+15550100072", "steps": [
        {"channel": "email", "to": "ann@example.com", "wait_for": "delivered",
         "within_ms": 30_000,
         "content": {"subject": "Your order shipped", "text": "Your order shipped."}}]});
    let (status, body) = rig.post_flow(&acme, &flow);
    assert_eq!(status, 201, "{body}");
    let client = FlowClient::new(rig.port, &acme);
    // The send is accepted under the tenant's key; its message id is in the timeline.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let message_id = loop {
        let (_, view) = rig.get_flow(&acme, "m-1");
        let text = view.to_string();
        if let Some(at) = text.find("accepted id ") {
            let rest = &text[at + "accepted id ".len()..];
            break rest
                .split(|c: char| !c.is_ascii_alphanumeric())
                .next()
                .unwrap()
                .to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{view}\n{}",
            rig.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let send = rig
        ._mock
        .requests()
        .into_iter()
        .find(|r| r.is_email_send())
        .unwrap();
    let authorization = send
        .headers
        .iter()
        .find(|(n, _)| n == "authorization")
        .map(|(_, v)| v.clone());
    assert_eq!(authorization, Some(format!("Bearer {TENANT_API_KEY}")));
    let correlation = send.correlation_id().unwrap();
    let delivered = event_body(
        &message_id,
        "ann@example.com",
        Some(&correlation),
        &DEFAULT_EMAIL_EVENTS[1],
        1,
    );
    let post = |path: &str, (timestamp, signature): (String, String)| {
        rig.http
            .post(format!("{}{path}", rig.base))
            .header(SIGNATURE_HEADER, signature)
            .header(TIMESTAMP_HEADER, timestamp)
            .header("content-type", "application/json")
            .body(delivered.clone())
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(post("/webhooks/email/acme", sign(&delivered)), 401);
    assert_eq!(post("/webhooks/email", sign_as_tenant(&delivered)), 401);
    assert_eq!(
        post("/webhooks/email/acme", sign_as_tenant(&delivered)),
        200
    );
    let done = client.wait_final(&["m-1".into()], Duration::from_secs(20));
    assert_eq!(done[0]["state"], "done", "{}", done[0]);
    assert!(
        done[0].to_string().contains("email status delivered"),
        "{}",
        done[0]
    );
}
