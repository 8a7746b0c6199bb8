"""Every operator dashboard query returns data from a real Prometheus scraping the real operator.

``agentcache-operator`` runs against the session's real Kubernetes API (the local control plane, or
$KUBECONFIG's cluster) and reconciles two caches: one it can honour and one whose spec
names a missing Secret (phase Failed), so ok and failed reconciles are both real.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
import urllib.request

import pytest

from agentcache_operator import names
from tests.support.tools import ROOT
from tests.support.valkey import free_port

from .dashboards import all_dashboards, queries, substitute, variables
from .helm import CHART
from .prometheus import PrometheusProcess

pytestmark = pytest.mark.e2e
RATE_INTERVAL = "5s"
LABELS = {"namespace": "agentcache-system", "pod": "agentcache-operator-0"}
QUERY_DEADLINE = 30.0


def agent_cache(namespace: str, name: str, spec: dict) -> dict:
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def wait_live(process: subprocess.Popen, url: str, log) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"agentcache-operator did not become live:\n{log.read_text(errors='replace')}")


def has_data(reply: dict) -> bool:
    return reply["status"] == "success" and any(
        not math.isnan(float(sample["value"][1])) for sample in reply["data"]["result"]
    )


def test_every_operator_dashboard_query_returns_data(kube, kube_namespace, tmp_path):
    kube.kubectl("apply", "--validate=false", "-f", str(CHART / "crds"))
    metrics_port, liveness_port = free_port(), free_port()
    log = tmp_path / "operator.log"
    with log.open("wb") as output:
        operator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agentcache_operator.main",
                "--namespace",
                kube_namespace,
                "--bind",
                "127.0.0.1",
                "--metrics-port",
                str(metrics_port),
                "--liveness-port",
                str(liveness_port),
                "--resync-seconds",
                "1",
            ],
            cwd=ROOT,
            env=kube.env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    prometheus = None
    try:
        wait_live(operator, f"http://127.0.0.1:{liveness_port}/healthz", log)
        kube.apply(
            [
                agent_cache(kube_namespace, "good", {"backend": "memory"}),
                agent_cache(
                    kube_namespace,
                    "broken",
                    {
                        "backend": "valkey",
                        "valkey": {
                            "mode": "external",
                            "url": "valkey://valkey.example:6379",
                            "passwordSecretRef": {"name": "no-such-secret", "key": "password"},
                        },
                    },
                ),
            ]
        )
        prometheus = PrometheusProcess(tmp_path / "prometheus", [(f"127.0.0.1:{metrics_port}", LABELS)]).start()
        dashboard = all_dashboards()["operator"]
        pending = {
            q: substitute(q.expr, {"namespace": ".*", "pod": ".*"}, RATE_INTERVAL)
            for q in queries("operator", dashboard)
        }
        replies: dict = {}
        deadline = time.monotonic() + QUERY_DEADLINE
        while pending and time.monotonic() < deadline:
            for query, expr in list(pending.items()):
                replies[query] = prometheus.query(expr)
                assert replies[query]["status"] == "success", f"{query.panel}: {expr}: {replies[query]}"
                if has_data(replies[query]):
                    del pending[query]
            time.sleep(0.5)
        assert not pending, {q.panel: replies[q] for q in pending}
        failed = prometheus.query('agentcache_operator_caches{phase="Failed"}')["data"]["result"]
        assert float(failed[0]["value"][1]) == 1
        for name, variable in variables(dashboard).items():
            if variable["type"] == "query":
                metric = variable["definition"].removeprefix("label_values(").rsplit(",", 1)[0]
                assert prometheus.label_values(name, substitute(metric, {"namespace": ".*"}, "")) == [LABELS[name]]
    finally:
        if prometheus:
            prometheus.stop()
        operator.terminate()
        try:
            operator.wait(10)
        except subprocess.TimeoutExpired:
            operator.kill()
            operator.wait()
