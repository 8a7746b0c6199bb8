"""The OpenAPI 3.1 description of the socket API (DESIGN.md §3), served at ``GET /v1/openapi.json``.

Invariants: every route of ``app.create_server`` is an operation here, and
every answer a route can give (errors included, each with the JSON error body
``{"error": code, "message": text}``) is described; ``tests/sidecar/test_openapi.py``
checks the server against it with schemathesis.
"""

from __future__ import annotations

import json
from typing import Any

from agentcache import protocol

from .keys import MAX_TTL
from .server import Response

MAX_BATCH = 10000  # app.MAX_BATCH_KEYS and MAX_LIST_LIMIT
ERROR_CODES = sorted(value for name, value in vars(protocol).items() if name.startswith("ERR_"))
ERROR = {"$ref": "#/components/responses/Error"}
KEY_TEXT = {
    "type": "string",
    "minLength": 1,
    "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]+$",
    "description": "1..max_key_bytes (default 1024) bytes of UTF-8 without control characters (C0, DEL, "
    "C1); a longer one is a 400 (JSON Schema cannot bound a length in bytes)",
}
SECONDS = {"type": "number", "minimum": 0, "maximum": MAX_TTL}


def _errors(*statuses: int) -> dict[str, Any]:
    """The error answers every request can get (400 malformed, 413/414/431 limits, 500) plus ``statuses``."""
    return {str(status): ERROR for status in sorted({400, 413, 414, 431, 500, *statuses})}


def _query(name: str, schema: dict, description: str, required: bool = False) -> dict:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _object(required: list[str], **properties: Any) -> dict:
    return {"type": "object", "required": required, "properties": properties}


