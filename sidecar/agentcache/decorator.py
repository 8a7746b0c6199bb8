"""``@cached``: memoize async and sync functions (and methods) in the sidecar.

One algorithm, written once as a generator of steps (``_flow``), is driven by
an async driver for coroutine functions and a blocking driver for plain ones.

Invariants:
- the cache can only make a call faster, never make it fail: when the sidecar
  is unreachable the function simply runs (one warning per outage, not per
  call), and any other cache error (a key the sidecar refuses, a value that
  cannot be serialized or is too large) is a warning and an uncached call;
- exceptions of the function always reach the caller, unless
  ``stale_if_error`` is on and a stale value exists, which is then returned;
- with ``lock=True`` a miss is computed by one caller at a time across every
  process sharing the backend; the others poll for the value for at most
  ``lock_wait`` seconds, take the lock over when its holder dies (the lock
  expires after ``lock_ttl``), and compute themselves when the wait runs out.
"""

from __future__ import annotations

import functools
import inspect
import logging
import string
import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from .client import AsyncCache, Cache, Lookup, get_cache
from .errors import CacheError, CacheUnavailable, LockUnavailable
from .keys import UnhashableValue, check_seconds, stable_hash

if TYPE_CHECKING:  # an async cached function imports it when it runs, in its event loop
    import asyncio

log = logging.getLogger("agentcache")

HASH_SUFFIX = "_hash"
POLL_FIRST = 0.02
POLL_MAX = 0.25
DEFAULT_STALE_TTL = 3600.0
_CACHE, _SLEEP, _COMPUTE = "cache", "sleep", "compute"

_unreachable_sockets: set[str] = set()


def _note_unavailable(socket_path: str, exc: CacheUnavailable) -> None:
    if socket_path not in _unreachable_sockets:
        _unreachable_sockets.add(socket_path)
        log.warning("agentcache: %s; cached functions run uncached until it is back", exc.message)


def _note_available(socket_path: str) -> None:
    if socket_path in _unreachable_sockets:
        _unreachable_sockets.discard(socket_path)
        log.warning("agentcache: the sidecar at %s is reachable again; caching resumed", socket_path)


