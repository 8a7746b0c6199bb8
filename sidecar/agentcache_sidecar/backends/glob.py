"""Valkey-compatible glob matching (the semantics of ``SCAN ... MATCH``).

``compile_glob(pattern)`` returns a predicate that answers exactly as Valkey's
``stringmatchlen`` would for the same pattern and key, so the memory and file
backends list and delete the same keys as the valkey backend:

- ``*`` any run of bytes (also empty), ``?`` exactly one byte;
- ``[abc]`` a set, ``[^abc]`` its complement, ``[a-z]`` a range (reversed
  ranges are swapped), ``\\x`` inside a set is the literal ``x``; ``]`` right
  after ``[`` or ``[^`` closes the set (``[]`` matches nothing), and a set
  missing its ``]`` runs to the end of the pattern;
- ``\\x`` outside a set is the literal ``x``; a trailing ``\\`` is literal.

Like Valkey, matching works on the UTF-8 *bytes* of pattern and key: ``?``
matches one byte, not one character, and range bounds compare as C's signed
``char`` (bytes >= 0x80 sort below ASCII).

The pattern is compiled to one anchored bytes regex in which every stretch
between two ``*`` is an atomic lazy group, so matching is linear in practice
and patterns such as ``*a*a*a*a*b`` cannot backtrack catastrophically.
"""

from __future__ import annotations

import functools
import re
from typing import Callable

_ANY = "any"  # ``*``


def _signed(byte: int) -> int:
    return byte - 256 if byte >= 128 else byte


def _byte_class(members: set[int], negate: bool) -> bytes:
    """A regex atom matching exactly one byte in ``members`` (or outside it when ``negate``)."""
    chosen = set(range(256)) - members if negate else members
    if not chosen:
        return rb"(?!)"
    if len(chosen) == 256:
        return b"."
    return b"[" + b"".join(re.escape(bytes([b])) for b in sorted(chosen)) + b"]"


def _parse_set(pattern: bytes, pos: int) -> tuple[bytes, int]:
    """Parse a ``[...]`` set starting after the ``[``; return its regex atom and the next position."""
    negate = pos < len(pattern) and pattern[pos] == ord("^")
    if negate:
        pos += 1
    members: set[int] = set()
    while pos < len(pattern):
        byte = pattern[pos]
        if byte == ord("\\") and pos + 1 < len(pattern):
            members.add(pattern[pos + 1])
            pos += 2
        elif byte == ord("]"):
            return _byte_class(members, negate), pos + 1
        elif pos + 2 < len(pattern) and pattern[pos + 1] == ord("-"):
            low, high = sorted((_signed(byte), _signed(pattern[pos + 2])))
            members.update(b for b in range(256) if low <= _signed(b) <= high)
            pos += 3
        else:
            members.add(byte)
            pos += 1
    return _byte_class(members, negate), pos


def _tokens(pattern: bytes) -> list[bytes | str]:
    """Split a glob into single-byte regex atoms and ``_ANY`` markers (runs of ``*`` collapse)."""
    tokens: list[bytes | str] = []
    pos = 0
    while pos < len(pattern):
        byte = pattern[pos]
        if byte == ord("*"):
            if not tokens or tokens[-1] is not _ANY:
                tokens.append(_ANY)
            pos += 1
        elif byte == ord("?"):
            tokens.append(b".")
            pos += 1
        elif byte == ord("["):
            atom, pos = _parse_set(pattern, pos + 1)
            tokens.append(atom)
        elif byte == ord("\\") and pos + 1 < len(pattern):
            tokens.append(re.escape(pattern[pos + 1 : pos + 2]))
            pos += 2
        else:
            tokens.append(re.escape(pattern[pos : pos + 1]))
            pos += 1
    return tokens


def _to_regex(pattern: bytes) -> bytes:
    segments: list[list[bytes]] = [[]]
    for token in _tokens(pattern):
        if token is _ANY:
            segments.append([])
        else:
            segments[-1].append(token)
    parts = [b"".join(segment) for segment in segments]
    if len(parts) == 1:
        return parts[0] + rb"\Z"
    middle = b"".join(rb"(?>.*?" + part + b")" for part in parts[1:-1] if part)
    return parts[0] + middle + b".*" + parts[-1] + rb"\Z"


def is_literal(pattern: str) -> bool:
    """True when ``pattern`` has no glob syntax, i.e. it matches exactly one key (itself)."""
    return not any(ch in pattern for ch in "*?[\\")


@functools.lru_cache(maxsize=256)
def compile_glob(pattern: str) -> Callable[[str], bool]:
    """Return ``matches(key) -> bool`` with Valkey ``MATCH`` semantics for ``pattern``."""
    regex = re.compile(_to_regex(pattern.encode("utf-8")), re.DOTALL)
    match = regex.match

    def matches(key: str) -> bool:
        return match(key.encode("utf-8")) is not None

    return matches
