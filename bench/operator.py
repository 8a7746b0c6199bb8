"""Benchmark: the operator on a real control plane, and what it costs the API server at rest.

Runs the real ``agentcache-operator`` process against the local control plane of
scripts/cluster.sh (started if none runs; or the cluster $KUBECONFIG names). Half the
caches are ``memory``, half managed standalone Valkey: those reach Ready once the real
StatefulSet controller's pods are scheduled on kwok's nodes and made Ready.

It prints, for each size:
- the time for every cache to reach Ready, and the operator's peak RSS (psutil, every 20 ms);
- the API server's request rate in steady state (nothing changes; the operator's resync
  runs), read from its own ``apiserver_request_total`` over ``--window`` seconds with the
  operator running, minus the same window with the operator stopped (the rest of the
  control plane: controllers, scheduler, kwok's heartbeats), as reads and writes per minute.

    .venv/bin/python bench/operator.py [--caches 200 1000] [--window 150]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.k8s import KubeApi, local_control_plane, real_cluster_kubeconfig  # noqa: E402

CRD = ROOT / "charts" / "agentcache" / "crds" / "agentcaches.agentcache.io.yaml"
WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY"}
WATCH_BYTES = "watch-bytes"  # not a verb: bytes of watch events the API server sent


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


Counts = dict[tuple[str, str], float]  # (verb, resource) -> requests


def request_counts(api: KubeApi) -> Counts:
    """Requests the API server has answered since it started, by verb and resource, from its /metrics."""
    _, text = api.request("GET", "/metrics")
    counts: Counts = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "apiserver_request_total":
                key = (sample.labels.get("verb", ""), sample.labels.get("resource", ""))
                counts[key] = counts.get(key, 0) + sample.value
            elif sample.name == "apiserver_watch_events_sizes_sum":
                key = (WATCH_BYTES, sample.labels.get("resource", ""))
                counts[key] = counts.get(key, 0) + sample.value
    return counts


def per_minute(api: KubeApi, window: float) -> Counts:
    before = request_counts(api)
    time.sleep(window)
    after = request_counts(api)
    return {key: (n - before.get(key, 0)) * 60 / window for key, n in after.items() if n != before.get(key, 0)}


def total(counts: Counts, writes: bool) -> float:
    return sum(n for (verb, _), n in counts.items() if verb != WATCH_BYTES and (verb in WRITE_VERBS) == writes)


def watch_kib(counts: Counts) -> float:
    return sum(n for (verb, _), n in counts.items() if verb == WATCH_BYTES) / 1024


def add_unrelated(api: KubeApi, kubeconfig: Path, env: dict[str, str], count: int) -> None:
    """``count`` ConfigMaps (4 KiB each) and a Deployment of ``count`` pods that are none of the operator's."""
    namespace = "unrelated"
    api.request(
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        check=False,
    )
    maps = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"noise-{i}", "labels": {"app": "noise"}},
            "data": {"blob": "x" * 4096},
        }
        for i in range(count)
    ]
    kubectl = [str(ROOT / ".tools" / "bin" / "kubectl"), "--kubeconfig", str(kubeconfig), "-n", namespace]
    subprocess.run(
        [*kubectl, "create", "-f", "-"],
        input=yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": maps}),
        text=True,
        capture_output=True,
        env=env,
        check=False,
    )
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "noise"},
        "spec": {
            "replicas": count,
            "selector": {"matchLabels": {"app": "noise"}},
            "template": {
                "metadata": {"labels": {"app": "noise"}},
                "spec": {"containers": [{"name": "c", "image": "registry.example/noise:1"}]},
            },
        },
    }
    subprocess.run(
        [*kubectl, "apply", "-f", "-"],
        input=yaml.safe_dump(deployment),
        text=True,
        capture_output=True,
        env=env,
        check=True,
    )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        pods = api.get(f"/api/v1/namespaces/{namespace}/pods", limit="1")
        if int(pods["metadata"].get("remainingItemCount", 0)) + len(pods["items"]) >= count:
            break
        time.sleep(2)
    print(f"{count} unrelated ConfigMaps and pods in the cluster", flush=True)


