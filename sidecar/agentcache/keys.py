"""Key helpers: stable hashes of Python values, scope names and ``llm_key`` (key rules: ``protocol``).

``stable_hash`` is the same in every process and on every machine: it hashes
canonical JSON (sorted keys, no whitespace, UTF-8), so ``{"a": 1, "b": 2}`` and
``{"b": 2, "a": 1}`` hash alike, and it never depends on ``hash()`` randomisation
or object addresses. As in JSON, dict keys are strings (``{1: x}`` hashes like
``{"1": x}``) and tuples are lists. Values with no stable form raise ``UnhashableValue``.
"""

from __future__ import annotations

import base64
import enum
import json
import sys
from typing import Any

from .errors import InvalidKey, InvalidRequest
from .protocol import ERR_BAD_TTL, SCOPE_SEPARATOR, is_control

HASH_CHARS = 32


class UnhashableValue(TypeError):
    """A value that has no stable, process-independent representation."""


def _canonical(value: Any) -> Any:
    """``json.dumps``'s ``default``: a JSON-able stand-in for a value JSON cannot encode (it recurses itself)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, (set, frozenset)):
        return {"$set": sorted(canonical_json(item) for item in value)}
    # A value of datetime, decimal, uuid or a dataclass exists only once its module is loaded: looking the
    # module up keeps ``import agentcache`` from loading them all.
    datetime = sys.modules.get("datetime")
    if datetime is not None and isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    decimal, uuid = sys.modules.get("decimal"), sys.modules.get("uuid")
    if (decimal is not None and isinstance(value, decimal.Decimal)) or (
        uuid is not None and isinstance(value, uuid.UUID)
    ):
        return str(value)
    dataclasses = sys.modules.get("dataclasses")
    if dataclasses is not None and dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            "$type": type(value).__qualname__,
            **{f.name: getattr(value, f.name) for f in dataclasses.fields(value)},
        }
    model_dump = getattr(value, "model_dump", None)  # pydantic v2 models (AgentUp's a2a Task is one)
    if callable(model_dump):
        return {"$type": type(value).__qualname__, **model_dump(mode="json")}
    if hasattr(value, "__dict__") and not callable(value) and not isinstance(value, type):
        return {"$type": type(value).__qualname__, **{k: v for k, v in vars(value).items() if not k.startswith("_")}}
    raise UnhashableValue(f"{type(value).__name__} has no stable representation to hash")


def canonical_json(value: Any) -> str:
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_canonical
        )
    except UnhashableValue:
        raise
    except (ValueError, TypeError) as exc:  # NaN, circular references, dict keys of mixed types
        raise UnhashableValue(str(exc)) from None


def stable_hash(value: Any) -> str:
    """A 128-bit hex digest of ``value``'s canonical JSON."""
    import hashlib  # on first use: it loads OpenSSL

    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()[:HASH_CHARS]


def llm_key(model: str, messages: Any, **params: Any) -> str:
    """``llm:<model>:<hash>`` covering the model, every message (not only the last) and every parameter.

    Parameters are hashed by name, so their order never matters; ``None``
    parameters are kept (``temperature=None`` is not ``temperature=0``).
    """
    if not isinstance(model, str) or not model:
        raise InvalidKey("llm_key needs the model name as a non-empty string")
    return f"llm:{model}:{stable_hash({'model': model, 'messages': messages, 'params': params})}"


def check_key(key: Any) -> str:
    if not isinstance(key, str):
        raise InvalidKey(f"keys must be strings, got {type(key).__name__}")
    if not key:
        raise InvalidKey("the key is empty")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidKey(f"the key {key!r} is not valid Unicode (it holds a lone surrogate)") from None
    return key


def check_seconds(value: Any, name: str, allow_none: bool = True, positive: bool = False) -> Any:
    """A number of seconds given to the SDK: finite, not negative (``positive``: above 0)."""
    if value is None and allow_none:
        return value
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or value != value
        or value in (float("inf"), float("-inf"))
        or value < 0
        or (positive and value == 0)
    ):
        rule = "a positive" if positive else "a non-negative"
        raise InvalidRequest(f"{name} must be {rule} finite number of seconds, got {value!r}", ERR_BAD_TTL)
    return value


def check_scope(scope: Any) -> str:
    """A scope name: non-empty text without control characters or empty ``:``-segments."""
    if not isinstance(scope, str) or not scope:
        raise InvalidKey(f"a scope must be a non-empty string, got {scope!r}")
    for ch in scope:
        if is_control(ch):
            raise InvalidKey(f"the scope {scope!r} contains the control character U+{ord(ch):04X}")
    if "" in scope.split(SCOPE_SEPARATOR):
        raise InvalidKey(f"the scope {scope!r} has an empty segment; write it like 'user:123'")
    return scope
