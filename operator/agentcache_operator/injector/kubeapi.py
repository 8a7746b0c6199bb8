"""The little of the Kubernetes API the injector needs, over aiohttp.

Credentials come from the pod's service account (token re-read as the kubelet
rotates it) or from a kubeconfig (parsed by the ``kubernetes`` client, so exec
plugins and client certificates work). ``ApiCacheLookup`` keeps a short-lived
snapshot of the AgentCaches so that a burst of pod creations costs one LIST.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .. import names
from ..kube import ApiError, RestClient

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_REREAD_SECONDS = 60.0
INJECTOR_TIMEOUT = 10.0  # seconds per request: a lookup runs inside an admission call the API server times out


@dataclass(frozen=True)
class Credentials:
    server: str
    ca_file: str | None = None
    token: str | None = None
    token_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True

    @classmethod
    def in_cluster(cls) -> Credentials:
        host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        host = f"[{host}]" if ":" in host else host
        return cls(
            server=f"https://{host}:{port}",
            ca_file=str(SERVICE_ACCOUNT_DIR / "ca.crt"),
            token_file=str(SERVICE_ACCOUNT_DIR / "token"),
        )

    @classmethod
    def from_kubeconfig(cls, path: str | None = None) -> Credentials:
        from kubernetes import client, config

        configuration = client.Configuration()
        config.load_kube_config(config_file=path, client_configuration=configuration)
        authorization = configuration.api_key.get("authorization") or configuration.api_key.get("BearerToken")
        token = authorization.removeprefix("Bearer ").strip() if authorization else None
        return cls(
            server=configuration.host.rstrip("/"),
            ca_file=configuration.ssl_ca_cert,
            token=token,
            cert_file=configuration.cert_file,
            key_file=configuration.key_file,
            verify=configuration.verify_ssl,
        )

    @classmethod
    def discover(cls, kubeconfig: str | None = None) -> Credentials:
        """An explicit kubeconfig, else the service account inside a pod, else $KUBECONFIG / ~/.kube/config."""
        if (
            kubeconfig is None
            and os.environ.get("KUBERNETES_SERVICE_HOST")
            and (SERVICE_ACCOUNT_DIR / "token").exists()
        ):
            return cls.in_cluster()
        return cls.from_kubeconfig(kubeconfig)


def _ssl_context(credentials: Credentials) -> ssl.SSLContext | bool:
    if not credentials.server.startswith("https"):
        return False
    context = ssl.create_default_context(cafile=credentials.ca_file)
    if not credentials.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if credentials.cert_file:
        context.load_cert_chain(credentials.cert_file, credentials.key_file)
    return context


class KubeApi(RestClient):
    """The injector's API client: ``get`` answers None for 404, other errors raise ApiError."""

    def __init__(self, credentials: Credentials):
        super().__init__(credentials.server, _ssl_context(credentials), INJECTOR_TIMEOUT)
        self.credentials = credentials
        self._token: str | None = credentials.token
        self._token_read = 0.0

    def auth_headers(self) -> dict[str, str]:
        if self.credentials.token_file and time.monotonic() - self._token_read > TOKEN_REREAD_SECONDS:
            self._token = Path(self.credentials.token_file).read_text().strip()
            self._token_read = time.monotonic()
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    async def get(self, path: str) -> dict[str, Any] | None:
        return await self.get_path(path)


async def server_version(api: KubeApi) -> tuple[int, int] | None:
    """The API server's (major, minor) from ``/version`` ("1", "35+" -> (1, 35)); None if unreadable."""
    try:
        found = await api.get("/version") or {}
        return int(found["major"].rstrip("+")), int(found["minor"].rstrip("+"))
    except (TimeoutError, KeyError, ValueError, TypeError, ApiError, OSError):
        return None


def agentcaches_path(namespace: str | None = None) -> str:
    base = f"/apis/{names.GROUP}/{names.VERSION}"
    return f"{base}/namespaces/{namespace}/{names.PLURAL}" if namespace else f"{base}/{names.PLURAL}"


class CacheLookup(Protocol):
    async def caches_named(self, name: str, namespace: str) -> list[dict]:
        """Every AgentCache called ``name`` the injector can see (``namespace`` is the pod's)."""


class StaticLookup:
    """AgentCaches given up front (tests, and dry runs of the injector)."""

    def __init__(self, caches: list[dict]):
        self.caches = caches

    async def caches_named(self, name: str, namespace: str) -> list[dict]:
        return [c for c in self.caches if c["metadata"]["name"] == name]


class ApiCacheLookup:
    """AgentCaches from one LIST, reused for ``ttl`` seconds.

    When the pod's namespace has no cache of that name in a snapshot older than
    ``min_refresh`` seconds, the snapshot is refreshed once before answering, so
    a cache created just before its pods is found. Concurrent refreshes share
    one LIST.
    """

    def __init__(
        self,
        api: KubeApi,
        ttl: float = 5.0,
        min_refresh: float = 0.5,
        watch_namespace: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.api, self.ttl, self.min_refresh, self.clock = api, ttl, min_refresh, clock
        self.watch_namespace = watch_namespace
        self._snapshot: list[dict] = []
        self._taken = float("-inf")
        self._lock = asyncio.Lock()
        self.lists = 0

    async def _refresh(self, older_than: float) -> None:
        async with self._lock:
            if self.clock() - self._taken < older_than:
                return
            answer = await self.api.get(agentcaches_path(self.watch_namespace)) or {}
            self._snapshot = answer.get("items") or []
            self._taken = self.clock()
            self.lists += 1

    async def caches_named(self, name: str, namespace: str) -> list[dict]:
        await self._refresh(self.ttl)
        found = [c for c in self._snapshot if c["metadata"]["name"] == name]
        if not any(c["metadata"].get("namespace") == namespace for c in found):
            await self._refresh(self.min_refresh)
            found = [c for c in self._snapshot if c["metadata"]["name"] == name]
        return found
