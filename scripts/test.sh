#!/usr/bin/env bash
# The README's test command: installs what a fresh machine lacks (the wasm target, PostgreSQL
# from the distribution's packages), starts a throwaway PostgreSQL cluster on a port of its
# own (initdb into a temporary directory, removed afterwards), and runs every test with
# FLOW_TEST_POSTGRES pointing at it. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

pg_bin() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
    [ -n "$dir" ] && [ -x "$dir/initdb" ] && echo "$dir"
}

if [ -z "$(pg_bin)" ]; then
    echo "test.sh: PostgreSQL is missing; installing it from the distribution's packages" >&2
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        echo "test.sh: cannot install PostgreSQL (needs root and apt-get): install the 'postgresql' package, then run this again" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
PG_BIN=$(pg_bin)

# initdb and postgres refuse to run as root: the cluster belongs to the `postgres` user then.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

PG_DIR=$(mktemp -d /tmp/flow-test-pg.XXXXXX)
chmod 755 "$PG_DIR"
[ "$(id -u)" -eq 0 ] && chown postgres: "$PG_DIR"
PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

cleanup() {
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
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

cargo test --workspace "$@"
