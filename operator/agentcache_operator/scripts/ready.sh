#!/bin/sh
# Readiness: this node serves. Every node answers PING; a cluster node also serves its part:
# a primary holds slots, a replica has its link to its primary up. So a rollout never takes the
# next pod while this one is still joining or copying its primary, and a node's readiness does
# not depend on the health of other shards (unlike cluster_state:ok).
# env: VALKEY_PASSWORD, VALKEY_ANNOUNCE_HOSTNAME (cluster nodes only), VALKEY_PORT (default 6379)
set -eu
export REDISCLI_AUTH="$VALKEY_PASSWORD"
cli() { valkey-cli -h 127.0.0.1 -p "${VALKEY_PORT:-6379}" "$@" | tr -d '\r'; }
cli ping | grep -qx PONG
[ -n "${VALKEY_ANNOUNCE_HOSTNAME:-}" ] || exit 0
role="$(cli cluster nodes | awk '$3 ~ /myself/ { print ($3 ~ /master/ ? (NF >= 9 ? "serving" : "empty") : "replica") }')"
[ "$role" = serving ] || { [ "$role" = replica ] && cli info replication | grep -qx master_link_status:up; }
