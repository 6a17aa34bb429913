//! The same commit gives the same component bytes however often and wherever the channels are
//! built: each is built again, into another target directory, under an environment full of
//! settings meant for an outer build, and compared with what `build.rs` built (paths are
//! remapped, so the checkout's location does not matter either).

use std::path::Path;

/// The build's own command (shared with `build.rs`; `component_cargo` itself is unused here).
#[allow(dead_code)]
mod build {
    include!("../../../host-testkit/component_build.rs");
}
use build::{component_cargo_from, core_module_path};

#[test]
fn the_channels_build_to_the_same_bytes_in_another_target_directory_and_environment() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let again = workspace.join("target/reproducible");
    let built = workspace.join("target/component");
    // What a quicker or differently configured outer build might set: none of it may reach
    // the component build (each of these alone changes the bytes).
    let outer_build = [
        ("CARGO_PROFILE_COMPONENT_LTO", "false"),
        ("CARGO_PROFILE_COMPONENT_OPT_LEVEL", "1"),
        ("CARGO_PROFILE_COMPONENT_CODEGEN_UNITS", "16"),
        ("CARGO_BUILD_RUSTFLAGS", "-Cdebuginfo=1"),
        ("RUSTFLAGS", "-Cdebuginfo=1"),
        ("CARGO_INCREMENTAL", "1"),
    ];
    let env = || {
        std::env::vars_os().chain(
            outer_build
                .iter()
                .map(|(name, value)| ((*name).into(), (*value).into())),
        )
    };
    for package in [
        "whatsapp-channel",
        "twilio-sms-channel",
        "sendgrid-email-channel",
        "sms-fixture-v1",
        "hostile-channel",
    ] {
        let output = component_cargo_from(workspace, &again, package, env())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let a = std::fs::read(core_module_path(&built, package)).unwrap();
        let b = std::fs::read(core_module_path(&again, package)).unwrap();
        assert!(
            a == b,
            "{package}: {} bytes from build.rs, {} built again",
            a.len(),
            b.len()
        );
    }
}

/// Bytes of `value` as an unsigned LEB128, written minimally.
fn uleb128_len(mut value: u32) -> usize {
    let mut len = 1;
    while value >= 0x80 {
        value >>= 7;
        len += 1;
    }
    len
}

/// The `call`s in a core module whose function index is padded past its minimal LEB128.
fn padded_calls(module: &[u8]) -> (usize, usize) {
    let (mut calls, mut padded) = (0, 0);
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        let wasmparser::Payload::CodeSectionEntry(body) = payload.unwrap() else {
            continue;
        };
        let ops: Vec<_> = body
            .get_operators_reader()
            .unwrap()
            .into_iter_with_offsets()
            .map(Result::unwrap)
            .collect();
        for pair in ops.windows(2) {
            let ((op, at), (_, next)) = (&pair[0], &pair[1]);
            if let wasmparser::Operator::Call { function_index } = op {
                calls += 1;
                padded += usize::from(next - at > 1 + uleb128_len(*function_index));
            }
        }
    }
    (calls, padded)
}

#[test]
fn the_channel_modules_are_linked_with_minimal_leb128_indices() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    for package in [
        "whatsapp-channel",
        "twilio-sms-channel",
        "sendgrid-email-channel",
        "sms-fixture-v1",
        "hostile-channel",
    ] {
        let module = std::fs::read(core_module_path(
            &workspace.join("target/component"),
            package,
        ))
        .unwrap();
        let (calls, padded) = padded_calls(&module);
        assert!(calls > 0, "{package}: no call found");
        assert_eq!(
            padded, 0,
            "{package}: {padded} of {calls} calls carry a padded function index (is wasm-ld's --compress-relocations gone?)"
        );
    }
}
