#!/usr/bin/env bash
# kube-score (scripts/install-linters.sh builds it) on every Kubernetes object we ship:
# manifests/install.yaml; the chart rendered with its default values and with each values
# file of tests/chart/values/ (cert-manager, monitoring, namespaced, custom images and
# scheduling...); and the objects the operator creates for manifests/examples/*.yaml.
# Fails on any warning. The checks that do not apply are listed below, each with its reason;
# one object's exception is a `kube-score/ignore` annotation beside a comment in its template.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/.tools/bin"
python="${PYTHON:-$root/.venv/bin/python}"

# Checks off by default that our objects pass, and keep passing.
enabled=(
  container-seccomp-profile  # every pod and container: seccompProfile RuntimeDefault
  container-ports-check      # named, valid container ports
)
# Checks that do not apply, and why.
ignored=(
  # Images are pinned releases (the chart's appVersion tag, Valkey's exact version, the sidecar
  # by tag or digest) whose pull policy is a value (image.pullPolicy, sidecar.pullPolicy).
  # IfNotPresent starts pods without a registry round trip, and when the registry is down;
  # Always exists to re-check pull secrets on shared nodes, which a cluster enforces with the
  # AlwaysPullImages admission plugin rather than per chart.
  container-image-pull-policy
  # Every container has a read-only root filesystem: local writes go only to the declared
  # emptyDir volumes (/tmp of operator and injector, Valkey's /data when persistence is off,
  # which holds an RDB snapshot as large as maxMemory). A guessed ephemeral-storage limit
  # would evict a Valkey whose snapshot outgrew it; emptyDir sizes follow from maxMemory.
  container-ephemeral-storage-request-and-limit
  # Valkey, its sentinels and the cluster bootstrap Job run as the Valkey image's own user
  # and group (999), which own its files; kube-score wants an id above 10000 so as not to
  # share one with a host user, which matters for privileged or host-path pods (these run
  # with runAsNonRoot, no privilege escalation, all capabilities dropped, no host paths).
  container-security-context-user-group-id
  # The operator and the injector call the API server, and the injector's webhook is called
  # by it: its address and port (443 on the kubernetes Service, 6443 or another after DNAT,
  # outside the pod network on managed control planes) differ per cluster, so a policy the
  # chart guessed would break installs. The managed Valkey has an ingress NetworkPolicy
  # (agents and its own peers only); kube-score also asks for an egress one there.
  pod-networkpolicy
  # Sentinels: readiness and liveness both check that the sentinel port accepts connections,
  # the one thing a sentinel serves (the sidecars ask several and take the quorum's answer).
  pod-probes-identical
)

args=(score --kubernetes-version v1.35 --output-format ci --exit-one-on-warning --ignore-container-cpu-limit)
# CPU: requests reserve it, and no limit is set on purpose: a CPU limit throttles a cache
# and a webhook (CFS quota) when they are busiest. Memory limits are set and checked.
for test in "${enabled[@]}"; do args+=(--enable-optional-test "$test"); done
for test in "${ignored[@]}"; do args+=(--ignore-test "$test"); done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export HELM_CACHE_HOME="$work/helm" HELM_CONFIG_HOME="$work/helm" HELM_DATA_HOME="$work/helm"
chart="$root/charts/agentcache"
"$bin/helm" template agentcache "$chart" --namespace agentcache-system >"$work/chart-default.yaml"
for values in "$root"/tests/chart/values/*.yaml; do
  "$bin/helm" template agentcache "$chart" --namespace agentcache-system --values "$values" \
    >"$work/chart-$(basename "$values")"
done
"$python" "$root/scripts/render-children.py" >"$work/operator-children.yaml"

status=0
renders=("$work"/chart-*.yaml)
for file in "$root/manifests/install.yaml" "${renders[@]}" "$work/operator-children.yaml"; do
  if ! out="$("$bin/kube-score" "${args[@]}" "$file")"; then
    echo "kube-score: ${file#"$work"/}:" >&2
    echo "$out" | grep -v '^\[OK\]\|^\[SKIPPED\]' >&2
    status=1
  fi
done
if [ "$status" = 0 ]; then
  echo "kube-score: no findings on install.yaml, the chart (${#renders[@]} renders) and the operator's children"
fi
exit "$status"