@contextlib.contextmanager
def operator_process(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "agentcache_operator.main", "-A", "--metrics-port", "0", "--liveness-port", "0"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        process.send_signal(2)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_ready(api: KubeApi, path: str, count: int, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    shown = time.monotonic()
    phases: dict[str, int] = {}
    while time.monotonic() < deadline:
        phases = {}
        for item in api.get(path)["items"]:
            phase = (item.get("status") or {}).get("phase") or "none"
            phases[phase] = phases.get(phase, 0) + 1
        if phases.get("Ready") == count:
            return
        if time.monotonic() - shown > 30:
            print(f"  ... {phases}", flush=True)
            shown = time.monotonic()
        time.sleep(1)
    tail = log.read_text(errors="replace")[-3000:]
    raise SystemExit(f"not every cache reached Ready within {timeout}s: {phases}\noperator log:\n{tail}")


def one_size(api: KubeApi, env: dict[str, str], count: int, window: float, workdir: Path) -> dict[str, float]:
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    path = f"/apis/agentcache.io/v1alpha1/namespaces/{namespace}/agentcaches"
    api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    try:
        log = workdir / f"operator-{count}.log"
        with operator_process(env, log) as operator:
            rss = PeakRss(operator.pid)
            time.sleep(2)  # let kopf log in and start its watches
            started = time.perf_counter()
            for i in range(count):
                spec = {"backend": "memory"} if i % 2 == 0 else {"backend": "valkey", "valkey": {"mode": "managed"}}
                api.create(
                    path,
                    {
                        "apiVersion": "agentcache.io/v1alpha1",
                        "kind": "AgentCache",
                        "metadata": {"name": f"cache-{i:04d}"},
                        "spec": spec,
                    },
                )
            created = time.perf_counter() - started
            wait_ready(api, path, count, timeout=120 + 2 * count, log=log)
            to_ready = time.perf_counter() - started
            time.sleep(5)  # the last status writes and pod events settle
            running = per_minute(api, window)
            peak = rss.stop()
        rest = per_minute(api, window)
        operator_share = {key: n - rest.get(key, 0) for key, n in running.items()}
        requests = {key: n for key, n in operator_share.items() if key[0] != WATCH_BYTES and abs(n) >= 0.5}
        print(
            "  the operator's requests/min by verb and resource: "
            + ", ".join(f"{v} {r or '-'} {n:.1f}" for (v, r), n in sorted(requests.items(), key=lambda kv: -kv[1]))
        )
        return {
            "create_s": created,
            "all_ready_s": to_ready,
            "peak_rss_mib": peak / 2**20,
            "operator_watch_kib_per_min": watch_kib(running) - watch_kib(rest),
            "operator_reads_per_min": total(running, False) - total(rest, False),
            "operator_writes_per_min": total(running, True) - total(rest, True),
            "rest_of_control_plane_per_min": total(rest, False) + total(rest, True),
        }
    finally:
        api.request("DELETE", f"/api/v1/namespaces/{namespace}", check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--caches", type=int, nargs="+", default=[200, 1000])
    parser.add_argument(
        "--unrelated",
        type=int,
        default=0,
        help="first fill the cluster with this many ConfigMaps and pods that are not the operator's",
    )
    parser.add_argument(
        "--window",
        type=float,
        default=150.0,
        help="seconds of steady state measured (at least two of the operator's 60 s resyncs)",
    )
    args = parser.parse_args()
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bench-operator-") as tmp:
        given = real_cluster_kubeconfig()
        kubeconfig = Path(given) if given else stack.enter_context(local_control_plane())
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KUBECACHEDIR": str(Path(tmp) / "kube-cache")}
        api = KubeApi(kubeconfig)
        api.request(
            "POST",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            yaml.safe_load(CRD.read_text()),
            check=False,
        )
        api.wait_for("/apis/agentcache.io/v1alpha1/agentcaches?limit=1", lambda o: o is not None, timeout=30)
        if args.unrelated:
            add_unrelated(api, kubeconfig, env, args.unrelated)
        print(
            f"operator on {'the cluster $KUBECONFIG names' if given else 'the local control plane'}; "
            f"steady-state windows of {args.window:.0f} s",
            flush=True,
        )
        for count in args.caches:
            result = one_size(api, env, count, args.window, Path(tmp))
            print(
                f"{count} AgentCaches (half memory, half managed Valkey): "
                + ", ".join(f"{k}={v:.1f}" for k, v in result.items()),
                flush=True,
            )


if __name__ == "__main__":
    main()
