"""Benchmark: how long a managed Valkey takes to recover from losing its primary.

Real valkey-server processes run the operator's shipped scripts (start.sh, heal.sh, ready.sh,
follow.sh, sentinel.sh), as in tests/operator/test_cluster_heal.py and test_sentinel_failover.py.
Each round SIGKILLs the current primary and restarts its pod at once with an empty data
directory, as Kubernetes replaces a lost pod. It prints every round and the median of:

- cluster: kill -> the load's last error (its slots served again by a promoted replica), and
  kill -> every node in cluster_state:ok with all 16384 slots served, the dead node id
  forgotten everywhere, the new node a ready replica (3 shards, 1 replica each), under a write/read
  load from 4 cluster clients;
- rolling: a rolling restart of the cluster in StatefulSet order (highest ordinal first; preStop
  handover.sh, then kill; the pod replaced empty; the next one once ready.sh passes): each pod's
  time to ready, the whole restart, and the load's errors (none expected);
- sentinel: kill -> the first write through a real sidecar that is no longer degraded (answered by
  the promoted replica, found through Sentinel), under 8 clients writing through the sidecar.

    .venv/bin/python bench/failover.py [--rounds 5] [--only cluster|rolling|sentinel]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.operator.cluster_nodes import Cluster, Load, cluster_data  # noqa: E402
from tests.operator.replicated_nodes import Replicated, sidecar_config  # noqa: E402
from tests.support.sidecar import SidecarProcess  # noqa: E402

TIMEOUT = 120


@contextlib.contextmanager
def loaded_cluster(root: Path) -> Iterator[tuple[Cluster, Load]]:
    """A formed 3 x 2 cluster under a write/read load; stopped afterwards."""
    cluster = Cluster(root, cluster_data()).start()
    try:
        cluster.bootstrap()
        cluster.wait_healthy(TIMEOUT)
        with Load(cluster) as load:
            yield cluster, load
    finally:
        cluster.stop()


def cluster_rounds(root: Path, rounds: int) -> list[float]:
    times = []
    with loaded_cluster(root) as (cluster, load):
        for n in range(rounds):
            victim = cluster.primary()
            killed = time.monotonic()
            cluster.restart_empty(victim)
            cluster.wait_healthy(TIMEOUT)
            served = max(at for at in load.errors if at >= killed) - killed
            times.append(time.monotonic() - killed)
            print(
                f"cluster round {n + 1}: node-{victim}'s slots served again after ~{served:.1f}s, the new node a "
                f"ready replica after {times[-1]:.1f}s ({load.errors_since(killed)} client errors)",
                flush=True,
            )
    return times


def rolling_rounds(root: Path, rounds: int) -> list[float]:
    times = []
    with loaded_cluster(root) as (cluster, load):
        for n in range(rounds):
            started = time.monotonic()
            pods = []
            for i in reversed(range(len(cluster.nodes))):
                stopped = time.monotonic()
                node = cluster.restart_empty(i, graceful=True)
                node.wait(node.probe, f"node-{i} to be ready", timeout=TIMEOUT)
                pods.append(time.monotonic() - stopped)
            cluster.wait_healthy(TIMEOUT)
            times.append(time.monotonic() - started)
            print(
                f"rolling round {n + 1}: {times[-1]:.1f}s for 6 pods (each to ready: "
                f"{', '.join(f'{t:.1f}s' for t in pods)}; {load.errors_since(started)} client errors)",
                flush=True,
            )
    return times


async def _writer(http, stop: asyncio.Event, writes: list) -> None:
    n = 0
    while not stop.is_set():
        async with http.put(f"/v1/keys/w{n % 100}", data=b"v") as resp:
            await resp.read()
            assert resp.status < 500, resp.status
            writes.append((time.monotonic(), "X-Cache-Degraded" in resp.headers))
        n += 1


async def sentinel_rounds(root: Path, rounds: int) -> list[float]:
    group = Replicated(root).start()
    sidecar = SidecarProcess(root / "sidecar", sidecar_config(group)).start()
    times = []
    try:
        async with sidecar.session() as http:
            stop = asyncio.Event()
            writes: list = []
            workers = [asyncio.create_task(_writer(http, stop, writes)) for _ in range(8)]
            for n in range(rounds):
                await asyncio.sleep(2)
                victim = group.ports.index(group.primary_port())
                killed = time.monotonic()
                await asyncio.to_thread(group.restart_empty, victim)
                while group.primary_port() == group.ports[victim] or not [
                    at for at, degraded in writes[-50:] if at > killed and not degraded
                ]:
                    assert time.monotonic() - killed < TIMEOUT, "writes never resumed"
                    await asyncio.sleep(0.1)
                await asyncio.sleep(1)
                last_degraded = max(at for at, degraded in writes if degraded)
                times.append(min(at for at, degraded in writes if at > last_degraded and not degraded) - killed)
                print(f"sentinel round {n + 1}: writes resumed {times[-1]:.1f}s after the kill", flush=True)
                returned = group.nodes[victim]
                await asyncio.to_thread(
                    returned.wait,
                    lambda: "master_link_status:up" in returned.cli("info", "replication"),
                    "the old primary to follow the new one",
                    TIMEOUT,
                )
            stop.set()
            await asyncio.gather(*workers)
    finally:
        sidecar.stop()
        group.stop()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", choices=["cluster", "rolling", "sentinel"])
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="failover-bench-") as tmp:
        if args.only in (None, "cluster"):
            results["cluster heal"] = cluster_rounds(Path(tmp) / "cluster", args.rounds)
        if args.only in (None, "rolling"):
            results["cluster rolling restart"] = rolling_rounds(Path(tmp) / "rolling", args.rounds)
        if args.only in (None, "sentinel"):
            results["sentinel failover"] = asyncio.run(sentinel_rounds(Path(tmp) / "sentinel", args.rounds))
    for what, times in results.items():
        print(
            f"{what}: median {statistics.median(times):.1f}s over {len(times)} rounds "
            f"(min {min(times):.1f}s, max {max(times):.1f}s)"
        )


if __name__ == "__main__":
    main()
