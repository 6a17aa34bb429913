//! Tenants' WhatsApp accounts through `serve` as a process, against the mock serving several
//! businesses on one app: Embedded Signup and connect, template sync across pages, template
//! webhooks that approve or reject, one webhook delivery naming two businesses, and a token
//! revoked in the middle of a campaign.

use host_testkit::mock::{Latency, MockApi, MockConfig, WebhookTargets, whatsapp_status_body_of};
use host_testkit::mock_businesses::{MockBusiness, template_json};
use host_testkit::process::{FlowClient, ServeProcess, free_port, write_demo_secrets};
use reqwest::blocking::Client;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const API_TOKEN: &str = "onboarding-test-default-token";
const ADMIN_TOKEN: &str = "onboarding-test-admin-token";
const MASTER_KEY: &str = "5151515151515151515151515151515151515151515151515151515151515151";
const ACME: &str = "1001";
const ACME_NUMBER: &str = "10011";
const GLOBEX: &str = "2002";
const GLOBEX_NUMBER: &str = "20021";
const GLOBEX_CODE: &str = "signup-code-for-globex";
const WAIT: Duration = Duration::from_secs(30);

struct Rig {
    dir: PathBuf,
    port: u16,
    base: String,
    http: Client,
    mock: MockApi,
    serve: Option<ServeProcess>,
}

/// acme: 7 approved templates, `pending_offer` PENDING, `old_offer` REJECTED (9, in 3 pages
/// of 4 at most); globex: signs up with a code, 2 templates.
fn businesses() -> Vec<MockBusiness> {
    let mut acme = MockBusiness::new(ACME, 2, 7);
    acme.templates.push(template_json(
        "pending_offer",
        "en_US",
        "PENDING",
        "1001900",
    ));
    acme.templates
        .push(template_json("old_offer", "en_US", "REJECTED", "1001901"));
    let mut globex = MockBusiness::new(GLOBEX, 1, 2);
    globex.signup_code = Some(GLOBEX_CODE.into());
    vec![acme, globex]
}

impl Rig {
    /// `serve` with a master key, the operator API, the app's id in the WhatsApp settings and
    /// its secret as the code exchange's credential; the mock posts statuses unless `quiet`.
    fn start(name: &str, quiet: bool) -> Rig {
        Rig::start_with(name, quiet, businesses())
    }

    fn start_with(name: &str, quiet: bool, businesses: Vec<MockBusiness>) -> Rig {
        Rig::start_full(name, quiet, businesses, 10)
    }

