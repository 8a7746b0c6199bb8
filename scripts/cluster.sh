#!/usr/bin/env bash
# A real Kubernetes control plane on this machine, no container runtime needed:
# etcd, kube-apiserver (RBAC + Node authorization, the default admission plugins
# with PodSecurity and the admission webhooks), kube-controller-manager (every
# default controller, each with its own service account), kube-scheduler, and
# kwok, which plays two nodes and drives pod status (Running/Ready, Succeeded
# for Jobs). Pods never run their containers.
#
#   scripts/cluster.sh up       start it in the background (reuses a running one)
#   scripts/cluster.sh down     stop it and delete its state
#   scripts/cluster.sh status   exit 0 when it serves
#
# State lives in $AGENTCACHE_CLUSTER_DIR (default .tools/cluster); the admin
# kubeconfig is written to $AGENTCACHE_CLUSTER_DIR/../kubeconfig (.tools/kubeconfig).
# The binaries come from scripts/install-k8s.sh.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/.tools/bin"
state="${AGENTCACHE_CLUSTER_DIR:-$root/.tools/cluster}"
kubeconfig="$(dirname "$state")/kubeconfig"
pki="$state/pki"
logs="$state/logs"
NODES=(kwok-node-1 kwok-node-2)
SERVICE_CIDR="10.96.0.0/16"

log() { echo "cluster: $*" >&2; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

serves() {
  [ -f "$kubeconfig" ] && [ -f "$state/ports.env" ] || return 1
  # shellcheck source=/dev/null
  . "$state/ports.env"
  curl -fsS --max-time 2 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
    "https://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1
}

# cert NAME CN [O] [SANS]: a key and a certificate signed by the cluster CA.
cert() {
  local name="$1" cn="$2" org="${3:-}" sans="${4:-}" subject="/CN=$2"
  [ -n "$org" ] && subject="/O=$org/CN=$cn"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$pki/$name.key" -subj "$subject" \
    -out "$pki/$name.csr" 2>/dev/null
  local ext="$pki/$name.ext"
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [ -n "$sans" ]; then echo "extendedKeyUsage=serverAuth"; echo "subjectAltName=$sans"
    else echo "extendedKeyUsage=clientAuth"; fi
  } > "$ext"
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$ext" -out "$pki/$name.crt" 2>/dev/null
  rm -f "$pki/$name.csr" "$ext"
}

make_pki() {
  mkdir -p "$pki"
  openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "$pki/ca.key" -subj "/CN=agentcache-test-ca" \
    -days 3650 -sha256 -out "$pki/ca.crt" 2>/dev/null
  cert apiserver kube-apiserver "" \
    "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert admin kubernetes-admin system:masters
  cert controller-manager system:kube-controller-manager
  cert scheduler system:kube-scheduler
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
}

# write_kubeconfig FILE USER: a kubeconfig for USER's client certificate.
write_kubeconfig() {
  cat > "$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: agentcache-test
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $pki/ca.crt
users:
- name: $2
  user:
    client-certificate: $pki/$2.crt
    client-key: $pki/$2.key
contexts:
- name: agentcache-test
  context: {cluster: agentcache-test, user: $2}
current-context: agentcache-test
EOF
}

# start NAME COMMAND...: run in the background, logging to $logs/NAME.log.
start() {
  local name="$1"; shift
  setsid "$@" >"$logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$state/$name.pid"
}

wait_until() {  # wait_until SECONDS WHAT COMMAND...
  local timeout="$1" what="$2"; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      log "$what did not come up in ${timeout}s; its log:"; tail -n 30 "$logs/$what.log" >&2 || true
      down; exit 1
    fi
    sleep 0.2
  done
}

kubectl_admin() { "$bin/kubectl" --kubeconfig "$kubeconfig" "$@"; }

