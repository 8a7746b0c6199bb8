#!/bin/sh
# preStop of a cluster node: a primary hands its slots to one of its replicas (CLUSTER FAILOVER,
# run on the replica) before it stops, so a rollout or a drain does not leave its shard
# unserved for cluster-node-timeout. Waits at most HANDOVER_WAIT seconds (default 10), well
# within the pod's grace period; a replica, or a primary without a connected replica, just stops.
# env: VALKEY_PASSWORD, VALKEY_PORT (default 6379)
set -u
export REDISCLI_AUTH="$VALKEY_PASSWORD"
cli() {
  node="$1"
  shift
  valkey-cli -h "${node%:*}" -p "${node##*:}" "$@" 2>/dev/null | tr -d '\r'
}
self="127.0.0.1:${VALKEY_PORT:-6379}"
myid="$(cli "$self" cluster myid)"
replica="$(cli "$self" cluster nodes | awk -v id="$myid" '
  $4 == id && $3 !~ /fail/ && $8 == "connected" { split($2, a, "@"); print a[1]; exit }')"
[ -n "$myid" ] && [ -n "$replica" ] || exit 0
echo "handover: asking $replica to take over from $myid"
cli "$replica" cluster failover | grep -q OK || exit 0
tries=$((${HANDOVER_WAIT:-10} * 5))
while [ "$tries" -gt 0 ]; do
  cli "$self" cluster nodes | grep -q "myself,slave" && exit 0
  sleep 0.2
  tries=$((tries - 1))
done
