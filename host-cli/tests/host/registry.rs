//! The plugin registry through the CLI, on both backends: a directory and a real OCI registry
//! (`FLOW_TEST_OCI_REGISTRY`, started by `scripts/test.sh`). Publishing, immutability, semver
//! resolution, yanks, signatures, digest checks, lock files, and `serve` running flows on
//! plugins pulled from the registry.

use host_testkit::Block;

use clap::Parser;
use host::lockfile::LockFile;
use host::registry::artifact::ComponentFacts;
use host::registry::{Pin, Registry};
use host_cli::{Cli, run};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// Runs a command in-process: (exit code, printed JSON or the error).
fn harness(args: &[&str]) -> (i32, Value) {
    let cli = Cli::try_parse_from(std::iter::once("host-harness").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    match run(&cli).block() {
        Ok(outcome) => (outcome.code, outcome.json.unwrap_or(Value::Null)),
        Err(e) => (2, json!({ "error": format!("{e:#}") })),
    }
}

/// `registry --registry R` followed by `args`.
fn on<'a>(registry: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["registry", "--registry", registry];
    all.extend_from_slice(args);
    all
}

/// Runs a command that must succeed.
fn ok(args: &[&str]) -> Value {
    let (code, out) = harness(args);
    assert_eq!(code, 0, "{args:?}: {out}");
    out
}

/// The error of a command that must fail with a usage error.
fn refused(args: &[&str]) -> String {
    let (code, out) = harness(args);
    assert_ne!(code, 0, "{args:?} should fail: {out}");
    out["error"]
        .as_str()
        .unwrap_or(&out.to_string())
        .to_string()
}

/// A fresh scratch directory.
fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("registry-{name}-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A key pair in `dir`: (secret, public).
fn keygen(dir: &Path, name: &str) -> (String, String) {
    let secret = dir.join(name);
    let out = ok(&["registry", "keygen", "--out", path(&secret)]);
    (
        out["secret_key"].as_str().unwrap().into(),
        out["public_key"].as_str().unwrap().into(),
    )
}

/// The same component with other bytes (an extra custom section): what a careless
/// republish of "the same version" looks like.
fn other_bytes_of(wasm: &str, dir: &Path) -> PathBuf {
    let mut bytes = std::fs::read(wasm).unwrap();
    let name = b"rebuilt";
    bytes.extend_from_slice(&[0, (name.len() + 2) as u8, name.len() as u8]);
    bytes.extend_from_slice(name);
    bytes.push(b'!');
    let out = dir.join("rebuilt.wasm");
    std::fs::write(&out, bytes).unwrap();
    out
}

const SMS: &str = host_testkit::SMS_FIXTURE_V1_WASM;
const WHATSAPP: &str = host_testkit::WHATSAPP_CHANNEL_WASM;

fn a_signed_plugin_is_published_resolved_pulled_and_locked(registry: &str) {
    let dir = scratch("signed");
    let (secret, public) = keygen(&dir, "publisher.key");
    let published = ok(&on(
        registry,
        &["publish", SMS, WHATSAPP, "--sign-key", &secret],
    ));
    let key_id = published["published"][0]["signed_by"].clone();
    assert!(key_id.is_string(), "{published}");
    let listed = ok(&on(registry, &["list"]));
    let names: Vec<&str> = listed["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sms", "whatsapp"]);
    // Resolution shows the contract and the grants the plugin asks for.
    let resolved = ok(&on(
        registry,
        &["resolve", "sms@^0.1", "--trusted-key", &public],
    ));
    assert_eq!(resolved["version"], "0.1.0");
    assert_eq!(resolved["contract"], "flow:channel@1.0.0");
    assert_eq!(resolved["requests"]["secrets"], json!(["sms/*"]));
    assert_eq!(resolved["signed_by"], key_id);
    // Pull: the component lands next to the lock file, pinned and granted what it asked for.
    let lock = dir.join("plugins.lock");
    for spec in ["sms", "whatsapp@0.1"] {
        ok(&on(
            registry,
            &[
                "pull",
                spec,
                "--lock",
                path(&lock),
                "--trusted-key",
                &public,
            ],
        ));
    }
    let locked = LockFile::read(&lock).unwrap();
    let sms = &locked.plugins[0];
    assert_eq!((sms.name.as_str(), sms.version.as_str()), ("sms", "0.1.0"));
    assert_eq!(
        sms.digest,
        published["published"][0]["digest"].as_str().unwrap()
    );
    assert_eq!(
        sms.manifest_digest.as_deref(),
        published["published"][0]["manifest_digest"].as_str()
    );
    assert_eq!(sms.registry.as_deref(), Some(registry));
    assert_eq!(
        sms.signed_by.as_ref(),
        key_id.as_str().map(String::from).as_ref()
    );
    assert_eq!(sms.allowed_hosts, ["sms.example.net"]);
    assert_eq!(
        std::fs::read(dir.join(&sms.path)).unwrap(),
        std::fs::read(SMS).unwrap()
    );
    // The lock file loads: digests and versions check out.
    let setups = LockFile::setups_from(&lock).unwrap();
    assert_eq!(setups.len(), 2);
}