    fn start_full(name: &str, quiet: bool, businesses: Vec<MockBusiness>, latency_ms: u64) -> Rig {
        let port = free_port().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let mock = MockApi::start(
            0,
            MockConfig {
                webhooks: Some(WebhookTargets::demo_serve(&base, Duration::from_millis(30))),
                latency: Latency::Fixed(latency_ms),
                businesses,
                template_page_size: 4,
                statuses: if quiet {
                    &[]
                } else {
                    host_testkit::mock::DEFAULT_STATUSES
                },
                ..MockConfig::default()
            },
        )
        .unwrap();
        let dir = std::env::temp_dir().join(format!("onboarding-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let secrets = write_demo_secrets(&dir, API_TOKEN).unwrap();
        let mut all: Value = serde_json::from_slice(&std::fs::read(&secrets).unwrap()).unwrap();
        all["flow/admin-token"] = json!(ADMIN_TOKEN);
        all["whatsapp/oauth-client-secret"] = json!(mock.app().app_secret);
        std::fs::write(&secrets, all.to_string()).unwrap();
        let config = dir.join("whatsapp.json");
        std::fs::write(
            &config,
            json!({"phone_number_id": host_testkit::defaults::DEMO_PHONE_NUMBER_ID,
                "app_id": mock.app().app_id})
            .to_string(),
        )
        .unwrap();
        let mut rig = Rig {
            dir,
            port,
            base,
            http: Client::new(),
            mock,
            serve: None,
        };
        rig.start_serve();
        rig
    }

    /// Starts `serve` on the rig's database, port and files (again, after a kill).
    fn start_serve(&mut self) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_host-harness"));
        cmd.args(["serve", "--port", &self.port.to_string(), "--db"])
            .arg(self.dir.join("flows.sqlite"))
            .args(["--api-base", &self.mock.base_url()])
            .args(["--allow-host", &self.mock.base_url()])
            .arg("--config")
            .arg(self.dir.join("whatsapp.json"))
            .arg("--secrets")
            .arg(self.dir.join("secrets.json"))
            .env("FLOW_MASTER_KEY", MASTER_KEY)
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.join("serve.log"))
                    .unwrap(),
            );
        self.serve = Some(ServeProcess::start(cmd, self.port).unwrap());
    }

    /// SIGKILL.
    fn kill_serve(&mut self) {
        self.serve.take().unwrap().kill().unwrap();
    }

    fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let r = request.send().unwrap();
        let status = r.status().as_u16();
        let text = r.text().unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Creates the tenant; its flow API token.
    fn tenant(&self, id: &str) -> String {
        let (status, body) = self.admin(
            reqwest::Method::POST,
            "/admin/tenants",
            Some(json!({"id": id})),
        );
        assert_eq!(status, 201, "{body}");
        let (status, body) = self.admin(
            reqwest::Method::POST,
            &format!("/admin/tenants/{id}/tokens"),
            None,
        );
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().unwrap().to_string()
    }

    /// acme's account put with its token, then connected (checked and synced).
    fn connect_acme(&self) -> (String, Value) {
        let token = self.tenant("acme");
        let (status, body) = self.admin(
            reqwest::Method::PUT,
            "/admin/tenants/acme/channels/whatsapp",
            Some(
                json!({"account_id": ACME, "settings": {"phone_number_id": ACME_NUMBER},
                "secrets": {"access-token": format!("token-{ACME}")}}),
            ),
        );
        assert_eq!(status, 200, "{body}");
        let (status, body) = self.admin(
            reqwest::Method::POST,
            "/admin/tenants/acme/channels/whatsapp/connect",
            Some(json!({"sender_ids": [ACME_NUMBER]})),
        );
        assert_eq!(status, 200, "{body}\n{}", self.log());
        (token, body)
    }

    fn post_flow(&self, token: &str, flow: &Value) {
        let r = self
            .http
            .post(format!("{}/flows", self.base))
            .bearer_auth(token)
            .json(flow)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 201, "{}", r.text().unwrap());
    }

    /// WhatsApp message requests the mock received for correlation ids starting `prefix`.
    fn whatsapp_requests(&self, prefix: &str) -> usize {
        self.mock
            .requests()
            .iter()
            .filter(|r| !r.path.starts_with("/sms/") && r.path.contains("/messages"))
            .filter(|r| r.correlation_id().is_some_and(|c| c.starts_with(prefix)))
            .count()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default()
    }
}

/// A template step on WhatsApp, then SMS.
fn template_flow(id: &str, recipient: &str, template: &str, wait_for: &str) -> Value {
    json!({"id": id, "recipient": recipient, "ttl_ms": 60_000, "steps": [
        {"channel": "whatsapp", "wait_for": wait_for, "within_ms": 20_000, "content": {"type": "template",
            "template": {"name": template, "language": "en_US",
                "components": [{"type": "body", "parameters": [{"type": "text", "text": "A-7"}]}]}}},
        {"channel": "sms", "wait_for": "accepted", "content": {"text": "Your order A-7 shipped."}}]})
}

