"""``@cached`` against real sidecars: keys, options, edge cases, and single-flight across processes."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from agentcache import AsyncCache, Cache, cached, llm_key, stable_hash
from tests.support.sidecar import SidecarProcess
from tests.support.valkey import ValkeyProcess

WORKER = Path(__file__).with_name("lock_worker.py")


@dataclass
class Task:
    """Stands in for AgentUp's a2a Task (only ``input`` is used by the seed's examples)."""

    input: str


class Counter:
    def __init__(self):
        self.calls = 0

    def __call__(self, result=None):
        self.calls += 1
        return result


# --- keys ----------------------------------------------------------------------------------------


def test_template_names_are_checked_when_decorating():
    with pytest.raises(ValueError, match="has no parameter 'city'.*location"):

        @cached(key_template="weather:{city}")
        async def get_weather(task, location):
            return location

    with pytest.raises(ValueError, match="has no parameter"):

        @cached(key_template="x:{}")
        def positional(a):
            return a

    with pytest.raises(ValueError, match="not a valid format string"):

        @cached(key_template="x:{a")
        def broken(a):
            return a

    @cached(key_template="llm:{model}:{prompt_hash}")
    async def generate(model, prompt, **kwargs):
        return prompt

    assert generate.cache_key("gpt", "hello") == f"llm:gpt:{stable_hash('hello')}"


def test_hash_placeholders_are_canonical():
    @cached(key_template="api_response:{endpoint}:{params_hash}")
    async def fetch(endpoint, params):
        return params

    assert fetch.cache_key("users", {"a": 1, "b": [1, 2]}) == fetch.cache_key("users", {"b": [1, 2], "a": 1})
    assert fetch.cache_key("users", {"a": 1}) != fetch.cache_key("users", {"a": 2})
    assert fetch.cache_key("users", {"a": 1}).startswith("api_response:users:")


def test_default_key_binds_arguments_with_defaults():
    @cached
    def compute(x, y=2, *, z=3):
        return x

    key = compute.cache_key(1)
    assert key == compute.cache_key(x=1) == compute.cache_key(1, 2) == compute.cache_key(1, y=2, z=3)
    assert key != compute.cache_key(1, 3) and key != compute.cache_key(2)
    assert key.startswith(f"{__name__}.test_default_key_binds_arguments_with_defaults.<locals>.compute:")


def test_default_key_of_methods_leaves_out_self():
    class Service:
        def __init__(self, name):
            self.name = name

        @cached
        def lookup(self, item):
            return item

        @cached(key_template="svc:{self.name}:{item}")
        def per_instance(self, item):
            return item

    a, b = Service("a"), Service("b")
    assert Service.lookup.cache_key(a, 1) == Service.lookup.cache_key(b, 1)
    assert Service.per_instance.cache_key(a, 1) == "svc:a:1"


def test_llm_key_covers_model_messages_and_parameters():
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    key = llm_key("gpt-4o", messages, temperature=0.2, max_tokens=100)
    assert key.startswith("llm:gpt-4o:")
    assert key == llm_key("gpt-4o", [dict(m) for m in messages], max_tokens=100, temperature=0.2)
    changed_system = [{"role": "system", "content": "be verbose"}, messages[1]]
    assert key != llm_key("gpt-4o", changed_system, temperature=0.2, max_tokens=100)
    assert key != llm_key("gpt-4o", messages, temperature=0.3, max_tokens=100)
    assert key != llm_key("gpt-4o-mini", messages, temperature=0.2, max_tokens=100)
    assert key != llm_key("gpt-4o", messages, temperature=0.2)


# --- behaviour -----------------------------------------------------------------------------------


async def test_async_function_is_computed_once_per_key(cache):
    counter = Counter()

    @cached(ttl=1800, key_template="weather:{location}", cache=cache)
    async def get_weather(task, location):
        return counter({"location": location, "temp": 21})

    assert await get_weather(Task("x"), "london") == {"location": "london", "temp": 21}
    assert await get_weather(Task("y"), "london") == {"location": "london", "temp": 21}
    await get_weather(Task("x"), "paris")
    assert counter.calls == 2
    assert sorted(await cache.keys()) == ["weather:london", "weather:paris"]
    assert 1790 < await cache.ttl("weather:london") <= 1800


def test_sync_function_and_method(sync_cache):
    counter = Counter()

    class Repo:
        @cached(ttl=60, cache=sync_cache)
        def load(self, item_id):
            return counter({"id": item_id})

    assert Repo().load(1) == Repo().load(1) == {"id": 1}
    assert counter.calls == 1
    assert sync_cache.get(Repo.load.cache_key(Repo(), 1)) == {"id": 1}


async def test_async_cache_given_to_a_sync_function(cache):
    counter = Counter()

    @cached(ttl=60, key_template="sq:{n}", cache=cache)
    def square(n):
        return counter(n * n)

    assert await asyncio.to_thread(square, 4) == 16
    assert await asyncio.to_thread(square, 4) == 16
    assert counter.calls == 1 and await cache.get("sq:4") == 16


async def test_none_results_are_not_cached_unless_asked(cache):
    plain, keeping = Counter(), Counter()

    @cached(key_template="none:{n}", cache=cache)
    async def nothing(n):
        return plain(None)

    @cached(key_template="kept:{n}", cache=cache, cache_none=True)
    async def kept(n):
        return keeping(None)

    for _ in range(3):
        assert await nothing(1) is None
        assert await kept(1) is None
    assert plain.calls == 3 and keeping.calls == 1
    assert await cache.keys() == ["kept:1"]


async def test_exceptions_propagate_and_are_not_cached(cache):
    attempts = Counter()

    @cached(key_template="flaky:{n}", cache=cache)
    async def flaky(n):
        attempts()
        if attempts.calls == 1:
            raise ConnectionError("upstream down")
        return "ok"

    with pytest.raises(ConnectionError, match="upstream down"):
        await flaky(1)
    token = await cache.lock("flaky:1", ttl=5)
    assert token, "the lock of a failed computation is released"
    await cache.unlock("flaky:1", token)
    assert not await cache.exists("flaky:1")
    assert await flaky(1) == "ok" and await flaky(1) == "ok"
    assert attempts.calls == 2


async def test_condition_decides_per_call(cache):
    counter = Counter()

    @cached(ttl=1800, condition=lambda task: "cache" in task.input.lower(), cache=cache)
    async def handler(task):
        return counter(f"answer to {task.input}")

    await handler(Task("please CACHE this"))
    await handler(Task("please CACHE this"))
    assert counter.calls == 1
    await handler(Task("fresh please"))
    await handler(Task("fresh please"))
    assert counter.calls == 3
    assert len(await cache.keys()) == 1


async def test_stale_if_error_serves_the_stale_value(cache):
    upstream = {"up": True, "calls": 0}

    @cached(ttl=0.2, key_template="rates:{currency}", stale_if_error=True, stale_ttl=30, cache=cache)
    async def rates(currency):
        upstream["calls"] += 1
        if not upstream["up"]:
            raise TimeoutError("rate API unavailable")
        return {"currency": currency, "rate": upstream["calls"]}

    assert await rates("EUR") == {"currency": "EUR", "rate": 1}
    await asyncio.sleep(0.3)
    upstream["up"] = False
    assert await rates("EUR") == {"currency": "EUR", "rate": 1}, "stale value served while the API fails"
    with pytest.raises(TimeoutError):
        await rates("USD")  # nothing stale to serve
    upstream["up"] = True
    assert await rates("EUR") == {"currency": "EUR", "rate": 4}, "a recovered API refreshes the value"


async def test_without_stale_if_error_an_expired_value_is_not_served(cache):
    @cached(ttl=0.2, key_template="strict:{n}", cache=cache)
    async def strict(n):
        if await cache.get("strict-fail"):
            raise RuntimeError("boom")
        return n

    assert await strict(1) == 1
    await asyncio.sleep(0.3)
    await cache.set("strict-fail", True)
    with pytest.raises(RuntimeError):
        await strict(1)


async def test_unserializable_results_are_returned_uncached(cache, caplog):
    @cached(key_template="obj:{n}", cache=cache)
    async def make(n):
        return {n}

    with caplog.at_level(logging.WARNING, logger="agentcache"):
        assert await make(1) == {1}
        assert await make(1) == {1}
    assert await cache.keys() == []
    assert sum("runs uncached" in r.message for r in caplog.records) == 1


async def test_a_dead_sidecar_means_the_function_simply_runs(tmp_path, caplog):
    counter = Counter()
    dead = AsyncCache(str(tmp_path / "dead.sock"), timeout=1)

    @cached(ttl=60, cache=dead)
    async def answer(q):
        return counter(f"answer {q}")

    @cached(ttl=60, cache=dead)
    def answer_sync(q):
        return counter(f"sync {q}")

    with caplog.at_level(logging.WARNING, logger="agentcache"):
        for _ in range(3):
            assert await answer("q") == "answer q"
            assert answer_sync("q") == "sync q"
    assert counter.calls == 6
    unreachable = [r for r in caplog.records if "unreachable" in r.message]
    assert len(unreachable) == 1, "warned once per outage, not per call"
    await dead.close()


async def test_a_sidecar_that_dies_and_returns(sidecar_factory, caplog):
    sidecar = sidecar_factory({"cache": {"backend": "memory"}})
    counter = Counter()
    cache = AsyncCache(sidecar.socket_path, timeout=1)

    @cached(ttl=60, key_template="k", cache=cache)
    async def value():
        return counter("v")

    with caplog.at_level(logging.WARNING, logger="agentcache"):
        await value()
        sidecar.terminate()
        assert await value() == "v" and await value() == "v"
        sidecar.start()
        await value()
        await value()
    assert counter.calls == 4
    assert any("reachable again" in r.message for r in caplog.records)
    await cache.close()


async def test_in_process_concurrent_callers_compute_once(cache):
    counter = Counter()

    @cached(ttl=60, key_template="slow:{n}", cache=cache)
    async def slow(n):
        counter()
        await asyncio.sleep(0.3)
        return n * 10

    assert await asyncio.gather(*(slow(3) for _ in range(8))) == [30] * 8
    assert counter.calls == 1


async def test_lock_false_lets_every_caller_compute(cache):
    counter = Counter()

    @cached(ttl=60, key_template="free:{n}", cache=cache, lock=False)
    async def free(n):
        counter()
        await asyncio.sleep(0.2)
        return n

    await asyncio.gather(*(free(1) for _ in range(3)))
    assert counter.calls == 3


async def test_waiters_take_over_from_a_dead_holder(cache):
    """A holder that never releases (it died): the lock expires after lock_ttl and a waiter computes."""
    counter = Counter()
    assert await cache.lock("orphan:1", ttl=0.6)

    @cached(ttl=60, key_template="orphan:{n}", cache=cache, lock_wait=10)
    async def orphan(n):
        return counter(n)

    started = time.monotonic()
    assert await orphan(1) == 1
    assert 0.5 < time.monotonic() - started < 3 and counter.calls == 1


async def test_waiters_stop_waiting_after_lock_wait(cache, caplog):
    assert await cache.lock("stuck:1", ttl=30)

    @cached(ttl=60, key_template="stuck:{n}", cache=cache, lock_wait=0.3)
    async def stuck(n):
        return n

    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="agentcache"):
        assert await stuck(1) == 1
    assert time.monotonic() - started < 2
    assert any("computing it too" in r.message for r in caplog.records)


def _run_workers(sockets: list[str], tmp_path: Path, sync: bool = False) -> tuple[list[dict], list[str]]:
    counter, go = tmp_path / "computes.txt", tmp_path / "go"
    workers = []
    for i, socket_path in enumerate(sockets):
        args = [
            sys.executable,
            str(WORKER),
            socket_path,
            str(counter),
            "--ready",
            str(tmp_path / f"ready{i}"),
            "--go",
            str(go),
        ] + (["--sync"] if sync else [])
        workers.append(subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        deadline = time.monotonic() + 20
        while not all((tmp_path / f"ready{i}").exists() for i in range(len(sockets))):
            assert time.monotonic() < deadline, "workers did not start"
            time.sleep(0.01)
        go.touch()
        outputs = [worker.communicate(timeout=20) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0, err
    return [json.loads(out) for out, _ in outputs], counter.read_text().split()


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
def test_two_processes_compute_an_expensive_function_once(sidecar, tmp_path, sync):
    Cache(sidecar.socket_path).delete("expensive:7")
    results, computes = _run_workers([sidecar.socket_path, sidecar.socket_path], tmp_path, sync)
    assert len(computes) == 1, f"computed {len(computes)} times"
    assert results[0] == results[1] == {"computed_by": int(computes[0])}


def test_two_pods_sharing_valkey_compute_once(tmp_path):
    """Two sidecars (two pods) on one Valkey: the lock is the backend's, not a sidecar's."""
    valkey = ValkeyProcess(tmp_path / "valkey").start()
    config = {
        "cache": {"backend": "valkey", "key_prefix": "shared:"},
        "services": {"valkey": {"config": {"url": valkey.url}}},
    }
    pods = [SidecarProcess(tmp_path / f"pod{i}", config).start() for i in range(2)]
    try:
        results, computes = _run_workers([pod.socket_path for pod in pods], tmp_path)
        assert len(computes) == 1
        assert results[0] == results[1]
    finally:
        for pod in pods:
            pod.stop()
        valkey.stop()


def test_a_killed_holder_process_is_taken_over(valkey_sidecar, tmp_path):
    """The holder is SIGKILLed mid-computation; the other caller computes once its lock expires (in Valkey)."""
    sidecar = valkey_sidecar
    counter = tmp_path / "computes.txt"
    holder = subprocess.Popen(
        [sys.executable, str(WORKER), sidecar.socket_path, str(counter), "--sleep", "30", "--lock-ttl", "1"]
    )
    try:
        deadline = time.monotonic() + 20
        while not counter.exists():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        holder.kill()
        holder.wait()
        started = time.monotonic()
        out = subprocess.run(
            [sys.executable, str(WORKER), sidecar.socket_path, str(counter), "--sleep", "0"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        assert time.monotonic() - started < 5
    finally:
        holder.kill()
        holder.wait()
    assert len(counter.read_text().split()) == 2
    assert json.loads(out.stdout)["computed_by"] != holder.pid


async def test_cancelling_a_call_that_holds_the_lock(cache, monkeypatch):
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)

    @cached(ttl=60, key_template="cancel:{n}", cache=cache, lock_ttl=30)
    async def slow(n):
        await asyncio.sleep(10)
        return n

    task = asyncio.create_task(slow(1))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gc.collect()
    assert unraisable == []
    await asyncio.sleep(0.05)
    assert await cache.lock("cancel:1", ttl=1), "a cancelled holder releases its lock at once"


async def test_arguments_without_a_stable_form_run_uncached(cache, caplog):
    counter = Counter()

    @cached(ttl=60, cache=cache)
    async def handle(payload):
        return counter("done")

    with caplog.at_level(logging.WARNING, logger="agentcache"):
        assert await handle(object()) == "done"
        assert await handle({1: "a", "b": 2}) == "done"
    assert counter.calls == 2 and await cache.keys() == []
    assert any("cannot build its key" in r.message for r in caplog.records)
    with pytest.raises(TypeError):
        await handle()  # a wrong call fails as the function itself would


def test_decorating_the_wrong_things_fails_early():
    with pytest.raises(TypeError, match="generator"):

        @cached
        def numbers():
            yield 1

    with pytest.raises(TypeError, match="below"):
        cached()(classmethod(lambda cls: 1))
