#!/usr/bin/env bash
# CPU per proxied request and added latency: stickyroute vs HAProxy, same machine, same run.
#
# Three nginx backends on loopback answer a small static body; both proxies pin a sticky
# cookie workload (JSESSIONID=<hex>.jvm2) to the node named by the route suffix. For each
# target, wrk saturates it for DURATION and we read the proxy's CPU time (utime+stime from
# /proc/PID/stat) to get CPU µs per request; then oha runs a fixed, moderate rate for latency
# percentiles. Everything stays on 127.0.0.1 and every run is bounded in time.
#
# Needs: wrk, oha (cargo install oha --locked), haproxy, nginx (apt-get install haproxy nginx-light),
# and a release build (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-8s}
CONNS=${CONNS:-32}
RATE=${RATE:-2000}
BIN=${BIN:-target/release/stickyroute}
COOKIE="JSESSIONID=4F1CA9D2E6B7A1C3D5E7F9081726354A.jvm2"
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

for tool in wrk oha haproxy nginx; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }

# --- backends: one nginx, three servers (jvm1..jvm3 on 19081..19083)
cat > "$WORK/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:19081; location / { add_header X-Node jvm1; return 200 "jvm1 ok\n"; } }
  server { listen 127.0.0.1:19082; location / { add_header X-Node jvm2; return 200 "jvm2 ok\n"; } }
  server { listen 127.0.0.1:19083; location / { add_header X-Node jvm3; return 200 "jvm3 ok\n"; } }
}
EOF
nginx -c "$WORK/nginx.conf" -p "$WORK" & PIDS+=($!)

# --- stickyroute
cat > "$WORK/balancer.yaml" <<EOF
listeners: [{ bind: "127.0.0.1:19080" }]
pools:
  - name: app
    binder: translate
    nodes:
      - { route: jvm1, address: "127.0.0.1:19081" }
      - { route: jvm2, address: "127.0.0.1:19082" }
      - { route: jvm3, address: "127.0.0.1:19083" }
EOF
RUST_LOG=${SR_LOG:-warn} "$BIN" serve --threads "${SR_THREADS:-0}" -c "$WORK/balancer.yaml" > "$WORK/sr.log" 2>&1 & SR_PID=$!; PIDS+=($SR_PID)

# --- HAProxy: route by the text after the last '.' of JSESSIONID, round robin otherwise
cat > "$WORK/haproxy.cfg" <<EOF
global
  nbthread 2
defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
frontend fe
  bind 127.0.0.1:19090
  default_backend app
backend app
  balance roundrobin
  http-request set-var(txn.route) req.cook(JSESSIONID),regsub(^.*\\.,)
  use-server jvm1 if { var(txn.route) -m str jvm1 }
  use-server jvm2 if { var(txn.route) -m str jvm2 }
  use-server jvm3 if { var(txn.route) -m str jvm3 }
  server jvm1 127.0.0.1:19081
  server jvm2 127.0.0.1:19082
  server jvm3 127.0.0.1:19083
EOF
haproxy -f "$WORK/haproxy.cfg" -db > "$WORK/haproxy.log" 2>&1 & HA_PID=$!; PIDS+=($HA_PID)

for port in 19081 19080 19090; do
  for _ in $(seq 1 50); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
done
# Both proxies must pin the cookie to jvm2.
for port in 19080 19090; do
  got=$(curl -s -H "Cookie: $COOKIE" "http://127.0.0.1:$port/")
  [ "$got" = "jvm2 ok" ] || { echo "proxy on $port answered '$got' for a jvm2 session" >&2; exit 1; }
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

run_wrk() { # name port pid
  local before after out reqs
  [ -n "$3" ] && before=$(cpu_ticks "$3")
  out=$(wrk -t1 -c"$CONNS" -d"$DURATION" -H "Cookie: $COOKIE" "http://127.0.0.1:$2/")
  [ -n "$3" ] && after=$(cpu_ticks "$3")
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  local rps; rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  local errs; errs=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}' | tr '\n' ' ')
  if [ -n "$3" ]; then
    local cpu_us; cpu_us=$(awk -v t=$((after - before)) -v hz="$HZ" -v r="$reqs" 'BEGIN { printf "%.1f", t / hz * 1e6 / r }')
    printf "%-12s %10s req/s  %8s µs CPU/request  %s\n" "$1" "$rps" "$cpu_us" "$errs"
  else
    printf "%-12s %10s req/s  %8s                %s\n" "$1" "$rps" "-" "$errs"
  fi
}

run_oha() { # name port
  oha -z 8s -q "$RATE" -c 16 --no-tui --output-format json -H "Cookie: $COOKIE" "http://127.0.0.1:$2/" > "$WORK/oha-$1.json"
  python3 - "$1" "$WORK/oha-$1.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[2]))
p = d["latencyPercentiles"]
ok = d["statusCodeDistribution"]
print(f"{sys.argv[1]:<12} p50 {p['p50']*1e6:8.1f} µs  p90 {p['p90']*1e6:8.1f} µs  p99 {p['p99']*1e6:8.1f} µs  statuses {ok}")
PY
}

echo "== saturation (wrk -t1 -c$CONNS -d$DURATION, sticky cookie), proxy CPU per request"
run_wrk direct 19082 ""
run_wrk stickyroute 19080 "$SR_PID"
run_wrk haproxy 19090 "$HA_PID"
echo "== latency at a fixed rate (oha -q $RATE -c 16 -z 8s)"
run_oha direct 19082
run_oha stickyroute 19080
run_oha haproxy 19090
