"""``POST /v1/batch/get``'s two answers, JSON (the default) and ``BATCH_MSGPACK_TYPE`` (asked by ``Accept``; the
SDK's), against real sidecars: the same values, misses, stale exclusion and hit/miss counts."""

from __future__ import annotations

import asyncio
import json

import msgpack
import pytest

from agentcache import AsyncCache, Cache, protocol
from agentcache.client import Reply, _Operations
from tests.support.sidecar import sidecar_on

MSGPACK = {"Accept": protocol.BATCH_MSGPACK_TYPE}
STORED = {  # key: (body, Content-Type) as PUT stores them
    "object": (b'{"a": [1, 2.5, "\\u00e9"], "b": null}', "application/json"),
    "list": (b"[1,2]", "application/json"),
    "string": (b'"caf\xc3\xa9"', "application/json"),
    "number": (b"-1.5e3", "application/json"),
    "null": (b"null", "application/json"),
    "true": (b"true", "application/json; charset=utf-8"),
    "lookalike": (b'{"$base64": "AAE="}', "application/json"),
    "not-json": (b"{nope", "application/json"),
    "nan": (b"NaN", "application/json"),
    "bytes": (bytes(range(256)), "application/octet-stream"),
    "empty": (b"", "application/octet-stream"),
    "packed": (msgpack.packb({"a": 1}), "application/msgpack"),
    "text": ("héllo".encode(), "text/plain; charset=utf-8"),
}


@pytest.fixture(scope="module", params=["memory", "valkey"])
def sidecar(request, tmp_path_factory):
    with sidecar_on(request.param, tmp_path_factory.mktemp(f"batch-{request.param}"), "batch:") as process:
        yield process


@pytest.fixture
async def http(sidecar):
    async with sidecar.session() as session:
        async with session.delete("/v1/keys") as resp:
            assert resp.status == 200
        for key, (body, content_type) in STORED.items():
            async with session.put(f"/v1/keys/{key}", data=body, headers={"Content-Type": content_type}) as resp:
                assert resp.status == 204
        yield session


