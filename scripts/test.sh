#!/usr/bin/env bash
# The README's test command: installs what a fresh machine lacks (the wasm target; PostgreSQL
# and the OCI registry from the distribution's packages), starts a throwaway PostgreSQL
# cluster and a throwaway OCI registry on loopback ports of their own (data in temporary
# directories, removed afterwards), and runs every test with FLOW_TEST_POSTGRES and
# FLOW_TEST_OCI_REGISTRY pointing at them. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

pg_bin() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
    [ -n "$dir" ] && [ -x "$dir/initdb" ] && echo "$dir"
}

APT_UPDATED=
install_package() { # package, what it is
    echo "test.sh: $2 is missing; installing the '$1' package" >&2
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        echo "test.sh: cannot install $2 (needs root and apt-get): install the '$1' package, then run this again" >&2
        exit 1
    fi
    [ -n "$APT_UPDATED" ] || { apt-get update -qq; APT_UPDATED=1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
}

[ -n "$(pg_bin)" ] || install_package postgresql PostgreSQL
PG_BIN=$(pg_bin)
command -v docker-registry >/dev/null || install_package docker-registry "the OCI registry"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# initdb and postgres refuse to run as root: the cluster belongs to the `postgres` user then.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

PG_DIR=$(mktemp -d /tmp/flow-test-pg.XXXXXX)
chmod 755 "$PG_DIR"
[ "$(id -u)" -eq 0 ] && chown postgres: "$PG_DIR"
PG_PORT=$(free_port)
OCI_DIR=$(mktemp -d /tmp/flow-test-oci.XXXXXX)
OCI_PID=

cleanup() {
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    [ -z "$OCI_PID" ] || kill "$OCI_PID" 2>/dev/null || true
    rm -rf "$PG_DIR" "$OCI_DIR"
}
trap cleanup EXIT

as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U flow --auth=trust -E UTF8 >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
    -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off" start >/dev/null

# Tests create a database each from this one.
export FLOW_TEST_POSTGRES="postgres://flow@127.0.0.1:$PG_PORT/postgres"
# Lets the fault tests restart this very cluster.
export FLOW_TEST_POSTGRES_CTL="$PG_BIN/pg_ctl -D $PG_DIR/data"
export FLOW_TEST_POSTGRES_AS_USER=$([ "$(id -u)" -eq 0 ] && echo postgres || echo "")

# The OCI registry (Docker's distribution, as Debian packages it): loopback only, no auth,
# deletes allowed, storage in the temporary directory.
OCI_PORT=$(free_port)
cat > "$OCI_DIR/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $OCI_DIR/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$OCI_PORT
EOF
docker-registry serve "$OCI_DIR/config.yml" >"$OCI_DIR/log" 2>&1 &
OCI_PID=$!
oci_up() { python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$OCI_PORT/v2/', timeout=1)" 2>/dev/null; }
for _ in $(seq 1 100); do
    oci_up && break
    kill -0 "$OCI_PID" 2>/dev/null || { echo "test.sh: the OCI registry did not start:" >&2; cat "$OCI_DIR/log" >&2; exit 1; }
    sleep 0.1
done
oci_up || { echo "test.sh: the OCI registry does not answer on 127.0.0.1:$OCI_PORT" >&2; cat "$OCI_DIR/log" >&2; exit 1; }
export FLOW_TEST_OCI_REGISTRY="127.0.0.1:$OCI_PORT"

# The flood tests hold a few thousand sockets at once: the open-file limit goes to its ceiling.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cargo test --workspace "$@"
