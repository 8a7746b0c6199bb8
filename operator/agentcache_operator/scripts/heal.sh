#!/bin/sh
# Heals one Valkey cluster node. start.sh runs it in the background beside valkey-server.
#
# - A node that kept its nodes.conf meets every peer at the peer's current address, so the
#   stale addresses left by a restart of all pods (new IPs) are replaced.
# - A node that starts empty waits for a formed cluster that does not know it (a peer in
#   cluster_state:ok; the bootstrap Job forms the first cluster and includes the nodes itself),
#   meets it, waits until every slot is served again (a replica of its own dead incarnation is
#   promoted after cluster-node-timeout), forgets that incarnation (same hostname, another node
#   id) on every node, and, still a primary without slots, replicates the primary with the
#   fewest replicas. When that incarnation failed with no live replica to promote (no replicas
#   per shard, or all lost), nothing else can serve its slots: the node forgets it and takes
#   them over, empty (a cache loses those keys, not the slots).
# It exits when done or when valkey-server (its parent, after start.sh's exec) is gone.
# env: VALKEY_PASSWORD, VALKEY_ANNOUNCE_HOSTNAME (this node's stable name),
#      VALKEY_PEERS ("host:port ..." of every node, this one included), VALKEY_PORT (default 6379)
set -u
export REDISCLI_AUTH="$VALKEY_PASSWORD"
port="${VALKEY_PORT:-6379}"
me="$VALKEY_ANNOUNCE_HOSTNAME"
server="$PPID"

cli() {
  node="$1"
  shift
  valkey-cli -h "${node%:*}" -p "${node##*:}" "$@" 2>/dev/null | tr -d '\r'
}
local_cli() { cli "127.0.0.1:$port" "$@"; }
info_field() { cli "$1" cluster info | sed -n "s/^$2://p"; }
alive() { kill -0 "$server" 2>/dev/null; }
pause() { alive || exit 0; sleep "${1:-1}"; }

