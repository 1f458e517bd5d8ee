#!/usr/bin/env bash
# Benchmarks the routing API Copr polls: GET /api/v1/routing holding 500 rules, answered 200
# and 304, side by side with nginx serving the same JSON as a static file, with wrk (both from
# Debian's archive). Then the match over 500 rules inside the server (copr-pools bench --mode
# routing). Prints figures; asserts nothing.
#
#   [ROUNDS=3] [BIN=copr-pools binary] scripts/bench-routing.sh [SECONDS] [CONNECTIONS]
#
# Everything listens on 127.0.0.1 and is stopped by its PID at the end. On 2 cores wrk and
# the server share the CPU, as they do for nginx: the comparison is fair, the absolute
# figures are modest.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
connections=${2:-32}

if ! command -v wrk >/dev/null || { ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]]; }; then
    echo "==> installing wrk and nginx from Debian"
    sudo_="" ; [[ $(id -u) -ne 0 ]] && sudo_="sudo"
    $sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk nginx-light >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# BIN=path: measure that binary (another build, kept for a comparison) instead of building.
if [[ -z ${BIN:-} ]]; then
    echo "==> building copr-pools (release)"
    cargo build --release --locked -p copr-pools --bin copr-pools 2>&1 | tail -n 1
    BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/copr-pools
fi

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

port_app=3451
port_nginx=3452
export COPR_POOLS_DATABASE_URL="sqlite://$work/db.sqlite?mode=rwc"
export COPR_POOLS_DATA_DIR="$work/data" COPR_POOLS_LOG_DIR="$work/logs" COPR_POOLS_LOG=warn
export COPR_POOLS_LISTEN="127.0.0.1:$port_app" COPR_POOLS_XMLRPC_LISTEN="127.0.0.1:3453"
export COPR_POOLS_SITE_ROOT="$work/site" COPR_POOLS_ENGINE=false
unset COPR_POOLS_CONFIG

echo "==> 500 rules, a pool offering their tags, a token"
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
rules, team_tags = [], []
for i in range(500):
    pattern = [
        f"@group{i}/project[^/]*/.*(x86_64|aarch64)/pkg{i}",
        f"user{i}/.*/fedora-.*/(llvm|clang){i}",
        f"^@python/python3\\.{i}\\d*/.*/root$",
        f"@team{i}/big-.*",
    ][i % 4]
    tag = "on_demand_powerful" if i % 2 == 0 else f"team_team{i}"
    if i % 2:
        team_tags.append(tag)
    rules.append({"pattern": pattern, "tags": [tag]})
json.dump(rules, open(f"{work}/rules.json", "w"))
with open(f"{work}/pools.yaml", "w") as f:
    f.write("bench:\n  max: 0\n  cmd_new: 'true'\n  cmd_delete: 'true'\n")
    f.write("  tags: [copr_builder, arch_x86_64, " + ", ".join(team_tags) + "]\n")
    f.write("  tags_on_demand: [on_demand_powerful]\n")
PY
"$BIN" migrate >/dev/null
"$BIN" pools import "$work/pools.yaml" >/dev/null
"$BIN" routing import "$work/rules.json" --accept-warnings 2>/dev/null | tail -n 1
token=$("$BIN" token create bench 2>/dev/null)

"$BIN" serve 2>"$work/serve.log" &
pids+=($!)
for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$port_app/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
url="http://127.0.0.1:$port_app/api/v1/routing"
curl -fs -H "Authorization: Bearer $token" -D "$work/headers" -o "$work/routing.json" "$url"
etag=$(grep -i '^etag:' "$work/headers" | tr -d '\r' | cut -d' ' -f2-)
echo "    $(wc -c <"$work/routing.json") bytes of JSON, ETag $etag"

mkdir -p "$work/www"
cp "$work/routing.json" "$work/www/routing.json"
# nginx's workers run as www-data when started by root: let them read the file.
chmod 755 "$work" "$work/www"
chmod 644 "$work/www/routing.json"
cat >"$work/nginx.conf" <<CONF
worker_processes auto;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    etag on;
    client_body_temp_path $work/tmp;
    proxy_temp_path $work/tmp;
    fastcgi_temp_path $work/tmp;
    uwsgi_temp_path $work/tmp;
    scgi_temp_path $work/tmp;
    server {
        listen 127.0.0.1:$port_nginx;
        root $work/www;
        location = /routing.json { default_type application/json; }
    }
}
CONF
mkdir -p "$work/tmp"
"$NGINX" -c "$work/nginx.conf" -p "$work" &
pids+=($!)
for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$port_nginx/routing.json" -D "$work/nginx-headers" -o /dev/null 2>&1 && break
    sleep 0.1
done
nginx_etag=$(grep -i '^etag:' "$work/nginx-headers" | tr -d '\r' | cut -d' ' -f2-)

# wrk's summary: "requests/s p99" (p99 in ms), and a note of any non-2xx/3xx answer or socket
# error (there should be none).
measure() {
    local out
    out=$(wrk -t2 -c"$connections" -d"${seconds}s" --latency "$@" 2>&1)
    local extra
    extra=$(grep -E 'Non-2xx|Socket errors' <<<"$out" | xargs || true)
    [[ -n $extra ]] && echo "    wrk: $extra" >&2
    awk '/^Requests\/sec:/ { rps = $2 }
         $1 == "99%" { v = $2; ms = v + 0
                       if (v ~ /us$/) ms /= 1000; else if (v ~ /[^m]s$/) ms *= 1000 }
         END { printf "%s %.2f\n", rps, ms }' <<<"$out"
}

# The machine's other work moves single figures by ±20 %: the four cases run in turn, `rounds`
# times, and each is reported as its median, so a slow moment hits every case alike.
rounds=${ROUNDS:-3}
declare -A results
cases=(app200 nginx200 app304 nginx304)
echo "==> wrk: $connections connections, ${seconds} s each (2 threads), $rounds rounds"
for round in $(seq 1 "$rounds"); do
    results[app200]+="$(measure -H "Authorization: Bearer $token" "$url");"
    results[nginx200]+="$(measure "http://127.0.0.1:$port_nginx/routing.json");"
    results[app304]+="$(measure -H "Authorization: Bearer $token" -H "If-None-Match: $etag" "$url");"
    results[nginx304]+="$(measure -H "If-None-Match: $nginx_etag" "http://127.0.0.1:$port_nginx/routing.json");"
    echo "    round $round of $rounds done"
done
median() { tr ';' '\n' | awk -v f="$1" 'NF { print $f }' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
declare -A rps p99
for c in "${cases[@]}"; do
    rps[$c]=$(median 1 <<<"${results[$c]}")
    p99[$c]=$(median 2 <<<"${results[$c]}")
done
printf '%-36s %12s %10s %16s\n' "median of $rounds rounds" "requests/s" "p99 (ms)" "copr-pools/nginx"
row() { printf '%-36s %12.0f %10s %16s\n' "$1" "${rps[$2]}" "${p99[$2]}" "$3"; }
ratio() { awk -v a="${rps[$1]}" -v b="${rps[$2]}" 'BEGIN { printf "%.2fx", a / b }'; }
row "copr-pools 200 (JSON, 500 rules)" app200 "$(ratio app200 nginx200)"
row "nginx      200 (same file)" nginx200 ""
row "copr-pools 304 (If-None-Match)" app304 "$(ratio app304 nginx304)"
row "nginx      304 (If-None-Match)" nginx304 ""

echo "==> the match over 500 rules, inside the server"
"$BIN" bench --mode routing | tail -n 1
