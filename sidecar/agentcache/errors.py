"""Errors raised by the SDK.

Every error is a ``CacheError`` carrying a stable ``code`` and a ``message``; the
ones answered by the sidecar carry the sidecar's own code and message
(``{"error": code, "message": text}``, docs/design.md §3).
"""

from __future__ import annotations

import json

from . import protocol


class CacheError(Exception):
    """Base of every SDK error."""

    code = "error"

    def __init__(self, message: str, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.code = code or type(self).code
        self.status = status

    def __str__(self) -> str:
        return f"{self.message} ({self.code})"


class CacheUnavailable(CacheError):
    """The sidecar cannot be reached (no socket, refused, timed out, connection lost)."""

    code = "unavailable"


class InvalidKey(CacheError):
    """A key, pattern or scope name the sidecar (or the SDK) refuses."""

    code = protocol.ERR_BAD_KEY


class InvalidRequest(CacheError):
    """Any other 4xx: a bad ttl, bad JSON, too many keys in a batch..."""

    code = protocol.ERR_BAD_REQUEST


class ValueTooLarge(CacheError):
    """The value exceeds the sidecar's ``max_value_bytes`` (HTTP 413)."""

    code = protocol.ERR_TOO_LARGE


class SerializationError(CacheError):
    """The value cannot be encoded with the cache's serializer."""

    code = "serialization"


class LockUnavailable(CacheError):
    """The sidecar could take no lock (its backend refused it): compute without single-flight."""

    code = protocol.ERR_LOCK_UNAVAILABLE


class CacheServerError(CacheError):
    """The sidecar answered 5xx (a sidecar bug; the sidecar log says more)."""

    code = protocol.ERR_INTERNAL


_BY_CODE: dict[str, type[CacheError]] = {
    protocol.ERR_BAD_KEY: InvalidKey,
    protocol.ERR_BAD_PATTERN: InvalidKey,
    protocol.ERR_TOO_LARGE: ValueTooLarge,
    protocol.ERR_LOCK_UNAVAILABLE: LockUnavailable,
}


def error_from_response(status: int, body: bytes) -> CacheError:
    """The ``CacheError`` for a non-success answer of the sidecar."""
    try:
        payload = json.loads(body)
        code, message = str(payload["error"]), str(payload["message"])
    except (ValueError, TypeError, KeyError):
        code, message = f"http_{status}", body[:200].decode("utf-8", "replace") or f"HTTP {status}"
    if status >= 500:
        return CacheServerError(message, code, status)
    return _BY_CODE.get(code, InvalidRequest)(message, code, status)
