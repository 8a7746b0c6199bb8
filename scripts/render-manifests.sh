#!/usr/bin/env bash
# Renders the plain manifests from the Helm chart (the one source):
#   manifests/crds.yaml     the chart's crds/ files, verbatim
#   manifests/install.yaml  the Namespace agentcache-system plus `helm template` of the chart
#                           with default values, except injector.tlsSource=injector: the
#                           injector creates its own CA at start, so no private key is committed
#                           and the output is the same on every run.
# Usage: scripts/render-manifests.sh [OUTPUT_DIR]   (default: manifests/)
# tests/chart/test_manifests.py re-renders into a temporary directory and fails when these are stale.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/manifests}"
chart="$root/charts/agentcache"
namespace="agentcache-system"
helm="${HELM:-$root/.tools/bin/helm}"
if [ ! -x "$helm" ]; then
  echo "helm not found at $helm: run scripts/install-tools.sh (or set HELM)" >&2
  exit 1
fi
helm_home="$(mktemp -d)"
trap 'rm -rf "$helm_home"' EXIT
export HELM_CACHE_HOME="$helm_home/cache" HELM_CONFIG_HOME="$helm_home/config" HELM_DATA_HOME="$helm_home/data"
mkdir -p "$out"

{
  echo "# AgentCache CRDs, copied from charts/agentcache/crds/ by scripts/render-manifests.sh; do not edit."
  for crd in "$chart"/crds/*.yaml; do
    echo "---"
    cat "$crd"
  done
} >"$out/crds.yaml"

{
  echo "# AgentCache, rendered from charts/agentcache by scripts/render-manifests.sh; do not edit."
  echo "# Install: kubectl apply -f crds.yaml && kubectl apply -f install.yaml"
  echo "---"
  echo "apiVersion: v1"
  echo "kind: Namespace"
  echo "metadata:"
  echo "  name: $namespace"
  echo "  labels:"
  echo "    app.kubernetes.io/name: agentcache"
  echo "    app.kubernetes.io/part-of: agentcache"
  echo "    pod-security.kubernetes.io/enforce: restricted"
  "$helm" template agentcache "$chart" --namespace "$namespace" --set injector.tlsSource=injector
} >"$out/install.yaml"
