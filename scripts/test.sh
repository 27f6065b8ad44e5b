#!/usr/bin/env bash
# Runs every test of the project: formatting, lints, unit and integration tests (in-process HTTP,
# real sockets, the real binary with kill -9 and signals), then the official @cloudbase/js-sdk
# against the real binary (sdk-compat/, Node.js 20+). Installs nothing but sdk-compat's pinned
# npm packages (npm ci).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust from https://rustup.rs first" >&2
  exit 1
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked

# The unmodified official @cloudbase/js-sdk against the real binary that `cargo test` just built
# (sdk-compat/README.md). Node >= 20 and npm are needed; `npm ci` installs the pinned SDK.
echo "== sdk-compat (@cloudbase/js-sdk against lightbase)"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "node/npm not found: install Node.js 20 or newer to run sdk-compat" >&2
  exit 1
fi
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps --locked |
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')
export LIGHTBASE_BIN="$TARGET_DIR/debug/lightbase"
(cd sdk-compat && npm ci --ignore-scripts --no-audit --no-fund && npm test)
