"""How values become bytes with a Content-Type, and back.

Writing uses the cache's serializer (JSON by default); ``bytes`` values are
always stored raw as ``application/octet-stream``. Reading never trusts the
writer's choice of code: the deserializer is picked from the stored
Content-Type, and pickled values are only unpickled when they carry a valid
HMAC-SHA256 signature made with this cache's signing key (the algorithm is
fixed here, not read from the value; the comparison is constant-time). A value
that fails its signature check, or that cannot be decoded, reads as a miss
and logs a warning.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

from .errors import SerializationError
from .protocol import BYTES_TYPE, JSON_TYPE

log = logging.getLogger("agentcache")

MSGPACK_TYPE = "application/msgpack"
PICKLE_TYPE = "application/x-agentcache-pickle+hmac"
SIGNATURE_BYTES = 32  # HMAC-SHA256
_SIGNATURE_CONTEXT = b"agentcache-pickle-v1\0"


_scan_json = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # set by its __init__


class Miss:
    """Returned by ``Codec.decode`` for a stored value that must read as a miss."""

    def __repr__(self) -> str:
        return "MISS"


MISS = Miss()


class Serializer(Protocol):
    content_type: str

    def dumps(self, value: Any, key: str) -> bytes: ...

    def loads(self, data: bytes, key: str) -> Any: ...


class JsonSerializer:
    """Compact UTF-8 JSON; NaN/Infinity are refused (they are not JSON). Tuples read back as lists."""

    content_type = JSON_TYPE

    def dumps(self, value: Any, key: str) -> bytes:
        try:
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise SerializationError(
                f"cannot store {type(value).__name__} under {key!r} as JSON: {exc}; "
                "use serializer='msgpack' or a signed pickle for other types"
            ) from None

    def loads(self, data: bytes, key: str) -> Any:
        return json.loads(data)


class MsgpackSerializer:
    """msgpack with bin/str distinction kept; map keys may be any hashable msgpack type."""

    content_type = MSGPACK_TYPE

    def dumps(self, value: Any, key: str) -> bytes:
        import msgpack  # here: an agent that never uses msgpack does not load it

        try:
            return msgpack.packb(value, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise SerializationError(f"cannot store {type(value).__name__} under {key!r} as msgpack: {exc}") from None

    def loads(self, data: bytes, key: str) -> Any:
        import msgpack

        return msgpack.unpackb(data, raw=False, strict_map_key=False)


class SignedPickleSerializer:
    """``HMAC-SHA256(signing_key, context | key | 0 | payload) || payload``.

    The signature binds the value to its key, so a signed value copied under
    another key is rejected too.
    """

    content_type = PICKLE_TYPE

    def __init__(self, signing_key: bytes | str):
        if isinstance(signing_key, str):
            signing_key = signing_key.encode("utf-8")
        if not isinstance(signing_key, bytes) or len(signing_key) < 16:
            raise ValueError("the pickle serializer needs a signing_key of at least 16 bytes")
        self._key = signing_key

    def _sign(self, payload: bytes, key: str) -> bytes:
        import hashlib
        import hmac

        message = _SIGNATURE_CONTEXT + key.encode("utf-8") + b"\0" + payload
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def dumps(self, value: Any, key: str) -> bytes:
        import pickle  # pickle and hmac are loaded only by an agent that enabled signed pickles

        try:
            payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise SerializationError(f"cannot pickle {type(value).__name__} under {key!r}: {exc}") from None
        return self._sign(payload, key) + payload

    def verify(self, data: bytes, key: str) -> bytes | None:
        """The payload when the signature is valid, else None."""
        if len(data) <= SIGNATURE_BYTES:
            return None
        import hmac

        signature, payload = data[:SIGNATURE_BYTES], data[SIGNATURE_BYTES:]
        return payload if hmac.compare_digest(signature, self._sign(payload, key)) else None

    def loads(self, data: bytes, key: str) -> Any:
        payload = self.verify(data, key)
        if payload is None:
            return MISS
        import pickle

        return pickle.loads(payload)


class Codec:
    """The write serializer plus the readers for every Content-Type this cache accepts."""

    def __init__(self, serializer: str | Serializer = "json", signing_key: bytes | str | None = None):
        self.pickle = SignedPickleSerializer(signing_key) if signing_key is not None else None
        if isinstance(serializer, str):
            serializer = self._named(serializer)
        self.writer: Serializer = serializer
        self.readers: dict[str, Serializer] = {JSON_TYPE: JsonSerializer(), MSGPACK_TYPE: MsgpackSerializer()}
        if self.pickle:
            self.readers[PICKLE_TYPE] = self.pickle
        self.readers.setdefault(serializer.content_type, serializer)

    def _named(self, name: str) -> Serializer:
        if name == "json":
            return JsonSerializer()
        if name == "msgpack":
            return MsgpackSerializer()
        if name == "pickle":
            if self.pickle is None:
                raise ValueError(
                    "serializer='pickle' needs signing_key=...: a shared cache must not be a "
                    "code-execution path, so pickled values are always signed"
                )
            return self.pickle
        raise ValueError(f"unknown serializer {name!r}; use 'json', 'msgpack' or 'pickle'")

    @property
    def batchable(self) -> bool:
        """Whether values written by this codec can travel in the JSON batch API unchanged."""
        return self.writer.content_type == JSON_TYPE

    def encode(self, value: Any, key: str) -> tuple[bytes, str]:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value), BYTES_TYPE
        return self.writer.dumps(value, key), self.writer.content_type

    def decode_fast(self, data: bytes, content_type: str, key: str) -> Any:
        """``decode``, with the two Content-Types written by default (raw bytes, JSON) taken first."""
        if content_type == BYTES_TYPE:
            return data
        if content_type == JSON_TYPE:
            try:  # json.loads without its per-call costs (encoding detection, whitespace): UTF-8, one value
                text = data.decode("utf-8")
                value, end = _scan_json(text, 0)
                if end == len(text):
                    return value
            except (ValueError, StopIteration, RecursionError):  # decode below says why (or strips the spaces)
                pass
        return self.decode(data, content_type, key)

    def decode(self, data: bytes, content_type: str | None, key: str) -> Any:
        """The stored value, or ``MISS`` (with a warning) when it must not or cannot be read."""
        media = (content_type or BYTES_TYPE).split(";", 1)[0].strip().lower()
        if media == BYTES_TYPE:
            return data
        reader = self.readers.get(media)
        if reader is None:
            if media.startswith("text/"):
                return data.decode("utf-8", "replace")
            if media == PICKLE_TYPE:
                self._warn(f"{key!r} holds a signed pickle but this cache has no signing_key; reading it as a miss")
                return MISS
            return data
        try:
            value = reader.loads(data, key)
        except Exception as exc:  # a corrupt value is a miss, whatever the decoder raised
            self._warn(
                f"{key!r} holds a {media} value that does not decode ({type(exc).__name__}); reading it as a miss"
            )
            return MISS
        if value is MISS:
            self._warn(
                f"{key!r} holds a pickle whose signature does not verify; it was NOT unpickled "
                "and reads as a miss (tampered, or written with another signing key)"
            )
        return value

    def _warn(self, message: str) -> None:
        log.warning("agentcache: %s", message)
