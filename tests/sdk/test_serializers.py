"""Serializers: signed pickle (tampering, wrong keys, copied values), msgpack, and Content-Type dispatch."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pytest

from agentcache import AsyncCache, Cache
from agentcache.serializers import MISS, PICKLE_TYPE, Codec, SignedPickleSerializer

SIGNING_KEY = b"0123456789abcdef-test-signing-key"


@dataclass
class Report:
    title: str
    scores: tuple


class Exploit:
    """Unpickling this creates ``path``: proof that a value was (not) unpickled."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


@pytest.fixture
async def signed(sidecar):
    async with AsyncCache(sidecar.socket_path, serializer="pickle", signing_key=SIGNING_KEY) as client:
        await client.clear()
        yield client


async def raw_put(sidecar, key: str, body: bytes, content_type: str) -> None:
    async with sidecar.session() as http:
        async with http.put(f"/v1/keys/{key}", data=body, headers={"Content-Type": content_type}) as response:
            assert response.status == 204


async def raw_get(sidecar, key: str) -> tuple[bytes, str]:
    async with sidecar.session() as http:
        async with http.get(f"/v1/keys/{key}") as response:
            return await response.read(), response.headers["Content-Type"]


async def test_signed_pickle_round_trip(signed, sidecar):
    report = Report("q3", (1, 2.5))
    await signed.set("report", report)
    assert await signed.get("report") == report
    body, content_type = await raw_get(sidecar, "report")
    assert content_type == PICKLE_TYPE and len(body) > 32
    await signed.set_many({"r2": Report("q4", ())})
    assert await signed.get_many(["r2", "report"]) == {"r2": Report("q4", ()), "report": report}


async def test_tampered_pickle_is_a_miss_and_never_unpickled(signed, sidecar, tmp_path, caplog):
    await signed.set("report", Report("q3", (1,)))
    body, _ = await raw_get(sidecar, "report")
    tampered = body[:-1] + bytes([body[-1] ^ 0x01])
    await raw_put(sidecar, "report", tampered, PICKLE_TYPE)
    with caplog.at_level(logging.WARNING, logger="agentcache"):
        assert await signed.get("report") is None
        assert await signed.get("report", default="fallback") == "fallback"
        assert (await signed.lookup("report")).found is False
    assert any("signature does not verify" in r.message and "NOT unpickled" in r.message for r in caplog.records)

    marker = tmp_path / "pwned"
    forged = SignedPickleSerializer(b"an-attackers-own-signing-key").dumps(Exploit(marker), "evil")
    await raw_put(sidecar, "evil", forged, PICKLE_TYPE)
    unsigned = forged[32:]  # a bare pickle with a garbage "signature" in front
    await raw_put(sidecar, "bare", b"\0" * 32 + unsigned, PICKLE_TYPE)
    assert await signed.get("evil") is None and await signed.get("bare") is None
    assert await signed.get_many(["evil", "bare"]) == {"evil": None, "bare": None}
    assert not marker.exists(), "a value whose signature fails must never be unpickled"


async def test_a_signed_value_copied_under_another_key_is_rejected(signed, sidecar):
    await signed.set("admin:settings", {"role": "admin"})
    body, _ = await raw_get(sidecar, "admin%3Asettings")
    await raw_put(sidecar, "guest%3Asettings", body, PICKLE_TYPE)
    assert await signed.get("guest:settings") is None
    assert await signed.get("admin:settings") == {"role": "admin"}


async def test_pickles_are_misses_without_the_signing_key(signed, sidecar, caplog):
    await signed.set("report", Report("q3", ()))
    async with AsyncCache(sidecar.socket_path) as plain:
        with caplog.at_level(logging.WARNING, logger="agentcache"):
            assert await plain.get("report") is None
        assert any("no signing_key" in r.message for r in caplog.records)
    with Cache(sidecar.socket_path, signing_key=b"a-different-key-of-16+") as other:
        assert other.get("report") is None


def test_pickle_needs_a_signing_key():
    with pytest.raises(ValueError, match="signing_key"):
        AsyncCache("/unused", serializer="pickle")
    with pytest.raises(ValueError, match="16 bytes"):
        Cache("/unused", serializer="pickle", signing_key="short")
    with pytest.raises(ValueError, match="unknown serializer"):
        Cache("/unused", serializer="yaml")


def test_codec_dispatches_on_the_stored_content_type():
    codec = Codec("json", SIGNING_KEY)
    assert codec.encode({"a": 1}, "k") == (b'{"a":1}', "application/json")
    assert codec.encode(b"\x00", "k") == (b"\x00", "application/octet-stream")
    assert codec.decode(b'{"a":1}', "application/json; charset=utf-8", "k") == {"a": 1}
    assert codec.decode(b"\x91\x01", "application/msgpack", "k") == [1]
    assert codec.decode(b"text", "text/plain", "k") == "text"
    assert codec.decode(b"\x00", None, "k") == b"\x00"
    signed = SignedPickleSerializer(SIGNING_KEY).dumps(Report("x", ()), "k")
    assert codec.decode(signed, PICKLE_TYPE, "k") == Report("x", ())
    assert codec.decode(b"{broken", "application/json", "k") is MISS
