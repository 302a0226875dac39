# Sourced by scripts/soak.sh and scripts/idle-conns.sh: the ports of a balancer with three demo
# nodes on loopback, and the processes started for it. Expects `die`, `BIN` and `BASE_PORT`.
# Ports: balancer BASE_PORT, nodes BASE_PORT+1..+3, admin BASE_PORT+4.

LB_PORT=$BASE_PORT
ADMIN_PORT=$((BASE_PORT + 4))

# Refuses to start when one of the five ports is taken (it never kills what it did not start).
check_ports() {
  local p
  for p in $LB_PORT $((BASE_PORT + 1)) $((BASE_PORT + 2)) $((BASE_PORT + 3)) $ADMIN_PORT; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then die "port $p is in use; set BASE_PORT"; fi
  done
}

# Every process started here is stopped at exit.
pids=()
stop_started() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}

# Three demo nodes jvm1..3 with memory stores; logs in DIR. Usage: start_nodes DIR SESSION_TIMEOUT
start_nodes() {
  local i
  for i in 1 2 3; do
    RUST_LOG=warn "$BIN" demo-node --route "jvm$i" --listen "127.0.0.1:$((BASE_PORT + i))" \
      --store memory --session-timeout "$2" >"$1/node$i.log" 2>&1 &
    pids+=($!)
  done
}
