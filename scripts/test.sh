#!/usr/bin/env bash
# Runs every check CI runs: installs what the tests need (idempotently), then rustfmt, clippy with
# -D warnings, the dependency checks (cargo-deny: licences, banned crates, duplicate versions), every Rust test (unit, store suites
# against a real redis-server, SecantusDB and s3s-fs, end-to-end through the gateway over TLS
# and mutual TLS, the gateway driven by grpcio as a standard gRPC client), and the Python
# binding test against a running `juntos all`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/juntos-target}"
JOBS="${JOBS:-2}"

step() { printf '\n==> %s\n' "$*"; }

# --- what the tests need -------------------------------------------------------------------
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
if ((${#missing[@]})); then
    step "installing ${missing[*]} with apt"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
# SecantusDB: the MongoDB-wire-protocol test server (no mongod can be installed here).
if [ ! -x .venv/bin/secantusd-py ]; then
    step "installing SecantusDB into .venv"
    python3 -m venv .venv
    .venv/bin/pip install -q SecantusDB==0.7.0b3
fi
# grpcio: the standard (non-tonic) gRPC client that tests/tests/status_relay.rs drives the gateway
# with, through tests/python/grpc_probe.py. Wheels only: no C++ build if one is missing.
if ! .venv/bin/python3 -c 'import grpc' >/dev/null 2>&1; then
    step "installing grpcio into .venv"
    [ -x .venv/bin/python3 ] || python3 -m venv .venv
    .venv/bin/pip install -q --only-binary=:all: grpcio==1.85.4
fi
# s3s-fs: the S3-compatible test server (later versions need a newer Rust than these machines).
if [ "$(s3s-fs --version 2>/dev/null)" != "s3s-fs 0.14.1" ]; then
    step "installing s3s-fs 0.14.1 with cargo install"
    cargo install s3s-fs@0.14.1 --features binary --locked -j"$JOBS"
fi
# cargo-deny: the dependency licence check (deny.toml).
if [ "$(cargo deny --version 2>/dev/null)" != "cargo-deny 0.20.2" ]; then
    step "installing cargo-deny 0.20.2 with cargo install"
    cargo install cargo-deny@0.20.2 --locked -j"$JOBS"
fi
for component in rustfmt clippy; do
    if command -v rustup >/dev/null 2>&1 && ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
        step "installing rustup component $component"
        rustup component add "$component"
    fi
done

# --- checks ----------------------------------------------------------------------------------
step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy -j"$JOBS" --workspace --all-targets -- -D warnings

step "cargo deny check licenses bans"
cargo deny --log-level error check licenses bans

step "cargo test"
cargo build -j"$JOBS" -p juntos-server --bin juntos
# The end-to-end tests run juntos-cli too (they build it on first use; built here, that is a no-op).
cargo build -j"$JOBS" -p juntos-client --bin juntos-cli
cargo test -j"$JOBS" --workspace

step "python bindings"
cargo build -j"$JOBS" -p juntos-client --lib
cargo build -j"$JOBS" -p juntos-client --features bindgen --bin uniffi-bindgen
bindings="$CARGO_TARGET_DIR/python-bindings"
rm -rf "$bindings" && mkdir -p "$bindings"
"$CARGO_TARGET_DIR/debug/uniffi-bindgen" generate --library "$CARGO_TARGET_DIR/debug/libjuntos_client.so" \
    --language python --out-dir "$bindings"
cp "$CARGO_TARGET_DIR/debug/libjuntos_client.so" "$bindings/"
# The generated package carries the licence, as Python packages do.
cp LICENSE-MIT LICENSE-APACHE "$bindings/"
JUNTOS_PY_BINDINGS="$bindings" JUNTOS_BIN="$CARGO_TARGET_DIR/debug/juntos" \
    python3 client-core/python/test_sign_in.py

step "all checks passed"
