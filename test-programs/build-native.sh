#!/usr/bin/env bash
# Builds and stages nimbus's native "process" test functions (AWS Lambda
# Runtime API clients) into DEST:
#
#   DEST/rust/bootstrap    Rust, official lambda_runtime crate (host target)
#   DEST/python/app.py     Python handler for awslambdaric
#                          (run: cd DEST/python && python3 -m awslambdaric app.handler)
#   DEST/shell/bootstrap   POSIX sh + curl custom runtime
#
# Usage: test-programs/build-native.sh DEST
# The Rust fixture builds with --locked into <repo>/target/lambda-programs
# (its own target dir, so it never contends with the main build's locks).
# Environment override: CARGO.
set -Eeuo pipefail

log() { printf '[build-native] %s\n' "$*" >&2; }
die() { printf '[build-native] ERROR: %s\n' "$*" >&2; exit 1; }

[ $# -eq 1 ] && [ -n "$1" ] || die "usage: $0 DEST"
mkdir -p "$1" || die "cannot create $1"
DEST=$(cd "$1" && pwd)
# Test processes run this script concurrently: one at a time.
exec 9>"$DEST/.build.lock"
flock 9

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
cd "$REPO"
CARGO=${CARGO:-cargo}

# Tests run this script from several processes at once: replace a staged
# file only when it changed, and atomically (a node may be executing it).
stage() {
    local src=$1 dest=$2
    if cmp -s "$src" "$dest"; then return 0; fi
    cp -fp "$src" "$dest.tmp.$$" && mv -f "$dest.tmp.$$" "$dest"
}
command -v "$CARGO" >/dev/null 2>&1 || die "'$CARGO' not found on PATH"

# --- Rust
MANIFEST=test-programs/lambda/rust/Cargo.toml
TARGET_DIR=target/lambda-programs
log "rust: $CARGO build --release --locked --manifest-path $MANIFEST --target-dir $TARGET_DIR"
"$CARGO" build --release --locked --manifest-path "$MANIFEST" --target-dir "$TARGET_DIR" ||
    die "cargo build of the Rust fixture failed"
BIN=$TARGET_DIR/release/bootstrap
[ -x "$BIN" ] || die "cargo did not produce $BIN"
mkdir -p "$DEST/rust"
stage "$BIN" "$DEST/rust/bootstrap"
log "rust: copied $BIN -> $DEST/rust/bootstrap ($(stat -c %s "$DEST/rust/bootstrap") bytes)"

# --- Python (source only; no __pycache__)
mkdir -p "$DEST/python"
stage test-programs/lambda/python/app.py "$DEST/python/app.py" || die "copying the Python fixture failed"
log "python: copied test-programs/lambda/python/app.py -> $DEST/python/app.py"
python3 -c 'import awslambdaric' >/dev/null 2>&1 ||
    log "python: note: python3 cannot import awslambdaric (pip install awslambdaric==4.2.2) -- needed to run it"

# --- Shell (cp -p keeps the exec bit)
mkdir -p "$DEST/shell"
stage test-programs/lambda/shell/bootstrap "$DEST/shell/bootstrap" || die "copying the shell fixture failed"
chmod +x "$DEST/shell/bootstrap"
log "shell: copied test-programs/lambda/shell/bootstrap -> $DEST/shell/bootstrap"
command -v curl >/dev/null 2>&1 || log "shell: note: curl is not on PATH -- needed to run it"

log "done: $DEST/{rust/bootstrap,python/app.py,shell/bootstrap}"
