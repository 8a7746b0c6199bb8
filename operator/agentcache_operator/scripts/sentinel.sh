#!/bin/sh
# Starts a Valkey Sentinel watching the cache's primary. It monitors the primary the other
# sentinels name (so a restarted sentinel follows a failover it missed), else VALKEY_PRIMARY.
# The config is written into the data directory: Sentinel rewrites it as it learns.
# Sidecars ask it as SENTINEL_CLIENT_USER (their ACL user, password VALKEY_SIDECAR_PASSWORD),
# which may only ask where the primary and the other sentinels are.
# env: VALKEY_PASSWORD, VALKEY_PRIMARY (host:port), VALKEY_MASTER_NAME, VALKEY_SENTINELS
#      ("host:port ..." of every sentinel), SENTINEL_ANNOUNCE (this sentinel's stable host, optional),
#      SENTINEL_PORT (default 26379), SENTINEL_DIR (default /data)
set -eu
export REDISCLI_AUTH="$VALKEY_PASSWORD"
port="${SENTINEL_PORT:-26379}"
dir="${SENTINEL_DIR:-/data}"
name="$VALKEY_MASTER_NAME"
primary="${VALKEY_PRIMARY%:*} ${VALKEY_PRIMARY##*:}"
for node in $VALKEY_SENTINELS; do
  known="$(valkey-cli -h "${node%:*}" -p "${node##*:}" sentinel get-master-addr-by-name "$name" 2>/dev/null \
    | tr -d '\r' | paste -sd' ' | grep -E '^[^ ]+ [0-9]+$')" && { primary="$known"; break; }
done
until getent hosts "${primary% *}" >/dev/null; do
  echo "waiting for ${primary% *} to resolve"
  sleep 1
done
announce=""
[ -z "${SENTINEL_ANNOUNCE:-}" ] || announce="sentinel announce-ip ${SENTINEL_ANNOUNCE}"
cat > "$dir/sentinel.conf" <<CONF
port $port
dir $dir
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
$announce
requirepass "$VALKEY_PASSWORD"
user $SENTINEL_CLIENT_USER on >$VALKEY_SIDECAR_PASSWORD -@all +ping +client|setname +sentinel|masters +sentinel|master +sentinel|get-master-addr-by-name +sentinel|sentinels +sentinel|slaves +sentinel|replicas
sentinel sentinel-pass "$VALKEY_PASSWORD"
sentinel monitor $name $primary 2
sentinel auth-pass $name "$VALKEY_PASSWORD"
sentinel down-after-milliseconds $name 5000
sentinel failover-timeout $name 30000
CONF
echo "sentinel monitors $name at $primary"
exec valkey-server "$dir/sentinel.conf" --sentinel