up() {
  if serves; then log "already running; KUBECONFIG=$kubeconfig"; return; fi
  down quietly
  for name in etcd kube-apiserver kube-controller-manager kube-scheduler kwok; do
    [ -x "$bin/$name" ] || { log "$bin/$name is missing: run scripts/install-k8s.sh"; exit 1; }
  done
  [ -x "$bin/kubectl" ] || { log "$bin/kubectl is missing: run scripts/install-tools.sh"; exit 1; }
  mkdir -p "$state" "$logs"
  make_pki
  ETCD_PORT="$(free_port)"; ETCD_PEER_PORT="$(free_port)"; API_PORT="$(free_port)"
  printf 'ETCD_PORT=%s\nETCD_PEER_PORT=%s\nAPI_PORT=%s\n' "$ETCD_PORT" "$ETCD_PEER_PORT" "$API_PORT" \
    > "$state/ports.env"
  write_kubeconfig "$state/controller-manager.kubeconfig" controller-manager
  write_kubeconfig "$state/scheduler.kubeconfig" scheduler
  write_kubeconfig "$kubeconfig.tmp" admin

  start etcd "$bin/etcd" --name agentcache-test --data-dir "$state/etcd" --unsafe-no-fsync \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "agentcache-test=http://127.0.0.1:$ETCD_PEER_PORT" --log-level warn
  wait_until 30 etcd curl -fsS "http://127.0.0.1:$ETCD_PORT/health"

  start kube-apiserver "$bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
    --endpoint-reconciler-type none \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --authorization-mode Node,RBAC \
    --enable-admission-plugins NodeRestriction \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR"
  mv "$kubeconfig.tmp" "$kubeconfig"
  wait_until 90 kube-apiserver serves

  start kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig "$state/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$state/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$state/controller-manager.kubeconfig" \
    --use-service-account-credentials \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --enable-hostpath-provisioner \
    --leader-elect=false --bind-address 127.0.0.1 --secure-port 0
  start kube-scheduler "$bin/kube-scheduler" \
    --kubeconfig "$state/scheduler.kubeconfig" \
    --authentication-kubeconfig "$state/scheduler.kubeconfig" \
    --authorization-kubeconfig "$state/scheduler.kubeconfig" \
    --leader-elect=false --bind-address 127.0.0.1 --secure-port 0
  start kwok "$bin/kwok" --config "$root/.tools/kwok.yaml" --kubeconfig "$kubeconfig" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --cidr 10.244.0.1/16 --node-ip 10.0.0.1 --node-lease-duration-seconds 40

  for node in "${NODES[@]}"; do
    kubectl_admin apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $node
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels: {kubernetes.io/hostname: $node, kubernetes.io/os: linux, kubernetes.io/arch: amd64, type: kwok}
status:
  allocatable: {cpu: "64", memory: 512Gi, pods: "5000", ephemeral-storage: 1Ti}
  capacity: {cpu: "64", memory: 512Gi, pods: "5000", ephemeral-storage: 1Ti}
  nodeInfo: {kubeletVersion: fake, kubeProxyVersion: fake, architecture: amd64, operatingSystem: linux}
EOF
  done
  # The volumes a StatefulSet claims: the controller manager's host-path provisioner
  # (testing only) makes a PersistentVolume for each claim of this default class.
  kubectl_admin apply -f - >/dev/null <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/host-path
allowVolumeExpansion: true
volumeBindingMode: Immediate
EOF
  wait_until 60 kwok kubectl_admin wait --for=condition=Ready --timeout=1s "${NODES[@]/#/node/}"
  wait_until 60 kube-controller-manager kubectl_admin get serviceaccount default -n default
  log "up: $(kubectl_admin version 2>/dev/null | tail -1); nodes: ${NODES[*]}"
  cat >&2 <<EOF
cluster: use it with
  export KUBECONFIG=$kubeconfig
  kubectl get nodes
  kubectl get acache -A        (make cluster applies manifests/crds.yaml)
cluster: logs in $logs; stop it with 'make cluster-down'
EOF
}

down() {
  local quiet="${1:-}"
  for name in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
    local pidfile="$state/$name.pid"
    [ -f "$pidfile" ] || continue
    local pid; pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
  rm -rf "$state" "$kubeconfig"
  [ -n "$quiet" ] || log "down"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) serves ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
