#!/bin/sh
# Starts valkey-server with valkey.conf; the passwords come from the environment
# (a Secret), never from the ConfigMap. sidecar.acl holds the sidecars' ACL user
# and rules (its password is VALKEY_SIDECAR_PASSWORD). The role comes from the
# environment too: VALKEY_PRIMARY=host:port makes a replica, VALKEY_SENTINELS lets
# the sentinels say whose replica (follow.sh), VALKEY_ANNOUNCE_HOSTNAME makes a
# cluster node (heal.sh runs beside it).
set -eu
config="${VALKEY_CONFIG:-/etc/valkey/valkey.conf}"
acl="user $(cat "$(dirname "$config")/sidecar.acl") >${VALKEY_SIDECAR_PASSWORD}"
role=""
if [ -n "${VALKEY_PRIMARY:-}" ]; then
  role="replicaof ${VALKEY_PRIMARY%:*} ${VALKEY_PRIMARY##*:}"
fi
if [ -n "${VALKEY_SENTINELS:-}" ]; then
  role="$(sh "$(dirname "$0")/follow.sh")"
fi
if [ -n "${VALKEY_ANNOUNCE_HOSTNAME:-}" ]; then
  role="cluster-announce-hostname ${VALKEY_ANNOUNCE_HOSTNAME}"
  sh "$(dirname "$0")/heal.sh" &
fi
exec valkey-server "$config" - <<EOF
requirepass "${VALKEY_PASSWORD}"
masterauth "${VALKEY_PASSWORD}"
${acl}
${role}
EOF
