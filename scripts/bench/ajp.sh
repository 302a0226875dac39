#!/usr/bin/env bash
# stickyroute against Apache httpd's mod_proxy_ajp, both in front of the same real Tomcat 10.1
# AJP/1.3 connector (with a secret), on loopback: CPU µs per proxied request of each proxy and of
# Tomcat, and requests/s; medians over rounds. The method and every knob: scripts/bench/ajp.py
# (--help).
#
#   scripts/bench/ajp.sh                   # 3 rounds of 100,000 requests on 16 connections (~3 minutes)
#   scripts/bench/ajp.sh --quick           # a smoke run (figures not comparable)
#   scripts/bench/ajp.sh --rounds 5 --requests 200000 --conns 48
#
# Needs: python3, h2load (apt-get install nghttp2-client), apache2 (its mod_proxy_ajp is loaded by
# the script's own config, no a2enmod), tomcat10 and a Java runtime (apt-get install tomcat10; or
# STICKYROUTE_CATALINA_HOME), and the release binary (cargo build --release; or STICKYROUTE_BIN).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export PATH="$PATH:$HOME/.cargo/bin:/usr/sbin:/sbin"

missing=()
for t in python3 h2load apache2 java; do command -v "$t" >/dev/null || missing+=("$t"); done
if ((${#missing[@]})); then echo "missing tools: ${missing[*]}" >&2; exit 2; fi

bin="${STICKYROUTE_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/stickyroute}"
[[ -x "$bin" ]] || { echo "no release binary at $bin: cargo build --release (or set STICKYROUTE_BIN)" >&2; exit 2; }

exec python3 "$root/scripts/bench/ajp.py" --bin "$bin" "$@"
