//! Loading components: contract versions side by side, refusals, the precompiled cache.
//! (The registry itself: `host-cli/tests/host/registry.rs`.)

use host_testkit::Block;

use crate::common::runtime;
use host::{HostServices, Limits};
use std::sync::Arc;

/// Two contract versions in one host: the SMS component is built against the frozen
/// `flow:channel@1.0.0` (wit-history/1.0.0), the WhatsApp one against 1.1.0.
#[test]
fn components_of_both_served_contract_versions_load_side_by_side() {
    use host::contract::ContractVersion;
    let services = Arc::new(HostServices::locked_down());
    let rt = runtime();
    let sms = rt
        .load_file(
            std::path::Path::new(host_testkit::SMS_CHANNEL_WASM),
            services.clone(),
            Limits::default(),
        )
        .unwrap();
    let whatsapp = rt
        .load_file(
            std::path::Path::new(host_testkit::WHATSAPP_CHANNEL_WASM),
            services,
            Limits::default(),
        )
        .unwrap();
    assert_eq!(sms.contract(), ContractVersion::V1_0);
    assert_eq!(whatsapp.contract(), ContractVersion::V1_1);
    assert_eq!(
        sms.describe().block().unwrap().contract_version,
        "flow:channel@1.0.0"
    );
    assert_eq!(
        whatsapp.describe().block().unwrap().contract_version,
        "flow:channel@1.1.0"
    );
}

/// A component exporting a contract version the host does not serve is refused with both
/// versions named.
#[test]
fn a_contract_version_the_host_does_not_serve_is_refused_naming_both() {
    let services = Arc::new(HostServices::locked_down());
    for (exported, says) in [
        ("2.0.0", "another major version"),
        ("1.7.0", "upgrade the host"),
    ] {
        let wat = format!(
            r#"(component (instance $i) (export "flow:channel/channel@{exported}" (instance $i)))"#
        );
        let err = runtime()
            .load(wat.as_bytes(), services.clone(), Limits::default())
            .err()
            .expect("refused");
        let msg = format!("{err:#}");
        assert!(msg.contains(&format!("flow:channel@{exported}")), "{msg}");
        assert!(
            msg.contains("flow:channel@1.0.0 to flow:channel@1.1.0"),
            "{msg}"
        );
        assert!(msg.contains(says), "{msg}");
    }
}

/// The host links the contract and nothing else: a component that also imports WASI is
/// refused when it is loaded, naming the import, rather than given an empty WASI.
#[test]
fn a_component_importing_more_than_the_contract_is_refused_naming_the_import() {
    let wat = r#"(component
        (import "wasi:cli/environment@0.2.0" (instance (export "initial-cwd" (func))))
        (instance $i)
        (export "flow:channel/channel@1.1.0" (instance $i)))"#;
    let err = runtime()
        .load(
            wat.as_bytes(),
            Arc::new(HostServices::locked_down()),
            Limits::default(),
        )
        .err()
        .expect("refused");
    let msg = format!("{err:#}");
    assert!(msg.contains("wasi:cli/environment@0.2.0"), "{msg}");
    assert!(
        msg.contains("the flow:channel@1.1.0 host interface and nothing else"),
        "{msg}"
    );
}

/// Compiled components are kept by (sha256 of the component, engine compatibility hash) and
/// loaded instead of compiled the next time.
#[test]
fn compiled_components_are_cached_by_digest_and_engine() {
    use sha2::Digest;
    let dir = std::env::temp_dir().join(format!("precompiled-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rt = host::Runtime::with_options(false, false)
        .unwrap()
        .with_precompiled_cache(dir.clone());
    let bytes = std::fs::read(host_testkit::SMS_CHANNEL_WASM).unwrap();
    let services = Arc::new(HostServices::locked_down());
    let first = rt
        .load(&bytes, services.clone(), Limits::default())
        .unwrap();
    let digest = hex::encode(sha2::Sha256::digest(&bytes));
    let cached: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(cached[0].starts_with(&digest) && cached[0].ends_with(".cwasm"));
    let again = rt.load(&bytes, services, Limits::default()).unwrap();
    assert_eq!(
        first.describe().block().unwrap(),
        again.describe().block().unwrap()
    );
}

/// The release component stays within issue 21's 300 KB with serde_json inside (the tests load
/// the bytes the build makes with the `component` profile, which the release uses too). A
/// dependency that brings a second JSON stack or a formatting library shows here first.
#[test]
fn the_whatsapp_component_fits_in_300_kb() {
    let bytes = std::fs::read(host_testkit::WHATSAPP_CHANNEL_WASM).unwrap();
    assert!(
        bytes.len() <= 300_000,
        "{} is {} bytes, over 300,000",
        host_testkit::WHATSAPP_CHANNEL_WASM,
        bytes.len()
    );
}
