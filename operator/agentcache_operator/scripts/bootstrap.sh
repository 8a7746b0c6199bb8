#!/bin/sh
# Forms a Valkey cluster from fresh nodes, once. Running it again changes nothing:
# when any node already knows another node, the cluster exists and is left alone.
# usage: bootstrap.sh REPLICAS_PER_SHARD HOST:PORT...   (password in $REDISCLI_AUTH)
set -eu
replicas="$1"
shift
cli() {
  node="$1"
  shift
  valkey-cli -h "${node%:*}" -p "${node##*:}" "$@"
}
info_field() {
  cli "$1" cluster info | tr -d '\r' | sed -n "s/^$2://p"
}
for node in "$@"; do
  until cli "$node" ping 2>/dev/null | grep -q PONG; do
    echo "waiting for $node"
    sleep 1
  done
done
for node in "$@"; do
  known="$(info_field "$node" cluster_known_nodes)"
  if [ "$known" -gt 1 ]; then
    state="$(info_field "$node" cluster_state)"
    if [ "$state" = ok ]; then
      echo "cluster already formed ($node knows $known nodes, state ok): nothing to do"
      exit 0
    fi
    echo "cluster partly formed ($node knows $known nodes, state $state): check it with valkey-cli --cluster check $node" >&2
    exit 1
  fi
done
echo "forming a cluster of $# nodes with $replicas replica(s) per shard"
valkey-cli --cluster create "$@" --cluster-replicas "$replicas" --cluster-yes
