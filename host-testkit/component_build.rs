// The cargo command that compiles channel crates to core wasm modules: shared (through
// `include!`) by `build.rs` and by the reproducibility test, so both build exactly alike.

/// The target the channel crates are compiled for (no WASI).
pub const COMPONENT_TARGET: &str = "wasm32-unknown-unknown";
/// The cargo profile of the component builds (workspace `Cargo.toml`).
pub const COMPONENT_PROFILE: &str = "component";
/// The channel modules' shadow stack, at the bottom of their linear memory (bytes).
pub const COMPONENT_STACK: usize = 256 << 10;
/// The channel modules' initial linear memory (bytes, a multiple of 64 KiB): the stack, the
/// data, and the rest for the heap.
pub const COMPONENT_INITIAL_MEMORY: usize = 1 << 20;

/// `cargo rustc` of one channel crate as a `cdylib` for the component target into
/// `target_dir`. The crates declare themselves `rlib` only (for native tests and benches):
/// cargo skips LTO for a crate that is both `rlib` and `cdylib` (24 KB more for WhatsApp), and
/// this way there is one way to build a component, one crate per call, so cargo never unifies
/// features across crates. Flags meant for the outer build do not leak in, and paths are
/// remapped (the workspace to `/src`, cargo's home to `/cargo`): the bytes depend on the
/// commit, not on where it is checked out or built.
pub fn component_cargo(
    workspace: &std::path::Path,
    target_dir: &std::path::Path,
    package: &str,
) -> std::process::Command {
    component_cargo_from(workspace, target_dir, package, std::env::vars_os())
}

/// Whether a variable of the outer build's environment must not reach a component build: its
/// flags, wrappers, jobserver, and profile, target and build settings
/// (`CARGO_PROFILE_RELEASE_LTO=false` for a quicker outer build, say, silently made 2.7 MB
/// components). The `component` profile in the workspace manifest alone decides the bytes.
pub fn leaks_into_component_build(name: &str) -> bool {
    const NAMES: [&str; 8] = [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        "CARGO_INCREMENTAL",
    ];
    const PREFIXES: [&str; 3] = ["CARGO_PROFILE_", "CARGO_TARGET_", "CARGO_BUILD_"];
    NAMES.contains(&name) || PREFIXES.iter().any(|prefix| name.starts_with(prefix))
}

/// [`component_cargo`] with `outer_env` as the environment it would otherwise inherit: the
/// command gets exactly that environment, less what [`leaks_into_component_build`].
pub fn component_cargo_from(
    workspace: &std::path::Path,
    target_dir: &std::path::Path,
    package: &str,
    outer_env: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> std::process::Command {
    let env: std::collections::BTreeMap<std::ffi::OsString, std::ffi::OsString> = outer_env
        .into_iter()
        .filter(|(name, _)| !leaks_into_component_build(&name.to_string_lossy()))
        .collect();
    let var = |name: &str| env.get(std::ffi::OsStr::new(name)).cloned();
    let cargo = var("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.env_clear().envs(&env);
    cmd.current_dir(workspace).args([
        "rustc",
        "--lib",
        "--crate-type",
        "cdylib",
        "--profile",
        COMPONENT_PROFILE,
        "--target",
        COMPONENT_TARGET,
        "-p",
        package,
    ]);
    cmd.arg("--target-dir").arg(target_dir);
    let cargo_home = var("CARGO_HOME").map(std::path::PathBuf::from).unwrap_or_else(|| {
        std::path::PathBuf::from(var("HOME").unwrap_or_default()).join(".cargo")
    });
    let flags = [
        format!("--remap-path-prefix={}=/src", workspace.display()),
        format!("--remap-path-prefix={}=/cargo", cargo_home.display()),
        // A 256 KiB shadow stack instead of 1 MiB (it holds only the locals whose address is
        // taken), and headroom in the initial memory above it and the data: a call's heap fits
        // there without `memory.grow`, which costs the host two `mprotect`s per call (open the
        // pages, close them again for the slot's next instance), each a TLB shootdown across
        // the host's threads. The smaller the memory, the fewer pages the pool scans to reset it.
        format!("-Clink-arg=-zstack-size={COMPONENT_STACK}"),
        format!("-Clink-arg=--initial-memory={COMPONENT_INITIAL_MEMORY}"),
        // wasm-ld leaves every call index, global index and data address it patched as a
        // five-byte padded LEB128, room kept for relinking that a final module never needs;
        // written minimally the code section is 13% smaller (WhatsApp: 22.6 KB).
        "-Clink-arg=--compress-relocations".to_string(),
    ];
    cmd.env("CARGO_ENCODED_RUSTFLAGS", flags.join("\u{1f}"));
    cmd
}

/// Where `component_cargo` leaves the core module of `package`.
pub fn core_module_path(target_dir: &std::path::Path, package: &str) -> std::path::PathBuf {
    target_dir
        .join(COMPONENT_TARGET)
        .join(COMPONENT_PROFILE)
        .join(format!("{}.wasm", package.replace('-', "_")))
}
