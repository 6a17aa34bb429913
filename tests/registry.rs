//! The versioned registry with the real component.

mod common;

use common::runtime;
use host_harness::registry::Registry;
use host_harness::{HostServices, Limits};
use semver::VersionReq;
use std::sync::Arc;

#[test]
fn registers_the_component_and_resolves_by_semver() {
    let bytes = std::fs::read(host_harness::WHATSAPP_CHANNEL_WASM).unwrap();
    let mut registry = Registry::new(runtime().clone());
    let services = Arc::new(HostServices::locked_down());
    let entry = registry
        .register(&bytes, services.clone(), Limits::default())
        .unwrap();
    assert_eq!(
        (entry.name.as_str(), entry.contract.as_str()),
        ("whatsapp", "flow:channel@1.0.0")
    );
    let version = entry.version.clone();
    // The same bytes again: idempotent.
    registry
        .register(&bytes, services, Limits::default())
        .unwrap();
    assert_eq!(registry.list().count(), 1);
    let req = VersionReq::parse(&format!("^{}.{}", version.major, version.minor)).unwrap();
    assert_eq!(registry.resolve("whatsapp", &req).unwrap().version, version);
    assert!(
        registry
            .resolve("whatsapp", &VersionReq::parse(">=99").unwrap())
            .is_none()
    );
    assert!(registry.resolve("sms", &VersionReq::STAR).is_none());
}

#[test]
fn a_directory_with_a_bad_file_still_loads_the_good_ones() {
    let dir = std::env::temp_dir().join(format!("registry-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        host_harness::WHATSAPP_CHANNEL_WASM,
        dir.join("whatsapp.wasm"),
    )
    .unwrap();
    std::fs::write(dir.join("broken.wasm"), b"not a component").unwrap();
    let mut registry = Registry::new(runtime().clone());
    let failures = registry
        .load_dir(
            &dir,
            Arc::new(HostServices::locked_down()),
            Limits::default(),
        )
        .unwrap();
    assert_eq!(failures.len(), 1);
    assert!(failures[0].0.ends_with("broken.wasm"));
    assert_eq!(registry.list().count(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}
