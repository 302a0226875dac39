#!/usr/bin/env bash
# Load test on loopback with oha and wrk: one demo node alone vs. the same node through the
# balancer, for two workloads:
#   sticky       every request carries one existing session, `Cookie: JSESSIONID=<id>.jvm2`
#                (GET /count: load, increment, save the session on jvm2);
#   new-session  no cookie: every request creates a session (the balancer spreads them, p2c).
# It starts three demo nodes (memory store) and the balancer from the release binary, runs each
# case for DURATION seconds, and prints a summary; for runs through the balancer it also prints
# the balancer's CPU time per request (from /proc).
#
#   cargo build --release && scripts/loadtest.sh
#
# Environment: DURATION (seconds per run, default 10, at most 60), CONNECTIONS (default 32, at
# most 64), THREADS (wrk threads, default 2), BASE_PORT (default 28080: balancer; nodes on the
# next three ports), BIN (default target/release/stickyroute), TOOLS (default "oha wrk").
# Needs curl; oha (`cargo install oha --locked`) and/or wrk (`apt-get install wrk`).
# The load generator, the balancer and the nodes share this machine's cores: compare runs of one
# invocation with each other, not with numbers from elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN="${BIN:-target/release/stickyroute}"
DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-32}"
THREADS="${THREADS:-2}"
BASE_PORT="${BASE_PORT:-28080}"
TOOLS="${TOOLS:-oha wrk}"

die() { echo "loadtest: $*" >&2; exit 1; }
[[ "$DURATION" =~ ^[0-9]+$ ]] && ((DURATION >= 1 && DURATION <= 60)) || die "DURATION must be 1..60 seconds"
[[ "$CONNECTIONS" =~ ^[0-9]+$ ]] && ((CONNECTIONS >= 1 && CONNECTIONS <= 64)) || die "CONNECTIONS must be 1..64"
[[ "$THREADS" =~ ^[0-9]+$ ]] && ((THREADS >= 1 && THREADS <= CONNECTIONS)) || die "THREADS must be 1..CONNECTIONS"
[[ "$BASE_PORT" =~ ^[0-9]+$ ]] && ((BASE_PORT >= 1024 && BASE_PORT <= 65532)) || die "BASE_PORT must be 1024..65532"
[ -x "$BIN" ] || die "$BIN not found: run 'cargo build --release' first (or set BIN)"
command -v curl >/dev/null || die "curl is needed"
tools=()
for t in $TOOLS; do
  if command -v "$t" >/dev/null; then tools+=("$t"); else echo "loadtest: $t not found, skipped" >&2; fi
