"""The contract between the agent SDK, the CLI, the sidecar and the operator (docs/design.md §3).

Names, environment variables, paths, headers, error codes, the ``$base64``
envelope of the batch API, the rules a key must follow and glob escaping.
Standard library only, so every part can import it; none re-declares what is
here.
"""

from __future__ import annotations

import base64
import re
from typing import Any

# --- environment and paths -------------------------------------------------------------------------

ENV_SOCKET = "AGENTCACHE_SOCKET"
ENV_CONFIG = "AGENTCACHE_CONFIG"
ENV_LOG_LEVEL = "AGENTCACHE_LOG_LEVEL"
ENV_VALKEY_PASSWORD = "AGENTCACHE_VALKEY_PASSWORD"

SOCKET_DIR = "/var/run/agentcache"
SOCKET_PATH = f"{SOCKET_DIR}/cache.sock"  # where the injector mounts the socket; the SDK's default
LOCAL_SOCKET_PATH = "./agentcache.sock"  # the sidecar's embedded default (no configuration)
METRICS_PORT = 9464
VALKEY_URL_SCHEMES = ("valkey", "valkeys", "redis", "rediss", "unix")  # services.valkey.config.url

# --- the HTTP API on the socket --------------------------------------------------------------------

KEYS_PATH = "/v1/keys"
KEY_PATH_PREFIX = KEYS_PATH + "/"  # + percent-encoded key [+ "/ttl" | "/lock"]
TTL_RESOURCE = "ttl"
LOCK_RESOURCE = "lock"
BATCH_GET_PATH = "/v1/batch/get"
BATCH_SET_PATH = "/v1/batch/set"
BATCH_DELETE_PATH = "/v1/batch/delete"
STATS_PATH = "/v1/stats"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
OPENAPI_PATH = "/v1/openapi.json"  # the OpenAPI 3.1 description of this API
METRICS_PATH = "/metrics"

HEADER_TTL = "X-Cache-TTL"
HEADER_STALE = "X-Cache-Stale"  # "1" on a value served past its freshness
HEADER_DEGRADED = "X-Cache-Degraded"  # on a write the primary backend did not take:
DEGRADED_FALLBACK = "fallback"  # kept by the memory fallback
DEGRADED_DROPPED = "dropped"  # not kept (fallback: miss)
DEGRADED_DISABLED = "disabled"  # not kept (cache.enabled: false)
NOT_STORED = frozenset({DEGRADED_DROPPED, DEGRADED_DISABLED})

JSON_TYPE = "application/json"
BYTES_TYPE = "application/octet-stream"  # a value stored without a Content-Type
BATCH_MSGPACK_TYPE = "application/vnd.agentcache.batch+msgpack"
"""The binary answer of ``POST /v1/batch/get``, sent when the request's ``Accept`` names it (the SDK's
choice; JSON stays the default). A msgpack map, positional: ``values`` holds one item per key asked, in
the order asked: nil for a miss, else the value's bytes as stored (bin, no envelope); ``types`` holds, at
the same position, the index in ``content_types`` of that value's Content-Type (a bin of one byte per key
while there are at most 256 types, else an array of ints; 0 for a miss)."""
BATCH_VALUES_FIELD = "values"
BATCH_TYPES_FIELD = "types"
BATCH_CONTENT_TYPES_FIELD = "content_types"

# --- error codes: the "error" of a JSON error body {"error": code, "message": text} -----------------

