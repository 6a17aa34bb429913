//! PostgreSQL for tests: a fresh database per test on the server `scripts/test.sh` starts
//! (`FLOW_TEST_POSTGRES`). Without that variable the tests fail and say how to get one; they
//! never skip silently.

/// The variable naming the server: a `postgres://` URL of a user that may create databases.
pub const ENV: &str = "FLOW_TEST_POSTGRES";

/// The server's URL, or a panic that says how to get one.
pub fn server_url() -> String {
    match std::env::var(ENV) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "{ENV} is not set: this test needs PostgreSQL. Run the tests with `scripts/test.sh` \
             (it installs PostgreSQL from the distribution's packages when missing and starts a \
             throwaway cluster), or set {ENV} to a postgres:// URL of a user that may create databases"
        ),
    }
}

/// A new, empty database on the test server; its URL.
pub fn fresh_database() -> String {
    let server = server_url();
    let name = format!("flow_test_{}", uuid::Uuid::now_v7().simple());
    let mut client = postgres::Client::connect(&server, postgres::NoTls)
        .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL at {ENV}: {e}"));
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap_or_else(|e| panic!("cannot create a test database: {e}"));
    database_url(&server, &name)
}

/// `url` with its database replaced by `name`.
pub fn database_url(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let root = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}