fn versions_are_immutable(registry: &str) {
    let dir = scratch("immutable");
    let first = ok(&on(registry, &["publish", SMS]));
    assert_eq!(first["published"][0]["created"], true);
    // The same bytes again change nothing.
    let again = ok(&on(registry, &["publish", SMS]));
    assert_eq!(again["published"][0]["created"], false);
    assert_eq!(
        again["published"][0]["manifest_digest"],
        first["published"][0]["manifest_digest"]
    );
    // Other bytes under the same version are refused.
    let rebuilt = other_bytes_of(SMS, &dir);
    let err = refused(&on(registry, &["publish", path(&rebuilt)]));
    assert!(
        err.contains("sms 0.1.0 is already published with other bytes"),
        "{err}"
    );
    assert!(err.contains("bump the version"), "{err}");
    let resolved = ok(&on(registry, &["resolve", "sms"]));
    assert_eq!(resolved["digest"], first["published"][0]["digest"]);
}

/// Several versions, published through the library with the version set by the test (the
/// built component is 0.1.0; bytes differ per version).
fn resolution_follows_semver_and_skips_yanked_versions(registry: &str) {
    let dir = scratch("semver");
    let reg = Registry::open(registry).unwrap();
    let runtime = host::Runtime::new().unwrap();
    let wasm = std::fs::read(SMS).unwrap();
    let facts = ComponentFacts::read(&runtime, &wasm).block().unwrap();
    let mut digests = std::collections::HashMap::new();
    for (i, version) in ["0.1.0", "0.2.0", "0.2.1", "1.0.0", "2.0.0-rc.1"]
        .iter()
        .enumerate()
    {
        let mut bytes = wasm.clone();
        bytes.extend_from_slice(&[0, 3, 2, b'v', b'0' + i as u8]);
        let facts = ComponentFacts {
            version: version.parse().unwrap(),
            ..facts.clone()
        };
        let published = reg.publish(&bytes, &facts, None).block().unwrap();
        digests.insert(*version, published.manifest_digest);
    }
    let pick = |req: &str| {
        ok(&on(registry, &["resolve", &format!("sms@{req}")]))["version"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(pick("*"), "1.0.0", "pre-releases only when asked for");
    assert_eq!(pick("^0.2"), "0.2.1");
    assert_eq!(pick("~0.1"), "0.1.0");
    assert_eq!(pick(">=2.0.0-rc.1"), "2.0.0-rc.1");
    let err = refused(&on(registry, &["resolve", "sms@^3"]));
    assert!(
        err.contains("no version of sms matching ^3") && err.contains("0.2.1"),
        "{err}"
    );
    // Yank 0.2.1: ^0.2 falls back to 0.2.0, the listing says why, a digest pin still resolves.
    ok(&on(
        registry,
        &["yank", "sms@0.2.1", "--reason", "double sends"],
    ));
    assert_eq!(pick("^0.2"), "0.2.0");
    let listed = ok(&on(registry, &["list", "sms"]));
    let yanked: Vec<&Value> = listed["plugins"][0]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v.get("yanked").is_some())
        .collect();
    assert_eq!(
        yanked,
        [&json!({"version": "0.2.1", "yanked": "double sends"})]
    );
    let pinned = reg
        .resolve("sms", &Pin::Digest(digests["0.2.1"].clone()))
        .block()
        .unwrap();
    assert_eq!(pinned.version.to_string(), "0.2.1");
    ok(&on(registry, &["yank", "sms@0.2.1", "--undo"]));
    assert_eq!(pick("^0.2"), "0.2.1");
    // The artifact says 0.2.0 but holds a component that describes itself as 0.1.0: a pull
    // compiles it, sees that, and refuses.
    let lock = dir.join("plugins.lock");
    let err = refused(&on(
        registry,
        &["pull", "sms@=0.2.0", "--lock", path(&lock)],
    ));
    assert!(err.contains("holds the component sms 0.1.0"), "{err}");
    assert!(!lock.exists(), "nothing locked");
    let err = refused(&on(registry, &["yank", "sms@9.9.9"]));
    assert!(err.contains("not published"), "{err}");
}

fn a_yanked_version_still_pulls_when_pinned(registry: &str) {
    let dir = scratch("yanked");
    let published = ok(&on(registry, &["publish", SMS]));
    let manifest_digest = published["published"][0]["manifest_digest"]
        .as_str()
        .unwrap();
    let lock = dir.join("plugins.lock");
    ok(&on(registry, &["pull", "sms", "--lock", path(&lock)]));
    ok(&on(registry, &["yank", "sms@0.1.0"]));
    // Not chosen by resolution any more…
    let other = dir.join("other.lock");
    let err = refused(&on(registry, &["pull", "sms", "--lock", path(&other)]));
    assert!(err.contains("0.1.0 (yanked)"), "{err}");
    // …but a lock file that pins it fetches it again, and so does a digest pin.
    std::fs::remove_file(dir.join("plugins/sms-0.1.0.wasm")).unwrap();
    ok(&["registry", "pull", "--locked", "--lock", path(&lock)]);
    assert_eq!(
        std::fs::read(dir.join("plugins/sms-0.1.0.wasm")).unwrap(),
        std::fs::read(SMS).unwrap()
    );
    ok(&on(
        registry,
        &[
            "pull",
            &format!("sms@{manifest_digest}"),
            "--lock",
            path(&other),
        ],
    ));
}

fn unsigned_or_wrongly_signed_artifacts_are_refused_when_a_key_is_trusted(registry: &str) {
    let dir = scratch("trust");
    let (_, trusted) = keygen(&dir, "operator-trusts.key");
    let (stranger, _) = keygen(&dir, "stranger.key");
    let lock = dir.join("plugins.lock");
    ok(&on(registry, &["publish", SMS]));
    // Unsigned: fine without a trusted key, refused with one.
    ok(&on(registry, &["pull", "sms", "--lock", path(&lock)]));
    let pull_trusting = on(
        registry,
        &[
            "pull",
            "sms",
            "--lock",
            path(&lock),
            "--trusted-key",
            &trusted,
        ],
    );
    let err = refused(&pull_trusting);
    assert!(
        err.contains("is not signed, and trusted keys are configured"),
        "{err}"
    );
    let (code, out) = harness(&on(registry, &["verify", "sms", "--trusted-key", &trusted]));
    assert_eq!((code, &out["verified"]), (3, &json!(false)), "{out}");
    // Signed by a key the operator does not trust.
    ok(&on(registry, &["publish", SMS, "--sign-key", &stranger]));
    let err = refused(&pull_trusting);
    assert!(err.contains("which is not trusted"), "{err}");
    // Pinned re-fetches check too.
    let err = refused(&[
        "registry",
        "pull",
        "--locked",
        "--lock",
        path(&lock),
        "--trusted-key",
        &trusted,
    ]);
    assert!(
        err.contains("/plugins/0 (sms)") && err.contains("not trusted"),
        "{err}"
    );
}

/// The blob file of a digest in a directory registry.
fn blob_file(registry_dir: &Path, repo: &str, digest: &str) -> PathBuf {
    registry_dir
        .join(repo)
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
}

/// Rewrites the stored SMS 0.1.0 manifest (directory registry) with `edit` and points the
/// tag at it: the old and new manifest digests, and the new manifest's bytes.
fn rewrite_sms_manifest(
    registry_dir: &Path,
    edit: impl FnOnce(&mut Value),
) -> (String, String, Vec<u8>) {
    let tag = registry_dir.join("sms/tags/0.1.0");
    let old = std::fs::read_to_string(&tag).unwrap();
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(blob_file(registry_dir, "sms", &old)).unwrap())
            .unwrap();
    edit(&mut manifest);
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let new = host::registry::backend::digest_of(&bytes);
    std::fs::write(blob_file(registry_dir, "sms", &new), &bytes).unwrap();
    std::fs::write(&tag, &new).unwrap();
    (old, new, bytes)
}

