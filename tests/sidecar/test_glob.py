"""compile_glob answers like Valkey's SCAN MATCH: a table of cases, then parity with a real valkey-server."""

from __future__ import annotations

import time

import pytest
import valkey

from agentcache_sidecar.backends.glob import compile_glob, is_literal

CASES = [
    ("*", "", True),
    ("*", "anything: at all\n", True),
    ("a*", "a", True),
    ("a*", "ba", False),
    ("a?c", "abc", True),
    ("a?c", "ac", False),
    ("a?c", "abbc", False),
    ("[abc]x", "bx", True),
    ("[abc]x", "dx", False),
    ("[^abc]x", "dx", True),
    ("[^abc]x", "ax", False),
    ("[a-c]", "b", True),
    ("[c-a]", "b", True),  # reversed range is swapped
    ("[a-c]", "d", False),
    ("[]", "a", False),  # ']' right after '[' closes an empty set
    ("[]", "", False),
    ("[^]", "z", True),
    ("[abc", "b", True),  # unterminated set runs to the end
    ("[abc", "d", False),
    ("[\\]]", "]", True),
    ("[^\\]]", "]", False),
    ("\\*", "*", True),
    ("\\*", "x", False),
    ("a\\", "a\\", True),  # trailing backslash is literal
    ("\\?", "?", True),
    ("x\\[1\\]", "x[1]", True),
    ("x\\[1\\]", "x1", False),
    ("*a*a*a*a*a*a*a*a*b", "a" * 5000, False),  # linear, no catastrophic backtracking
    ("*a*b*c", "xxaxxbxxc", True),
    ("*a*b*c", "xxaxxcxxb", False),
    ("?", "é", False),  # one byte, not one character, like Valkey
    ("??", "é", True),
    ("p:ключ:*", "p:ключ:🔑", True),
    ("a.b", "axb", False),  # regex metacharacters are literal
    ("(a|b)", "(a|b)", True),
    ("line*", "line1\nline2", True),
]


@pytest.mark.parametrize(("pattern", "key", "expected"), CASES)
def test_cases(pattern, key, expected):
    assert compile_glob(pattern)(key) is expected


def test_pathological_pattern_is_fast():
    started = time.perf_counter()
    assert not compile_glob("*a" * 30 + "*b")("a" * 20000)
    assert time.perf_counter() - started < 0.5


def test_is_literal():
    assert is_literal("p:user:1")
    assert not is_literal("p:*")
    assert not is_literal("p:\\*")
    assert not is_literal("p:[ab]")


PARITY_KEYS = [
    "",
    "a",
    "b",
    "ab",
    "abc",
    "abbc",
    "ac",
    "a]",
    "]",
    "[",
    "-",
    "^",
    "*",
    "?",
    "\\",
    "a\\",
    "x[1]",
    "x1",
    "user:1",
    "user:10",
    "user:a",
    "user:",
    "é",
    "ключ",
    "🔑",
    "a-b",
    "a.b",
    "axb",
    "AB",
    "z",
    "{x}",
    "line\nbreak",
    "tab\tkey",
]
PARITY_PATTERNS = [
    "*",
    "?",
    "??",
    "a*",
    "*b",
    "a?c",
    "[ab]",
    "[^ab]",
    "[a-c]*",
    "[c-a]",
    "[]",
    "[^]",
    "[]a]",
    "[^]a]",
    "[abc",
    "[a-",
    "[a-]",
    "[\\]]",
    "[\\",
    "\\*",
    "\\",
    "a\\",
    "x\\[1\\]",
    "x[1]",
    "user:?",
    "user:*",
    "user:[0-9]",
    "user:[0-9]*",
    "*:*",
    "[\\^]",
    "[-a]",
    "[a\\-c]",
    "?*?",
    "*?",
    "[é]",
    "[а-я]*",
    "[^a-z]*",
    "[\x80-\xff]*",
    "ключ",
    "line*",
    "*\t*",
    "[*]",
    "[?]",
]


def _scan_all(client: valkey.Valkey, pattern: str) -> set[bytes]:
    return set(client.scan_iter(match=pattern.encode("utf-8"), count=1000))


def test_parity_with_real_valkey(valkey_server):
    """Every pattern selects exactly the keys a real valkey-server's SCAN MATCH selects."""
    client = valkey.Valkey(host="127.0.0.1", port=valkey_server.port)
    try:
        for key in PARITY_KEYS:
            client.set(key.encode("utf-8"), b"v")
        for pattern in PARITY_PATTERNS:
            expected = {key for key in PARITY_KEYS if key.encode("utf-8") in _scan_all(client, pattern)}
            matches = compile_glob(pattern)
            assert {key for key in PARITY_KEYS if matches(key)} == expected, pattern
    finally:
        client.close()
