//! The same commit gives the same component bytes however often and wherever the channels are
//! built: each is built again, into another target directory, and compared with what
//! `build.rs` built (paths are remapped, so the checkout's location does not matter either).

use std::path::Path;

include!("../../component_build.rs");

#[test]
fn the_channels_build_to_the_same_bytes_in_another_target_directory() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let again = workspace.join("target/reproducible");
    let built = workspace.join("target/component");
    for package in ["whatsapp-channel", "sms-channel", "hostile-channel"] {
        let output = component_cargo(workspace, &again, package)
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