#[test]
fn signup_exchanges_the_code_subscribes_the_app_registers_the_number_and_syncs_its_templates() {
    let rig = Rig::start("signup", false);
    rig.tenant("globex");
    let (status, body) = rig.admin(
        reqwest::Method::POST,
        "/admin/tenants/globex/channels/whatsapp/signup",
        Some(json!({"code": GLOBEX_CODE, "account_id": GLOBEX, "sender_id": GLOBEX_NUMBER})),
    );
    assert_eq!(status, 201, "{body}\n{}", rig.log());
    assert_eq!(
        body["facts"]["senders"][0]["sender_id"], GLOBEX_NUMBER,
        "{body}"
    );
    assert_eq!(body["facts"]["recipient_limit"], 250, "{body}");
    assert_eq!(body["sync"]["templates"], 2, "{body}");
    let business = rig.mock.business(GLOBEX).unwrap();
    assert!(
        business.subscribed,
        "the app is subscribed to the WABA's webhooks"
    );
    let pin = &business.registered[GLOBEX_NUMBER];
    assert!(
        pin.len() == 6 && pin.chars().all(|c| c.is_ascii_digit()),
        "{pin}"
    );
    // The token came from the exchange, is kept sealed and never shown; the PIN likewise.
    let (status, account) = rig.admin(
        reqwest::Method::GET,
        "/admin/tenants/globex/channels/whatsapp",
        None,
    );
    assert_eq!(status, 200, "{account}");
    assert_eq!(account["state"], "active");
    assert_eq!(account["templates"], 2);
    let shown = account.to_string();
    assert!(
        !shown.contains(&format!("token-{GLOBEX}")) && !shown.contains(pin.as_str()),
        "{shown}"
    );
    assert!(
        !rig.log().contains(&format!("token-{GLOBEX}")),
        "the token is never logged"
    );
    // A wrong code is the provider's refusal, named, and stores nothing new.
    rig.tenant("initech");
    let (status, refused) = rig.admin(
        reqwest::Method::POST,
        "/admin/tenants/initech/channels/whatsapp/signup",
        Some(json!({"code": "no-such-code", "account_id": "3003", "sender_id": "30031"})),
    );
    assert_eq!(
        (status, &refused["error"]),
        (502, &json!("provider_refused")),
        "{refused}"
    );
    assert_eq!(
        refused["classification"]["provider_code"], "100",
        "{refused}"
    );
    let (status, _) = rig.admin(
        reqwest::Method::GET,
        "/admin/tenants/initech/channels/whatsapp",
        None,
    );
    assert_eq!(status, 404);
}

