"""A small async Kubernetes API client for the operator's own calls (apply, get, list, delete, status).

It authenticates with the same ``kopf.ConnectionInfo`` that the operator's login
handler gives kopf, so kopf and the operator always talk to the same server as the
same user.
"""

from __future__ import annotations

import json
import logging
import ssl
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import kopf

from . import names

FIELD_MANAGER = names.MANAGED_BY
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


class Client:
    """One aiohttp session to the API server, built from kopf's connection info."""

    def __init__(self, info: kopf.ConnectionInfo):
        self.server = info.server.rstrip("/")
        self._headers = {"Accept": "application/json", **info.as_http_headers()}
        self._ssl: ssl.SSLContext | bool = info.as_ssl_context() if self.server.startswith("https") else False
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        url: str,
        body: Any = None,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=30),
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=20),
            )
        query = f"?{urlencode(params)}" if params else ""
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        async with self._session.request(method, f"{self.server}{url}{query}", data=data, headers=headers) as resp:
            logger.debug("%s %s -> %s", method, url, resp.status)
            return await json_reply(resp)

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return await self.request("GET", path(kind, namespace, name))
        except ApiError as error:
            if error.status == 404:
                return None
            raise

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
