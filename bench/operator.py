"""Benchmark: how fast the operator brings N AgentCaches to their phase, and its peak memory.

Runs the real ``agentcache-operator`` process against the Kubernetes API emulator of
tests/support. Half the caches are ``memory`` (expected: Ready), half managed
standalone Valkey (expected: Pending, since the emulator runs no pods). Then the
benchmark plays the StatefulSet controller, marks every StatefulSet ready, and times
the managed half reaching Ready. Peak RSS is sampled with psutil every 20 ms.

    .venv/bin/python bench/operator.py [--caches 200] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.k8s import KubeApi, start_emulator, write_kubeconfig  # noqa: E402

CRD = ROOT / "charts" / "agentcache" / "crds" / "agentcaches.agentcache.io.yaml"
NAMESPACE = "bench"
CACHES_PATH = f"/apis/agentcache.io/v1alpha1/namespaces/{NAMESPACE}/agentcaches"
STS_PATH = f"/apis/apps/v1/namespaces/{NAMESPACE}/statefulsets"


class PeakRss:
    """Samples the RSS of a process in a thread; ``peak`` is the largest seen, in bytes."""

    def __init__(self, pid: int):
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.NoSuchProcess:
                return
            time.sleep(0.02)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def wait_phases(api: KubeApi, expected: dict[str, str], timeout: float) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        items = api.get(CACHES_PATH)["items"]
        phases = {i["metadata"]["name"]: (i.get("status") or {}).get("phase") for i in items}
        if all(phases.get(name) == phase for name, phase in expected.items()):
            return time.perf_counter() - started
        time.sleep(0.05)
    missing = sum(1 for n, p in expected.items() if phases.get(n) != p)
    raise SystemExit(f"{missing} caches did not reach their phase within {timeout}s")


def one_run(count: int, workdir: Path) -> dict[str, float]:
    with start_emulator(workdir) as server:
        kubeconfig = write_kubeconfig(workdir / "kubeconfig", server)
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KUBECACHEDIR": str(workdir / "kube-cache")}
        api = KubeApi(kubeconfig)
        api.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", yaml.safe_load(CRD.read_text()))
        api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        log = (workdir / "operator.log").open("wb")
        operator = subprocess.Popen(
            [sys.executable, "-m", "agentcache_operator.main", "-A", "--metrics-port", "0", "--liveness-port", "0"],
            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )
        rss = PeakRss(operator.pid)
        try:
            time.sleep(2)  # let kopf log in and start its watches
            expected = {}
            started = time.perf_counter()
            for i in range(count):
                name = f"cache-{i:04d}"
                spec = {"backend": "memory"} if i % 2 == 0 else {"backend": "valkey", "valkey": {"mode": "managed"}}
                api.create(CACHES_PATH, {"apiVersion": "agentcache.io/v1alpha1", "kind": "AgentCache",
                                         "metadata": {"name": name}, "spec": spec})
                expected[name] = "Ready" if i % 2 == 0 else "Pending"
            created = time.perf_counter() - started
            to_phase = wait_phases(api, expected, timeout=300) + created
            ready_started = time.perf_counter()
            for sts in api.get(STS_PATH)["items"]:
                api.patch(f"{STS_PATH}/{sts['metadata']['name']}/status", {"status": {
                    "replicas": 1, "readyReplicas": 1, "observedGeneration": sts["metadata"]["generation"]}})
            wait_phases(api, {name: "Ready" for name in expected}, timeout=300)
            to_ready = time.perf_counter() - ready_started
            emulator = next(p for p in psutil.Process().children() if p.pid != operator.pid)
            return {"create_s": created, "to_phase_s": to_phase, "managed_ready_s": to_ready,
                    "peak_rss_mib": rss.peak / 2**20, "operator_cpu_s": sum(psutil.Process(operator.pid).cpu_times()[:2]),
                    "emulator_cpu_s": sum(emulator.cpu_times()[:2])}
        finally:
            operator.send_signal(2)
            try:
                operator.wait(15)
            except subprocess.TimeoutExpired:
                operator.kill()
                operator.wait()
            rss.stop()
            log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--caches", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="bench-operator-") as tmp:
            result = one_run(args.caches, Path(tmp))
        results.append(result)
        print(f"run {run + 1}: " + ", ".join(f"{k}={v:.2f}" for k, v in result.items()), flush=True)
    print(f"median of {args.runs} runs, {args.caches} AgentCaches (half memory, half managed Valkey):")
    for key in results[0]:
        print(f"  {key}: {statistics.median(r[key] for r in results):.2f}")


if __name__ == "__main__":
    main()
