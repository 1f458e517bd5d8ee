#!/usr/bin/env bash
# Sets up this machine, builds copr-pools (release) and runs it on its embedded defaults:
# SQLite under ./data/, the web UI on http://127.0.0.1:3000, resalloc's XML-RPC API on
# 127.0.0.1:49100, and the development sign-in (loopback only).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/end2end/node_modules/.bin:$PATH"
echo "==> building (release)"
cargo leptos build --release
echo "==> starting copr-pools on http://127.0.0.1:3000 (Ctrl-C stops it)"
exec env COPR_POOLS_CONFIG="${COPR_POOLS_CONFIG:-config/local.toml}" target/release/copr-pools serve
