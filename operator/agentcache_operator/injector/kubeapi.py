"""The little of the Kubernetes API the injector needs, over aiohttp.

Credentials come from the pod's service account (token re-read as the kubelet
rotates it) or from a kubeconfig (parsed by the ``kubernetes`` client, so exec
plugins and client certificates work). ``ApiCacheLookup`` keeps a short-lived
snapshot of the AgentCaches so that a burst of pod creations costs one LIST.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import aiohttp

from .. import names
from ..kube import ApiError, json_reply

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_REREAD_SECONDS = 60.0


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


class KubeApi:
    """JSON requests to the API server; ``get`` answers None for 404, other errors raise ApiError."""

    def __init__(self, credentials: Credentials):
        self.credentials = credentials
        self._session: aiohttp.ClientSession | None = None
        self._token: str | None = credentials.token
        self._token_read = 0.0

    def _ssl(self) -> ssl.SSLContext | bool:
        if not self.credentials.server.startswith("https"):
            return False
        context = ssl.create_default_context(cafile=self.credentials.ca_file)
        if not self.credentials.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.credentials.cert_file:
            context.load_cert_chain(self.credentials.cert_file, self.credentials.key_file)
        return context

    def _headers(self) -> dict[str, str]:
        if self.credentials.token_file and time.monotonic() - self._token_read > TOKEN_REREAD_SECONDS:
            self._token = Path(self.credentials.token_file).read_text().strip()
            self._token_read = time.monotonic()
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    async def request(
        self, method: str, path: str, body: object = None, content_type: str = "application/json"
    ) -> dict | None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl()), timeout=aiohttp.ClientTimeout(total=10)
            )
        headers = {**self._headers(), "Accept": "application/json"}
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body)
        async with self._session.request(method, self.credentials.server + path, data=data, headers=headers) as reply:
            if reply.status == 404 and method == "GET":
                return None
            return await json_reply(reply)

    async def get(self, path: str) -> dict | None:
        return await self.request("GET", path)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def server_version(api: KubeApi) -> tuple[int, int] | None:
    """The API server's (major, minor) from ``/version`` ("1", "35+" -> (1, 35)); None if unreadable."""
    try:
        found = await api.get("/version") or {}
        return int(found["major"].rstrip("+")), int(found["minor"].rstrip("+"))
    except (KeyError, ValueError, TypeError, ApiError, OSError, asyncio.TimeoutError):
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
