//! Builds the channel components for `wasm32-wasip2` before the host compiles, so
//! `cargo run -p host-harness` and `cargo test` work from a fresh clone with no manual step.
//!
//! The nested cargo gets its own target dir: sharing the outer one would deadlock on its lock.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest_dir
        .parent()
        .expect("host-harness lives in the workspace")
        .to_path_buf();
    let target_dir = workspace.join("target").join("component");
    for watched in [
        "src",
        "wit",
        "wit-history",
        "examples/sms-channel/src",
        "examples/sms-channel/Cargo.toml",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    let wasm = build_component(&workspace, &target_dir, "whatsapp-channel");
    println!("cargo:rustc-env=WHATSAPP_CHANNEL_WASM={}", wasm.display());
    let sms = build_component(&workspace, &target_dir, "sms-channel");
    println!("cargo:rustc-env=SMS_CHANNEL_WASM={}", sms.display());
}

fn build_component(workspace: &Path, target_dir: &Path, package: &str) -> PathBuf {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "-p",
            package,
            "--target-dir",
        ])
        .arg(target_dir);
    // Flags meant for the host build (and clippy's wrapper, the jobserver) must not leak into
    // the guest build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        cmd.env_remove(var);
    }
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("could not run cargo to build {package}: {e}"));
    if !output.status.success() {
        panic!(
            "building the {package} component failed (is the target installed? `rustup target add wasm32-wasip2`):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let file = format!("{}.wasm", package.replace('-', "_"));
    target_dir.join("wasm32-wasip2").join("release").join(file)
}