/// [`rewrite_sms_manifest`] so its annotations ask for `hosts` and `secrets`.
fn rewrite_sms_requests(
    registry_dir: &Path,
    hosts: Value,
    secrets: Value,
) -> (String, String, Vec<u8>) {
    rewrite_sms_manifest(registry_dir, |manifest| {
        let key = "dev.flow.channel.manifest";
        let mut request: Value =
            serde_json::from_str(manifest["annotations"][key].as_str().unwrap()).unwrap();
        request["allowed_hosts"] = hosts;
        request["secrets"] = secrets;
        manifest["annotations"][key] = json!(request.to_string());
    })
}

#[test]
fn a_tampered_component_is_refused_before_it_is_compiled() {
    let dir = scratch("tampered-blob");
    let registry_dir = dir.join("registry");
    let registry = format!("file:{}", registry_dir.display());
    let published = ok(&on(&registry, &["publish", SMS]));
    let digest = published["published"][0]["digest"].as_str().unwrap();
    // Someone swaps the stored component for another one (a valid component, even).
    std::fs::copy(WHATSAPP, blob_file(&registry_dir, "sms", digest)).unwrap();
    let lock = dir.join("plugins.lock");
    let err = refused(&on(&registry, &["pull", "sms", "--lock", path(&lock)]));
    assert!(
        err.contains(&format!("the blob {digest} arrived with other bytes")),
        "{err}"
    );
    assert!(
        !lock.exists() && !dir.join("plugins").exists(),
        "nothing written"
    );
    let (code, out) = harness(&on(
        &registry,
        &["verify", "sms", "--trusted-key", &keygen(&dir, "k").1],
    ));
    assert_eq!(code, 3, "{out}");
}

