#!/usr/bin/env bash
# Many idle keep-alive client connections plus load, on loopback, against the release binary:
#   1. three demo nodes and the balancer (listeners[].max_connections raised to fit);
#   2. the balancer's RSS before;
#   3. IDLE client connections opened, each doing one GET /count (a session of its own) and then
#      sitting idle; RSS with them (KiB per idle connection);
#   4. load on other connections for LOAD_SECONDS (wrk, RSS sampled meanwhile: the maximum is
#      "under load"), the idle connections still open;
#   5. one more request on every idle connection: each must answer 200 with its session's
#      count 2 (so the connection, and its session, survived).
# Exit status 0 when every idle connection and every load request was served, 1 otherwise.
#
#   cargo build --release && scripts/idle-conns.sh              # 10,000 idle connections
#   IDLE=2000 scripts/idle-conns.sh
#
# Connections come from 127.0.0.1 up to 20,000 and are spread over 127.0.0.2… source addresses
# beyond, so the ephemeral port range is never the limit. The script raises `ulimit -n` (the
# soft limit up to the hard one) and refuses to start when that is not enough. The whole run
# must stay within the balancer's 75 s keep-alive idle limit, which it does with room to spare.
#
# Environment: IDLE (default 10000, at most 50000), LOAD_SECONDS (default 10, at most 60),
# LOAD_CONNECTIONS (default 32), BASE_PORT (default 29180: balancer, nodes on the next three,
# admin on the fourth), BIN (default target/release/stickyroute, or
# $CARGO_TARGET_DIR/release/stickyroute). Needs python3, curl and wrk.
set -euo pipefail
cd "$(dirname "$0")/.."

IDLE="${IDLE:-10000}"
LOAD_SECONDS="${LOAD_SECONDS:-10}"
LOAD_CONNECTIONS="${LOAD_CONNECTIONS:-32}"
BASE_PORT="${BASE_PORT:-29180}"
BIN="${BIN:-${CARGO_TARGET_DIR:-target}/release/stickyroute}"

die() { echo "idle-conns: $*" >&2; exit 2; }
num() { [[ "$1" =~ ^[0-9]+$ ]]; }
num "$IDLE" && ((IDLE >= 1 && IDLE <= 50000)) || die "IDLE must be 1..50000"
num "$LOAD_SECONDS" && ((LOAD_SECONDS >= 1 && LOAD_SECONDS <= 60)) || die "LOAD_SECONDS must be 1..60"
num "$LOAD_CONNECTIONS" && ((LOAD_CONNECTIONS >= 1 && LOAD_CONNECTIONS <= 256)) || die "LOAD_CONNECTIONS must be 1..256"
num "$BASE_PORT" && ((BASE_PORT >= 1024 && BASE_PORT <= 65530)) || die "BASE_PORT must be 1024..65530"
[ -x "$BIN" ] || die "$BIN not found: run 'cargo build --release' first (or set BIN)"
for t in python3 curl wrk; do command -v "$t" >/dev/null || die "$t is needed"; done

# File descriptors: the client holds IDLE sockets, the balancer IDLE plus its upstream ones.
need=$((IDLE + LOAD_CONNECTIONS + 1024))
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(($(ulimit -n) >= need)) || die "ulimit -n is $(ulimit -n); $need are needed for IDLE=$IDLE"

# shellcheck source=scripts/lib/demo-pool.sh
. scripts/lib/demo-pool.sh
check_ports

work="$(mktemp -d)"
cleanup() {
  stop_started
  rm -rf "$work"
}
trap cleanup EXIT

export RUST_LOG=warn
start_nodes "$work" 5m
cat >"$work/balancer.yaml" <<EOF
listeners:
  - bind: "127.0.0.1:$LB_PORT"
    max_connections: $((IDLE + LOAD_CONNECTIONS + 1000))
admin:
  bind: "127.0.0.1:$ADMIN_PORT"
pools:
  - name: app
    nodes:
      - { route: jvm1, address: "127.0.0.1:$((BASE_PORT + 1))" }
      - { route: jvm2, address: "127.0.0.1:$((BASE_PORT + 2))" }
      - { route: jvm3, address: "127.0.0.1:$((BASE_PORT + 3))" }
EOF
"$BIN" serve --config "$work/balancer.yaml" --grace 1s >"$work/balancer.log" 2>&1 &
lb_pid=$!
pids+=("$lb_pid")
up=0
for _ in $(seq 1 50); do
  if curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$LB_PORT/health" 2>/dev/null; then up=1; break; fi
  sleep 0.2
done
((up)) || { cat "$work/balancer.log" >&2; die "the balancer did not answer within 10 s"; }

