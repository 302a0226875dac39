#!/usr/bin/env bash
# stickyroute against HAProxy (nbthread 1) and nginx (1 worker), on loopback: CPU µs per proxied
# request, saturation throughput as a ratio of direct, added p50 at 2,000 req/s, and RSS per idle
# keep-alive connection; then, over TLS 1.3 with a certificate made for the run, CPU µs per request
# for HTTP/1.1 keep-alive, a full and a resumed handshake per request, HTTP/2 with 10 streams per
# connection, 64 KiB bodies (cleartext), and RSS per idle TLS connection. Medians over rounds,
# and stickyroute's ratios to HAProxy. The method and every knob: scripts/bench/compare.py (--help).
#
#   scripts/compare.sh                     # 3 rounds, all phases (about 15 minutes)
#   scripts/compare.sh --quick             # a smoke run of a minute or two (figures not comparable)
#   scripts/compare.sh --rounds 5 --phases cpu,rss --only haproxy-t1,stickyroute
#   scripts/compare.sh --phases tls_h1,tls_full,tls_resumed,tls_h2,big,tls_rss
#
# Needs: python3, nginx, haproxy, h2load, wrk, openssl (apt-get install nginx haproxy
# nghttp2-client wrk openssl), oha for the latency phase (cargo install oha --locked; skipped with
# a warning when absent), and the release binary (cargo build --release; or STICKYROUTE_BIN).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$PATH:$HOME/.cargo/bin:/usr/sbin:/sbin"

missing=()
for t in python3 nginx haproxy h2load wrk openssl; do command -v "$t" >/dev/null || missing+=("$t"); done
if ((${#missing[@]})); then echo "missing tools: ${missing[*]}" >&2; exit 2; fi

bin="${STICKYROUTE_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/stickyroute}"
[[ -x "$bin" ]] || { echo "no release binary at $bin: cargo build --release (or set STICKYROUTE_BIN)" >&2; exit 2; }

# 5k idle connections plus their upstream sockets: the proxies inherit this limit.
hard=$(ulimit -Hn)
want=20000
if [[ "$hard" != unlimited && "$hard" -lt "$want" ]]; then want=$hard; fi
ulimit -n "$want"

exec python3 "$root/scripts/bench/compare.py" --bin "$bin" "$@"