#[test]
fn widening_the_grants_in_a_stored_manifest_breaks_its_signature() {
    let dir = scratch("tampered-manifest");
    let registry_dir = dir.join("registry");
    let registry = format!("file:{}", registry_dir.display());
    let (secret, public) = keygen(&dir, "publisher.key");
    ok(&on(&registry, &["publish", SMS, "--sign-key", &secret]));
    // Rewrite the stored manifest so the SMS plugin asks for the WhatsApp host and token, and
    // point the version's tag at it.
    let (old, new, bytes) = rewrite_sms_requests(
        &registry_dir,
        json!(["graph.facebook.com"]),
        json!(["whatsapp/*"]),
    );
    let lock = dir.join("plugins.lock");
    let err = refused(&on(
        &registry,
        &[
            "pull",
            "sms",
            "--lock",
            path(&lock),
            "--trusted-key",
            &public,
        ],
    ));
    assert!(err.contains(&format!("({new}) is not signed")), "{err}");
    assert!(!lock.exists());
    // A pin to the signed manifest's digest names the substitution.
    std::fs::write(blob_file(&registry_dir, "sms", &old), &bytes).unwrap();
    let err = refused(&on(&registry, &["resolve", &format!("sms@{old}")]));
    assert!(
        err.contains(&format!("the manifest {old} arrived as {new}")),
        "{err}"
    );
}

