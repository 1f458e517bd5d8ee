#!/usr/bin/env bash
# Installs what building (and, with --browser, testing) copr-pools needs on a machine with
# Rust, Node/npm and apt. Everything comes from the package registries (crates.io, npm,
# Debian); nothing is downloaded from anywhere else. A second run skips what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

# --browser: also what the tests need (Chromium, cargo-deny).
testing=no
[[ "${1:-}" == "--browser" ]] && testing=yes

step() { printf '==> %s\n' "$*"; }
have() { command -v "$1" >/dev/null 2>&1; }

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    step "adding the wasm32-unknown-unknown Rust target"
    rustup target add wasm32-unknown-unknown
fi

# 0.3.11 needs a newer rustc than this machine's 1.95; no_downloads keeps it from fetching
# tools from GitHub.
if ! cargo leptos --version 2>/dev/null | grep -qw '0.3.10'; then
    step "installing cargo-leptos 0.3.10 (about 14 minutes on 2 cores)"
    cargo install cargo-leptos --version 0.3.10 --locked --features no_downloads
fi

# cargo-leptos calls wasm-bindgen from PATH and does not check that it matches the
# wasm-bindgen crate in Cargo.lock; a mismatch breaks the build.
bindgen=$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if ! wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen $bindgen"; then
    step "installing wasm-bindgen-cli $bindgen (matches Cargo.lock)"
    # Not --locked: that version's lockfile pins a yanked crate.
    cargo install wasm-bindgen-cli --version "$bindgen" --force
fi

# npm packages: Playwright (no browser download), the test OIDC provider, and binaryen's
# wasm-opt (Debian's older wasm-opt produces WASM that breaks hydration).
if [[ ! -f end2end/node_modules/.package-lock.json || end2end/package-lock.json -nt end2end/node_modules/.package-lock.json ]]; then
    step "installing npm packages (npm ci)"
    (cd end2end && npm ci --no-audit --no-fund)
fi

if [[ $testing == yes ]] && ! cargo deny --version 2>/dev/null | grep -qw '0.20.2'; then
    step "installing cargo-deny 0.20.2 (about 3 minutes on 2 cores)"
    cargo install cargo-deny --version 0.20.2 --locked
fi

if [[ $testing == yes ]] && ! have chromium; then
    step "installing Debian's chromium"
    sudo=""
    [[ $(id -u) -ne 0 ]] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
step "tools ready"
