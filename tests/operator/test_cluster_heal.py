"""A managed cluster heals itself: real valkey-servers run the shipped start.sh, heal.sh and ready.sh."""

from __future__ import annotations

import time

import pytest

from tests.support.process import free_port

from .cluster_nodes import Cluster, Load, cluster_data

HEAL_TIMEOUT = 120


@pytest.fixture
def cluster(tmp_path):
    """A formed 3 x 2 cluster, every node started as the StatefulSet starts it."""
    nodes = Cluster(tmp_path, cluster_data()).start()
    try:
        nodes.bootstrap()
        nodes.wait_healthy(HEAL_TIMEOUT)
        yield nodes
    finally:
        nodes.stop()


def assert_load_recovered(load: Load) -> None:
    """The load runs without errors again, and every write acknowledged since is readable."""
    settled = time.monotonic()
    ops = load.ops
    time.sleep(2)
    assert load.ops > ops, "the load must make progress"
    assert load.errors_since(settled) == 0
    assert load.lost(since=settled) == []


@pytest.mark.e2e
def test_a_primary_restarted_empty_rejoins_as_a_replica_under_load(cluster):
    with Load(cluster) as load:
        time.sleep(1)
        victim = cluster.primary()
        killed = time.monotonic()
        node = cluster.restart_empty(victim)
        cluster.wait_healthy(HEAL_TIMEOUT)
        healed = time.monotonic() - killed
        assert "myself,slave" in node.cli("cluster", "nodes")
        assert load.errors_since(killed), "a killed primary must have been noticed by the load"
        assert_load_recovered(load)
    print(f"healed {healed:.1f}s after the kill")


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_a_rolling_restart_in_statefulset_order_keeps_every_slot_served(cluster):
    """Highest ordinal first, each pod stopped (preStop, then killed) and replaced empty, the next one only once
    it is ready. Primaries hand their slots over before they stop, so the load never fails."""
    with Load(cluster) as load:
        started = time.monotonic()
        for i in reversed(range(len(cluster.nodes))):
            node = cluster.restart_empty(i, graceful=True)
            node.wait(node.probe, f"node-{i} to be ready", timeout=HEAL_TIMEOUT)
        cluster.wait_healthy(HEAL_TIMEOUT)
        assert load.errors_since(started) == 0
        assert_load_recovered(load)


@pytest.mark.e2e
def test_nodes_are_ready_once_the_bootstrap_gave_them_their_part(tmp_path):
    cluster = Cluster(tmp_path, cluster_data()).start()
    try:
        assert not any(node.probe() for node in cluster.nodes), "a node without slots or a primary serves nothing"
        cluster.bootstrap()
        cluster.wait_healthy(HEAL_TIMEOUT)
    finally:
        cluster.stop()


@pytest.mark.e2e
def test_a_node_is_ready_while_it_serves_even_when_another_shard_is_down(cluster):
    """Readiness is this node's own service, not cluster_state:ok: one lost shard stalls no rollout."""
    primary = cluster.primary()
    replica = cluster.replica_of(primary)
    for i in (primary, replica):
        cluster.nodes[i].stop()
    others = [node for i, node in enumerate(cluster.nodes) if i not in (primary, replica)]
    others[0].wait(lambda: "cluster_state:fail" in others[0].cli("cluster", "info"), "the lost shard", timeout=30)
    assert all(node.probe() for node in others)


@pytest.mark.e2e
def test_nodes_restarted_with_their_nodes_conf_at_new_addresses_find_each_other(tmp_path):
    """Persistence keeps nodes.conf, but every pod comes back at a new address: the stale ones are replaced."""
    cluster = Cluster(tmp_path, cluster_data(persistence=True)).start()
    try:
        cluster.bootstrap()
        cluster.wait_healthy(HEAL_TIMEOUT)
        ids = sorted(node.cli("cluster", "myid") for node in cluster.nodes)
        cluster.stop()
        cluster.ports = [free_port() for _ in cluster.nodes]
        cluster.nodes = [cluster._node(i) for i in range(len(cluster.nodes))]
        cluster.start()
        cluster.wait_healthy(HEAL_TIMEOUT)
        assert sorted(node.cli("cluster", "myid") for node in cluster.nodes) == ids
    finally:
        cluster.stop()


@pytest.mark.e2e
def test_a_primary_without_replicas_restarted_empty_takes_its_slots_back(tmp_path):
    """No replica can be promoted: the new node claims the slots of its dead incarnation (their keys are lost)."""
    cluster = Cluster(tmp_path, cluster_data(replicas=0), replicas=0).start()
    try:
        cluster.bootstrap()
        cluster.wait_healthy(HEAL_TIMEOUT)
        before = cluster.nodes[1].cli("cluster", "nodes")
        slots = next(line.split()[8:] for line in before.splitlines() if "myself" in line)
        node = cluster.restart_empty(1)
        cluster.wait_healthy(HEAL_TIMEOUT)
        after = next(line.split() for line in node.cli("cluster", "nodes").splitlines() if "myself" in line)
        assert "master" in after[2] and after[8:] == slots
    finally:
        cluster.stop()
