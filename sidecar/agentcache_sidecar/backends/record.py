"""Binary envelope for entries stored outside the process (file and valkey backends).

Layout: ``b"AC1"``, flags (1 byte, bit 0: payload is zstd-compressed),
fresh_until and expires_at as signed 64-bit milliseconds since the epoch
(-1: none), the Content-Type length (uint16) and bytes, then the payload.
A blob that does not parse is ``CorruptRecord``: callers treat it as a miss.
"""

from __future__ import annotations

import struct
from typing import Any

from .base import Entry, Fresh

MAGIC = b"AC1"
_HEADER = struct.Struct(">3sBqqH")
FLAG_ZSTD = 0x01
_codec: Any = None


def _zstd() -> Any:
    """zstandard, its compressor and decompressor: loaded by the first record that is compressed (most never are)."""
    global _codec
    if _codec is None:
        import zstandard

        _codec = (zstandard, zstandard.ZstdCompressor(level=3), zstandard.ZstdDecompressor())
    return _codec


class CorruptRecord(ValueError):
    """The stored bytes are not a record this version can read."""


def _ms(ts: float | None) -> int:
    return -1 if ts is None else int(ts * 1000)


def _ts(ms: int) -> float | None:
    return None if ms < 0 else ms / 1000.0


def encode(entry: Entry, compress_threshold: int | None = None) -> bytes:
    """Serialize ``entry``; compress the payload when it is at least ``compress_threshold`` bytes and shrinks."""
    payload, flags = entry.value, 0
    if compress_threshold is not None and len(payload) >= compress_threshold:
        packed = _zstd()[1].compress(payload)
        if len(packed) < len(payload):
            payload, flags = packed, FLAG_ZSTD
    content_type = entry.content_type.encode("utf-8")
    header = _HEADER.pack(MAGIC, flags, _ms(entry.fresh_until), _ms(entry.expires_at), len(content_type))
    return b"".join((header, content_type, payload))


def decode(blob: bytes) -> Entry:
    if len(blob) < _HEADER.size:
        raise CorruptRecord("record shorter than its header")
    magic, flags, fresh_ms, expires_ms, ct_len = _HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise CorruptRecord("bad magic")
    start = _HEADER.size + ct_len
    if len(blob) < start:
        raise CorruptRecord("truncated content type")
    try:
        content_type = blob[_HEADER.size : start].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptRecord(str(exc)) from exc
    payload = blob[start:]
    if flags & FLAG_ZSTD:
        zstandard, _, decompressor = _zstd()
        try:
            payload = decompressor.decompress(payload)
        except zstandard.ZstdError as exc:
            raise CorruptRecord(str(exc)) from exc
    return Entry(payload, content_type, _ts(fresh_ms), _ts(expires_ms))


def fresh_values(blobs: list[bytes | None], now: float) -> tuple[list[Fresh | None], list[int]]:
    """What ``decode`` and ``Entry.is_fresh(now)`` tell of each blob, without building ``Entry`` objects.

    Returns ``(value, content_type)`` for each blob still fresh (None: missing, stale or expired) and the
    positions of the blobs that are corrupt (None in the values too)."""
    now_ms = now * 1000
    size = _HEADER.size
    unpack = _HEADER.unpack_from
    types: dict[bytes, str] = {}
    values: list[Fresh | None] = []
    corrupt: list[int] = []
    for index, blob in enumerate(blobs):
        if blob is None:
            values.append(None)
            continue
        if len(blob) < size or blob[:3] != MAGIC:
            corrupt.append(index)
            values.append(None)
            continue
        _, flags, fresh_ms, expires_ms, ct_len = unpack(blob)
        if 0 <= fresh_ms <= now_ms or 0 <= expires_ms <= now_ms:
            values.append(None)
            continue
        if flags & FLAG_ZSTD:
            try:
                entry = decode(blob)
            except CorruptRecord:
                corrupt.append(index)
                values.append(None)
            else:
                values.append((entry.value, entry.content_type))
            continue
        start = size + ct_len
        raw_type = blob[size:start]
        content_type = types.get(raw_type)
        if content_type is None or len(blob) < start:
            try:
                if len(blob) < start:
                    raise CorruptRecord("truncated content type")
                content_type = types[raw_type] = raw_type.decode("utf-8")
            except (UnicodeDecodeError, CorruptRecord):
                corrupt.append(index)
                values.append(None)
                continue
        values.append((blob[start:], content_type))
    return values, corrupt
