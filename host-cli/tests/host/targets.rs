//! `wasm-tools component targets wit/ --world channel-plugin`, as a test: each built component
//! is checked against the contract it was built for with the same function wasm-tools calls
//! (`wit_component::targets`), so a host that implements only `flow:channel` can load it — no
//! WASI, nothing else.

use std::path::Path;
use wit_parser::Resolve;

fn targets(wit_dir: &str, component: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut resolve = Resolve::default();
    let (package, _) = resolve.push_path(root.join(wit_dir)).unwrap();
    let world = resolve
        .select_world(&[package], Some("channel-plugin"))
        .unwrap();
    let bytes = std::fs::read(component).unwrap();
    wit_component::targets(&resolve, world, &bytes)
        .unwrap_or_else(|e| panic!("{component} does not target {wit_dir}: {e:#}"));
}

#[test]
fn the_whatsapp_component_targets_the_contract() {
    targets("wit", host_testkit::WHATSAPP_CHANNEL_WASM);
}

#[test]
fn the_sms_component_targets_the_frozen_1_0_contract() {
    targets("wit-history/1.0.0", host_testkit::SMS_FIXTURE_V1_WASM);
}

/// The check has teeth: a component importing something the contract does not name fails it.
#[test]
fn a_component_importing_more_than_the_contract_does_not_target_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut resolve = Resolve::default();
    let (package, _) = resolve.push_path(root.join("wit")).unwrap();
    let world = resolve
        .select_world(&[package], Some("channel-plugin"))
        .unwrap();
    let extra_import =
        wat::parse_str(r#"(component (import "wasi:cli/environment@0.2.0" (instance)))"#).unwrap();
    let err = wit_component::targets(&resolve, world, &extra_import).unwrap_err();
    assert!(
        format!("{err:#}").contains("wasi:cli/environment"),
        "{err:#}"
    );
}
