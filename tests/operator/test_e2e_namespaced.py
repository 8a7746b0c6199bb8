"""End to end: ``agentcache-operator --namespace X`` reconciles caches of X and leaves other namespaces alone.

A module of its own so that no cluster-wide operator (test_e2e.py's fixture) runs at the same time.
"""

from __future__ import annotations

import time
import uuid

import pytest

from agentcache_operator import names

from .test_e2e import EXAMPLES, cache_path, child_path, install_crd, running_operator, wait_phase

pytestmark = pytest.mark.e2e


def test_namespaced_operator_reconciles_only_its_namespace(kube, kube_namespace, tmp_path):
    install_crd(kube)
    other = f"t-{uuid.uuid4().hex[:10]}"
    kube.api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": other}})
    try:
        with running_operator(kube, tmp_path, "--namespace", kube_namespace):
            for namespace in (other, kube_namespace):
                kube.kubectl("apply", "--validate=false", "-n", namespace, "-f", str(EXAMPLES["memory"]))
            wait_phase(kube, kube_namespace, "memory-cache", "Ready")
            time.sleep(1.5)  # the other namespace's cache was created first: it had time to be (wrongly) handled
            assert "status" not in kube.api.get(cache_path(other, "memory-cache"))
            assert not kube.api.exists(child_path("ConfigMap", other, names.config_map_name("memory-cache")))
    finally:
        kube.api.request("DELETE", f"/api/v1/namespaces/{other}", check=False)
