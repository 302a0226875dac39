#!/usr/bin/env bash
# The docker-compose failover demo: count through the balancer with a cookie jar, stop the node
# that serves the session (`docker compose stop nodeN`), count again, and show that the count
# went on and the client's cookie was rebound to the node that took the session over.
#
#   docker compose up --build -d && scripts/failover-demo.sh
#
# Environment: BALANCER_URL (default http://127.0.0.1:8080), COMPOSE (default "docker compose";
# e.g. "docker-compose" or "podman compose").
set -euo pipefail
cd "$(dirname "$0")/.."

BALANCER_URL="${BALANCER_URL:-http://127.0.0.1:8080}"
read -r -a COMPOSE <<<"${COMPOSE:-docker compose}"
jar="$(mktemp)"
trap 'rm -f "$jar"' EXIT

# One request with the cookie jar; every curl is bounded.
count() {
  curl -fsS --connect-timeout 2 --max-time 10 -b "$jar" -c "$jar" "$BALANCER_URL/count"
}
field() { # JSON field of a /count answer: count -> number, node/session -> string
  sed -n "s/.*\"$1\":\"\{0,1\}\([^\",}]*\).*/\1/p"
}
cookie() { # the JSESSIONID in the jar (Netscape format: name in column 6, value in 7)
  awk '$6 == "JSESSIONID" { v = $7 } END { print v }' "$jar"
}

echo "waiting for the balancer at $BALANCER_URL ..."
for i in $(seq 1 60); do
  if curl -fsS -o /dev/null --connect-timeout 1 --max-time 3 "$BALANCER_URL/health"; then
    break
  fi
  if [ "$i" -eq 60 ]; then
    echo "the balancer did not answer within 60 s (is 'docker compose up' running?)" >&2
    exit 1
  fi
  sleep 1
done

echo "--- counting through the balancer"
last=""
for _ in 1 2 3; do
  last="$(count)"
  echo "$last"
done
before="$(cookie)"
route="${before##*.}"
if ! [[ "$route" =~ ^jvm[0-9]+$ ]]; then
  echo "unexpected session cookie '$before'" >&2
  exit 1
fi
# The compose file runs route jvmN as service nodeN.
service="node${route#jvm}"
if ! "${COMPOSE[@]}" config --services | grep -qx "$service"; then
  echo "no compose service $service for route $route" >&2
  exit 1
fi
count_before="$(field count <<<"$last")"
echo "session cookie: JSESSIONID=$before (pinned to $route, count $count_before)"

echo "--- stopping $service (route $route): ${COMPOSE[*]} stop $service"
"${COMPOSE[@]}" stop "$service"

echo "--- counting again"
after_json="$(count)"
echo "$after_json"
for _ in 1 2; do count; echo; done
after="$(cookie)"
count_after="$(field count <<<"$after_json")"
node_after="$(field node <<<"$after_json")"

echo "---"
echo "before: JSESSIONID=$before   served by $route"
echo "after:  JSESSIONID=$after   served by $node_after"
if [ "$count_after" != "$((count_before + 1))" ]; then
  echo "FAIL: the count did not go on ($count_before, then $count_after)" >&2
  exit 1
fi
if [ "$after" = "$before" ] || [ "${after##*.}" = "$route" ]; then
  echo "FAIL: the cookie was not rebound away from $route" >&2
  exit 1
fi
echo "OK: the count went on ($count_before -> $count_after) on $node_after, and the cookie was"
echo "rebound to ${after##*.}; $node_after still sees the session as $before (translate binder)."
echo "Start the node again with: ${COMPOSE[*]} start $service"
