#!/usr/bin/env bash
# Soak test on loopback: the release binary in front of three demo nodes at a fixed request rate
# for a fixed time, the balancer's RSS sampled every SAMPLE seconds to a CSV, and a summary:
# RSS at 1 min, at the end, the maximum, and the growth from 1 min to the end (flat after
# warm-up means growth under MAX_GROWTH_PCT; the exit status is 1 otherwise, or when a request
# failed).
#
#   cargo build --release && scripts/soak.sh                 # 10 min at 2,000 req/s
#   DURATION=60 RATE=500 scripts/soak.sh                     # a short run
#
# The workload is GET /count: 9 requests in 10 carry one of SESSIONS existing sessions (sticky
# hits, spread over the three nodes), 1 in 10 carries no cookie (a new session, spread by p2c).
# The balancer's registry forgets sessions after `session.idle_timeout: 1m` and the nodes after
# `--session-timeout 1m`, so the new sessions reach a steady state after the first minute
# instead of growing the registry for the whole run (that growth is by design and bounded by
# `registry.max_sessions`; it is not what a soak looks for).
#
# Load generator (LOADGEN): `wrk` (default) with a Lua script that paces every connection
# (`delay()`) and rotates the sessions, which comes within a few percent of RATE (each
# connection waits the pacing interval plus the response time), or `oha` (on PATH or in
# ~/.cargo/bin) with `-q`, a true fixed rate but one session for the sticky part. The achieved
# rate is printed either way, from the balancer's own request counter.
#
# Environment: DURATION (seconds, default 600, at most 3600), RATE (req/s, default 2000, at
# most 20000), CONNECTIONS (default 20), SAMPLE (seconds between RSS samples, default 10),
# SESSIONS (default 300), MAX_GROWTH_PCT (default 10), BASE_PORT (default 29080: balancer, nodes
# on the next three ports), BIN (default target/release/stickyroute, or
# $CARGO_TARGET_DIR/release/stickyroute), OUT (directory for soak.csv and the logs; default a new
# temporary directory, kept and printed), LOADGEN (wrk or oha, default wrk).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-600}"
RATE="${RATE:-2000}"
CONNECTIONS="${CONNECTIONS:-20}"
SAMPLE="${SAMPLE:-10}"
SESSIONS="${SESSIONS:-300}"
MAX_GROWTH_PCT="${MAX_GROWTH_PCT:-10}"
BASE_PORT="${BASE_PORT:-29080}"
BIN="${BIN:-${CARGO_TARGET_DIR:-target}/release/stickyroute}"

die() { echo "soak: $*" >&2; exit 2; }
num() { [[ "$1" =~ ^[0-9]+$ ]]; }
num "$DURATION" && ((DURATION >= 10 && DURATION <= 3600)) || die "DURATION must be 10..3600 seconds"
num "$RATE" && ((RATE >= 1 && RATE <= 20000)) || die "RATE must be 1..20000"
num "$CONNECTIONS" && ((CONNECTIONS >= 1 && CONNECTIONS <= 256)) || die "CONNECTIONS must be 1..256"
num "$SAMPLE" && ((SAMPLE >= 1 && SAMPLE <= DURATION)) || die "SAMPLE must be 1..DURATION"
num "$SESSIONS" && ((SESSIONS >= 1 && SESSIONS <= 10000)) || die "SESSIONS must be 1..10000"
num "$MAX_GROWTH_PCT" || die "MAX_GROWTH_PCT must be a whole number"
num "$BASE_PORT" && ((BASE_PORT >= 1024 && BASE_PORT <= 65530)) || die "BASE_PORT must be 1024..65530"
[ -x "$BIN" ] || die "$BIN not found: run 'cargo build --release' first (or set BIN)"
command -v curl >/dev/null || die "curl is needed"

LOADGEN="${LOADGEN:-wrk}"
OHA=""
case $LOADGEN in
  wrk) command -v wrk >/dev/null || die "wrk not found (apt-get install wrk), or set LOADGEN=oha" ;;
  oha)
    if command -v oha >/dev/null; then OHA="$(command -v oha)"; elif [ -x "$HOME/.cargo/bin/oha" ]; then OHA="$HOME/.cargo/bin/oha"; fi
    [ -n "$OHA" ] || die "oha not found (cargo install oha --locked)"
    ;;
  *) die "LOADGEN must be wrk or oha" ;;