NO_CONTENT = {"description": "done", "headers": {"X-Cache-Degraded": {"$ref": "#/components/headers/Degraded"}}}
DELETED = _json(_object(["deleted"], deleted={"type": "integer", "minimum": 0}), "how many keys were deleted")
KEY_PARAM = {
    "name": "key",
    "in": "path",
    "required": True,
    "schema": KEY_TEXT,
    "description": "the key, percent-encoded (`a%2Fb` is the key `a/b`)",
}
PATTERN = {**KEY_TEXT, "description": "a glob (`*`, `?`, `[...]`, `\\` escapes) over the agent's keys"}
KEYS_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": _object(["keys"], keys={"type": "array", "maxItems": MAX_BATCH, "items": KEY_TEXT})
        }
    },
}
JSON_VALUE = {"description": 'a JSON value, or `{"$base64": ..., "content_type": ...}` for other bytes'}

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "AgentCache sidecar",
        "version": "1",
        "description": "The cache API an AgentCache sidecar serves on its Unix socket (HTTP/1.1). The "
        "sidecar prepends its key_prefix to every key; answers use the agent's keys.",
    },
    "servers": [{"url": "http://localhost", "description": "any host: the transport is the Unix socket"}],
    "paths": {
        "/v1/keys/{key}": {
            "parameters": [KEY_PARAM],
            "get": {
                "operationId": "get",
                "summary": "read a value",
                "parameters": [
                    _query(
                        "allow_stale",
                        {"type": "string"},
                        "1/true/yes: also serve a value past its ttl but within its "
                        "stale_ttl; anything else: fresh values only",
                    )
                ],
                "responses": {
                    "200": {
                        "description": "the value, with the Content-Type it was stored with",
                        "headers": {
                            "X-Cache-TTL": {"$ref": "#/components/headers/TTL"},
                            "X-Cache-Stale": {"schema": {"const": "1"}, "description": "present when stale"},
                        },
                        "content": {"*/*": {"schema": {}}},
                    },
                    **_errors(404),
                },
            },
            "head": {
                "operationId": "exists",
                "summary": "whether a value exists",
                "responses": {
                    "200": {"description": "it exists"},
                    "404": {"description": "a miss"},
                    **{s: {"description": "refused"} for s in ("400", "413", "414", "431", "500")},
                },
            },
            "put": {
                "operationId": "set",
                "summary": "store a value (opaque bytes with their Content-Type)",
                "parameters": [
                    _query("ttl", SECONDS, "seconds; default default_ttl; 0 never expires"),
                    _query("stale_ttl", SECONDS, "seconds the value stays readable as stale"),
                ],
                "requestBody": {
                    "description": "the value (no body: the empty value)",
                    "required": False,
                    "content": {"application/octet-stream": {"schema": {}}, "application/json": {"schema": {}}},
                },
                "responses": {"204": NO_CONTENT, **_errors()},
            },
            "delete": {
                "operationId": "delete",
                "summary": "delete a value",
                "responses": {"204": {"description": "deleted"}, **_errors(404)},
            },
        },
        "/v1/keys/{key}/ttl": {
            "parameters": [KEY_PARAM],
            "get": {
                "operationId": "ttl",
                "summary": "remaining seconds",
                "responses": {
                    "200": _json(
                        _object(["ttl"], ttl={"type": "number", "minimum": -1}), "remaining seconds; -1 never expires"
                    ),
                    **_errors(404),
                },
            },
        },
        "/v1/keys/{key}/lock": {
            "parameters": [KEY_PARAM],
            "post": {
                "operationId": "lock",
                "summary": "take the single-flight lock of a key",
                "parameters": [_query("ttl", {**SECONDS, "exclusiveMinimum": 0}, "seconds (default 30)")],
                "responses": {
                    "200": _json(
                        _object(["token"], token={"type": "string"}, degraded={"type": "boolean"}),
                        "the lock's token (degraded: held by this pod only)",
                    ),
                    **_errors(409),
                },
            },
            "delete": {
                "operationId": "unlock",
                "summary": "release a lock",
                "parameters": [_query("token", {"type": "string", "minLength": 1}, "the lock's token", required=True)],
                "responses": {"204": {"description": "released"}, **_errors(409)},
            },
        },
        "/v1/keys": {
            "get": {
                "operationId": "keys",
                "summary": "list keys (for debugging), sorted",
                "parameters": [
                    _query("pattern", PATTERN, "default *"),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_BATCH}, "default 1000"),
                ],
                "responses": {
                    "200": _json(
                        _object(["keys"], keys={"type": "array", "items": {"type": "string"}}), "the matching keys"
                    ),
                    **_errors(),
                },
            },
            "delete": {
                "operationId": "delete_pattern",
                "summary": "delete the keys matching a glob, or all",
                "parameters": [_query("pattern", PATTERN, "without it: every key under the prefix")],
                "responses": {"200": DELETED, **_errors()},
            },
        },
        "/v1/batch/get": {
            "post": {
                "operationId": "get_many",
                "description": "Answers JSON unless the request's `Accept` names "
                f"`{protocol.BATCH_MSGPACK_TYPE}`: then a msgpack map, positional: `values` holds, in the order "
                "asked, nil for a miss or the value's bytes as stored (bin, no envelope); `types` the index in "
                "`content_types` of each value's Content-Type (a bin of one byte each, or an array of ints).",
                "requestBody": KEYS_BODY,
                "responses": {
                    "200": {
                        "description": "every key's value, null (nil) for a miss",
                        "content": {
                            "application/json": {
                                "schema": _object(
                                    ["values"], values={"type": "object", "additionalProperties": JSON_VALUE}
                                )
                            },
                            protocol.BATCH_MSGPACK_TYPE: {
                                "schema": _object(
                                    ["values", "types", "content_types"],
                                    values={"type": "array", "description": "nil or bin, one per key asked"},
                                    types={"description": "bin (a byte per key) or an array of integers"},
                                    content_types={"type": "array", "items": {"type": "string"}},
                                )
                            },
                        },
                    },
                    **_errors(),
                },
            }
        },
        "/v1/batch/set": {
            "post": {
                "operationId": "set_many",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": _object(
                                ["items"],
                                items={
                                    "type": "object",
                                    "maxProperties": MAX_BATCH,
                                    "propertyNames": KEY_TEXT,
                                    "additionalProperties": JSON_VALUE,
                                },
                                ttl=SECONDS,
                                stale_ttl=SECONDS,
                            )
                        }
                    },
                },
                "responses": {"204": NO_CONTENT, **_errors()},
            }
        },
        "/v1/batch/delete": {
            "post": {"operationId": "delete_many", "requestBody": KEYS_BODY, "responses": {"200": DELETED, **_errors()}}
        },
        "/v1/stats": {
            "get": {
                "operationId": "stats",
                "responses": {
                    "200": _json(
                        _object(
                            ["backend", "hits", "misses", "hit_rate", "key_count", "memory_usage", "errors"],
                            backend={"type": "string"},
                            hits={"type": "integer"},
                            misses={"type": "integer"},
                            hit_rate={"type": "number"},
                            key_count={"type": "integer"},
                            memory_usage={"type": "integer"},
                            errors={"type": "integer"},
                            near_cache={
                                "description": "the valkey backend's near cache; null when it keeps none",
                                "oneOf": [
                                    {"type": "null"},
                                    _object(
                                        ["live", "entries", "bytes", "hits", "misses", "invalidations", "resets"],
                                        live={"type": "boolean"},
                                        entries={"type": "integer"},
                                        bytes={"type": "integer"},
                                        hits={"type": "integer"},
                                        misses={"type": "integer"},
                                        hit_rate={"type": "number"},
                                        invalidations={"type": "integer"},
                                        resets={"type": "integer"},
                                    ),
                                ],
                            },
                        ),
                        "the sidecar's statistics",
                    ),
                    **_errors(),
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "responses": {
                    "200": _json(_object(["status"], status={"const": "ok"}), "the socket serves"),
                    **_errors(),
                },
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "responses": {
                    "200": _json(_object(["ready"], ready={"type": "boolean"}), "ready"),
                    "503": _json(_object(["ready"], ready={"type": "boolean"}), "neither the backend nor a fallback"),
                    **_errors(),
                },
            }
        },
        "/v1/openapi.json": {
            "get": {
                "operationId": "openapi",
                "responses": {"200": _json({"type": "object"}, "this description"), **_errors()},
            }
        },
    },
    "components": {
        "responses": {
            "Error": _json(
                _object(["error", "message"], error={"type": "string"}, message={"type": "string"}),
                "`error` is a stable code: " + ", ".join(ERROR_CODES),
            )
        },
        "headers": {
            "TTL": {"schema": {"type": "string"}, "description": "remaining seconds, -1 for no expiry"},
            "Degraded": {
                "schema": {"enum": ["fallback", "dropped", "disabled"]},
                "description": "present when the primary backend did not take the write",
            },
        },
    },
}

_BODY = json.dumps(SPEC, separators=(",", ":")).encode()


async def openapi(request: Any) -> Response:
    return Response(200, _BODY, {"Content-Type": "application/json"})
