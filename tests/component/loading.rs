//! Loading components: contract versions side by side, refusals, the compilation cache.
//! (The registry itself: `host-cli/tests/host/registry.rs`.)

use host_testkit::Block;

use crate::common::runtime;
use host::{HostServices, Limits};
use std::sync::Arc;

/// Three contract versions in one host: the SMS component is built against the frozen
/// `flow:channel@1.0.0` (wit-history/1.0.0), the hostile fixture against the frozen 1.1.0,
/// the WhatsApp one against 1.2.0; each describes itself through its own version's types.
#[test]
fn components_of_every_served_contract_version_load_side_by_side() {
    use host::contract::ContractVersion;
    let services = Arc::new(HostServices::locked_down());
    let rt = runtime();
    for (wasm, version, name) in [
        (
            host_testkit::SMS_FIXTURE_V1_WASM,
            ContractVersion::V1_0,
            "flow:channel@1.0.0",
        ),
        (
            host_testkit::HOSTILE_CHANNEL_WASM,
            ContractVersion::V1_1,
            "flow:channel@1.1.0",
        ),
        (
            host_testkit::WHATSAPP_CHANNEL_WASM,
            ContractVersion::V1_2,
            "flow:channel@1.2.0",
        ),
    ] {
        let plugin = rt
            .load_file(
                std::path::Path::new(wasm),
                services.clone(),
                Limits::default(),
            )
            .unwrap();
        assert_eq!(plugin.contract(), version, "{wasm}");
        assert_eq!(plugin.describe().block().unwrap().contract_version, name);
    }
}

/// The account operations of 1.2.0 are answered `unsupported` for a component built against
/// an older version, without calling it (it has no such export).
#[test]
fn an_older_component_is_not_asked_for_account_operations_it_does_not_have() {
    use host::contract::types::{ChannelConfig, OperationError};
    let services = Arc::new(HostServices::locked_down());
    let config = ChannelConfig {
        api_base: None,
        settings: "{}".into(),
    };
    for wasm in [
        host_testkit::SMS_FIXTURE_V1_WASM,
        host_testkit::HOSTILE_CHANNEL_WASM,
    ] {
        let plugin = runtime()
            .load_file(
                std::path::Path::new(wasm),
                services.clone(),
                Limits::default(),
            )
            .unwrap();
        let answer = plugin.list_templates("1", None, &config).block().unwrap();
        assert_eq!(answer, Err(OperationError::Unsupported), "{wasm}");
        let answer = plugin.exchange_code("code", &config).block().unwrap();
        assert_eq!(answer, Err(OperationError::Unsupported), "{wasm}");
    }
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
            msg.contains("flow:channel@1.0.0 to flow:channel@1.2.0"),
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
        (export "flow:channel/channel@1.2.0" (instance $i)))"#;
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
        msg.contains("the flow:channel@1.2.0 host interface and nothing else"),
        "{msg}"
    );
}

/// Compiled components are kept on disk by wasmtime's cache and loaded instead of compiled the
/// next time, by this engine or another with the same settings (the next process).
#[test]
fn compiled_components_are_cached_on_disk_and_loaded_next_time() {
    let dir = std::env::temp_dir().join(format!("compiled-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let bytes = std::fs::read(host_testkit::SMS_FIXTURE_V1_WASM).unwrap();
    let services = Arc::new(HostServices::locked_down());
    let rt = host::Runtime::with_cache_in(false, Some(dir.clone())).unwrap();
    let first = rt
        .load(&bytes, services.clone(), Limits::default())
        .unwrap();
    assert_eq!(rt.cache_hits_and_misses(), Some((0, 1)));
    let files = walk(&dir);
    assert!(!files.is_empty(), "nothing written under {}", dir.display());
    let next_process = host::Runtime::with_cache_in(false, Some(dir.clone())).unwrap();
    let again = next_process
        .load(&bytes, services, Limits::default())
        .unwrap();
    assert_eq!(next_process.cache_hits_and_misses(), Some((1, 0)));
    assert_eq!(
        first.describe().block().unwrap(),
        again.describe().block().unwrap()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
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