/// The signed 0.1.0 manifest re-tagged byte for byte as 0.2.0 (by anyone who may write the
/// registry): resolving `^0.2` refuses it, and with 0.1.0 yanked nothing serves it again.
#[test]
fn a_manifest_retagged_as_another_version_is_refused() {
    let dir = scratch("retagged");
    let registry_dir = dir.join("registry");
    let registry = format!("file:{}", registry_dir.display());
    let (secret, public) = keygen(&dir, "publisher.key");
    ok(&on(&registry, &["publish", SMS, "--sign-key", &secret]));
    let signed = std::fs::read_to_string(registry_dir.join("sms/tags/0.1.0")).unwrap();
    std::fs::write(registry_dir.join("sms/tags/0.2.0"), &signed).unwrap();
    let err = refused(&on(
        &registry,
        &["resolve", "sms@^0.2", "--trusted-key", &public],
    ));
    assert!(
        err.contains("the tag 0.2.0") && err.contains("version 0.1.0"),
        "{err}"
    );
    ok(&on(&registry, &["yank", "sms@0.1.0"]));
    let err = refused(&on(&registry, &["resolve", "sms"]));
    assert!(err.contains("refusing"), "{err}");
}

/// An unsigned artifact whose annotations ask for the host's own secrets and a loopback port
/// (and so differ from its component's own section) is never pulled into a lock file.
#[test]
fn an_artifact_asking_for_host_secrets_or_loopback_is_refused() {
    let dir = scratch("greedy");
    let registry_dir = dir.join("registry");
    let registry = format!("file:{}", registry_dir.display());
    ok(&on(&registry, &["publish", SMS]));
    rewrite_sms_requests(
        &registry_dir,
        json!(["http://127.0.0.1"]),
        json!(["flow/*"]),
    );
    let lock = dir.join("plugins.lock");
    let err = refused(&on(&registry, &["pull", "sms", "--lock", path(&lock)]));
    assert!(err.contains("other grants"), "{err}");
    assert!(!lock.exists());
}

/// A committed lock file whose path leaves its directory writes nothing there; names that
/// try to leave the registry's root are refused by yank and resolve alike.
#[test]
fn paths_and_names_never_leave_their_roots() {
    let dir = scratch("escape");
    let registry_dir = dir.join("registry");
    let registry = format!("file:{}", registry_dir.display());
    ok(&on(&registry, &["publish", SMS]));
    let lock = dir.join("plugins.lock");
    ok(&on(&registry, &["pull", "sms", "--lock", path(&lock)]));
    let original = std::fs::read_to_string(&lock).unwrap();
    let outside = dir
        .parent()
        .unwrap()
        .join(format!("escaped-{}.wasm", std::process::id()));
    for bad in ["../escaped.wasm", outside.to_str().unwrap()] {
        let mut doc: Value = serde_json::from_str(&original).unwrap();
        doc["plugins"][0]["path"] = json!(bad);
        std::fs::write(&lock, doc.to_string()).unwrap();
        let err = refused(&["registry", "pull", "--locked", "--lock", path(&lock)]);
        assert!(
            err.contains("inside the lock file's directory"),
            "{bad}: {err}"
        );
    }
    assert!(!dir.parent().unwrap().join("escaped.wasm").exists());
    assert!(!outside.exists());
    std::fs::create_dir_all(dir.join("outside/sms")).unwrap();
    for spec in ["../outside/sms@0.1.0", "/tmp/sms@0.1.0"] {
        let err = refused(&on(&registry, &["yank", spec]));
        assert!(err.contains("not a registry name"), "{spec}: {err}");
        let name = spec.split('@').next().unwrap();
        let err = refused(&on(&registry, &["resolve", name]));
        assert!(err.contains("not a registry name"), "{spec}: {err}");
    }
    assert_eq!(
        std::fs::read_dir(dir.join("outside/sms")).unwrap().count(),
        0,
        "a yank marker was written outside the registry"
    );
}

