#!/usr/bin/env bash
# Checks the dependency tree against deny.toml with cargo-deny: known advisories (from the
# snapshot of the RustSec advisory database in supply-chain/, since this machine cannot reach
# GitHub), licenses, and sources. Prints the snapshot's date so nobody mistakes it for today's.
set -euo pipefail
cd "$(dirname "$0")/.."

snapshot=supply-chain/advisory-db.tar.xz
# cargo-deny keeps each database under db-path in a directory named after its URL.
db=target/advisory-dbs/advisory-db-3157b0e258782691
if [[ ! -f $db/SNAPSHOT || $snapshot -nt $db/SNAPSHOT ]]; then
    rm -rf "$db"
    mkdir -p "$db"
    tar -xJf "$snapshot" -C "$db" --strip-components=1
    # cargo-deny reads the database's age from .git/FETCH_HEAD: the snapshot's own date.
    mkdir -p "$db/.git"
    touch -d "$(awk '$1 == "date" { print $2 }' "$db/SNAPSHOT")" "$db/.git/FETCH_HEAD"
fi
echo "advisory database: $(tr '\n' ' ' < "$db/SNAPSHOT")"
# cargo-deny reads the crate graph offline: the crates must be here (from crates.io).
cargo fetch --locked --quiet
exec cargo deny --offline check