ERR_BAD_KEY = "bad_key"
ERR_BAD_PATTERN = "bad_pattern"
ERR_BAD_TTL = "bad_ttl"
ERR_BAD_LIMIT = "bad_limit"
ERR_BAD_JSON = "bad_json"
ERR_BAD_BODY = "bad_body"
ERR_BAD_CONTENT_TYPE = "bad_content_type"
ERR_BAD_TOKEN = "bad_token"
ERR_BAD_REQUEST = "bad_request"
ERR_BAD_QUERY = "bad_query"  # a query parameter given more than once
ERR_TOO_LARGE = "too_large"
ERR_TOO_MANY_KEYS = "too_many_keys"
ERR_HEADERS_TOO_LARGE = "headers_too_large"
ERR_URI_TOO_LONG = "uri_too_long"
ERR_MISS = "miss"
ERR_NOT_FOUND = "not_found"
ERR_METHOD_NOT_ALLOWED = "method_not_allowed"
ERR_LOCKED = "locked"
ERR_NOT_HOLDER = "not_holder"
ERR_LOCK_UNAVAILABLE = "lock_unavailable"  # 409: no backend could take the lock; compute without single-flight
ERR_HEADER_TIMEOUT = "header_timeout"  # 408: the request line and headers were not sent in time
ERR_BODY_TIMEOUT = "body_timeout"  # 408: the body was not sent in time
ERR_BUSY = "busy"  # 503: the sidecar is at its budget (connections, bodies being read, unread answers)
ERR_INTERNAL = "internal"

# --- the $base64 envelope of the batch API ---------------------------------------------------------

BASE64_FIELD = "$base64"
CONTENT_TYPE_FIELD = "content_type"
_ENVELOPE_FIELDS = frozenset({BASE64_FIELD, CONTENT_TYPE_FIELD})


def is_envelope(value: Any) -> bool:
    """``{"$base64": ...}`` with at most a ``content_type`` beside it: bytes, not a JSON value."""
    return isinstance(value, dict) and BASE64_FIELD in value and set(value) <= _ENVELOPE_FIELDS


def envelope(data: bytes, content_type: str | None = None) -> dict[str, str]:
    """Bytes (and their Content-Type) as a JSON value."""
    wrapped = {BASE64_FIELD: base64.b64encode(data).decode("ascii")}
    if content_type is not None:
        wrapped[CONTENT_TYPE_FIELD] = content_type
    return wrapped


def open_envelope(value: dict[str, Any]) -> tuple[bytes, str | None]:
    """The bytes and Content-Type of an envelope; ``ValueError`` when ``$base64`` is not valid base64."""
    try:
        return base64.b64decode(value[BASE64_FIELD], validate=True), value.get(CONTENT_TYPE_FIELD)
    except TypeError:
        raise ValueError("$base64 must be a base64 string") from None


# --- keys ------------------------------------------------------------------------------------------

DEFAULT_MAX_KEY_BYTES = 1024  # sidecar.max_key_bytes unless configured
MAX_KEY_BYTES = 4096  # the most sidecar.max_key_bytes may be: a percent-encoded key must fit an HTTP line
SCOPE_SEPARATOR = ":"
KEY_MARK = "\x1f"  # stored as key_prefix + KEY_MARK + key: nested prefixes ("a:", "a:b:") never share keys
LOCK_MARK = "\x1e"  # a lock on a key is key_prefix + LOCK_MARK + key: no data pattern matches it


CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f]")
"""What ``is_control`` tells, for a whole text at once."""


def is_control(ch: str) -> bool:
    """C0 controls, DEL and C1 controls: never part of a key, pattern, scope or key prefix."""
    code = ord(ch)
    return code < 0x20 or 0x7F <= code <= 0x9F


def text_problem(text: str, what: str = "key", max_bytes: int = MAX_KEY_BYTES) -> str | None:
    """Why ``text`` cannot be a key (or pattern, scope...): the message, or None when it can."""
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return f"the {what} is not valid Unicode (it holds a lone surrogate)"
    if size == 0:
        return f"the {what} is empty"
    if size > max_bytes:
        return f"the {what} is {size} bytes; the limit is {max_bytes} bytes"
    control = CONTROL_CHARS.search(text)
    if control:
        return f"the {what} contains the control character U+{ord(control.group()):04X}"
    return None


# --- glob patterns (Valkey's MATCH syntax) ---------------------------------------------------------

GLOB_SPECIAL = "*?[]\\"


def escape_glob(text: str) -> str:
    """``text`` as a glob that matches only itself."""
    return "".join("\\" + ch if ch in GLOB_SPECIAL else ch for ch in text)


def is_literal(pattern: str) -> bool:
    """True when ``pattern`` has no glob syntax, i.e. it matches exactly one key (itself)."""
    return not any(ch in pattern for ch in "*?[\\")