/// An artifact with only the Wasm layout's own fields (as `wkg oci push` makes it: no
/// version, contract or grants annotations) resolves and pulls: the tag names the version,
/// checked against the component's own, and the component's section names the grants.
#[test]
fn an_artifact_with_only_the_layouts_fields_is_read_from_its_component() {
    let dir = scratch("wkg-shaped");
    let registry_dir = dir.join("registry");
    let registry = format!("file:{}", registry_dir.display());
    ok(&on(&registry, &["publish", SMS]));
    let (_, new, _) = rewrite_sms_manifest(&registry_dir, |manifest| {
        manifest["annotations"] =
            json!({"org.opencontainers.image.created": "2026-01-01T00:00:00Z"});
    });
    let resolved = ok(&on(&registry, &["resolve", "sms"]));
    assert_eq!(resolved["version"], "0.1.0", "{resolved}");
    assert_eq!(
        resolved["requests"]["secrets"],
        json!(["sms/*"]),
        "{resolved}"
    );
    let lock = dir.join("plugins.lock");
    let pulled = ok(&on(&registry, &["pull", "sms", "--lock", path(&lock)]));
    assert_eq!(pulled["locked"]["secrets"], json!(["sms/*"]), "{pulled}");
    // The same manifest under another version's tag: the component says 0.1.0, not 0.2.0.
    std::fs::write(registry_dir.join("sms/tags/0.2.0"), &new).unwrap();
    let err = refused(&on(
        &registry,
        &["pull", "sms@0.2.0", "--lock", path(&lock)],
    ));
    assert!(err.contains("holds the component sms 0.1.0"), "{err}");
}

#[test]
fn a_new_pull_keeps_the_operators_grants_and_says_when_the_plugin_asks_for_more() {
    let dir = scratch("regrant");
    let registry = format!("file:{}", dir.join("registry").display());
    ok(&on(&registry, &["publish", SMS]));
    let lock = dir.join("plugins.lock");
    ok(&on(&registry, &["pull", "sms", "--lock", path(&lock)]));
    // The operator points it at their provider and narrows its secrets.
    let mut locked = LockFile::read(&lock).unwrap();
    locked.plugins[0].api_base = "https://sms.internal.example".into();
    locked.plugins[0].allowed_hosts = vec!["sms.internal.example".into()];
    locked.plugins[0].secrets = vec!["sms/api-key".into()];
    locked.plugins[0].settings = Some(json!({"sender": "ACME"}));
    locked.write(&lock).unwrap();
    let out = ok(&on(&registry, &["pull", "sms", "--lock", path(&lock)]));
    assert_eq!(out["grants_differ"], true, "{out}");
    let after = LockFile::read(&lock).unwrap();
    assert_eq!(after.plugins.len(), 1);
    assert_eq!(after.plugins[0].api_base, "https://sms.internal.example");
    assert_eq!(after.plugins[0].secrets, ["sms/api-key"]);
    assert_eq!(after.plugins[0].settings, Some(json!({"sender": "ACME"})));
}

/// A signature `registry publish --sign-key` stores is cosign's: sigstore's own cosign
/// verifier (another implementation, its own OCI client) finds it at the `.sig` tag of the
/// real registry and checks it with the public key; a key that did not sign finds nothing.
#[test]
fn signatures_verify_with_sigstores_cosign_verifier() {
    use sigstore::cosign::verification_constraint::{PublicKeyVerifier, VerificationConstraintVec};
    use sigstore::cosign::{ClientBuilder, CosignCapabilities, verify_constraints};
    use sigstore::crypto::SigningScheme;
    use sigstore::registry::{Auth, ClientConfig, ClientProtocol, OciReference};
    let registry = host_testkit::oci::fresh_namespace();
    let dir = scratch("cosign-interop");
    let (secret, public) = keygen(&dir, "cosign.key");
    let (_, stranger) = keygen(&dir, "stranger.key");
    let published = ok(&on(&registry, &["publish", SMS, "--sign-key", &secret]));
    let digest = published["published"][0]["manifest_digest"]
        .as_str()
        .unwrap();
    let image: OciReference = format!("{}/sms@{digest}", registry.trim_start_matches("oci://"))
        .parse()
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let layers = runtime.block_on(async {
        let mut client = ClientBuilder::default()
            .with_oci_client_config(ClientConfig {
                protocol: ClientProtocol::Http,
                ..ClientConfig::default()
            })
            .build()
            .unwrap();
        client
            .trusted_signature_layers(&Auth::Anonymous, &image)
            .await
            .unwrap()
    });
    assert_eq!(layers.len(), 1, "{layers:?}");
    let constraint = |key: &str| -> VerificationConstraintVec {
        let pem = std::fs::read(key).unwrap();
        vec![Box::new(
            PublicKeyVerifier::new(&pem, &SigningScheme::default()).unwrap(),
        )]
    };
    verify_constraints(&layers, constraint(&public).iter())
        .expect("sigstore verifies the signature with the publisher's key");
    assert!(verify_constraints(&layers, constraint(&stranger).iter()).is_err());
}

