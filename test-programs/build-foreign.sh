#!/usr/bin/env bash
# Builds nimbus's foreign-toolchain test components: two tiny wasi:http 0.2
# "hello" components made by third-party toolchains, so the end-to-end tests
# can show that any wasi:http 0.2 component works, whatever built it.
#
#   js-hello.wasm  JavaScript, jco componentize (componentize-js / StarlingMonkey)
#   py-hello.wasm  Python, componentize-py
#
# Both answer any request with 200 and the body
#   "<greeting> from <javascript|python> <path-with-query>"
# where <greeting> is the GREETING environment variable, or "hello" if unset.
# Both target the world in wit/world.wit (wasi:http/proxy@0.2.12 plus
# wasi:cli/environment@0.2.12).
#
# Usage: test-programs/build-foreign.sh [OUT_DIR]
#   OUT_DIR defaults to <repo>/target/test-programs/foreign.
#
# Needs node >= 20 with npm, and python3 (>= 3.9) with pip; reaches only the
# npm registry and PyPI, and only when a toolchain is missing:
#   - npm install --no-save into test-programs/js-hello/node_modules (versions
#     pinned by js-hello/package.json and package-lock.json);
#   - pip install --target componentize-py==$COMPONENTIZE_PY_VERSION into
#     $NIMBUS_FOREIGN_TOOLCHAINS (default <repo>/target/test-programs/toolchains),
#     no virtualenv and no change to the system Python.
# A component is rebuilt only when its inputs (source, WIT, toolchain pins)
# change; FORCE_REBUILD=1 rebuilds both. Environment overrides: PYTHON, NODE, NPM.
set -Eeuo pipefail

COMPONENTIZE_PY_VERSION=0.25.1

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
OUT=${1:-$REPO/target/test-programs/foreign}
TOOLCHAINS=${NIMBUS_FOREIGN_TOOLCHAINS:-$REPO/target/test-programs/toolchains}
PYTHON=${PYTHON:-python3}
NODE=${NODE:-node}
NPM=${NPM:-npm}
FORCE_REBUILD=${FORCE_REBUILD:-0}

log() { printf '[build-foreign] %s\n' "$*" >&2; }
die() { printf '[build-foreign] ERROR: %s\n' "$*" >&2; exit 1; }
trap 'printf "[build-foreign] ERROR: command failed (exit %s) at line %s: %s\n" "$?" "$LINENO" "$BASH_COMMAND" >&2' ERR

need() { command -v "$1" >/dev/null 2>&1 || die "'$1' not found on PATH ($2)"; }
hash_of() { # sha256 over the given files' names and contents, in a fixed order
    local f
    for f in "$@"; do printf '%s\n' "${f#"$HERE"/}"; cat "$f"; done | sha256sum | cut -d' ' -f1
}
size_of() { stat -c %s "$1"; }

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# Test processes run this script concurrently: one at a time, or two npm
# installs corrupt node_modules.
exec 9>"$OUT/.build.lock"
flock 9
log "output directory: $OUT"

mapfile -t WIT_FILES < <(find "$HERE/wit" -name '*.wit' -type f | LC_ALL=C sort)
[ "${#WIT_FILES[@]}" -gt 0 ] || die "no WIT files under $HERE/wit"

# ---------------------------------------------------------------- JavaScript
JS_DIR=$HERE/js-hello

js_toolchain() {
    need "$NODE" "install Node.js >= 20"
    need "$NPM" "install npm"
    local major
    major=$("$NODE" -p 'process.versions.node.split(".")[0]')
    [ "$major" -ge 20 ] || die "node >= 20 is needed, found $("$NODE" --version)"
    local want have=""
    want=$(hash_of "$JS_DIR/package.json" "$JS_DIR/package-lock.json")
    [ -f "$JS_DIR/node_modules/.nimbus-lock-hash" ] && have=$(cat "$JS_DIR/node_modules/.nimbus-lock-hash")
    if [ "$want" = "$have" ] && [ -x "$JS_DIR/node_modules/.bin/jco" ]; then
        log "js: toolchain up to date (node $("$NODE" --version), $(jco_version))"
        return
    fi
    log "js: installing toolchain: npm install --no-save in $JS_DIR (node $("$NODE" --version), npm $("$NPM" --version 2>/dev/null))"
    # Not `npm ci`: it refuses a lock file that lacks optional native packages
    # for other platforms when the registry in use does not carry them all.
    # `npm install --no-save` installs the versions package-lock.json pins
    # (checking their integrity hashes) and never rewrites it.
    (cd "$JS_DIR" && "$NPM" install --no-save --no-audit --no-fund) || die "npm install failed in $JS_DIR"
    [ -x "$JS_DIR/node_modules/.bin/jco" ] || die "npm install did not install jco"
    printf '%s\n' "$want" >"$JS_DIR/node_modules/.nimbus-lock-hash"
    log "js: installed $(jco_version)"
}
jco_version() {
    "$NODE" -p 'const m = "/node_modules/@bytecodealliance/"; const v = (p) => require(process.argv[1] + m + p + "/package.json").version; `jco ${v("jco")}, componentize-js ${v("componentize-js")}`' "$JS_DIR"
}

