"""The TCP listener: ``/metrics`` for Prometheus and the kubelet's ``/healthz`` and ``/readyz``.

Prometheus and the kubelet cannot reach a Unix socket, so these three paths
are served on TCP ``metrics_host:metrics_port`` by the socket API's own
``CacheServer`` (the same protocol, limits and deadlines): no second HTTP
stack. ``/healthz`` means the socket serves (whatever the backend's health; a
503 ``busy`` counts as serving), ``/readyz`` also reports the backend.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agentcache.protocol import ERR_BUSY, HEALTH_PATH, METRICS_PATH, READY_PATH

from .app import SERVICE, _method_not_allowed, _not_found, errors_as_json, ready
from .budget import Budget
from .metrics import SidecarMetrics
from .server import CacheServer, Handler, Limits, Request, Response, json_response
from .store import CacheService

SOCKET_PROBE_TIMEOUT = 1.0
MAX_PROBE_CONNECTIONS = 256
"""Prometheus and the kubelet hold a few connections; more would only take from the socket's budget."""
PROBE_BODY = 1024


async def socket_serves(socket_path: str) -> bool:
    """Whether the cache API answers ``GET /healthz`` on its Unix socket within a second.

    A 503 ``busy`` (the socket is at its ``max_connections``) counts as serving: the server answered,
    and restarting it would drop every connection it holds.
    """
    try:
        async with asyncio.timeout(SOCKET_PROBE_TIMEOUT):
            reader, writer = await asyncio.open_unix_connection(socket_path)
            try:
                writer.write(f"GET {HEALTH_PATH} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n".encode())
                await writer.drain()
                status = await reader.readline()
                if status.startswith(b"HTTP/1.1 503"):
                    return _error_code((await reader.read()).partition(b"\r\n\r\n")[2]) == ERR_BUSY
                return status.startswith(b"HTTP/1.1 200")
            finally:
                writer.close()
    except (OSError, TimeoutError):
        return False


def _error_code(body: bytes) -> str | None:
    """The ``error`` of a JSON error body, None when it is not one."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    code = payload.get("error") if isinstance(payload, dict) else None
    return code if isinstance(code, str) else None


def create_probe_server(
    service: CacheService, metrics: SidecarMetrics, socket_path: str, budget: Budget
) -> CacheServer:
    """The three paths of the TCP listener (GET, and HEAD as aiohttp answered it), started with ``start_tcp``."""

    async def health(request: Request) -> Response:
        if await socket_serves(socket_path):
            return json_response({"status": "ok"})
        return json_response({"status": "the cache socket does not answer", "socket": socket_path}, status=503)

    async def serve_metrics(request: Request) -> Response:
        await service.sample_gauges()
        return Response(200, generate_latest(metrics.registry), {"Content-Type": CONTENT_TYPE_LATEST})

    paths: dict[str, Handler] = {METRICS_PATH: serve_metrics, HEALTH_PATH: health, READY_PATH: ready}
    not_allowed = _method_not_allowed(["GET", "HEAD"])

    def route(method: str, path: str) -> Handler:
        handler = paths.get(path)
        if handler is None:
            handler = _not_found
        elif method not in ("GET", "HEAD"):
            handler = not_allowed
        chosen = handler
        return lambda request: errors_as_json(request, chosen)

    return CacheServer(
        route,
        {SERVICE: service},
        dataclasses.replace(budget, connections=min(budget.connections, MAX_PROBE_CONNECTIONS)),
        Limits(max_line=8190),
        lambda url: (PROBE_BODY, "a request body"),
        on_reject=lambda reason: metrics.rejections.labels(reason).inc(),
    )