/// What the registry itself serves is the CNCF Wasm layout, read through its own HTTP API.
#[test]
fn the_oci_artifact_has_the_cncf_wasm_layout() {
    let registry = host_testkit::oci::fresh_namespace();
    ok(&on(&registry, &["publish", WHATSAPP]));
    let base = registry.replacen("oci://", "http://", 1);
    let (server, namespace) = base.rsplit_once('/').unwrap();
    let get = |url: String| -> Vec<u8> {
        let mut resp = ureq::get(&url)
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .call()
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        resp.body_mut().read_to_vec().unwrap()
    };
    let manifest: Value = serde_json::from_slice(&get(format!(
        "{server}/v2/{namespace}/whatsapp/manifests/0.1.0"
    )))
    .unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    assert_eq!(manifest["layers"][0]["mediaType"], "application/wasm");
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.version"],
        "0.1.0"
    );
    assert_eq!(
        manifest["annotations"]["dev.flow.channel.contract"],
        host::CONTRACT
    );
    let config: Value = serde_json::from_slice(&get(format!(
        "{server}/v2/{namespace}/whatsapp/blobs/{}",
        manifest["config"]["digest"].as_str().unwrap()
    )))
    .unwrap();
    assert_eq!(config["architecture"], "wasm");
    // Required by the layout (oci-wasm's types refuse a config without it); fixed, so the
    // digests stay reproducible.
    assert_eq!(config["created"], "1970-01-01T00:00:00Z");
    assert_eq!(config["layerDigests"][0], manifest["layers"][0]["digest"]);
    assert_eq!(
        config["component"]["imports"],
        json!(["flow:channel/types@1.2.0", "flow:channel/host@1.2.0"])
    );
    let layer = get(format!(
        "{server}/v2/{namespace}/whatsapp/blobs/{}",
        manifest["layers"][0]["digest"].as_str().unwrap()
    ));
    assert_eq!(layer, std::fs::read(WHATSAPP).unwrap());
}

/// Publish to the OCI registry, pull both channels with a trusted key, point them at the mock,
/// and `serve --plugins` runs a flow that falls back from one pulled plugin to the other.
#[test]
fn serve_runs_flows_on_plugins_pulled_from_the_oci_registry() {
    use host_testkit::mock::{MockApi, MockConfig};
    use host_testkit::process::{assert_whatsapp_falls_back_to_sms, serve_locked};
    let registry = host_testkit::oci::fresh_namespace();
    let dir = scratch("serve");
    let (secret, public) = keygen(&dir, "publisher.key");
    ok(&on(
        &registry,
        &["publish", WHATSAPP, SMS, "--sign-key", &secret],
    ));
    let lock = dir.join("plugins.lock");
    for spec in ["whatsapp@^0.1", "sms@^0.1"] {
        ok(&on(
            &registry,
            &[
                "pull",
                spec,
                "--lock",
                path(&lock),
                "--trusted-key",
                &public,
            ],
        ));
    }
    let mock = MockApi::start(0, MockConfig::default()).unwrap();
    let mut locked = LockFile::read(&lock).unwrap();
    for entry in &mut locked.plugins {
        entry.api_base = mock.base_url();
        entry.allowed_hosts = vec![mock.base_url()];
    }
    locked.plugins[0].settings = Some(json!({"phone_number_id": "106540352242922"}));
    locked.write(&lock).unwrap();
    let (_serve, client) = serve_locked(
        Path::new(env!("CARGO_BIN_EXE_host-harness")),
        &dir,
        &lock,
        "pulled-token",
    )
    .unwrap();
    assert_whatsapp_falls_back_to_sms(&client, "pulled-1");
}

