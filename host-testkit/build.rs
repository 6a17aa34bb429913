//! Builds the channel components before the host compiles, so `cargo run --bin host-harness` and
//! `cargo test` work from a fresh clone with no manual step.
//!
//! Each channel crate is compiled for `wasm32-unknown-unknown` (no WASI: the component then
//! imports exactly the `flow:channel` contract and nothing else), turned into a component with
//! `wit-component`, and stamped with its metadata (name, version, description, licence,
//! revision) with `wasm-metadata`, the conventions `wasm-tools metadata show` reads. One
//! `cargo rustc --crate-type cdylib` per crate (`component_build.rs`), so the bytes depend only
//! on the commit.
//!
//! A channel crate's `channel-plugin.json` (its name in flows, default provider base, and the
//! hosts and secrets it asks to be granted) travels inside the component as the custom section
//! `flow-channel-manifest`; `target/component/plugins.lock` locks the built channels with those
//! grants and is what `serve` loads when it is given no lock file of its own.
//!
//! The nested cargo gets its own target dir: sharing the outer one would deadlock on its lock.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

include!("component_build.rs");

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest_dir
        .parent()
        .expect("host-testkit lives in the workspace")
        .to_path_buf();
    let target_dir = workspace.join("target").join("component");
    for watched in [
        "src",
        "wit",
        "wit-history",
        "channels/twilio-sms/src",
        "channels/twilio-sms/Cargo.toml",
        "channels/twilio-sms/channel-plugin.json",
        "channels/sendgrid-email/src",
        "channels/sendgrid-email/Cargo.toml",
        "channels/sendgrid-email/channel-plugin.json",
        "tests/fixtures/sms-channel-v1/src",
        "tests/fixtures/sms-channel-v1/Cargo.toml",
        "tests/fixtures/sms-channel-v1/channel-plugin.json",
        "channel-plugin.json",
        "tests/fixtures/hostile-channel",
        "crates/bump-alloc",
        "crates/channel-sdk",
        "Cargo.toml",
        "Cargo.lock",
        "host-testkit/component_build.rs",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    let revision = git_revision(&workspace);
    let wasm = build_component(&workspace, &target_dir, "whatsapp-channel", ".", &revision);
    println!("cargo:rustc-env=WHATSAPP_CHANNEL_WASM={}", wasm.display());
    let sms = build_component(
        &workspace,
        &target_dir,
        "twilio-sms-channel",
        "channels/twilio-sms",
        &revision,
    );
    println!("cargo:rustc-env=SMS_CHANNEL_WASM={}", sms.display());
    let email = build_component(
        &workspace,
        &target_dir,
        "sendgrid-email-channel",
        "channels/sendgrid-email",
        &revision,
    );
    println!("cargo:rustc-env=EMAIL_CHANNEL_WASM={}", email.display());
    let lock = write_built_lock(
        &target_dir,
        &[
            (&wasm, &workspace),
            (&sms, &workspace.join("channels/twilio-sms")),
            (&email, &workspace.join("channels/sendgrid-email")),
        ],
    );
    let sms_v1 = build_component(
        &workspace,
        &target_dir,
        "sms-fixture-v1",
        "tests/fixtures/sms-channel-v1",
        &revision,
    );
    println!("cargo:rustc-env=SMS_FIXTURE_V1_WASM={}", sms_v1.display());
    println!("cargo:rustc-env=BUILT_PLUGINS_LOCK={}", lock.display());
    let hostile = build_component(
        &workspace,
        &target_dir,
        "hostile-channel",
        "tests/fixtures/hostile-channel",
        &revision,
    );
    println!("cargo:rustc-env=HOSTILE_CHANNEL_WASM={}", hostile.display());
}

/// The commit the components are built from (`unknown` outside a git checkout).
fn git_revision(workspace: &Path) -> String {
    // A commit moves the branch HEAD points at, not HEAD itself.
    let head = workspace.join(".git/HEAD");
    println!("cargo:rerun-if-changed={}", head.display());
    if let Ok(text) = std::fs::read_to_string(&head)
        && let Some(branch) = text.trim().strip_prefix("ref: ")
    {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(".git").join(branch).display()
        );
    }
    Command::new("git")
        .current_dir(workspace)
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn build_component(
    workspace: &Path,
    target_dir: &Path,
    package: &str,
    crate_dir: &str,
    revision: &str,
) -> PathBuf {
    let core = optimize(&build_core_module(workspace, target_dir, package));
    let bytes = std::fs::read(&core).unwrap_or_else(|e| panic!("reading {}: {e}", core.display()));
    let component = wit_component::ComponentEncoder::default()
        .module(&bytes)
        .and_then(|encoder| encoder.validate(true).encode())
        .unwrap_or_else(|e| panic!("making a component of {package}: {e:#}"));
    let mut stamped = metadata(workspace, crate_dir, package, revision)
        .to_wasm(&component)
        .unwrap_or_else(|e| panic!("adding metadata to {package}: {e:#}"));
    if let Some(manifest) = plugin_manifest(&workspace.join(crate_dir)) {
        append_custom_section(
            &mut stamped,
            MANIFEST_SECTION,
            manifest.to_string().as_bytes(),
        );
    }
    let out_dir = target_dir.join("components");
    std::fs::create_dir_all(&out_dir).expect("creating target/component/components");
    let out = out_dir.join(format!("{}.wasm", package.replace('-', "_")));
    std::fs::write(&out, stamped).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
    out
}