/// Connect reads every page (9 templates, 4 per page at most); a PENDING template is refused
/// before it reaches Meta, a webhook approving it makes it sendable, a REJECTED one stays
/// refused.
#[test]
fn connect_syncs_every_page_and_a_template_approved_later_by_webhook_becomes_sendable() {
    let rig = Rig::start("connect", false);
    let (token, connected) = rig.connect_acme();
    assert_eq!(connected["sync"]["pages"], 3, "{connected}");
    assert_eq!(connected["sync"]["templates"], 9, "{connected}");
    assert_eq!(
        connected["facts"]["senders"][0]["messages_per_second"], 80,
        "{connected}"
    );
    let client = FlowClient::new(rig.port, &token);
    rig.post_flow(
        &token,
        &template_flow("pending-1", "+15550200001", "pending_offer", "accepted"),
    );
    rig.post_flow(
        &token,
        &template_flow("rejected-1", "+15550200002", "old_offer", "accepted"),
    );
    rig.post_flow(
        &token,
        &template_flow("approved-1", "+15550200003", "t1", "accepted"),
    );
    let done = client.wait_final(
        &["pending-1".into(), "rejected-1".into(), "approved-1".into()],
        WAIT,
    );
    for flow in &done[..2] {
        assert_eq!(
            host_testkit::attempt_channels(flow),
            ["whatsapp", "sms"],
            "{flow}"
        );
        assert!(
            host_testkit::timeline_text(flow).contains("[template_not_approved]"),
            "{flow}"
        );
    }
    assert_eq!(
        host_testkit::attempt_channels(&done[2]),
        ["whatsapp"],
        "{}",
        done[2]
    );
    assert_eq!(
        rig.whatsapp_requests("acme/pending-1/"),
        0,
        "refused before Meta"
    );
    assert_eq!(
        rig.whatsapp_requests("acme/rejected-1/"),
        0,
        "refused before Meta"
    );
    // Meta approves it and says so by webhook.
    let url = format!("{}/webhooks/whatsapp", rig.base);
    assert_eq!(
        rig.mock
            .set_template_status(ACME, "pending_offer", "en_US", "APPROVED", &url),
        200
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, listed) = rig.admin(
            reqwest::Method::GET,
            "/admin/tenants/acme/channels/whatsapp/templates",
            None,
        );
        let approved = listed["templates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "pending_offer" && t["status"] == "APPROVED");
        if approved {
            break;
        }
        assert!(Instant::now() < deadline, "{listed}\n{}", rig.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    rig.post_flow(
        &token,
        &template_flow("pending-2", "+15550200004", "pending_offer", "accepted"),
    );
    let sent = &client.wait_final(&["pending-2".into()], WAIT)[0];
    assert_eq!(
        host_testkit::attempt_channels(sent),
        ["whatsapp"],
        "{sent}\n{}",
        rig.log()
    );
    assert_eq!(rig.whatsapp_requests("acme/pending-2/"), 1);
    // It went out from acme's own number with acme's token.
    let request = rig
        .mock
        .requests()
        .into_iter()
        .find(|r| {
            r.correlation_id()
                .is_some_and(|c| c.starts_with("acme/pending-2/"))
        })
        .unwrap();
    assert!(
        request.path.contains(&format!("/{ACME_NUMBER}/messages")),
        "{}",
        request.path
    );
}

/// One delivery naming two businesses' statuses (as Meta batches them for one app) moves
/// each tenant's own flow; a status from globex's account naming acme's message moves
/// nothing.
#[test]
fn one_webhook_body_carrying_two_businesses_statuses_applies_each_to_its_own_tenant() {
    let rig = Rig::start("two-wabas", true);
    let (acme, _) = rig.connect_acme();
    let globex = rig.tenant("globex");
    let (status, body) = rig.admin(
        reqwest::Method::POST,
        "/admin/tenants/globex/channels/whatsapp/signup",
        Some(json!({"code": GLOBEX_CODE, "account_id": GLOBEX, "sender_id": GLOBEX_NUMBER})),
    );
    assert_eq!(status, 201, "{body}");
    rig.post_flow(
        &acme,
        &template_flow("order", "+15550200011", "t1", "delivered"),
    );
    rig.post_flow(
        &globex,
        &template_flow("order", "+15550200012", "t1", "delivered"),
    );
    let message_id = |token: &str| {
        let deadline = Instant::now() + WAIT;
        loop {
            let flow = FlowClient::new(rig.port, token).status("order").unwrap();
            if let Some(id) = flow["attempts"][0]["provider_message_id"].as_str() {
                return id.to_string();
            }
            assert!(Instant::now() < deadline, "{flow}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let (acme_message, globex_message) = (message_id(&acme), message_id(&globex));
    let entry = |waba: &str, number: &str, message: &str, digits: &str, status: &str| {
        let body: Value = serde_json::from_str(&whatsapp_status_body_of(
            waba, number, message, digits, status, None, None,
        ))
        .unwrap();
        body["entry"][0].clone()
    };
    let post = |entries: Vec<Value>| {
        let body = json!({"object": "whatsapp_business_account", "entry": entries}).to_string();
        let r = rig
            .http
            .post(format!("{}/webhooks/whatsapp", rig.base))
            .header(
                "X-Hub-Signature-256",
                host_testkit::mock::signature(&rig.mock.app().app_secret, body.as_bytes()),
            )
            .header("content-type", "application/json")
            .body(body)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    };
    // Forged across tenants first: globex's account names acme's message. Nothing moves.
    post(vec![entry(
        GLOBEX,
        GLOBEX_NUMBER,
        &acme_message,
        "15550200011",
        "delivered",
    )]);
    std::thread::sleep(Duration::from_millis(500));
    let acme_flow = FlowClient::new(rig.port, &acme).status("order").unwrap();
    assert_eq!(acme_flow["state"], "waiting_status", "{acme_flow}");
    // One body, two businesses: each status to its own tenant's flow.
    post(vec![
        entry(ACME, ACME_NUMBER, &acme_message, "15550200011", "delivered"),
        entry(
            GLOBEX,
            GLOBEX_NUMBER,
            &globex_message,
            "15550200012",
            "delivered",
        ),
    ]);
    for token in [&acme, &globex] {
        let done = &FlowClient::new(rig.port, token).wait_final(&["order".into()], WAIT)[0];
        assert_eq!(done["state"], "done", "{done}");
        assert_eq!(host_testkit::attempt_channels(done), ["whatsapp"], "{done}");
    }
}

/// The business's token is revoked mid-campaign: the send that meets the 190 and every later
/// WhatsApp step fall back to SMS (the later ones without reaching Meta), nothing is sent
/// twice, and one operator event says so.
#[test]
fn a_token_revoked_mid_campaign_sends_the_rest_by_sms_once_with_one_operator_event() {
    let rig = Rig::start("revoked", false);
    let (token, _) = rig.connect_acme();
    let client = FlowClient::new(rig.port, &token);
    let first: Vec<String> = (0..5).map(|i| format!("wave1-{i}")).collect();
    for (i, id) in first.iter().enumerate() {
        rig.post_flow(
            &token,
            &template_flow(id, &format!("+155502001{i:02}"), "t1", "accepted"),
        );
    }
    for flow in client.wait_final(&first, WAIT) {
        assert_eq!(
            host_testkit::attempt_channels(&flow),
            ["whatsapp"],
            "{flow}"
        );
    }
    rig.mock.revoke_token(ACME);
    let second: Vec<String> = (0..8).map(|i| format!("wave2-{i}")).collect();
    for (i, id) in second.iter().enumerate() {
        rig.post_flow(
            &token,
            &template_flow(id, &format!("+155502002{i:02}"), "t1", "accepted"),
        );
    }
    let done = client.wait_final(&second, WAIT);
    for flow in &done {
        assert_eq!(
            host_testkit::attempt_channels(flow),
            ["whatsapp", "sms"],
            "{flow}"
        );
    }
    let met_meta = done
        .iter()
        .filter(|f| f["attempts"][0]["reason"] != "account_needs_reauth")
        .count();
    let wave2_requests = rig.whatsapp_requests("acme/wave2-");
    assert!(
        wave2_requests >= 1 && wave2_requests == met_meta,
        "{wave2_requests} {met_meta}"
    );
    host_testkit::process::assert_nothing_sent_twice(&rig.mock);
    assert_eq!(
        rig.log().matches("operator event").count(),
        1,
        "{}",
        rig.log()
    );
    let (_, account) = rig.admin(
        reqwest::Method::GET,
        "/admin/tenants/acme/channels/whatsapp",
        None,
    );
    assert_eq!(account["state"], "needs_reauth", "{account}");
}

/// `host-harness tenant put-account / connect / sync / templates` drive the same routes; the
/// token travels in an environment variable, never in the arguments.
#[test]
fn the_cli_puts_connects_syncs_and_lists_an_accounts_templates() {
    let rig = Rig::start("cli", false);
    rig.tenant("acme");
    let secrets = rig.dir.join("admin.json");
    std::fs::write(
        &secrets,
        json!({"flow/admin-token": ADMIN_TOKEN}).to_string(),
    )
    .unwrap();
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_host-harness"))
            .args(["tenant", "--server", &rig.base, "--secrets"])
            .arg(&secrets)
            .args(args)
            .env("ACME_TOKEN", format!("token-{ACME}"))
            .output()
            .unwrap();
        let body: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.code(), body)
    };
    let (code, put) = cli(&[
        "put-account",
        "acme",
        "--account-id",
        ACME,
        "--setting",
        &format!("phone_number_id={ACME_NUMBER}"),
        "--secret-env",
        "access-token=ACME_TOKEN",
    ]);
    assert_eq!(code, Some(0), "{put}");
    assert_eq!(put["secrets"], json!(["whatsapp/access-token"]), "{put}");
    let (code, connected) = cli(&["connect", "acme", "--sender-id", ACME_NUMBER]);
    assert_eq!(code, Some(0), "{connected}");
    assert_eq!(connected["sync"]["templates"], 9, "{connected}");
    let (code, synced) = cli(&["sync", "acme"]);
    assert_eq!((code, &synced["pages"]), (Some(0), &json!(3)), "{synced}");
    let (code, listed) = cli(&["templates", "acme"]);
    assert_eq!(code, Some(0));
    assert_eq!(listed["templates"].as_array().unwrap().len(), 9, "{listed}");
    // A connect naming a number the business does not have is Meta's refusal: exit 1.
    let (code, refused) = cli(&["connect", "acme", "--sender-id", "99999"]);
    assert_eq!(code, Some(1), "{refused}");
}

/// An `account_update` webhook that bans the business (Meta sends it to the app's URL, naming
/// the WABA) disables that tenant's account: its WhatsApp steps fall back without reaching
/// Meta, and one operator event says so. Another tenant's account is untouched.
#[test]
fn an_account_ban_by_webhook_disables_that_tenants_account_only() {
    let rig = Rig::start("banned", false);
    let (acme, _) = rig.connect_acme();
    let body =
        json!({"object": "whatsapp_business_account", "entry": [{"id": ACME, "time": 1_700_000_000,
        "changes": [{"field": "account_update", "value": {"event": "DISABLED_UPDATE",
            "ban_info": {"waba_ban_state": "DISABLE", "waba_ban_date": "2026-12-03"}}}]}]})
        .to_string();
    for _ in 0..2 {
        // Delivered twice, as Meta may: one change, one event.
        let r = rig
            .http
            .post(format!("{}/webhooks/whatsapp", rig.base))
            .header(
                "X-Hub-Signature-256",
                host_testkit::mock::signature(&rig.mock.app().app_secret, body.as_bytes()),
            )
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    let (_, account) = rig.admin(
        reqwest::Method::GET,
        "/admin/tenants/acme/channels/whatsapp",
        None,
    );
    assert_eq!(account["state"], "disabled", "{account}\n{}", rig.log());
    rig.post_flow(
        &acme,
        &template_flow("after-ban", "+15550200301", "t1", "accepted"),
    );
    let done = &FlowClient::new(rig.port, &acme).wait_final(&["after-ban".into()], WAIT)[0];
    assert_eq!(
        host_testkit::attempt_channels(done),
        ["whatsapp", "sms"],
        "{done}"
    );
    assert_eq!(done["attempts"][0]["reason"], "account_disabled", "{done}");
    assert_eq!(rig.whatsapp_requests("acme/after-ban/"), 0);
    assert_eq!(
        rig.log().matches("operator event").count(),
        1,
        "{}",
        rig.log()
    );
}

/// A tenant with two numbers: a step naming one (by id or by its display number) goes out
/// from it, a step naming none from the account's default, and a number the tenant does not
/// have is refused when the flow is posted, with the step's path.
#[test]
fn a_step_sends_from_the_number_it_names_and_an_unknown_number_is_refused_at_post() {
    let rig = Rig::start("numbers", false);
    let (token, _) = rig.connect_acme();
    let (status, body) = rig.admin(
        reqwest::Method::POST,
        "/admin/tenants/acme/channels/whatsapp/connect",
        Some(json!({"sender_ids": [ACME_NUMBER, "10012"]})),
    );
    assert_eq!(status, 200, "{body}");
    let display = body["facts"]["senders"][1]["display_address"]
        .as_str()
        .unwrap()
        .to_string();
    let with_from = |id: &str, recipient: &str, from: Option<&str>| {
        let mut flow = template_flow(id, recipient, "t1", "accepted");
        if let Some(from) = from {
            flow["steps"][0]["from"] = json!(from);
        }
        flow
    };
    rig.post_flow(&token, &with_from("by-id", "+15550200401", Some("10012")));
    rig.post_flow(
        &token,
        &with_from("by-display", "+15550200402", Some(&display)),
    );
    rig.post_flow(&token, &with_from("default", "+15550200403", None));
    let client = FlowClient::new(rig.port, &token);
    let done = client.wait_final(
        &["by-id".into(), "by-display".into(), "default".into()],
        WAIT,
    );
    for flow in &done {
        assert_eq!(host_testkit::attempt_channels(flow), ["whatsapp"], "{flow}");
    }
    let path_of = |prefix: &str| {
        rig.mock
            .requests()
            .into_iter()
            .find(|r| r.correlation_id().is_some_and(|c| c.starts_with(prefix)))
            .map(|r| r.path)
            .unwrap()
    };
    assert!(path_of("acme/by-id/").contains("/10012/messages"));
    assert!(path_of("acme/by-display/").contains("/10012/messages"));
    assert!(path_of("acme/default/").contains(&format!("/{ACME_NUMBER}/messages")));
    let r = rig
        .http
        .post(format!("{}/flows", rig.base))
        .bearer_auth(&token)
        .json(&with_from("elsewhere", "+15550200404", Some("20021")))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().unwrap();
    assert_eq!(body["errors"][0]["path"], "/steps/0/from", "{body}");
    assert_eq!(body["errors"][0]["code"], "unknown_sender", "{body}");
}

/// A portfolio at Meta's smallest tier (50 unique customers a day): the 50 first new
/// customers get WhatsApp, the next fall back to SMS without reaching Meta
/// (`messaging_limit_reached`); a customer who wrote in gets a reply on WhatsApp still; Meta
/// raising the tier by webhook lets new customers through at once.
#[test]
fn past_the_portfolio_messaging_limit_new_customers_fall_back_and_replies_still_go() {
    let mut limited = businesses();
    limited[0].tier = "TIER_50".into();
    let rig = Rig::start_with("limit", false, limited);
    let (token, connected) = rig.connect_acme();
    assert_eq!(connected["facts"]["recipient_limit"], 50, "{connected}");
    let client = FlowClient::new(rig.port, &token);
    let ids: Vec<String> = (0..52).map(|i| format!("new-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        rig.post_flow(
            &token,
            &template_flow(id, &format!("+15550203{i:03}"), "t1", "accepted"),
        );
    }
    let done = client.wait_final(&ids, Duration::from_secs(60));
    let by_sms: Vec<&Value> = done
        .iter()
        .filter(|f| host_testkit::attempt_channels(f) == ["whatsapp", "sms"])
        .collect();
    assert_eq!(by_sms.len(), 2, "{}", rig.log());
    for f in &by_sms {
        assert_eq!(f["attempts"][0]["reason"], "messaging_limit_reached", "{f}");
    }
    assert_eq!(rig.whatsapp_requests("acme/new-"), 50);
    // A customer over the limit writes in: a reply inside the window goes on WhatsApp.
    let writer = by_sms[0]["recipient"]
        .as_str()
        .unwrap()
        .trim_start_matches('+')
        .to_string();
    let inbound = json!({"object": "whatsapp_business_account", "entry": [{"id": ACME, "changes": [{
        "field": "messages", "value": {"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550100001", "phone_number_id": ACME_NUMBER},
            "contacts": [{"profile": {"name": "Kim"}, "wa_id": writer}],
            "messages": [{"from": writer, "id": "wamid.IN1", "timestamp": (host::services::now_ms() / 1000).to_string(),
                "type": "text", "text": {"body": "hi"}}]}}]}]})
    .to_string();
    let post = |body: String| {
        let r = rig
            .http
            .post(format!("{}/webhooks/whatsapp", rig.base))
            .header(
                "X-Hub-Signature-256",
                host_testkit::mock::signature(&rig.mock.app().app_secret, body.as_bytes()),
            )
            .header("content-type", "application/json")
            .body(body)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    };
    post(inbound);
    let reply = json!({"id": "reply", "recipient": format!("+{writer}"), "steps": [
        {"channel": "whatsapp", "wait_for": "accepted", "content": {"type": "text", "text": {"body": "Thanks!"}}}]});
    rig.post_flow(&token, &reply);
    let replied = &client.wait_final(&["reply".into()], WAIT)[0];
    assert_eq!(
        host_testkit::attempt_channels(replied),
        ["whatsapp"],
        "{replied}"
    );
    assert_eq!(replied["state"], "done", "{replied}");
    // Meta raises the tier: new customers go at once.
    let upgrade =
        json!({"object": "whatsapp_business_account", "entry": [{"id": ACME, "changes": [{
        "field": "phone_number_quality_update", "value": {"display_phone_number": "15550100001",
            "event": "UPGRADE", "current_limit": "TIER_250"}}]}]})
        .to_string();
    post(upgrade);
    rig.post_flow(
        &token,
        &template_flow("after-upgrade", "+15550204000", "t1", "accepted"),
    );
    let after = &client.wait_final(&["after-upgrade".into()], WAIT)[0];
    assert_eq!(
        host_testkit::attempt_channels(after),
        ["whatsapp"],
        "{after}"
    );
}

/// `serve` SIGKILLed while a tenant's campaign over two numbers is at the provider (every
/// request sent, none answered yet), restarted on the same database: every flow ends
/// delivered on WhatsApp from the number it named, none is sent again or falls back to SMS
/// (the statuses that follow settle the sends the kill left unknown).
#[test]
fn serve_killed_mid_campaign_of_a_tenant_loses_nothing_and_sends_nothing_twice() {
    let mut rig = Rig::start_full("killed", false, businesses(), 3_000);
    let (token, _) = rig.connect_acme();
    let (status, body) = rig.admin(
        reqwest::Method::POST,
        "/admin/tenants/acme/channels/whatsapp/connect",
        Some(json!({"sender_ids": [ACME_NUMBER, "10012"]})),
    );
    assert_eq!(status, 200, "{body}");
    let ids: Vec<String> = (0..40).map(|i| format!("k-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let mut flow = template_flow(id, &format!("+15550205{i:03}"), "t1", "delivered");
        flow["steps"][0]["from"] = json!(if i % 2 == 0 { ACME_NUMBER } else { "10012" });
        rig.post_flow(&token, &flow);
    }
    let deadline = Instant::now() + WAIT;
    while rig.whatsapp_requests("acme/k-") < ids.len() {
        assert!(Instant::now() < deadline, "{}", rig.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    rig.kill_serve();
    rig.start_serve();
    let done = FlowClient::new(rig.port, &token).wait_final(&ids, Duration::from_secs(60));
    for flow in &done {
        assert_eq!(flow["state"], "done", "{flow}");
        assert_eq!(host_testkit::attempt_channels(flow), ["whatsapp"], "{flow}");
    }
    host_testkit::process::assert_nothing_sent_twice(&rig.mock);
    assert_eq!(rig.whatsapp_requests("acme/k-"), ids.len());
    for (i, id) in ids.iter().enumerate() {
        let number = if i % 2 == 0 { ACME_NUMBER } else { "10012" };
        let request = rig
            .mock
            .requests()
            .into_iter()
            .find(|r| {
                r.correlation_id()
                    .is_some_and(|c| c.starts_with(&format!("acme/{id}/")))
            })
            .unwrap();
        assert!(
            request.path.contains(&format!("/{number}/messages")),
            "{}",
            request.path
        );
    }
}
