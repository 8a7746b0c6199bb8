"""What ``import agentcache`` loads, pinned without timing (the figures are bench/footprint.py's): each name of the
package is imported on first use, msgpack and pickle only by their serializers, asyncio only in an event loop."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import agentcache

PROBE = "import sys\n{code}\nprint(__import__('json').dumps(sorted(sys.modules)))"


def loaded_by(code: str) -> set[str]:
    """The modules a fresh interpreter holds after ``code``."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(code=code)], capture_output=True, text=True, timeout=60, check=True
    )
    return set(json.loads(result.stdout))


@pytest.mark.parametrize(
    "code, absent",
    [
        ("import agentcache", {"agentcache.client", "asyncio", "msgpack", "importlib.metadata", "httptools"}),
        ("import agentcache.protocol", {"agentcache.client", "agentcache.decorator", "asyncio", "msgpack"}),
        (
            "from agentcache import cached, get_cache, Cache, stable_hash",
            {"asyncio", "ssl", "msgpack", "pickle", "hmac", "importlib.metadata", "datetime", "uuid", "decimal"},
        ),
    ],
)
def test_an_import_loads_only_what_it_needs(code, absent):
    assert loaded_by(code) & absent == set()


def test_each_serializer_and_the_async_client_load_their_module_when_used():
    loaded = loaded_by(
        "import asyncio\n"
        "from agentcache import AsyncCache, CacheUnavailable, MsgpackSerializer, SignedPickleSerializer\n"
        "assert MsgpackSerializer().loads(MsgpackSerializer().dumps({'a': b'1'}, 'k'), 'k') == {'a': b'1'}\n"
        "signed = SignedPickleSerializer(b'0123456789abcdef')\n"
        "assert signed.loads(signed.dumps({1, 2}, 'k'), 'k') == {1, 2}\n"
        "async def main():\n"
        "    try:\n"
        "        await AsyncCache('/nonexistent.sock').get('k')\n"
        "    except CacheUnavailable:\n"
        "        pass\n"
        "asyncio.run(main())\n"
    )
    assert {"msgpack", "pickle", "hmac", "asyncio"} <= loaded


def test_the_public_names_and_the_version_are_there_on_first_use():
    assert set(agentcache.__all__) <= set(dir(agentcache))
    for name in agentcache.__all__:
        assert getattr(agentcache, name) is not None
    assert agentcache.__version__.count(".") >= 2
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        agentcache.nope  # noqa: B018


def test_stable_hash_of_values_whose_modules_load_late():
    code = (
        "import agentcache, dataclasses, datetime, decimal, uuid\n"
        "@dataclasses.dataclass\nclass P:\n    x: int\n"
        "print(agentcache.stable_hash([datetime.date(2024, 1, 2), decimal.Decimal('1.5'), "
        "uuid.UUID(int=1), P(3)]))\n"
    )
    late = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    import dataclasses
    import datetime
    import decimal
    import uuid

    @dataclasses.dataclass
    class P:
        x: int

    P.__qualname__ = "P"
    expected = agentcache.stable_hash([datetime.date(2024, 1, 2), decimal.Decimal("1.5"), uuid.UUID(int=1), P(3)])
    assert late.stdout.strip() == expected
