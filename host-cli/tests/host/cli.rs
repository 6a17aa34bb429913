//! The CLI contract other tools depend on: outputs and exit codes, by running the binary.

use serde_json::{Value, json};
use std::io::Write;
use std::process::{Command, Output, Stdio};

fn fixture(name: &str) -> String {
    format!("{}/../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_host-harness"));
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("the binary runs");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    } else {
        drop(child.stdin.take());
    }
    child.wait_with_output().unwrap()
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

use host::services::signing::signature as sign;

#[test]
fn inspect_reports_contract_size_and_digest() {
    let out = run(&["inspect"], None, &[]);
    assert_eq!(out.status.code(), Some(0));
    let v = json_of(&out);
    assert_eq!(v["name"], "whatsapp");
    assert_eq!(v["contract"], "flow:channel@1.2.0");
    assert_eq!(v["sha256"].as_str().unwrap().len(), 64);
    assert!(v["size_bytes"].as_u64().unwrap() > 0);
    // The grants it asks for travel inside the component.
    assert_eq!(
        v["requests"]["allowed_hosts"],
        json!(["graph.facebook.com"])
    );
    assert_eq!(v["requests"]["secrets"], json!(["whatsapp/*"]));
    assert!(
        v["exports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "flow:channel/channel@1.2.0")
    );
}

#[test]
fn validate_template_exit_codes() {
    let ok = run(
        &[
            "validate-template",
            &fixture("template-create-utility-named-params.json"),
        ],
        None,
        &[],
    );
    assert_eq!(
        (ok.status.code(), json_of(&ok)),
        (Some(0), serde_json::json!({"valid": true}))
    );
    let bad = run(
        &["validate-template", "-"],
        Some(r#"{"name":"x","category":"UTILITY","language":"en_US","components":[]}"#),
        &[],
    );
    assert_eq!(bad.status.code(), Some(1));
    let v = json_of(&bad);
    assert_eq!(v["valid"], false);
    let e = &v["errors"][0];
    assert!(e["path"].is_string() && e["code"].is_string() && e["message"].is_string());
}

#[test]
fn build_prints_the_request() {
    let msg = r#"{"recipient":"+16505551234","content":{"type":"text","text":{"body":"hi"}}}"#;
    let out = run(&["build", "-"], Some(msg), &[]);
    assert_eq!(out.status.code(), Some(0));
    let v = json_of(&out);
    assert_eq!(v["method"], "POST");
    assert_eq!(
        v["url"],
        "https://graph.facebook.com/v26.0/106540352242922/messages"
    );
    assert_eq!(
        v["headers"]["authorization"],
        "Bearer ${secret:whatsapp/access-token}"
    );
    assert_eq!(v["body"]["text"]["body"], "hi");
    let bad = run(
        &["build", "-"],
        Some(r#"{"recipient":"12","content":{"type":"text","text":{"body":""}}}"#),
        &[],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(json_of(&bad)["errors"].as_array().unwrap().len() >= 2);
}

#[test]
fn classify_contract() {
    let body = std::fs::read_to_string(fixture("error-response-130429-rate-limit.json")).unwrap();
    let input = format!(r#"{{"http_status":400,"headers":{{}},"body":{body}}}"#);
    let out = run(&["classify", "-"], Some(&input), &[]);
    assert_eq!(out.status.code(), Some(0));
    let v = json_of(&out);
    for key in [
        "disposition",
        "reason",
        "provider_code",
        "retry_after_ms",
        "operator_action",
        "provider_message_id",
    ] {
        assert!(v.get(key).is_some(), "{key} missing");
    }
    assert_eq!(
        (v["disposition"].as_str(), v["provider_code"].as_str()),
        (Some("retry"), Some("130429"))
    );
    let t = json_of(&run(
        &["classify", "-"],
        Some(r#"{"transport_error":"timeout","request_sent":true}"#),
        &[],
    ));
    assert_eq!(t["disposition"], "unknown");
    let html = json_of(&run(
        &["classify", "-"],
        Some(r#"{"http_status":503,"body":"<html>down</html>"}"#),
        &[],
    ));
    assert_eq!(html["disposition"], "retry");
}

#[test]
fn webhook_signature_contract() {
    let path = fixture("webhook-status-failed-131049.json");
    let body = std::fs::read(&path).unwrap();
    let env = [("TEST_APP_SECRET", "abc123")];
    let good = run(
        &[
            "webhook",
            "--app-secret-env",
            "TEST_APP_SECRET",
            "--signature",
            &sign("abc123", &body),
            &path,
        ],
        None,
        &env,
    );
    assert_eq!(
        good.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    let v = json_of(&good);
    let e = &v["events"][0];
    assert_eq!(
        e["provider_message_id"],
        "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI0QUQ2MjA4NEYyRkExNjMyREUA"
    );
    assert_eq!(e["recipient"], "+16505551234");
    assert_eq!(e["classification"]["provider_code"], "131049");
    let missing = run(
        &["webhook", "--app-secret-env", "TEST_APP_SECRET", &path],
        None,
        &env,
    );
    assert_eq!(missing.status.code(), Some(3));
    let wrong = run(
        &[
            "webhook",
            "--app-secret-env",
            "TEST_APP_SECRET",
            "--signature",
            &sign("other", &body),
            &path,
        ],
        None,
        &env,
    );
    assert_eq!(wrong.status.code(), Some(3));
    assert!(
        json_of(&wrong)["message"]
            .as_str()
            .unwrap()
            .contains("does not match")
    );
    // Without a secret the body is parsed, and stderr says the signature was not checked.
    let unsigned = run(&["webhook", &path], None, &[]);
    assert_eq!(unsigned.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&unsigned.stderr).contains("not checked"));
}

#[test]
fn usage_errors_and_bad_plugins_exit_2() {
    assert_eq!(
        run(&["classify", "/nonexistent.json"], None, &[])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(run(&["frobnicate"], None, &[]).status.code(), Some(2));
    let not_wasm = run(
        &["--plugin", &fixture("send-response-text.json"), "inspect"],
        None,
        &[],
    );
    assert_eq!(not_wasm.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&not_wasm.stderr).contains("compiling the component"));
}

#[test]
fn send_to_the_mock_over_loopback() {
    let mock =
        host_testkit::mock::MockApi::start(0, host_testkit::mock::MockConfig::default()).unwrap();
    let msg = r#"{"recipient":"+15550100002","content":{"type":"template","template":{"name":"order_update","language":"en_US"}}}"#;
    let env = [(
        "FLOW_SECRET_WHATSAPP_ACCESS_TOKEN",
        host_testkit::defaults::DEMO_ACCESS_TOKEN,
    )];
    // The API base alone does not widen the allowlist.
    let refused = run(
        &["send", "--api-base", &mock.base_url(), "-"],
        Some(msg),
        &env,
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--allow-host"));
    assert!(mock.requests().is_empty());
    let out = run(
        &[
            "send",
            "--api-base",
            &mock.base_url(),
            "--allow-host",
            &mock.base_url(),
            "-",
        ],
        Some(msg),
        &env,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_of(&out);
    assert_eq!(
        (v["disposition"].as_str(), v["reason"].as_str()),
        (Some("fallback"), Some("recipient_not_on_channel"))
    );
    assert_eq!(mock.requests().len(), 1);
}

#[test]
fn demo_runs_to_completion() {
    let out = run(&["demo"], None, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("accepted / accepted"));
    assert!(text.contains("fallback / recipient_not_on_channel code 131026"));
    assert!(text.contains("refused before sending: /recipient"));
    assert!(text.contains("5/5 flows finished"), "{text}");
    assert!(text.contains("timer: whatsapp not delivered within 2000 ms"));
    assert!(text.contains("falling back to sms"));
    // WhatsApp → SMS undelivered (30003) → email delivered.
    assert!(
        text.contains("recipient_unreachable (code 30003)"),
        "{text}"
    );
    assert!(text.contains("falling back to email"));
    assert!(text.contains("delivered on email: done"), "{text}");
    // The timeline can be printed again from the database the demo names.
    let db = text
        .split("--db ")
        .nth(1)
        .unwrap()
        .split("` prints")
        .next()
        .unwrap()
        .trim()
        .to_string();
    let again = run(&["flow", "status", "demo-2", "--db", &db], None, &[]);
    assert_eq!(again.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&again.stdout).contains("delivered on sms: done"));
    let json_status = run(
        &["flow", "status", "demo-2", "--db", &db, "--json"],
        None,
        &[],
    );
    assert_eq!(json_of(&json_status)["attempts"][1]["channel"], "sms");
    assert_eq!(
        run(&["flow", "status", "nope", "--db", &db], None, &[])
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn templates_check_against_a_catalog_page() {
    let dir = std::env::temp_dir().join(format!("catalog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("page.json");
    std::fs::write(&page, r#"{"data":[{"name":"order_update","language":"en_US","status":"APPROVED","category":"UTILITY",
        "components":[{"type":"BODY","text":"Hi {{1}}, your order {{2}} shipped."}]}],"paging":{"cursors":{"after":"x"}}}"#).unwrap();
    let good = r#"{"recipient":"+16505551234","content":{"type":"template","template":{"name":"order_update","language":"en_US",
        "components":[{"type":"body","parameters":[{"type":"text","text":"Pablo"},{"type":"text","text":"4711"}]}]}}}"#;
    let out = run(
        &[
            "templates",
            "check",
            "--catalog",
            page.to_str().unwrap(),
            "-",
        ],
        Some(good),
        &[],
    );
    assert_eq!(
        (out.status.code(), json_of(&out)["valid"].as_bool()),
        (Some(0), Some(true))
    );
    let wrong_lang = good.replace(r#""language":"en_US""#, r#""language":"pt_BR""#);
    let out = run(
        &[
            "templates",
            "check",
            "--catalog",
            page.to_str().unwrap(),
            "-",
        ],
        Some(&wrong_lang),
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let v = json_of(&out);
    assert_eq!(v["errors"][0]["code"], "template_not_found");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("en_US")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn build_works_for_every_message_type() {
    let dir = format!("{}/../tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    let mut types = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if !path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("send-request-")
        {
            continue;
        }
        let sample: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut content = sample.clone();
        for k in ["messaging_product", "recipient_type", "to"] {
            content.as_object_mut().unwrap().remove(k);
        }
        let to = format!(
            "+{}",
            sample["to"].as_str().unwrap().trim_start_matches('+')
        );
        let file = serde_json::json!({"recipient": to, "content": content}).to_string();
        let out = run(&["build", "-"], Some(&file), &[]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stdout)
        );
        let v = json_of(&out);
        assert_eq!(v["body"]["type"], sample["type"]);
        types.push(sample["type"].as_str().unwrap().to_string());
    }
    let read = run(
        &["build", "-"],
        Some(r#"{"recipient":"","content":{"type":"read","message_id":"wamid.X"}}"#),
        &[],
    );
    assert_eq!(json_of(&read)["body"]["status"], "read");
    types.sort();
    types.dedup();
    assert_eq!(
        types,
        [
            "audio",
            "contacts",
            "document",
            "image",
            "interactive",
            "location",
            "reaction",
            "template",
            "text",
            "video"
        ]
    );
}

#[test]
fn a_malformed_message_file_is_invalid_input_with_paths() {
    let out = run(
        &["build", "-"],
        Some(r#"{"recipient": 5, "contnt": {}}"#),
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let v = json_of(&out);
    let paths: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/contnt", "/recipient", "/content"]);
}

/// Runs `flow <args>` until `done` says the output is final (or 20 s pass); the last output.
fn flow_until(args: &[&str], done: impl Fn(&std::process::Output) -> bool) -> std::process::Output {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let out = run(&[&["flow"], args].concat(), None, &[]);
        if done(&out) || std::time::Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn serve_and_flow_commands_as_processes() {
    use host_testkit::mock::{MockApi, MockConfig, WebhookTargets};
    use host_testkit::process::{ServeProcess, free_port, write_demo_secrets};
    let port = free_port().unwrap();
    let serve_url = format!("http://127.0.0.1:{port}");
    let webhooks = WebhookTargets::demo_serve(&serve_url, std::time::Duration::from_millis(50));
    let mock = MockApi::start(
        0,
        MockConfig {
            webhooks: Some(webhooks),
            ..MockConfig::default()
        },
    )
    .unwrap();
    let dir = std::env::temp_dir().join(format!("serve-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("flows.sqlite");
    let secrets = write_demo_secrets(&dir, "cli-token").unwrap();
    let (db, secrets) = (db.to_str().unwrap(), secrets.to_str().unwrap());
    let mut serve = Command::new(env!("CARGO_BIN_EXE_host-harness"));
    serve
        .args(["serve", "--port", &port.to_string(), "--db", db])
        .args([
            "--api-base",
            &mock.base_url(),
            "--allow-host",
            &mock.base_url(),
        ])
        .args(["--secrets", secrets])
        .stderr(Stdio::null());
    let _serve = ServeProcess::start(serve, port).unwrap();
    let flow = dir.join("flow.json");
    std::fs::write(
        &flow,
        serde_json::json!({"id": "cli-flow", "recipient": "+15550100012", "steps": [
            {"channel": "whatsapp", "within_ms": 10000, "content": {"type": "template", "template": {"name": "order_update", "language": "en_US"}}},
            {"channel": "sms", "within_ms": 10000, "content": {"text": "Your order shipped."}}]})
        .to_string(),
    )
    .unwrap();
    let flow = flow.to_str().unwrap();
    let started = flow_until(
        &["start", flow, "--server", &serve_url, "--secrets", secrets],
        |out| out.status.code() == Some(0),
    );
    let stderr = String::from_utf8_lossy(&started.stderr);
    assert_eq!(json_of(&started)["id"], "cli-flow", "{stderr}");
    let status = flow_until(&["status", "cli-flow", "--db", db, "--json"], |out| {
        json_of(out)["state"] == "done"
    });
    let done = json_of(&status);
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["attempts"][1]["channel"], "sms");
    // Without the token the API refuses, and nothing starts.
    let refused = run(
        &["flow", "start", flow, "--server", &serve_url],
        None,
        &[("FLOW_SECRET_FLOW_API_TOKEN", "guess")],
    );
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(json_of(&refused)["error"], "unauthorized");
    std::fs::remove_dir_all(&dir).ok();
}

/// `serve` on an in-memory store with `extra` arguments and the API token set, expected to
/// refuse with a usage error (exit 2): its stderr.
fn serve_refusal(extra: &[&str]) -> String {
    let mut args = vec!["serve", "--port", "0", "--db", ":memory:"];
    args.extend_from_slice(extra);
    let out = run(&args, None, &[("FLOW_SECRET_FLOW_API_TOKEN", "t")]);
    assert_eq!(out.status.code(), Some(2));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn serve_refuses_to_start_without_an_api_token_or_with_an_unlisted_api_base() {
    let out = run(&["serve", "--port", "0", "--db", ":memory:"], None, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("flow/api-token"));
    let stderr = serve_refusal(&["--api-base", "http://127.0.0.1:9"]);
    assert!(stderr.contains("--allow-host"), "{stderr}");
}

/// Callback receivers could not tell our callbacks from a forger's: `serve` never starts
/// with callback hosts allowed and no secret to sign them with.
#[test]
fn serve_refuses_callback_hosts_without_the_callback_secret() {
    let stderr = serve_refusal(&["--allow-callback-host", "http://127.0.0.1:9"]);
    assert!(stderr.contains("flow/callback-secret"), "{stderr}");
}

/// A 1.2 MB template with 100,000 unknown keys is answered, never a trap (issue 20: listing
/// every error grew the guest past its memory limit, exit 4): the first errors, then how
/// many more.
#[test]
fn a_template_with_100000_keys_is_answered_not_trapped() {
    let mut doc = String::from(
        r#"{"name":"many_keys","category":"UTILITY","language":"en_US","components":[{"type":"BODY","text":"Hello"}]"#,
    );
    for i in 0..100_000 {
        doc.push_str(&format!(",\"k{i}\":{i}"));
    }
    doc.push('}');
    assert!(doc.len() > 1_000_000);
    let out = run(&["validate-template", "-"], Some(&doc), &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_of(&out);
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors[0]["path"], "/k0");
    let last = errors.last().unwrap();
    assert_eq!(last["code"], "too_many_errors", "{last}");
    assert!(
        last["message"].as_str().unwrap().contains("99900 more"),
        "{last}"
    );
}

#[test]
fn a_reader_that_closes_early_is_not_a_panic() {
    // `host-harness inspect | head -c 1`: the pipe closes before the output is written.
    let mut child = Command::new(env!("CARGO_BIN_EXE_host-harness"))
        .arg("inspect")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

/// `webhook` for any channel: a body file, the URL the provider called, its headers and the
/// secrets file, as serve would see them.
fn channel_webhook(
    plugin: &str,
    url: &str,
    headers: &[String],
    secrets: &Value,
    body: &[u8],
) -> Output {
    let dir = std::env::temp_dir().join(format!(
        "cli-webhook-{}-{}",
        std::process::id(),
        host::services::now_ms()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let (body_file, secrets_file) = (dir.join("body"), dir.join("secrets.json"));
    std::fs::write(&body_file, body).unwrap();
    std::fs::write(&secrets_file, secrets.to_string()).unwrap();
    let mut args = vec!["--plugin", plugin, "webhook", "--url", url];
    for h in headers {
        args.extend(["--header", h.as_str()]);
    }
    args.extend([
        "--secrets",
        secrets_file.to_str().unwrap(),
        body_file.to_str().unwrap(),
    ]);
    run(&args, None, &[])
}

#[test]
fn webhook_checks_a_twilio_callback_signed_over_its_url() {
    use host_testkit::mock_twilio::{DEMO_AUTH_TOKEN, form_body, signature, status_params};
    let url = "https://hooks.example.com/webhooks/sms?correlation_id=order-1%2F1%2F1";
    let params = status_params(
        "SM1",
        "+15550600003",
        "+15005550006",
        "undelivered",
        Some(30003),
    );
    let secrets = json!({"sms/auth-token": DEMO_AUTH_TOKEN});
    let form = "Content-Type: application/x-www-form-urlencoded".to_string();
    let signed = |token: &str| format!("X-Twilio-Signature: {}", signature(token, url, &params));
    let body = form_body(&params).into_bytes();
    let sms = host_testkit::SMS_CHANNEL_WASM;
    let good = channel_webhook(
        sms,
        url,
        &[form.clone(), signed(DEMO_AUTH_TOKEN)],
        &secrets,
        &body,
    );
    assert_eq!(
        good.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    let e = &json_of(&good)["events"][0];
    assert_eq!(e["classification"]["reason"], "recipient_unreachable");
    assert_eq!(e["correlation_id"], "order-1/1/1");
    let wrong = channel_webhook(sms, url, &[form.clone(), signed("other")], &secrets, &body);
    assert_eq!(wrong.status.code(), Some(3));
    let missing = channel_webhook(sms, url, std::slice::from_ref(&form), &secrets, &body);
    assert_eq!(missing.status.code(), Some(3));
    let no_sid: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| !k.ends_with("Sid"))
        .cloned()
        .collect();
    let header = format!(
        "X-Twilio-Signature: {}",
        signature(DEMO_AUTH_TOKEN, url, &no_sid)
    );
    let malformed = channel_webhook(
        sms,
        url,
        &[form, header],
        &secrets,
        form_body(&no_sid).as_bytes(),
    );
    assert_eq!(
        malformed.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&malformed.stdout)
    );
}

#[test]
fn webhook_checks_a_sendgrid_delivery_signed_with_ecdsa() {
    use host_testkit::mock_sendgrid::{
        SIGNATURE_HEADER, TIMESTAMP_HEADER, demo_event_public_key, sign,
    };
    let email = host_testkit::EMAIL_CHANNEL_WASM;
    let secrets = json!({"email/webhook-public-key": demo_event_public_key()});
    let url = "https://hooks.example.com/webhooks/email";
    let deliver = |body: &str, signature: Option<&str>| {
        let (timestamp, good) = sign(body);
        let headers = vec![
            format!("{SIGNATURE_HEADER}: {}", signature.unwrap_or(&good)),
            format!("{TIMESTAMP_HEADER}: {timestamp}"),
        ];
        channel_webhook(email, url, &headers, &secrets, body.as_bytes())
    };
    let body = json!([{"email": "pablo@example.com", "event": "bounce", "type": "bounce",
        "timestamp": 1, "sg_event_id": "b1", "sg_message_id": "M1.filter"}])
    .to_string();
    let good = deliver(&body, None);
    assert_eq!(
        good.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert_eq!(
        json_of(&good)["events"][0]["classification"]["reason"],
        "bounced"
    );
    assert_eq!(deliver(&body, Some("MEUCIQC")).status.code(), Some(3));
    assert_eq!(deliver("{not json", None).status.code(), Some(1));
}
