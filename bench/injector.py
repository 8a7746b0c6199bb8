"""Latency the injector adds to pod creation: p50/p99 over N AdmissionReviews over HTTPS.

Starts the real ``agentcache-injector`` (own CA via --tls-dir, AgentCaches from
--caches, so no API server) and, as the baseline, a trivial aiohttp HTTPS
endpoint in its own process that answers every review "allowed" without
looking at it, using the same certificate. One verified TLS connection per
server, kept alive (as the API server does), requests one at a time, alternating
between the two servers so both see the same machine noise.

    .venv/bin/python bench/injector.py [--reviews 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.injector.helpers import review as admission_review
from tests.support.process import free_port

SERVICE, NAMESPACE = "agentcache-injector", "agentcache"
HOST = f"{SERVICE}.{NAMESPACE}.svc"
CACHE = {
    "apiVersion": "agentcache.io/v1alpha1",
    "kind": "AgentCache",
    "metadata": {"name": "llm-cache", "namespace": "agents"},
    "spec": {"backend": "valkey", "valkey": {"mode": "managed"}},
    "status": {"phase": "Ready"},
}


def review() -> dict:
    """A typical Deployment pod: two containers, an init container, volumes, annotations."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "agent-7d9f-",
            "namespace": "agents",
            "labels": {"app": "agent", "agentcache.io/cache": "llm-cache", "pod-template-hash": "7d9f"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"},
        },
        "spec": {
            "initContainers": [{"name": "migrate", "image": "agent:1", "command": ["migrate"]}],
            "containers": [
                {
                    "name": "agent",
                    "image": "agent:1",
                    "env": [{"name": "MODEL", "value": "gpt"}],
                    "ports": [{"containerPort": 8000}],
                    "volumeMounts": [
                        {"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
                    ],
                },
                {"name": "proxy", "image": "proxy:1"},
            ],
            "volumes": [
                {"name": "kube-api-access", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}
            ],
        },
    }
    return admission_review(pod, "agents")


def serve_baseline(port: int, tls_dir: str) -> None:
    """The trivial endpoint: parse the JSON, answer allowed."""
    from aiohttp import web

    async def mutate(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response(
            {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": {"uid": body["request"]["uid"], "allowed": True},
            }
        )

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(f"{tls_dir}/tls.crt", f"{tls_dir}/tls.key")
    app = web.Application()
    app.router.add_post("/mutate", mutate)
    web.run_app(app, host="127.0.0.1", port=port, ssl_context=context, access_log=None, print=None)


def wait_tls(port: int, ca_file: str, process: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"server on port {port} exited with {process.returncode}")
        try:
            context = ssl.create_default_context(cafile=ca_file)
            with (
                socket.create_connection(("127.0.0.1", port), timeout=1) as raw,
                context.wrap_socket(raw, server_hostname=HOST),
            ):
                return
        except (OSError, ssl.SSLError):
            time.sleep(0.05)
    sys.exit(f"server on port {port} did not start")


async def measure(ports: dict[str, int], ca_file: str, count: int, warmup: int) -> dict[str, list[float]]:
    """Latencies in ms per server; requests alternate between the servers so both see the same machine noise."""
    context = ssl.create_default_context(cafile=ca_file)
    sessions = {name: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1, ssl=context)) for name in ports}
    latencies: dict[str, list[float]] = {name: [] for name in ports}
    try:
        for index in range(warmup + count):
            for name, port in ports.items():
                body = json.dumps(review())
                started = time.perf_counter()
                async with sessions[name].post(
                    f"https://127.0.0.1:{port}/mutate",
                    data=body,
                    server_hostname=HOST,
                    headers={"Content-Type": "application/json"},
                ) as reply:
                    answer = await reply.json()
                elapsed = time.perf_counter() - started
                assert reply.status == 200 and answer["response"]["allowed"], answer
                if index >= warmup:
                    latencies[name].append(elapsed * 1000)
    finally:
        for session in sessions.values():
            await session.close()
    return latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reviews", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--baseline-server", nargs=2, metavar=("PORT", "TLS_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_server:
        serve_baseline(int(args.baseline_server[0]), args.baseline_server[1])
        return
    with tempfile.TemporaryDirectory(prefix="bench-injector-") as tmp:
        caches = Path(tmp, "caches.yaml")
        caches.write_text(yaml.safe_dump(CACHE))
        tls_dir, ca_file = Path(tmp, "tls"), str(Path(tmp, "tls", "ca.crt"))
        injector_port, baseline_port = free_port(), free_port()
        injector = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("agentcache-injector")),
                "--host",
                "127.0.0.1",
                "--port",
                str(injector_port),
                "--namespace",
                NAMESPACE,
                "--service",
                SERVICE,
                "--tls-dir",
                str(tls_dir),
                "--caches",
                str(caches),
                "--log-level",
                "warning",
            ]
        )
        baseline = None
        try:
            deadline = time.monotonic() + 20
            while not Path(ca_file).exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            wait_tls(injector_port, ca_file, injector)
            baseline = subprocess.Popen(
                [sys.executable, __file__, "--baseline-server", str(baseline_port), str(tls_dir)]
            )
            wait_tls(baseline_port, ca_file, baseline)
            measured = asyncio.run(
                measure({"baseline": baseline_port, "injector": injector_port}, ca_file, args.reviews, args.warmup)
            )
            base, inj = measured["baseline"], measured["injector"]
        finally:
            for process in (injector, baseline):
                if process is not None:
                    process.terminate()
                    process.wait(10)
    rows = {"baseline (trivial aiohttp HTTPS)": base, "agentcache-injector": inj}
    print(
        f"{args.reviews} AdmissionReviews each, one kept-alive verified TLS connection each, sequential, alternating "
        f"(python {sys.version.split()[0]}, {os.cpu_count()} CPUs)"
    )
    for name, values in rows.items():
        print(
            f"  {name:34s} p50 {percentile(values, 0.50):6.3f} ms   p99 {percentile(values, 0.99):6.3f} ms   "
            f"mean {statistics.fmean(values):6.3f} ms"
        )
    print(
        f"  {'added by the injector':34s} p50 {percentile(inj, 0.50) - percentile(base, 0.50):6.3f} ms   "
        f"p99 {percentile(inj, 0.99) - percentile(base, 0.99):6.3f} ms"
    )


if __name__ == "__main__":
    main()
