#!/usr/bin/env bash
# Builds the linters `make lint` runs on what we ship into .tools/bin (git-ignored):
#   kube-score  the chart, manifests/install.yaml and the operator's managed Valkey objects
#               (github.com/zegl/kube-score, pinned below, from the Go module proxy);
#   dashlint    the Grafana dashboards, with the rules of Grafana's dashboard-linter
#               (tools/dashlint: the proxy serves neither dashboard-linter nor kube-linter).
# Idempotent: a stamp records what was built; a second run with the same pins does nothing.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/.tools"
bin="$tools/bin"
KUBE_SCORE_VERSION="v1.20.0"
mkdir -p "$bin"

if ! command -v go >/dev/null 2>&1; then
  echo "install-linters: Go is needed to build kube-score and dashlint (go.dev/doc/install)" >&2
  exit 1
fi

pins="$(cat "$root"/tools/dashlint/go.mod "$root"/tools/dashlint/go.sum "$root"/tools/dashlint/*.go "$0" | sha256sum | cut -c1-16)"
stamp="$tools/linters.stamp"
if [ -x "$bin/kube-score" ] && [ -x "$bin/dashlint" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$pins" ]; then
  exit 0
fi

started=$SECONDS
echo "install-linters: building kube-score $KUBE_SCORE_VERSION and dashlint"
GOBIN="$bin" go install -trimpath \
  -ldflags "-X main.version=$KUBE_SCORE_VERSION" \
  "github.com/zegl/kube-score/cmd/kube-score@$KUBE_SCORE_VERSION"
(cd "$root/tools/dashlint" && go build -trimpath -o "$bin/dashlint" .)

echo "$pins" > "$stamp"
echo "install-linters: built in $((SECONDS - started)) s"
