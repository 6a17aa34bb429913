//! The same commit gives the same component bytes whichever way the channels are built: one
//! cargo call per crate (what `build.rs` does) or all of them in one call (where cargo could
//! unify the features of shared dependencies), in another target directory.

use std::path::Path;

include!("../component_build.rs");

#[test]
fn the_channels_build_to_the_same_bytes_together_as_one_crate_at_a_time() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let together = workspace.join("target/reproducible");
    let packages = ["whatsapp-channel", "sms-channel", "hostile-channel"];
    let output = component_cargo(workspace, &together, &packages)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let one_at_a_time = workspace.join("target/component");
    for package in packages {
        let a = std::fs::read(core_module_path(&one_at_a_time, package)).unwrap();
        let b = std::fs::read(core_module_path(&together, package)).unwrap();
        assert!(
            a == b,
            "{package}: {} bytes built alone, {} built together",
            a.len(),
            b.len()
        );
    }
}
