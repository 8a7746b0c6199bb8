"""Validation of the agent's keys, patterns and query parameters (docs/design.md §3; key rules: ``protocol``).

Everything that comes from a client passes through here first; each failure is
an ``ApiError`` carrying the HTTP status, a stable error code and a message
that says what was wrong.
"""

from __future__ import annotations

import math
import re
from typing import TypeGuard
from urllib.parse import unquote_to_bytes

from agentcache.protocol import (
    CONTROL_CHARS,
    ERR_BAD_CONTENT_TYPE,
    ERR_BAD_KEY,
    ERR_BAD_LIMIT,
    ERR_BAD_PATTERN,
    ERR_BAD_TTL,
    text_problem,
)

MAX_TTL = 10 * 365 * 24 * 3600
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]{1,255}")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _check_text(text: str, what: str, code: str, max_bytes: int) -> str:
    problem = text_problem(text, what, max_bytes)
    if problem:
        raise ApiError(400, code, problem)
    return text


def decode_path_key(raw: str, max_bytes: int) -> str:
    """Percent-decode one raw path segment strictly into a valid key."""
    if _BAD_PERCENT.search(raw):
        raise ApiError(400, ERR_BAD_KEY, "the key has a malformed percent-encoding (use %XX with two hex digits)")
    try:
        key = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, ERR_BAD_KEY, "the key is not valid UTF-8 once percent-decoded") from None
    return _check_text(key, "key", ERR_BAD_KEY, max_bytes)


def check_key(key: object, max_bytes: int) -> str:
    """A key from a JSON body."""
    if not isinstance(key, str):
        raise ApiError(400, ERR_BAD_KEY, f"keys must be strings, got {type(key).__name__}")
    return _check_text(key, "key", ERR_BAD_KEY, max_bytes)


def check_keys(keys: list, max_bytes: int) -> list[str]:
    """The keys of a batch: checked together in a few passes in C when all are valid (the usual case), one by
    one (for the message) when one is not."""
    if keys and set(map(type, keys)) == {str} and min(map(len, keys)) > 0 and 4 * max(map(len, keys)) <= max_bytes:
        joined = "".join(keys)
        try:
            joined.encode("utf-8")
        except UnicodeEncodeError:
            pass
        else:
            if not CONTROL_CHARS.search(joined):
                return keys
    return [check_key(key, max_bytes) for key in keys]


def check_pattern(pattern: str, max_bytes: int) -> str:
    return _check_text(pattern, "pattern", ERR_BAD_PATTERN, max_bytes)


def parse_seconds(raw: str | None, name: str, default: float) -> float:
    """A non-negative, finite number of seconds (``0``: never expires), at most ten years; ``ttl=`` is a 400."""
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(400, ERR_BAD_TTL, f"{name} must be a number of seconds, got {raw!r}") from None
    return check_seconds(value, name)


def check_seconds(value: object, name: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        raise ApiError(400, ERR_BAD_TTL, f"{name} must be a finite number of seconds, got {str(value)[:40]!r}")
    if value < 0 or value > MAX_TTL:
        raise ApiError(400, ERR_BAD_TTL, f"{name} must be between 0 and {MAX_TTL} seconds, got {str(value)[:40]}")
    return float(value)


def parse_limit(raw: str | None, default: int, maximum: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, ERR_BAD_LIMIT, f"limit must be a whole number, got {raw!r}") from None
    if not 1 <= value <= maximum:
        raise ApiError(400, ERR_BAD_LIMIT, f"limit must be between 1 and {maximum}, got {value}")
    return value


def is_safe_content_type(value: object) -> TypeGuard[str]:
    """Printable ASCII, 1..255 characters: safe to send as a header."""
    return isinstance(value, str) and _PRINTABLE_ASCII.fullmatch(value) is not None


def check_content_type(value: object, key: str) -> str:
    """A Content-Type to store and later send as a header: printable ASCII, at most 255 characters."""
    if not is_safe_content_type(value):
        raise ApiError(
            400, ERR_BAD_CONTENT_TYPE, f"the content type of {key!r} must be 1..255 printable ASCII characters"
        )
    return value
