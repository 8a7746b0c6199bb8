# The two commands of the README: `make run` and `make test`; `make lint` runs before the tests in CI.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: run test lint install tools k8s cluster cluster-down manifests bench

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

install: $(BIN)/.installed

# helm, kubectl, Prometheus/promtool, shellcheck; and the linters built from Go modules (kube-score, dashlint).
tools:
	bash scripts/install-tools.sh
	bash scripts/install-linters.sh

# The real Kubernetes control plane (built from pinned Go modules) the tests run on.
k8s:
	bash scripts/install-k8s.sh

# Start it in the background (etcd, kube-apiserver, controllers, scheduler, kwok's nodes)
# with the AgentCache CRD; the admin kubeconfig is .tools/kubeconfig.
cluster: install tools k8s
	bash scripts/cluster.sh up
	.tools/bin/kubectl --kubeconfig .tools/kubeconfig apply --server-side -f manifests/crds.yaml

cluster-down:
	bash scripts/cluster.sh down

run: install
	$(BIN)/agentcache-sidecar $(ARGS)

test: install tools k8s
	$(BIN)/pytest $(PYTEST_ARGS)

# ruff (lint and format), mypy, the import contracts of pyproject.toml, shellcheck on every shell script;
# gofmt and go vet on tools/dashlint; then what we ship: kube-score on manifests/install.yaml, the chart's
# renders and the operator's children (exceptions with reasons in scripts/kube-score.sh), the dashboards
# through dashlint (the rules of Grafana's dashboard-linter, exceptions in dashboards/.lint) and the alert
# rules through promtool. kube-linter, dashboard-linter and pint: not served by the Go module proxy here.
lint: install tools
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	.tools/bin/shellcheck scripts/*.sh .ci/run operator/agentcache_operator/scripts/*.sh
	test -z "$$(gofmt -l tools/dashlint)" || { gofmt -l tools/dashlint; exit 1; }
	cd tools/dashlint && go vet ./...
	bash scripts/kube-score.sh
	.tools/bin/dashlint -strict charts/agentcache/dashboards/*.json
	.tools/bin/promtool check rules --lint=all --lint-fatal charts/agentcache/alerts/*.yaml

# manifests/ rendered from the chart (tests/chart/test_manifests.py fails when they are stale).
manifests: tools
	bash scripts/render-manifests.sh

bench: install tools
	$(BIN)/python bench/sidecar.py
