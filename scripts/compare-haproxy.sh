#!/usr/bin/env bash
# Replaced by scripts/compare.sh (same four figures as the shared benchmark, HAProxy nbthread 1
# and nginx 1 worker); kept so that old instructions still work.
exec "$(dirname "$0")/compare.sh" "$@"
