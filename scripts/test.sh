#!/usr/bin/env bash
# Sets up this machine and runs every test: the supply-chain policy (cargo deny), the Rust unit
# and integration tests (SQLite, and PostgreSQL when it answers at
# postgres://postgres@127.0.0.1:5432/test), then the browser tests in Debian's Chromium against
# the built server. Exits non-zero if anything fails and
# ends with each runner's summary.
set -uo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

scripts/setup.sh --browser || exit 1
export PATH="$PWD/end2end/node_modules/.bin:$PATH"
mkdir -p target
failed=0

echo "==> supply chain (cargo deny: advisories, licenses, sources)"
scripts/supply-chain.sh 2>&1 | tee target/cargo-deny.log
[[ ${PIPESTATUS[0]} -eq 0 ]] || failed=1

echo "==> cargo test (unit, integration, engine properties)"
cargo test --workspace --locked 2>&1 | tee target/cargo-test.log
[[ ${PIPESTATUS[0]} -eq 0 ]] || failed=1

echo "==> building the site for the browser tests"
if cargo leptos build 2>&1 | tail -n 3; then
    echo "==> browser tests (Playwright, Chromium)"
    (cd end2end && npx playwright test 2>&1) | tee target/playwright.log
    [[ ${PIPESTATUS[0]} -eq 0 ]] || failed=1
else
    echo "the site did not build; browser tests not run"
    failed=1
fi

echo
echo "==> summary"
grep -E '^test result:' target/cargo-test.log | awk '{ p += $4; f += $6 } END { printf "cargo test: %d passed, %d failed (%d test binaries)\n", p, f, NR }'
grep -E '^\s+[0-9]+ (passed|failed|flaky|skipped)' target/playwright.log 2>/dev/null | sed 's/^ */playwright: /'
grep -E '^advisories ' target/cargo-deny.log | sed 's/^/cargo deny: /'
echo "total time: $(( $(date +%s) - started )) s"
if [[ $failed -ne 0 ]]; then
    echo "FAILED"
    exit 1
fi
echo "all tests passed"