python3 - "$lb_pid" "$LB_PORT" "$ADMIN_PORT" "$IDLE" "$LOAD_SECONDS" "$LOAD_CONNECTIONS" <<'EOF'
import asyncio, json, re, subprocess, sys, threading, time

lb_pid, port, admin_port, idle, load_secs, load_conns = (int(a) for a in sys.argv[1:])
PER_SOURCE = 20000  # connections per 127.0.0.x source address
STEP_TIMEOUT = 30   # seconds for any one phase

def rss_kib():
    with open(f"/proc/{lb_pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit("no VmRSS for the balancer")

async def exchange(reader, writer, cookie):
    """One GET /count on an open connection: (status, json body, new cookie or None)."""
    head = "GET /count HTTP/1.1\r\nHost: app.test\r\n"
    if cookie:
        head += f"Cookie: JSESSIONID={cookie}\r\n"
    writer.write((head + "\r\n").encode())
    await writer.drain()
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length, new_cookie = 0, None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip()
        if name == "content-length":
            length = int(value)
        elif name == "set-cookie" and value.startswith("JSESSIONID="):
            new_cookie = value[len("JSESSIONID="):].split(";")[0]
        elif name == "connection" and value.lower() == "close":
            raise ConnectionError("the balancer closed the connection")
    body = await reader.readexactly(length)
    return status, json.loads(body) if status == 200 else body, new_cookie

async def open_one(i, sem):
    src = f"127.0.0.{2 + i // PER_SOURCE}" if idle > PER_SOURCE else None
    async with sem:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, local_addr=(src, 0) if src else None)
        status, body, cookie = await exchange(reader, writer, None)
        if status != 200 or body["count"] != 1 or not cookie:
            raise RuntimeError(f"first request: {status} {body}")
        return reader, writer, cookie

async def again(conn, sem):
    reader, writer, cookie = conn
    async with sem:
        status, body, _ = await exchange(reader, writer, cookie)
        return status == 200 and body["count"] == 2

async def main():
    before = rss_kib()
    sem = asyncio.Semaphore(256)
    t0 = time.monotonic()
    results = await asyncio.wait_for(
        asyncio.gather(*(open_one(i, sem) for i in range(idle)), return_exceptions=True),
        STEP_TIMEOUT)
    conns = [r for r in results if not isinstance(r, BaseException)]
    failed_open = [r for r in results if isinstance(r, BaseException)]
    opened_in = time.monotonic() - t0
    await asyncio.sleep(2)  # let the balancer settle (buffers back in their pools)
    with_idle = rss_kib()

    # Load on other connections, the idle ones still open; RSS sampled meanwhile.
    peak = [with_idle]
    done = threading.Event()
    def sample():
        while not done.wait(0.5):
            peak[0] = max(peak[0], rss_kib())
    sampler = threading.Thread(target=sample)
    sampler.start()
    proc = await asyncio.create_subprocess_exec(
        "wrk", "-t2", f"-c{load_conns}", f"-d{load_secs}s", f"http://127.0.0.1:{port}/count",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), load_secs + STEP_TIMEOUT)
    done.set()
    sampler.join()
    wrk = out.decode()
    m = re.search(r"(\d+) requests in", wrk)
    load_requests = int(m.group(1)) if m else 0
    rps = re.search(r"Requests/sec:\s+([\d.]+)", wrk)
    bad = sum(int(x) for x in re.findall(r"Non-2xx or 3xx responses: (\d+)", wrk))
    bad += sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", wrk))

    t1 = time.monotonic()
    oks = await asyncio.wait_for(
        asyncio.gather(*(again(c, sem) for c in conns), return_exceptions=True), STEP_TIMEOUT)
    served_again = sum(1 for ok in oks if ok is True)
    for _, writer, _ in conns:
        writer.close()

    kib = lambda a, b: (a - b) / max(len(conns), 1)
    print(f"idle connections: {len(conns)} of {idle} opened and served in {opened_in:.1f} s"
          + (f" ({len(failed_open)} failed: {failed_open[0]!r})" if failed_open else ""))
    print(f"load: {load_requests} requests on {load_conns} other connections in {load_secs} s"
          f" ({rps.group(1) if rps else '?'} req/s), {bad} errors or non-2xx")
    print(f"second request on every idle connection: {served_again} of {len(conns)} served"
          f" (count 2) in {time.monotonic() - t1:.1f} s")
    print(f"balancer RSS: before {before} KiB, with {len(conns)} idle connections {with_idle} KiB"
          f" ({kib(with_idle, before):.2f} KiB per idle connection), under load (max) {peak[0]} KiB")
    ok = not failed_open and served_again == idle and bad == 0 and load_requests > 0
    print("idle-conns: PASS" if ok else "idle-conns: FAIL")
    sys.exit(0 if ok else 1)

asyncio.run(main())
EOF