/// `flow start --plugins`: the flow is checked by exactly the locked plugins before anything
/// is posted; field errors point into the flow file, settings errors into the lock file.
#[test]
fn flow_start_checks_flows_with_the_locked_plugins_before_posting() {
    let dir = scratch("flow-check");
    let registry = format!("file:{}", dir.join("registry").display());
    ok(&on(&registry, &["publish", WHATSAPP, SMS]));
    let lock = dir.join("plugins.lock");
    for spec in ["whatsapp", "sms"] {
        ok(&on(&registry, &["pull", spec, "--lock", path(&lock)]));
    }
    let flows = dir.join("flows.json");
    std::fs::write(
        &flows,
        json!([
            {"recipient": "+15550100002", "steps": [
                {"channel": "whatsapp", "content": {"type": "text", "text": {"body": "hi"}}},
                {"channel": "sms", "content": {"text": "Your order shipped."}}]},
            {"recipient": "+15550100003", "steps": [
                {"channel": "whatsapp", "content": {"type": "text", "text": {"body": ""}}},
                {"channel": "fax", "content": {"text": "hi"}}]}
        ])
        .to_string(),
    )
    .unwrap();
    host_testkit::process::write_demo_secrets(&dir, "t").unwrap();
    let secrets = dir.join("secrets.json");
    let start = |flows: &Path| {
        harness(&[
            "flow",
            "start",
            path(flows),
            "--plugins",
            path(&lock),
            "--server",
            "http://127.0.0.1:9",
            "--secrets",
            path(&secrets),
        ])
    };
    let (code, out) = start(&flows);
    assert_eq!(code, 1, "{out}");
    let at = |e: &Value| {
        e["path"]
            .as_str()
            .or(e["lock"].as_str())
            .unwrap()
            .to_string()
    };
    let paths: Vec<String> = out["errors"].as_array().unwrap().iter().map(at).collect();
    assert_eq!(
        paths,
        [
            "/plugins/0/settings/phone_number_id",
            "/1/steps/1/channel",
            "/1/steps/0/content/text/body"
        ],
        "{out}"
    );
    // With its settings in the lock file and a valid flow, the check passes and the post is
    // tried (here at a port nobody listens on).
    let mut locked = LockFile::read(&lock).unwrap();
    locked.plugins[0].settings = Some(json!({"phone_number_id": "106540352242922"}));
    locked.write(&lock).unwrap();
    let valid = dir.join("valid.json");
    std::fs::write(
        &valid,
        json!([{"recipient": "+15550100002", "steps": [
        {"channel": "whatsapp", "content": {"type": "text", "text": {"body": "hi"}}},
        {"channel": "sms", "content": {"text": "hi"}}]}])
        .to_string(),
    )
    .unwrap();
    let (code, out) = start(&valid);
    assert_eq!(code, 2, "{out}");
    assert!(
        out["error"].as_str().unwrap().contains("cannot reach"),
        "{out}"
    );
}

/// A directory registry of its own.
fn dir_registry(name: &str) -> String {
    format!("file:{}", scratch(name).join("registry").display())
}

/// Each scenario against a directory and against the OCI registry.
macro_rules! on_both_registries {
    ($($scenario:ident),* $(,)?) => {
        mod directory {
            $(
                #[test]
                fn $scenario() {
                    super::$scenario(&super::dir_registry(stringify!($scenario)));
                }
            )*
        }

        mod oci {
            $(
                #[test]
                fn $scenario() {
                    super::$scenario(&host_testkit::oci::fresh_namespace());
                }
            )*
        }
    };
}

on_both_registries!(
    a_signed_plugin_is_published_resolved_pulled_and_locked,
    versions_are_immutable,
    resolution_follows_semver_and_skips_yanked_versions,
    a_yanked_version_still_pulls_when_pinned,
    unsigned_or_wrongly_signed_artifacts_are_refused_when_a_key_is_trusted,
);
