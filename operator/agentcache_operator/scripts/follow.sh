#!/bin/sh
# Prints the replication lines of valkey.conf for a node of a replicated cache that Sentinel
# watches: "replicaof" the primary the sentinels name, unless they name this node.
# A node that starts empty while the sentinels still name it primary waits (at most
# FOLLOW_WAIT seconds) for them to promote one of its replicas, so it never comes back as an
# empty primary that its replicas would copy; when no replica is up there is nothing to keep,
# and it starts as primary at once. Without an answer from any sentinel (the first start),
# VALKEY_PRIMARY decides, as it does without Sentinel.
# env: VALKEY_PASSWORD, VALKEY_SENTINELS ("host:port ..."), VALKEY_MASTER_NAME,
#      VALKEY_REPLICA_ANNOUNCE (this node's stable host), VALKEY_PORT (default 6379),
#      VALKEY_CONFIG (for its dir), VALKEY_PRIMARY (replicas only), FOLLOW_WAIT (default 60)
set -u
export REDISCLI_AUTH="$VALKEY_PASSWORD"
me="$VALKEY_REPLICA_ANNOUNCE ${VALKEY_PORT:-6379}"
sentinel() {
  for node in $VALKEY_SENTINELS; do
    answer="$(valkey-cli -h "${node%:*}" -p "${node##*:}" sentinel "$@" 2>/dev/null | tr -d '\r')"
    [ -n "$answer" ] && { echo "$answer"; return 0; }
  done
  return 1
}
# "host port" of the primary the sentinels name; fails when none of them knows it.
primary() {
  sentinel get-master-addr-by-name "$VALKEY_MASTER_NAME" | paste -sd' ' | grep -E '^[^ ]+ [0-9]+$'
}
replica_up() {
  sentinel replicas "$VALKEY_MASTER_NAME" | awk 'previous == "flags" && $0 == "slave" { up = 1 } { previous = $0 } END { exit !up }'
}

echo "replica-announce-ip $VALKEY_REPLICA_ANNOUNCE"
if ! current="$(primary)"; then
  [ -z "${VALKEY_PRIMARY:-}" ] || echo "replicaof ${VALKEY_PRIMARY%:*} ${VALKEY_PRIMARY##*:}"
  exit 0
fi
dir="$(sed -n 's/^dir //p' "${VALKEY_CONFIG:-/etc/valkey/valkey.conf}")"
waited=0
while [ "$current" = "$me" ] && ! [ -e "$dir/appendonlydir" ] && [ "$waited" -lt "${FOLLOW_WAIT:-60}" ] && replica_up; do
  echo "follow: the sentinels still name this empty node primary; waiting for a replica to be promoted" >&2
  sleep 1
  waited=$((waited + 1))
  current="$(primary)" || current="$me"
done
[ "$current" = "$me" ] || echo "replicaof $current"
