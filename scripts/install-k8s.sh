#!/usr/bin/env bash
# Builds the real Kubernetes control plane the tests run, from pinned Go modules,
# into .tools/bin (git-ignored): kube-apiserver, kube-controller-manager,
# kube-scheduler and etcd from tools/k8s (k8s.io/kubernetes with its staging
# modules replaced by their published releases; etcd at the version Kubernetes
# pins), and kwok, which plays the nodes. Also writes kwok's stages (the
# "fast" node and pod stages shipped in the kwok module) to .tools/kwok.yaml.
#
# Idempotent: a stamp records what was built; a second run with the same pins
# does nothing. Go's module and build caches stay on the machine, so only the
# first build on a new machine is slow.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/.tools"
bin="$tools/bin"
KWOK_VERSION="v0.8.0"
mkdir -p "$bin"

if ! command -v go >/dev/null 2>&1; then
  echo "install-k8s: Go is needed to build the Kubernetes control plane (go.dev/doc/install)" >&2
  exit 1
fi

pins="$(cat "$root/tools/k8s/go.mod" "$root/tools/k8s/go.sum" "$root/tools/k8s/etcd/main.go" "$0" | sha256sum | cut -c1-16)"
stamp="$tools/k8s.stamp"
binaries=(kube-apiserver kube-controller-manager kube-scheduler etcd kwok)
all_present=true
for name in "${binaries[@]}"; do [ -x "$bin/$name" ] || all_present=false; done
if $all_present && [ -f "$tools/kwok.yaml" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$pins" ]; then
  exit 0
fi

# Stamp the release into the binaries (as Kubernetes' own build does), so that
# kubectl, helm and the operator see v1.35.N and not v0.0.0-master.
k8s_version="$(cd "$root/tools/k8s" && go list -m -f "{{.Version}}" k8s.io/kubernetes)"
minor="$(echo "$k8s_version" | cut -d. -f2)"
ldflags=""
for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $package.gitVersion=$k8s_version -X $package.gitMajor=1 -X $package.gitMinor=$minor"
  ldflags+=" -X $package.gitTreeState=clean -X $package.buildDate=1970-01-01T00:00:00Z"
done

started=$SECONDS
echo "install-k8s: building the Kubernetes control plane and kwok (the first build on a machine takes minutes)"
(
  cd "$root/tools/k8s"
  go build -trimpath -ldflags "$ldflags" -o "$bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler
  go build -trimpath -o "$bin/etcd" ./etcd
)
GOBIN="$bin" go install -trimpath "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"

stages="$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage"
{
  echo "# kwok's own node and pod stages at $KWOK_VERSION (written by scripts/install-k8s.sh)"
  for file in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
              pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    echo "---"
    cat "$stages/$file"
  done
} > "$tools/kwok.yaml"

echo "$pins" > "$stamp"
echo "install-k8s: built in $((SECONDS - started)) s"