async def batch_get(http, keys: list, headers: dict | None = None) -> tuple[str, bytes]:
    async with http.post("/v1/batch/get", json={"keys": keys}, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        return resp.headers["Content-Type"], await resp.read()


def positional(body: bytes) -> list:
    """A msgpack answer as ``[(bytes, content_type) or None]`` in the order asked."""
    answer = msgpack.unpackb(body)
    names, types = answer["content_types"], answer["types"]
    return [None if v is None else (v, names[t]) for v, t in zip(answer["values"], types)]


async def stats(http) -> tuple[int, int]:
    async with http.get("/v1/stats") as resp:
        body = await resp.json()
    return body["hits"], body["misses"]


async def test_msgpack_answer_holds_the_stored_bytes_in_the_order_asked(http):
    keys = [*STORED, "missing", "object"]
    content_type, body = await batch_get(http, keys, MSGPACK)
    assert content_type == protocol.BATCH_MSGPACK_TYPE
    assert positional(body) == [*STORED.values(), None, STORED["object"]]
    assert isinstance(msgpack.unpackb(body)["types"], bytes), "few types: one byte each"


async def test_json_answer_is_json_values_and_envelopes(http):
    content_type, body = await batch_get(http, [*STORED, "missing"], {"Accept": "application/json"})
    assert content_type.startswith("application/json")
    values = json.loads(body)["values"]

    def envelope(key: str) -> dict:
        data, stored_type = STORED[key]
        return protocol.envelope(data, stored_type)

    assert values == {
        "object": {"a": [1, 2.5, "é"], "b": None},
        "list": [1, 2],
        "string": "café",
        "number": -1500.0,
        "null": None,
        "true": True,
        "lookalike": envelope("lookalike"),  # a JSON value shaped like the envelope is wrapped
        "not-json": envelope("not-json"),
        "nan": envelope("nan"),  # not JSON: never sent as a bare NaN
        "bytes": envelope("bytes"),
        "empty": envelope("empty"),
        "packed": envelope("packed"),
        "text": envelope("text"),
        "missing": None,
    }
    assert b"NaN" not in body
    _, default = await batch_get(http, ["list", "bytes"])  # no Accept: JSON
    assert json.loads(default)["values"] == {"list": [1, 2], "bytes": envelope("bytes")}


@pytest.mark.parametrize("accept", ["application/json", f"text/html, {protocol.BATCH_MSGPACK_TYPE};q=0.9"])
async def test_stale_values_are_excluded_and_hits_counted_in_both(http, accept):
    async with http.put("/v1/keys/fading", data=b"1", params={"ttl": "0.5", "stale_ttl": "60"}) as resp:
        assert resp.status == 204
    await asyncio.sleep(0.7)
    async with http.get("/v1/keys/fading", params={"allow_stale": "1"}) as resp:
        assert resp.status == 200 and resp.headers["X-Cache-Stale"] == "1"
    hits, misses = await stats(http)
    content_type, body = await batch_get(http, ["fading", "list", "missing", "bytes", "list"], {"Accept": accept})
    if content_type == protocol.BATCH_MSGPACK_TYPE:
        assert positional(body) == [None, STORED["list"], None, STORED["bytes"], STORED["list"]]
    else:
        assert json.loads(body)["values"] == {
            "fading": None,
            "list": [1, 2],
            "missing": None,
            "bytes": protocol.envelope(*STORED["bytes"]),
        }
    assert await stats(http) == (hits + 3, misses + 2)


async def test_sdk_reads_every_kind_from_either_answer(sidecar, http):
    async with AsyncCache(sidecar.socket_path) as cache:
        await cache.set("sdk-null", None)
        keys = [*STORED, "sdk-null", "missing"]
        got = await cache.get_many(keys, default="DEFAULT")
        expected = {
            "object": {"a": [1, 2.5, "é"], "b": None},
            "list": [1, 2],
            "string": "café",
            "number": -1500.0,
            "null": None,  # a stored null is a value, not a miss
            "true": True,
            "lookalike": {"$base64": "AAE="},
            "not-json": "DEFAULT",  # undecodable: a miss (and a warning), as with get()
            "nan": float("nan"),
            "bytes": bytes(range(256)),
            "empty": b"",
            "packed": {"a": 1},
            "text": "héllo",
            "sdk-null": None,
            "missing": "DEFAULT",
        }
        assert list(got) == keys
        nan = got.pop("nan")
        assert nan != nan and {k: v for k, v in expected.items() if k != "nan"} == got
        for key in keys:
            single = await cache.get(key, default="DEFAULT")
            assert single == expected[key] or (single != single and key == "nan"), key
        # a sidecar that answers JSON (one that predates the msgpack answer): the SDK reads it alike
        ops = _Operations(sidecar.socket_path, "json", None, 1.0)
        plan = ops.get_many_plan(keys, "DEFAULT")
        _, body = await batch_get(http, keys)
        as_json = plan.combine([plan.calls[0].parse(Reply(200, {"Content-Type": "application/json"}, body))])
        nan = as_json.pop("nan")
        assert nan != nan
        # JSON's null is both a miss and a stored null: only the msgpack answer tells them apart
        assert as_json == {**got, "null": "DEFAULT", "sdk-null": "DEFAULT"}
    with Cache(sidecar.socket_path) as sync_cache:
        got = sync_cache.get_many(["list", "bytes", "missing", "null"], default=0)
        assert got == {"list": [1, 2], "bytes": bytes(range(256)), "missing": 0, "null": None}


async def test_sdk_batches_beyond_one_chunk_and_scopes(sidecar, http):
    async with AsyncCache(sidecar.socket_path) as cache:
        scoped = cache.scoped("user:7")
        values = {f"k{i}": (i if i % 3 else bytes([i % 256])) for i in range(2500)}
        assert await scoped.set_many(values, ttl=60)
        keys = [*values, "absent"]
        got = await scoped.get_many(keys)
        assert got == {**values, "absent": None}
        assert await cache.get_many(["k1", "user:7:k1"]) == {"k1": None, "user:7:k1": 1}