done
((${#tools[@]} > 0)) || die "neither oha nor wrk found (cargo install oha --locked; apt-get install wrk)"

LB_PORT=$BASE_PORT
for p in $LB_PORT $((BASE_PORT + 1)) $((BASE_PORT + 2)) $((BASE_PORT + 3)); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then die "port $p is in use; set BASE_PORT"; fi
done

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Logs at warn: an access log line per request would measure the terminal, not the proxy.
export RUST_LOG=warn
for i in 1 2 3; do
  "$BIN" demo-node --route "jvm$i" --listen "127.0.0.1:$((BASE_PORT + i))" --store memory \
    --session-timeout 5m >"$work/node$i.log" 2>&1 &
  pids+=($!)
done
cat >"$work/balancer.yaml" <<EOF
listeners:
  - bind: "127.0.0.1:$LB_PORT"
pools:
  - name: app
    binder: translate
    balance: p2c
    nodes:
      - { route: jvm1, address: "127.0.0.1:$((BASE_PORT + 1))" }
      - { route: jvm2, address: "127.0.0.1:$((BASE_PORT + 2))" }
      - { route: jvm3, address: "127.0.0.1:$((BASE_PORT + 3))" }
EOF
"$BIN" serve --threads "${SR_THREADS:-0}" --config "$work/balancer.yaml" --grace 1s >"$work/balancer.log" 2>&1 &
lb_pid=$!
pids+=("$lb_pid")

wait_up() {
  for _ in $(seq 1 50); do
    curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "--- balancer log"; cat "$work/balancer.log" >&2
  die "$1 did not answer within 10 s"
}
NODE="http://127.0.0.1:$((BASE_PORT + 2))"
LB="http://127.0.0.1:$LB_PORT"
wait_up "$NODE/health"
wait_up "$LB/health"

# One real session on jvm2: the sticky workload reuses it.
sid="$(curl -fsS --max-time 5 -D - -o /dev/null "$NODE/count" |
  tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: JSESSIONID=\([^;]*\).*/\1/p')"
[[ "$sid" == *.jvm2 ]] || die "no session from jvm2 (got '$sid')"
[ "$(curl -fsS --max-time 5 -H "Cookie: JSESSIONID=$sid" -D - -o /dev/null "$LB/count" |
  tr -d '\r' | sed -n 's/^[Xx]-[Nn]ode: //p')" = jvm2 ] || die "the balancer does not pin $sid to jvm2"

clk_tck="$(getconf CLK_TCK)"
cpu_ticks() { # utime + stime of a process, in clock ticks
  local stat
  stat="$(cat "/proc/$1/stat")"
  stat="${stat##*) }" # fields after "pid (comm) "
  awk '{ print $12 + $13 }' <<<"$stat"
}
to_ms() { # "0.3802 ms" / "1.2us" / "0.0012 secs" / "2.5s" -> milliseconds
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+ */, "", u)
    if (u ~ /^us/) n /= 1000; else if (u ~ /^ms/) n = n; else if (u ~ /^s/) n *= 1000
    printf "%.3f", n }'
}

summary="$work/summary"
printf '%-4s %-9s %-12s %11s %9s %9s %9s %9s\n' tool target workload "req/s" "p50 ms" "p99 ms" "errors" "lb µs/req" >"$summary"

run() { # tool target(node|balancer) workload(sticky|new-session)
  local tool=$1 target=$2 workload=$3 url out rps p50 p99 errors n before after cpu
  url="$NODE/count"
  [ "$target" = balancer ] && url="$LB/count"
  local header=()
  [ "$workload" = sticky ] && header=(-H "Cookie: JSESSIONID=$sid")
  echo "== $tool $target $workload: ${DURATION}s, $CONNECTIONS connections, $url" >&2
  before="$(cpu_ticks "$lb_pid")"
  case $tool in
    oha)
      out="$(timeout $((DURATION + 30)) oha -z "${DURATION}s" -c "$CONNECTIONS" --no-tui "${header[@]}" "$url")"
      rps="$(awk -F'\t' '/Requests\/sec:/ { printf "%.0f", $2 }' <<<"$out")"
      p50="$(to_ms "$(awk '/ 50.00% in / { print $3, $4 }' <<<"$out")")"
      p99="$(to_ms "$(awk '/ 99.00% in / { print $3, $4 }' <<<"$out")")"
      n="$(awk '/^ *\[[0-9]+\] [0-9]+ responses/ { s += $2 } END { print s + 0 }' <<<"$out")"
      errors="$(awk '/^ *\[[0-9]+\] [0-9]+ responses/ { if ($1 != "[200]") s += $2 } END { print s + 0 }' <<<"$out")"
      ;;
    wrk)
      out="$(timeout $((DURATION + 30)) wrk -t "$THREADS" -c "$CONNECTIONS" -d "${DURATION}s" --latency "${header[@]}" "$url")"
      rps="$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' <<<"$out")"
      p50="$(to_ms "$(awk '$1 == "50%" { print $2 }' <<<"$out")")"
      p99="$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")"
      n="$(awk '/requests in/ { print $1 }' <<<"$out")"
      errors="$(awk '/Non-2xx or 3xx responses:/ { s += $NF } /Socket errors:/ { gsub(/[^0-9 ]/, " "); s += $1 + $2 + $3 + $4 } END { print s + 0 }' <<<"$out")"
      ;;
  esac
  after="$(cpu_ticks "$lb_pid")"
  cpu="-"
  if [ "$target" = balancer ] && [ "${n:-0}" -gt 0 ]; then
    cpu="$(awk -v t=$((after - before)) -v hz="$clk_tck" -v n="$n" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')"
  fi
  printf '%-4s %-9s %-12s %11s %9s %9s %9s %9s\n' "$tool" "$target" "$workload" "$rps" "$p50" "$p99" "$errors" "$cpu" >>"$summary"
}

for tool in "${tools[@]}"; do
  for workload in sticky new-session; do
    run "$tool" node "$workload"
    run "$tool" balancer "$workload"
  done
done

echo
echo "stickyroute load test: $(nproc) CPU(s), $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || echo unknown CPU)"
echo "${DURATION}s per run, $CONNECTIONS keep-alive connections, GET /count; node = jvm2 alone (demo-node, memory store),"
echo "balancer = the same request through stickyroute (translate binder, 3 nodes); sticky = Cookie JSESSIONID=$sid"
for t in "${tools[@]}"; do { "$t" --version 2>&1 || true; } | awk 'NR == 1'; done
echo
cat "$summary"
