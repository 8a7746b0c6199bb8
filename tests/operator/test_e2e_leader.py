"""End to end: two operator processes, one Lease: exactly one reconciles, and a standby takes over.

A module of its own (with its own Lease name) so that no other operator competes.
"""

from __future__ import annotations

import time
import uuid

import pytest

from agentcache_operator import names

from .test_e2e import EXAMPLES, Operator, cache_path, install_crd, wait_phase

pytestmark = pytest.mark.e2e
LEASE_SECONDS = 4


def wait_until(predicate, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - started


def test_exactly_one_operator_acts_and_a_standby_takes_over_when_it_dies(kube, kube_namespace, tmp_path):
    install_crd(kube)
    lease = f"agentcache-operator-{uuid.uuid4().hex[:6]}"
    extra = ("--leader-election-id", lease, "--lease-seconds", str(LEASE_SECONDS))
    first = Operator(kube, tmp_path / "first", extra=extra)
    second = None
    try:
        first.wait_live()
        wait_until(lambda: first.sample("agentcache_operator_leader") == 1, 20, "the first operator to lead")
        second = Operator(kube, tmp_path / "second", extra=extra)
        second.wait_live()  # a standby answers its liveness probe
        kube.kubectl("apply", "-n", kube_namespace, "-f", str(EXAMPLES["memory"]))
        wait_phase(kube, kube_namespace, "memory-cache", "Ready")
        time.sleep(1)
        assert second.sample("agentcache_operator_leader") == 0
        assert second.sample('agentcache_operator_reconciles_total{result="ok"}') == 0, "the standby reconciled"
        assert first.sample('agentcache_operator_reconciles_total{result="ok"}') >= 1
        holder = kube.api.get(f"/apis/coordination.k8s.io/v1/namespaces/default/leases/{lease}")["spec"]
        assert holder["holderIdentity"]

        first.process.kill()  # dies without releasing the Lease
        first.process.wait()
        took = wait_until(
            lambda: second.sample("agentcache_operator_leader") == 1, LEASE_SECONDS * 5, "the standby to take over"
        )
        print(f"standby took over {took:.1f}s after the leader died (lease {LEASE_SECONDS}s)")
        kube.kubectl(
            "patch", "acache", "memory-cache", "-n", kube_namespace, "--type=merge", "-p", '{"spec":{"defaultTTL":77}}'
        )
        wait_phase(kube, kube_namespace, "memory-cache", "Ready")
        assert (
            "default_ttl: 77"
            in kube.api.get(f"/api/v1/namespaces/{kube_namespace}/configmaps/{names.config_map_name('memory-cache')}")[
                "data"
            ][names.CONFIG_FILE_KEY]
        )
        assert kube.api.get(cache_path(kube_namespace, "memory-cache"))["status"]["observedGeneration"] == 2
    finally:
        first.stop()
        if second is not None:
            second.stop()
    assert not kube.api.exists(f"/apis/coordination.k8s.io/v1/namespaces/default/leases/{lease}"), (
        "a leader that stops releases its Lease, so a standby need not wait for it to expire"
    )
