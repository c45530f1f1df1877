#!/usr/bin/env bash
# Builds hello.wasm next to nimbus.toml.
set -euo pipefail
cd "$(dirname "$0")"
rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
cargo build --quiet --release --target wasm32-wasip2 --target-dir ../../target/examples
cp ../../target/examples/wasm32-wasip2/release/hello.wasm hello.wasm
echo "built $(pwd)/hello.wasm"