class KeyBuilder:
    """Cache keys from a call's arguments, bound to the signature with defaults applied.

    ``key_template`` fields must name parameters (``{location}``, ``{self.user_id}``)
    or a parameter plus ``_hash`` (``{prompt_hash}``: ``stable_hash(prompt)``);
    this is checked when the decorator is applied. Without a template the key is
    ``module.qualname:<hash of the arguments>``, leaving out ``self``/``cls``.
    """

    def __init__(self, func: Callable, template: str | None):
        self.signature = inspect.signature(func)
        params = list(self.signature.parameters)
        self.name = f"{func.__module__}.{func.__qualname__}"
        self.template = template
        self.skip = params[0] if params and params[0] in ("self", "cls") else None
        self.hashed: dict[str, str] = {}
        if template is not None:
            self._check_template(template, params)

    def _check_template(self, template: str, params: list[str]) -> None:
        if not isinstance(template, str) or not template:
            raise TypeError("key_template must be a non-empty string such as 'weather:{location}'")
        try:
            fields = [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
        except ValueError as exc:
            raise ValueError(f"key_template {template!r} is not a valid format string: {exc}") from None
        for field in fields:
            root = field.split(".", 1)[0].split("[", 1)[0]
            if root in params:
                continue
            if root.endswith(HASH_SUFFIX) and root[: -len(HASH_SUFFIX)] in params:
                self.hashed[root] = root[: -len(HASH_SUFFIX)]
                continue
            raise ValueError(
                f"key_template {template!r} uses {{{field}}}, but {self.name}() has no parameter "
                f"{root!r}; its parameters are {', '.join(params) or '(none)'} (add _hash to a "
                "parameter name for a stable hash of it, e.g. {prompt_hash})"
            )

    def build(self, args: tuple, kwargs: dict) -> str:
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = bound.arguments
        if self.template is None:
            hashed = {k: v for k, v in arguments.items() if k != self.skip}
            return f"{self.name}:{stable_hash(hashed)}"
        values = dict(arguments)
        for field, param in self.hashed.items():
            values[field] = stable_hash(arguments[param])
        return self.template.format_map(values)


class _Policy:
    """The options of one ``@cached`` and the steps of one call."""

    def __init__(
        self,
        ttl: float | None,
        stale_if_error: bool,
        stale_ttl: float | None,
        lock: bool,
        lock_ttl: float,
        lock_wait: float | None,
        cache_none: bool,
        name: str,
    ):
        self.ttl = check_seconds(ttl, "ttl")
        check_seconds(stale_ttl, "stale_ttl")
        check_seconds(lock_ttl, "lock_ttl", allow_none=False, positive=True)
        check_seconds(lock_wait, "lock_wait")
        self.stale_if_error = stale_if_error
        self.stale_ttl = (
            (stale_ttl if stale_ttl is not None else (ttl or DEFAULT_STALE_TTL)) if stale_if_error else None
        )
        self.lock = lock
        self.lock_ttl = lock_ttl
        self.lock_wait = lock_ttl if lock_wait is None else lock_wait
        self.cache_none = cache_none
        self.name = name
        self._warned: set[str] = set()

    def warn_once(self, topic: str, message: str, template: str = "agentcache: %s runs uncached: %s") -> None:
        if topic not in self._warned:
            self._warned.add(topic)
            log.warning(template, self.name, message)

    def cache_failed(self, socket_path: str, exc: CacheError) -> None:
        if isinstance(exc, CacheUnavailable):
            _note_unavailable(socket_path, exc)
        else:
            self.warn_once(exc.code, str(exc))

    def flow(self, key: str, socket_path: str) -> Generator[tuple, Any, Any]:
        """The steps of one call: ``(_CACHE, method, args, kwargs)``, ``(_SLEEP, s)`` and ``(_COMPUTE,)``."""
        try:
            hit: Lookup = yield (_CACHE, "lookup", (key,), {})
        except CacheError as exc:
            self.cache_failed(socket_path, exc)
            return (yield (_COMPUTE,))
        _note_available(socket_path)
        if hit.found:
            return hit.value
        token = None
        if self.lock:
            try:
                token = yield from self._acquire(key)
            except LockUnavailable as exc:
                self.warn_once(exc.code, exc.message, "agentcache: %s computes without single-flight: %s")
            except CacheError as exc:
                self.cache_failed(socket_path, exc)
            if isinstance(token, Lookup):
                return token.value
        try:
            try:
                value = yield (_COMPUTE,)
            except Exception:
                if self.stale_if_error:
                    stale = yield from self._stale(key, socket_path)
                    if stale.found:
                        log.warning("agentcache: %s raised; serving the stale value of %r", self.name, key)
                        return stale.value
                raise
            if value is not None or self.cache_none:
                try:
                    yield (_CACHE, "set", (key, value, self.ttl), {"stale_ttl": self.stale_ttl})
                except CacheError as exc:
                    self.cache_failed(socket_path, exc)
            return value
        except GeneratorExit:  # the call was interrupted: nothing may be yielded now; the driver releases the lock
            token = None
            raise
        finally:
            if token is not None:
                try:
                    yield (_CACHE, "unlock", (key, token), {})
                except CacheError:
                    pass  # the lock expires by itself after lock_ttl

    def _acquire(self, key: str) -> Generator[tuple, Any, str | Lookup | None]:
        """A lock token to compute under, the value someone else stored meanwhile, or None (compute unlocked)."""
        deadline = time.monotonic() + self.lock_wait
        delay = POLL_FIRST
        while True:
            token = yield (_CACHE, "lock", (key, self.lock_ttl), {})
            if token is not None:
                hit = yield (_CACHE, "lookup", (key,), {})  # stored by a holder that released just now?
                if not hit.found:
                    return token
                yield (_CACHE, "unlock", (key, token), {})
                return hit
            if time.monotonic() >= deadline:
                log.warning(
                    "agentcache: %s waited %.1f s for another caller to compute %r; computing it too",
                    self.name,
                    self.lock_wait,
                    key,
                )
                return None
            yield (_SLEEP, min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 1.5, POLL_MAX)
            hit = yield (_CACHE, "lookup", (key,), {})
            if hit.found:
                return hit

    def _stale(self, key: str, socket_path: str) -> Generator[tuple, Any, Lookup]:
        try:
            return (yield (_CACHE, "lookup", (key, True), {}))
        except CacheError as exc:
            self.cache_failed(socket_path, exc)
            return Lookup(False)


_background: set[asyncio.Task] = set()


class _HeldLock:
    """The lock a flow holds, tracked by its driver so that an interrupted call can release it."""

    def __init__(self) -> None:
        self.key_token: tuple[str, str] | None = None

    def observe(self, step: tuple, result: Any) -> None:
        if step[1] == "lock" and result is not None:
            self.key_token = (step[2][0], result)
        elif step[1] == "unlock":
            self.key_token = None


async def _drive_async(steps: Generator, cache: AsyncCache, compute: Callable) -> Any:
    send: Any = None
    error: BaseException | None = None
    held = _HeldLock()
    while True:
        try:
            step = steps.throw(error) if error is not None else steps.send(send)
        except StopIteration as stop:
            return stop.value
        send, error = None, None
        try:
            if step[0] == _CACHE:
                send = await getattr(cache, step[1])(*step[2], **step[3])
                held.observe(step, send)
            elif step[0] == _SLEEP:
                import asyncio

                await asyncio.sleep(step[1])
            else:
                send = await compute()
        except Exception as exc:
            error = exc
        except BaseException:  # cancelled: stop the flow and release its lock in the background
            steps.close()
            if held.key_token:
                import asyncio

                task = asyncio.get_running_loop().create_task(_release_quietly(cache, *held.key_token))
                _background.add(task)
                task.add_done_callback(_background.discard)
            raise


async def _release_quietly(cache: AsyncCache, key: str, token: str) -> None:
    try:
        await cache.unlock(key, token)
    except CacheError:
        pass  # the lock expires by itself after lock_ttl


def _drive_sync(steps: Generator, cache: Cache, compute: Callable) -> Any:
    send: Any = None
    error: BaseException | None = None
    held = _HeldLock()
    while True:
        try:
            step = steps.throw(error) if error is not None else steps.send(send)
        except StopIteration as stop:
            return stop.value
        send, error = None, None
        try:
            if step[0] == _CACHE:
                send = getattr(cache, step[1])(*step[2], **step[3])
                held.observe(step, send)
            elif step[0] == _SLEEP:
                time.sleep(step[1])
            else:
                send = compute()
        except Exception as exc:
            error = exc
        except BaseException:  # KeyboardInterrupt, SystemExit: stop the flow, release its lock, let it through
            steps.close()
            if held.key_token:
                try:
                    cache.unlock(*held.key_token)
                except CacheError:
                    pass
            raise


def cached(
    ttl: float | Callable | None = None,
    key_template: str | None = None,
    condition: Callable[..., bool] | None = None,
    stale_if_error: bool = False,
    lock: bool = True,
    cache_none: bool = False,
    cache: AsyncCache | Cache | None = None,
    *,
    stale_ttl: float | None = None,
    lock_ttl: float = 30.0,
    lock_wait: float | None = None,
):
    """Cache the results of an async or sync function (or method) in the sidecar.

    - ``ttl``: seconds (None: the sidecar's default_ttl; 0: never expires);
    - ``key_template``: e.g. ``"weather:{location}"``, ``"llm:{model}:{prompt_hash}"``;
    - ``condition``: called with the call's arguments; a false answer bypasses the cache for that call;
    - ``stale_if_error``: if the function raises, return the stale value (kept ``stale_ttl`` seconds
      past ``ttl``, default ``ttl`` or an hour) instead of raising;
    - ``lock``: single-flight misses (``lock_ttl`` bounds a dead holder, ``lock_wait`` the wait);
    - ``cache_none``: also store ``None`` results (by default None is never cached);
    - ``cache``: the ``AsyncCache``/``Cache`` to use (default ``get_cache()``).

    The wrapper has ``cache_key(*args, **kwargs)`` to get the key a call uses (for invalidation).
    Applied without parentheses (``@cached``) it uses all defaults.
    """
    if callable(ttl):
        return cached()(ttl)

    def decorate(func: Callable) -> Callable:
        if not callable(func):
            raise TypeError(
                f"@cached decorates functions, not {type(func).__name__} (put @cached below @classmethod/@staticmethod)"
            )
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError(f"@cached cannot cache the generator function {func.__qualname__}")
        keys = KeyBuilder(func, key_template)
        policy = _Policy(ttl, stale_if_error, stale_ttl, lock, lock_ttl, lock_wait, cache_none, keys.name)

        def key_or_none(args: tuple, kwargs: dict) -> str | None:
            try:
                return keys.build(args, kwargs)
            except (UnhashableValue, KeyError, AttributeError, IndexError) as exc:
                policy.warn_once("key", f"cannot build its key: {exc}")
                return None

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                if condition is not None and not condition(*args, **kwargs):
                    return await func(*args, **kwargs)
                key = key_or_none(args, kwargs)
                if key is None:
                    return await func(*args, **kwargs)
                store = cache if isinstance(cache, AsyncCache) else (cache.as_async() if cache else get_cache())
                return await _drive_async(policy.flow(key, store.socket_path), store, lambda: func(*args, **kwargs))

            async_wrapper.cache_key = lambda *a, **kw: keys.build(a, kw)  # type: ignore[attr-defined]
            return async_wrapper

        @functools.wraps(func)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            if condition is not None and not condition(*args, **kwargs):
                return func(*args, **kwargs)
            key = key_or_none(args, kwargs)
            if key is None:
                return func(*args, **kwargs)
            store = cache if isinstance(cache, Cache) else (cache.as_sync() if cache else get_cache().as_sync())
            return _drive_sync(policy.flow(key, store.socket_path), store, lambda: func(*args, **kwargs))

        sync_wrapper.cache_key = lambda *a, **kw: keys.build(a, kw)  # type: ignore[attr-defined]
        return sync_wrapper

    return decorate