/// `wasm-opt -Oz` (binaryen, pinned by Cargo.lock), with the features rustc's output uses.
#[cfg(feature = "optimize-components")]
fn optimize(core: &Path) -> PathBuf {
    use wasm_opt::{Feature, OptimizationOptions};
    let out = core.with_extension("opt.wasm");
    OptimizationOptions::new_optimize_for_size_aggressively()
        .enable_feature(Feature::BulkMemory)
        .enable_feature(Feature::TruncSat)
        .enable_feature(Feature::ReferenceTypes)
        .enable_feature(Feature::Multivalue)
        .run(core, &out)
        .unwrap_or_else(|e| panic!("wasm-opt on {}: {e}", core.display()));
    out
}

#[cfg(not(feature = "optimize-components"))]
fn optimize(core: &Path) -> PathBuf {
    core.to_path_buf()
}

/// The custom section holding a channel's `channel-plugin.json` (read by the host).
const MANIFEST_SECTION: &str = "flow-channel-manifest";

/// A crate's `channel-plugin.json`, if it has one.
fn plugin_manifest(crate_dir: &Path) -> Option<serde_json::Value> {
    let path = crate_dir.join("channel-plugin.json");
    let text = std::fs::read_to_string(&path).ok()?;
    Some(
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display())),
    )
}

/// Appends a custom section (id 0: name, then payload) to a component or module.
fn append_custom_section(wasm: &mut Vec<u8>, name: &str, payload: &[u8]) {
    let mut body = Vec::new();
    leb128(&mut body, name.len());
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    wasm.push(0);
    leb128(wasm, body.len());
    wasm.extend_from_slice(&body);
}

fn leb128(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// `plugins.lock` for the built channels: each pinned by its sha256 and version, granted what
/// its manifest asks for.
fn write_built_lock(target_dir: &Path, built: &[(&PathBuf, &Path)]) -> PathBuf {
    use sha2::Digest;
    let plugins: Vec<serde_json::Value> = built
        .iter()
        .map(|(wasm, crate_dir)| {
            let bytes = std::fs::read(wasm).expect("the component just written");
            let mut entry = plugin_manifest(crate_dir).expect("a channel-plugin.json");
            let manifest =
                std::fs::read_to_string(crate_dir.join("Cargo.toml")).expect("Cargo.toml");
            let version = manifest
                .lines()
                .find_map(|l| l.strip_prefix("version = "))
                .expect("a version")
                .trim_matches('"');
            let object = entry.as_object_mut().expect("the manifest is an object");
            object.insert("version".into(), version.into());
            object.insert(
                "digest".into(),
                format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes))).into(),
            );
            let file = wasm.file_name().expect("a file name").to_string_lossy();
            object.insert("path".into(), format!("components/{file}").into());
            entry
        })
        .collect();
    let lock = serde_json::json!({ "plugins": plugins });
    let path = target_dir.join("plugins.lock");
    let text = serde_json::to_string_pretty(&lock).expect("JSON") + "\n";
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}

fn build_core_module(workspace: &Path, target_dir: &Path, package: &str) -> PathBuf {
    let output = component_cargo(workspace, target_dir, package)
        .output()
        .unwrap_or_else(|e| panic!("could not run cargo to build {package}: {e}"));
    if !output.status.success() {
        panic!(
            "building the {package} component failed (is the target installed? `rustup target add {COMPONENT_TARGET}`):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    core_module_path(target_dir, package)
}

/// The crate's name, version and description, the workspace licence, and the revision.
fn metadata(
    workspace: &Path,
    crate_dir: &str,
    package: &str,
    revision: &str,
) -> wasm_metadata::AddMetadata {
    let manifest = std::fs::read_to_string(workspace.join(crate_dir).join("Cargo.toml"))
        .expect("the crate's Cargo.toml");
    let workspace_manifest =
        std::fs::read_to_string(workspace.join("Cargo.toml")).expect("the workspace Cargo.toml");
    let field = |text: &str, key: &str| {
        text.lines()
            .find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
            })
            .filter(|v| !v.starts_with('{') && !v.contains(".workspace"))
    };
    let mut meta = wasm_metadata::AddMetadata::default();
    meta.name = wasm_metadata::AddMetadataField::Set(package.to_string());
    if let Some(v) = field(&manifest, "version") {
        meta.version = wasm_metadata::AddMetadataField::Set(wasm_metadata::Version::new(v));
    }
    if let Some(d) = field(&manifest, "description") {
        meta.description = wasm_metadata::AddMetadataField::Set(wasm_metadata::Description::new(d));
    }
    if let Some(l) = field(&manifest, "license").or_else(|| field(&workspace_manifest, "license")) {
        meta.licenses = wasm_metadata::Licenses::new(&l)
            .map(wasm_metadata::AddMetadataField::Set)
            .unwrap_or(wasm_metadata::AddMetadataField::Keep);
    }
    if let Some(repo) = field(&workspace_manifest, "repository")
        && let Ok(source) = wasm_metadata::Source::new(&repo)
    {
        meta.source = wasm_metadata::AddMetadataField::Set(source);
    }
    meta.revision =
        wasm_metadata::AddMetadataField::Set(wasm_metadata::Revision::new(revision.to_string()));
    meta
}