build_js() {
    local out=$OUT/js-hello.wasm stamp=$OUT/.js-hello.inputs
    js_toolchain
    local inputs
    inputs=$(hash_of "$JS_DIR/app.js" "$JS_DIR/package.json" "$JS_DIR/package-lock.json" "${WIT_FILES[@]}")
    if [ "$FORCE_REBUILD" != 1 ] && [ -f "$out" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$inputs" ]; then
        log "js: $out is up to date ($(size_of "$out") bytes), skipping"
        return
    fi
    log "js: building $out (jco componentize js-hello/app.js --wit wit --world-name hello)"
    rm -f "$stamp" "$out.tmp"
    local start=$SECONDS
    "$NODE" "$JS_DIR/node_modules/@bytecodealliance/jco/dist/jco.js" componentize \
        "$JS_DIR/app.js" --wit "$HERE/wit" --world-name hello -o "$out.tmp" ||
        die "jco componentize failed for js-hello"
    [ -s "$out.tmp" ] || die "jco componentize wrote no component"
    mv -f "$out.tmp" "$out"
    printf '%s\n' "$inputs" >"$stamp"
    log "js: built $out ($(size_of "$out") bytes) in $((SECONDS - start)) s"
}

# -------------------------------------------------------------------- Python
PY_DIR=$HERE/py-hello
PY_TOOL=$TOOLCHAINS/componentize-py-$COMPONENTIZE_PY_VERSION

componentize_py() {
    PYTHONPATH=$PY_TOOL PYTHONDONTWRITEBYTECODE=1 "$PYTHON" -c \
        'import sys; from componentize_py import script; sys.argv[0] = "componentize-py"; sys.exit(script())' "$@"
}

py_toolchain() {
    need "$PYTHON" "install Python >= 3.9 with pip"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 9))' ||
        die "Python >= 3.9 is needed, found $("$PYTHON" --version 2>&1)"
    if [ -f "$PY_TOOL/.complete" ]; then
        log "py: toolchain up to date (componentize-py $COMPONENTIZE_PY_VERSION in $PY_TOOL, $("$PYTHON" --version 2>&1))"
        return
    fi
    "$PYTHON" -m pip --version >/dev/null 2>&1 || die "pip is not available for $PYTHON (install python3-pip)"
    log "py: installing toolchain: pip install componentize-py==$COMPONENTIZE_PY_VERSION into $PY_TOOL"
    rm -rf "$PY_TOOL" "$PY_TOOL.tmp"
    mkdir -p "$TOOLCHAINS"
    # --target installs outside any environment: no venv needed, and Debian's
    # externally-managed-environment guard does not apply.
    PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install --disable-pip-version-check --no-input \
        --no-warn-script-location --only-binary=:all: \
        --target "$PY_TOOL.tmp" "componentize-py==$COMPONENTIZE_PY_VERSION" ||
        die "pip install componentize-py==$COMPONENTIZE_PY_VERSION failed"
    mv "$PY_TOOL.tmp" "$PY_TOOL"
    componentize_py --version >/dev/null || die "componentize-py does not run after install"
    touch "$PY_TOOL/.complete"
    log "py: installed $(componentize_py --version)"
}

build_py() {
    local out=$OUT/py-hello.wasm stamp=$OUT/.py-hello.inputs
    py_toolchain
    local inputs
    inputs=$( (printf 'componentize-py %s\n' "$COMPONENTIZE_PY_VERSION"; hash_of "$PY_DIR/app.py" "${WIT_FILES[@]}") | sha256sum | cut -d' ' -f1)
    if [ "$FORCE_REBUILD" != 1 ] && [ -f "$out" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$inputs" ]; then
        log "py: $out is up to date ($(size_of "$out") bytes), skipping"
        return
    fi
    log "py: building $out (componentize-py -d wit -w hello componentize app)"
    rm -f "$stamp" "$out.tmp"
    # Build from a copy of the source so nothing (e.g. __pycache__) is written
    # into the source tree.
    local stage=$OUT/.build/py-hello
    rm -rf "$stage"
    mkdir -p "$stage"
    cp "$PY_DIR/app.py" "$stage/"
    local start=$SECONDS
    (cd "$stage" && componentize_py -d "$HERE/wit" -w hello componentize app -p . -o "$out.tmp") ||
        die "componentize-py failed for py-hello"
    [ -s "$out.tmp" ] || die "componentize-py wrote no component"
    mv -f "$out.tmp" "$out"
    rm -rf "$OUT/.build"
    printf '%s\n' "$inputs" >"$stamp"
    log "py: built $out ($(size_of "$out") bytes) in $((SECONDS - start)) s"
}

build_js
build_py
log "done: $OUT/js-hello.wasm $OUT/py-hello.wasm"