# meet HOST:PORT: this node meets the peer at its current IP (nothing to do when the peer is
# this node); fails while the peer does not answer.
meet() {
  ip="$(getent hosts "${1%:*}" | awk '{ print $1; exit }')"
  [ -n "$ip" ] || return 1
  peer="$ip:${1##*:}"
  peer_id="$(cli "$peer" cluster myid)"
  [ -n "$peer_id" ] || return 1
  [ "$peer_id" != "$(local_cli cluster myid)" ] || return 0
  bus="$(cli "$peer" config get cluster-port | sed -n 2p)"
  [ "${bus:-0}" != 0 ] || bus=$((${1##*:} + 10000))
  local_cli cluster meet "$ip" "${1##*:}" "$bus" | grep -q OK
}

# incarnations NODE SLOTS: prints the ids of this node's dead incarnations (same hostname, another
# id) that hold slots (SLOTS=1) or none (SLOTS=0), as NODE sees them. Ask a peer: hostnames travel
# only in a node's own messages, so this new node never learns the hostname of a dead one.
incarnations() {
  cli "$1" cluster nodes | awk -v me="$me" -v myid="$myid" -v slots="$2" '
    { split($2, addr, ",") }
    $1 != myid && addr[2] == me && (NF >= 9) == slots { print $1 }'
}

# forget ID: every node forgets node ID, checked and retried (a node that kept it would gossip it
# back to the others once their 60 s ban is over). Nodes merely suspected (fail?) are asked too.
forget() {
  tries=0
  while [ "$tries" -lt 30 ]; do
    left=""
    for node in $(cli "$joined" cluster nodes | awk -v id="$1" '
        $1 != id && $3 !~ /(^|,)fail(,|$)|noaddr|handshake/ { split($2, a, "@"); print a[1] }'); do
      cli "$node" cluster nodes | grep -q "^$1 " || continue
      cli "$node" cluster forget "$1" | grep -q OK || left="$left $node"
    done
    [ -n "$left" ] || return 0
    tries=$((tries + 1))
    pause
  done
  echo "heal: $left still know $1" >&2
}

# take_over: forgets each failed incarnation that holds slots and has no replica that may still
# be promoted (one merely suspected, fail?, may), and claims its slots.
take_over() {
  cli "$joined" cluster nodes | awk -v me="$me" '
    { split($2, addr, ",") }
    $3 ~ /slave/ && $3 !~ /(^|,)fail(,|$)/ { alive[$4] = 1 }
    addr[2] == me && $3 ~ /(^|,)fail(,|$)/ && NF >= 9 { orphan[$1] = $0 }
    END { for (id in orphan) if (!(id in alive)) print orphan[id] }' |
    while read -r id _ _ _ _ _ _ _ slots; do
      echo "heal: $id, a dead incarnation of $me, has no replica; taking over its slots $slots"
      forget "$id"
      ranges="$(echo "$slots" | tr ' ' '\n' | grep -v '^\[' | awk -F- '{ print $1, ($2 == "" ? $1 : $2) }')"
      # shellcheck disable=SC2086 # a word per slot number
      local_cli cluster addslotsrange $ranges >/dev/null
      local_cli cluster bumpepoch >/dev/null
    done
}

# Prints "count id" of every healthy primary with slots, fewest healthy replicas first (ties: lowest id).
replica_counts() {
  local_cli cluster nodes | awk '
    $3 ~ /master/ && $3 !~ /fail/ && NF >= 9 { replicas[$1] += 0 }
    $3 ~ /slave/ && $3 !~ /fail/ { replicas[$4]++ }
    END { for (id in replicas) print replicas[id], id }' | sort -k1,1n -k2,2
}

# Prints the id of the healthy primary with the fewest healthy replicas.
fewest_replicas() {
  replica_counts | awk 'NR == 1 { print $2 }'
}

until local_cli ping | grep -q PONG; do pause; done

if [ "$(info_field "127.0.0.1:$port" cluster_known_nodes)" -gt 1 ]; then
  # Restarted with nodes.conf: meet every peer where it is now (at most ~10 minutes of tries).
  pending="$VALKEY_PEERS"
  tries=0
  while [ -n "$pending" ] && [ "$tries" -lt 300 ]; do
    left=""
    for node in $pending; do
      meet "$node" || left="$left $node"
    done
    pending="$left"
    tries=$((tries + 1))
    [ -z "$pending" ] || pause 2
  done
  exit 0
fi

echo "heal: $me starts empty; looking for a formed cluster"
myid="$(local_cli cluster myid)"
joined=""
while [ -z "$joined" ]; do
  for node in $VALKEY_PEERS; do
    [ "$(info_field "$node" cluster_state)" = ok ] || continue
    if cli "$node" cluster nodes | grep -q "^$myid "; then
      echo "heal: the cluster already includes $me"
      exit 0
    fi
    if meet "$node"; then
      joined="$node"
      break
    fi
  done
  [ -n "$joined" ] || pause 2
done
echo "heal: met $joined; waiting until every slot is served"
until [ "$(info_field "127.0.0.1:$port" cluster_state)" = ok ] && [ -z "$(incarnations "$joined" 1)" ]; do
  take_over
  pause
done
incarnations "$joined" 0 | while read -r id; do
  echo "heal: forgetting $id, a dead incarnation of $me"
  forget "$id"
done
primary=""
until [ -n "$primary" ] && local_cli cluster replicate "$primary" | grep -q OK; do
  if ! local_cli cluster nodes | awk '$3 ~ /myself/ && $3 ~ /master/ && NF < 9 { found = 1 } END { exit !found }'; then
    echo "heal: $me already serves (slots or a primary of its own)"
    exit 0
  fi
  pause
  primary="$(fewest_replicas)"
done
echo "heal: $me replicates $primary"
# Nodes restarting one after another can each pick the same primary and leave another with
# none: for a minute, move to a primary without replicas while ours keeps another.
tries=0
while [ "$tries" -lt 30 ]; do
  tries=$((tries + 1))
  pause 2
  first="$(replica_counts | head -n 1)"
  ours="$(replica_counts | awk -v p="$primary" '$2 == p { print $1 }')"
  if [ "${first% *}" = 0 ] && [ "${ours:-0}" -ge 2 ] && local_cli cluster replicate "${first#* }" | grep -q OK; then
    primary="${first#* }"
    echo "heal: $me moves to $primary, which had no replica"
  fi
done