esac

# shellcheck source=scripts/lib/demo-pool.sh
. scripts/lib/demo-pool.sh
check_ports

OUT="${OUT:-$(mktemp -d /tmp/stickyroute-soak.XXXXXX)}"
mkdir -p "$OUT"
cleanup() {
  stop_started
}
trap cleanup EXIT

export RUST_LOG=warn
start_nodes "$OUT" 1m
cat >"$OUT/balancer.yaml" <<EOF
listeners:
  - bind: "127.0.0.1:$LB_PORT"
admin:
  bind: "127.0.0.1:$ADMIN_PORT"
session:
  idle_timeout: 1m
pools:
  - name: app
    nodes:
      - { route: jvm1, address: "127.0.0.1:$((BASE_PORT + 1))" }
      - { route: jvm2, address: "127.0.0.1:$((BASE_PORT + 2))" }
      - { route: jvm3, address: "127.0.0.1:$((BASE_PORT + 3))" }
EOF
"$BIN" serve --config "$OUT/balancer.yaml" --grace 1s >"$OUT/balancer.log" 2>&1 &
lb_pid=$!
pids+=("$lb_pid")

LB="http://127.0.0.1:$LB_PORT"
up=0
for _ in $(seq 1 50); do
  if curl -fsS -o /dev/null --max-time 1 "$LB/health" 2>/dev/null; then up=1; break; fi
  sleep 0.2
done
((up)) || { cat "$OUT/balancer.log" >&2; die "the balancer did not answer within 10 s"; }

# The sessions of the sticky part, created through the balancer (spread over the nodes).
: >"$OUT/sessions"
for _ in $(seq 1 "$SESSIONS"); do
  curl -fsS --max-time 5 -D - -o /dev/null "$LB/count" |
    tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: JSESSIONID=\([^;]*\).*/\1/p' >>"$OUT/sessions"
done
[ "$(wc -l <"$OUT/sessions")" -eq "$SESSIONS" ] || die "could not create $SESSIONS sessions"

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
metric() { # sum of a counter family on the admin listener
  curl -fsS --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" |
    awk -v m="$1" 'index($0, m) == 1 { s += $NF } END { printf "%.0f", s + 0 }'
}

# The load generator, in the background, bounded by its own duration and by `timeout`.
if [ -n "$OHA" ]; then
  # oha takes one cookie for the run: the sticky part is one session per connection set; a
  # second oha run at a tenth of the rate is the new-session part.
  sid="$(sed -n 1p "$OUT/sessions")"
  timeout $((DURATION + 30)) "$OHA" --no-tui -z "${DURATION}s" -c "$CONNECTIONS" \
    -q $((RATE * 9 / 10)) -H "Cookie: JSESSIONID=$sid" "$LB/count" >"$OUT/load.txt" 2>&1 &
  load_pid=$!
  pids+=("$load_pid")
  timeout $((DURATION + 30)) "$OHA" --no-tui -z "${DURATION}s" -c 2 \
    -q $((RATE / 10 > 0 ? RATE / 10 : 1)) "$LB/count" >"$OUT/load-new.txt" 2>&1 &
  pids+=($!)
  tool="oha $({ "$OHA" --version 2>&1 || true; } | awk 'NR == 1 { print $2 }') -q $RATE (90 % sticky on one session, 10 % new)"
else
  cat >"$OUT/soak.lua" <<'EOF'
