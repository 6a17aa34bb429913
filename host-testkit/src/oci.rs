//! An OCI registry for tests: the real one `scripts/test.sh` starts (Debian's
//! `docker-registry`, on loopback, storage in a temporary directory), named by
//! `FLOW_TEST_OCI_REGISTRY` (`127.0.0.1:PORT`). Each test gets a namespace of its own. Without
//! that variable the tests fail and say how to get one; they never skip silently.

/// The variable naming the registry: `host:port`.
pub const ENV: &str = "FLOW_TEST_OCI_REGISTRY";

/// `oci://host:port/<fresh namespace>`, or a panic that says how to get a registry.
pub fn fresh_namespace() -> String {
    match std::env::var(ENV) {
        Ok(server) if !server.trim().is_empty() => {
            format!("oci://{}/t{}", server.trim(), uuid::Uuid::now_v7().simple())
        }
        _ => panic!(
            "{ENV} is not set: this test needs an OCI registry. Run the tests with \
             `scripts/test.sh` (it installs Debian's docker-registry when missing and starts one \
             on loopback), or start one and set {ENV}=127.0.0.1:PORT"
        ),
    }
}
