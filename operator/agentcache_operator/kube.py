"""The Kubernetes REST layer of the operator and the injector, and the operator's own calls on it.

``RestClient`` is the one way both talk JSON to the API server: one aiohttp
session made lazily in the running loop, non-2xx answers raised as
``ApiError`` with the server's message. ``Client`` adds the operator's calls
(apply, get, list, delete, status) by kind; ``injector.kubeapi.KubeApi`` adds
the injector's credentials. The operator's client authenticates with the
connection info (``kopf.ConnectionInfo``) that the operator's login handler
gives kopf, so both talk to the same server as the same user; only the handlers
import kopf.
"""

from __future__ import annotations

import json
import logging
import ssl
from typing import Any, Protocol
from urllib.parse import quote, urlencode

import aiohttp

from . import names

FIELD_MANAGER = names.MANAGED_BY
JSON_TYPE = "application/json"
OPERATOR_TIMEOUT = 30.0  # seconds per request: the operator's calls are off the pod-creation path
logger = logging.getLogger(__name__)

# kind -> (API prefix, plural) of every kind the operator reads or writes.
KINDS: dict[str, tuple[str, str]] = {
    "ConfigMap": ("/api/v1", "configmaps"),
    "Secret": ("/api/v1", "secrets"),
    "Service": ("/api/v1", "services"),
    "Pod": ("/api/v1", "pods"),
    "Event": ("/api/v1", "events"),
    "PersistentVolumeClaim": ("/api/v1", "persistentvolumeclaims"),
    "StatefulSet": ("/apis/apps/v1", "statefulsets"),
    "Job": ("/apis/batch/v1", "jobs"),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets"),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
    names.KIND: (f"/apis/{names.API_VERSION}", names.PLURAL),
}


class ApiError(Exception):
    """A non-2xx answer; ``status`` is the HTTP status, the message is the server's."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


async def json_reply(response: aiohttp.ClientResponse) -> dict[str, Any]:
    """The JSON body of an API server's answer; a non-2xx answer raises ``ApiError`` with the server's message."""
    text = await response.text()
    if response.status >= 400:
        try:
            message = json.loads(text).get("message", text)
        except (ValueError, AttributeError):
            message = text
        raise ApiError(response.status, message)
    return json.loads(text) if text else {}


def path(kind: str, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
    prefix, plural = KINDS[kind]
    parts = [prefix, "namespaces", quote(namespace, safe=""), plural]
    if name:
        parts.append(quote(name, safe=""))
    if subresource:
        parts.append(subresource)
    return "/".join(parts)


class ConnectionInfo(Protocol):
    """What the client needs of ``kopf.ConnectionInfo``."""

    @property
    def server(self) -> str: ...

    def as_http_headers(self) -> dict[str, str]: ...

    def as_ssl_context(self) -> ssl.SSLContext: ...


class RestClient:
    """JSON requests to one API server; ``auth_headers`` is asked before every request (tokens rotate)."""

    def __init__(self, server: str, ssl_context: ssl.SSLContext | bool, timeout: float, connections: int = 20):
        self.server = server.rstrip("/")
        self._ssl = ssl_context if self.server.startswith("https") else False
        self._timeout = timeout
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    def auth_headers(self) -> dict[str, str]:
        return {}

    async def request(
        self,
        method: str,
        url: str,
        body: Any = None,
        content_type: str = JSON_TYPE,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=self._connections),
            )
        query = f"?{urlencode(params)}" if params else ""
        data = None if body is None else json.dumps(body)
        headers = {"Accept": JSON_TYPE, **self.auth_headers()}
        if data is not None:
            headers["Content-Type"] = content_type
        async with self._session.request(method, f"{self.server}{url}{query}", data=data, headers=headers) as resp:
            logger.debug("%s %s -> %s", method, url, resp.status)
            return await json_reply(resp)

    async def get_path(self, url: str) -> dict[str, Any] | None:
        """The object at ``url``, or None when it does not exist."""
        try:
            return await self.request("GET", url)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    async def close(self) -> None:
        if self._session:
            await self._session.close()
            self._session = None


class Client(RestClient):
    """The operator's calls, authenticated with kopf's connection info."""

    def __init__(self, info: ConnectionInfo):
        super().__init__(
            info.server, info.as_ssl_context() if info.server.startswith("https") else False, OPERATOR_TIMEOUT
        )
        self._auth = info.as_http_headers()

    def auth_headers(self) -> dict[str, str]:
        return self._auth

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        return await self.get_path(path(kind, namespace, name))

    async def list(self, kind: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        result = await self.request("GET", path(kind, namespace), params={"labelSelector": label_selector})
        return result.get("items") or []

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply owned by the operator (forced: a hand edit of an owned field is undone)."""
        meta = obj["metadata"]
        return await self.request(
            "PATCH",
            path(obj["kind"], meta["namespace"], meta["name"]),
            obj,
            content_type="application/apply-patch+yaml",
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
        )

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        return await self.request("POST", path(obj["kind"], obj["metadata"]["namespace"]), obj)

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        try:
            await self.request("DELETE", path(kind, namespace, name), {"propagationPolicy": "Background"})
        except ApiError as error:
            if error.status != 404:
                raise

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        await self.request(
            "PATCH",
            path(names.KIND, namespace, name, "status"),
            {"status": status},
            content_type="application/merge-patch+json",
        )