-- Paced GET /count: every connection waits `interval` ms before each request; 1 in 10
-- carries no cookie (a new session), the others cycle through the ids in the sessions file.
local ids, n, interval = {}, 0, tonumber(os.getenv("SOAK_INTERVAL_MS"))
for line in io.lines(os.getenv("SOAK_SESSIONS")) do ids[#ids + 1] = line end
function init(args) n = math.random(1, #ids) end
function delay() return interval end
function request()
  n = n + 1
  if n % 10 == 0 then return wrk.format("GET", "/count") end
  return wrk.format("GET", "/count", { ["Cookie"] = "JSESSIONID=" .. ids[n % #ids + 1] })
end
EOF
  threads=2
  ((CONNECTIONS < threads)) && threads=$CONNECTIONS
  export SOAK_SESSIONS="$OUT/sessions"
  export SOAK_INTERVAL_MS=$((CONNECTIONS * 1000 / RATE))
  ((SOAK_INTERVAL_MS >= 1)) || die "RATE too high for $CONNECTIONS connections: raise CONNECTIONS"
  timeout $((DURATION + 30)) wrk -t "$threads" -c "$CONNECTIONS" -d "${DURATION}s" --latency \
    -s "$OUT/soak.lua" "$LB/count" >"$OUT/load.txt" 2>&1 &
  load_pid=$!
  pids+=("$load_pid")
  tool="wrk $({ wrk -v 2>&1 || true; } | awk 'NR == 1 { print $2 }'), $CONNECTIONS connections paced at ${SOAK_INTERVAL_MS} ms (90 % sticky over $SESSIONS sessions, 10 % new)"
fi

echo "soak: $DURATION s at $RATE req/s against $LB (balancer pid $lb_pid); samples in $OUT/soak.csv" >&2
echo "t_s,rss_kib,requests_total" >"$OUT/soak.csv"
start=$(date +%s)
rss0="$(rss_kib "$lb_pid")"
echo "0,$rss0,$(metric stickyroute_requests_total)" >>"$OUT/soak.csv"
next=$SAMPLE
while kill -0 "$load_pid" 2>/dev/null; do
  now=$(($(date +%s) - start))
  if ((now >= next)); then
    kill -0 "$lb_pid" 2>/dev/null || die "the balancer exited during the soak (log: $OUT/balancer.log)"
    echo "$now,$(rss_kib "$lb_pid"),$(metric stickyroute_requests_total)" >>"$OUT/soak.csv"
    next=$((next + SAMPLE))
  fi
  ((now <= DURATION + 60)) || die "the load generator did not stop"
  sleep 1
done
wait "$load_pid" || true
end_rss="$(rss_kib "$lb_pid")"
total="$(metric stickyroute_requests_total)"
errors="$(curl -fsS --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" |
  awk '/^stickyroute_requests_total/ && !/status_class="2xx"/ { s += $NF } END { printf "%.0f", s + 0 }')"
echo "$(($(date +%s) - start)),$end_rss,$total" >>"$OUT/soak.csv"

echo
echo "stickyroute soak: $(nproc) CPU(s), $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || echo unknown CPU)"
echo "load: $tool"
echo "balancer: $BIN serve (one thread per core, access log off), 3 demo nodes (memory store)"
echo
echo "every minute:"
printf '%8s %12s %14s %10s\n' "t (s)" "RSS (KiB)" "requests" "req/s"
awk -F, 'NR > 1 { t[NR] = $1; r[NR] = $2; n[NR] = $3; last = NR }
  END {
    mark = 0
    for (i = 2; i <= last; i++) {
      if (t[i] < mark && i < last) continue
      rps = (i > 2 && t[i] > pt) ? (n[i] - pn) / (t[i] - pt) : 0
      printf "%8d %12d %14d %10.0f\n", t[i], r[i], n[i], rps
      pt = t[i]; pn = n[i]
      while (mark <= t[i]) mark += 60
    }
  }' "$OUT/soak.csv"
# Whatever the sample period, "at 1 min" is the first sample at or after 60 s (or the first
# one, for a run shorter than 2 minutes).
awk -F, -v limit="$MAX_GROWTH_PCT" -v errors="$errors" -v dur="$DURATION" 'NR > 1 {
    if (at1 == "" && ($1 >= 60 || dur < 120)) { at1 = $2; t1 = $1 }
    if ($2 > max) max = $2
    end = $2; t = $1; n = $3
  } END {
    growth = at1 > 0 ? (end - at1) * 100 / at1 : 0
    printf "\nrequests %d (%.0f req/s), not 2xx: %d\n", n, (t > 0 ? n / t : 0), errors
    printf "RSS KiB: at %d s %d, at end %d, max %d; growth after warm-up %.1f %% (limit %d %%)\n", t1, at1, end, max, growth, limit
    ok = growth < limit && errors == 0
    print (ok ? "soak: PASS" : "soak: FAIL")
    exit(ok ? 0 : 1)
  }' "$OUT/soak.csv"
