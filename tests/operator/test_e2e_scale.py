"""End to end: objects that are not the operator's cost it nothing (server-side label selectors).

Kopf's ``labels=`` filters act in the client: without server-side selectors the operator
lists and watches every ConfigMap and Pod of the cluster. Here the cluster holds many
unrelated ConfigMaps and Pods; the operator's peak RSS at start does not grow with them,
and the watch bytes the API server sends while they all change do not grow when it runs.
(bench/operator.py gives the figures at 5,000.)
"""

from __future__ import annotations

import threading
import time
import uuid

import psutil
import pytest
import yaml

from .test_e2e import Operator, install_crd

pytestmark = pytest.mark.e2e

CONFIG_MAPS = 1000
CONFIG_MAP_BYTES = 4096
PODS = 200


def peak_rss_at_start(kube, workdir) -> int:
    """The operator's peak RSS over its first seconds: the initial lists and watches."""
    operator = Operator(kube, workdir, extra=("--leader-election-id", f"scale-{uuid.uuid4().hex[:6]}"))
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        process = psutil.Process(operator.process.pid)
        while not stop.is_set():
            try:
                peak = max(peak, process.memory_info().rss)
            except psutil.NoSuchProcess:
                return
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        operator.wait_live()
        time.sleep(4)
    finally:
        stop.set()
        sampler.join()
        operator.stop()
    return peak


def watch_bytes(kube) -> float:
    _, text = kube.api.request("GET", "/metrics")
    line = next(
        line
        for line in text.splitlines()
        if line.startswith('apiserver_watch_events_sizes_sum{group="",resource="configmaps"')
    )
    return float(line.rsplit(" ", 1)[1])


def churn(kube, namespace: str, value: str) -> float:
    """Watch bytes the API server sends while every unrelated ConfigMap changes once."""
    before = watch_bytes(kube)
    kube.kubectl("annotate", "configmap", "--all", "-n", namespace, f"churn={value}", "--overwrite", timeout=300)
    time.sleep(2)
    return watch_bytes(kube) - before


def test_unrelated_configmaps_and_pods_cost_the_operator_nothing(kube, kube_namespace, tmp_path):
    install_crd(kube)
    baseline = peak_rss_at_start(kube, tmp_path / "empty")

    filler = "x" * CONFIG_MAP_BYTES
    maps = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"unrelated-{i}", "labels": {"app": "other"}},
            "data": {"blob": filler},
        }
        for i in range(CONFIG_MAPS)
    ]
    kube.kubectl(
        "create",
        "-n",
        kube_namespace,
        "-f",
        "-",
        input=yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": maps}),
        timeout=300,
    )
    kube.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "unrelated"},
            "spec": {
                "replicas": PODS,
                "selector": {"matchLabels": {"app": "other"}},
                "template": {
                    "metadata": {"labels": {"app": "other"}},
                    "spec": {"containers": [{"name": "c", "image": "registry.example/other:1"}]},
                },
            },
        },
        "-n",
        kube_namespace,
    )
    kube.kubectl(
        "wait", "--for=condition=Available", "--timeout=180s", "deployment/unrelated", "-n", kube_namespace, timeout=200
    )

    crowded = peak_rss_at_start(kube, tmp_path / "crowded")
    grown = (crowded - baseline) / 2**20
    assert grown < 8, f"the operator's RSS grew by {grown:.1f} MiB with {CONFIG_MAPS} unrelated ConfigMaps"

    without = churn(kube, kube_namespace, "a")
    operator = Operator(kube, tmp_path / "watching", extra=("--leader-election-id", f"scale-{uuid.uuid4().hex[:6]}"))
    try:
        operator.wait_live()
        time.sleep(2)
        with_operator = churn(kube, kube_namespace, "b")
    finally:
        operator.stop()
    extra = with_operator - without
    assert extra < 0.1 * CONFIG_MAPS * CONFIG_MAP_BYTES, (
        f"the API server sent {extra / 2**20:.1f} MiB more watch events while the operator ran"
    )
