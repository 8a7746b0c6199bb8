"""Validation of the agent's keys, patterns and query parameters (DESIGN.md §3).

Everything that comes from a client passes through here first; each failure is
an ``ApiError`` carrying the HTTP status, a stable error code and a message
that says what was wrong.
"""

from __future__ import annotations

import math
import re
from urllib.parse import unquote_to_bytes

MAX_TTL = 10 * 365 * 24 * 3600
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _check_text(text: str, what: str, max_bytes: int) -> str:
    size = len(text.encode("utf-8"))
    if size == 0:
        raise ApiError(400, f"bad_{what}", f"the {what} is empty")
    if size > max_bytes:
        raise ApiError(400, f"bad_{what}", f"the {what} is {size} bytes; the limit is {max_bytes} bytes")
    for ch in text:
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            raise ApiError(400, f"bad_{what}", f"the {what} contains the control character U+{ord(ch):04X}")
    return text


def decode_path_key(raw: str, max_bytes: int) -> str:
    """Percent-decode one raw path segment strictly into a valid key."""
    if _BAD_PERCENT.search(raw):
        raise ApiError(400, "bad_key", "the key has a malformed percent-encoding (use %XX with two hex digits)")
    try:
        key = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "bad_key", "the key is not valid UTF-8 once percent-decoded") from None
    return _check_text(key, "key", max_bytes)


def check_key(key: object, max_bytes: int) -> str:
    """A key from a JSON body."""
    if not isinstance(key, str):
        raise ApiError(400, "bad_key", f"keys must be strings, got {type(key).__name__}")
    return _check_text(key, "key", max_bytes)


def check_pattern(pattern: str, max_bytes: int) -> str:
    return _check_text(pattern, "pattern", max_bytes)


def parse_seconds(raw: str | None, name: str, default: float) -> float:
    """A non-negative, finite number of seconds (``0``: never expires), at most ten years."""
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(400, "bad_ttl", f"{name} must be a number of seconds, got {raw!r}") from None
    return check_seconds(value, name)


def check_seconds(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ApiError(400, "bad_ttl", f"{name} must be a finite number of seconds, got {value!r}")
    if value < 0 or value > MAX_TTL:
        raise ApiError(400, "bad_ttl", f"{name} must be between 0 and {MAX_TTL} seconds, got {value!r}")
    return float(value)


def parse_limit(raw: str | None, default: int, maximum: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "bad_limit", f"limit must be a whole number, got {raw!r}") from None
    if not 1 <= value <= maximum:
        raise ApiError(400, "bad_limit", f"limit must be between 1 and {maximum}, got {value}")
    return value
