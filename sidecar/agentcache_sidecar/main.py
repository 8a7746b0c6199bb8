"""``agentcache-sidecar``: serve the cache API on a Unix socket and metrics on TCP.

Both listeners are ``server.py``'s ``CacheServer`` (``probes.py`` routes the TCP one);
only what the configured backend needs is imported.

Shutdown on SIGTERM/SIGINT finishes in-flight requests (up to
``sidecar.shutdown_timeout``) and removes the socket. A socket file left by a
crashed run is replaced; a socket that a live sidecar still answers on is not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import stat
import sys
from pathlib import Path

from agentcache.protocol import ENV_LOG_LEVEL, KEY_MARK

from .app import create_server
from .backends.base import Backend
from .backends.memory import MemoryBackend
from .budget import Budget, raise_fd_limit
from .config import ConfigError, Settings, load_config
from .metrics import SidecarMetrics
from .probes import create_probe_server
from .store import CacheService

log = logging.getLogger("agentcache.sidecar")


def build_backend(settings: Settings) -> Backend:
    cache = settings.cache
    if cache.backend == "memory":
        return MemoryBackend(
            cache.max_size,
            Budget.of(settings).store_bytes,
            cache.cleanup_interval,
            max_locks=settings.sidecar.max_locks,
        )
    if cache.backend == "file":
        from .backends.file import FileBackend

        return FileBackend(cache)
    from .backends.valkey import ValkeyBackend

    return ValkeyBackend(
        settings.valkey,
        cache,
        deadline=settings.sidecar.backend_timeout,
        near=settings.sidecar.near_cache,
        tracked_prefix=cache.key_prefix + KEY_MARK,
        # the memory fallback's share too: the near cache is emptied when Valkey cannot be heard,
        # which is when the fallback fills
        near_budget=Budget.of(settings).store_bytes,
    )


def build_service(settings: Settings, metrics: SidecarMetrics) -> CacheService:
    side = settings.sidecar
    return CacheService(
        build_backend(settings),
        key_prefix=settings.cache.key_prefix,
        enabled=settings.cache.enabled,
        fallback=side.fallback,
        metrics=metrics,
        fallback_max_items=settings.cache.max_size,
        fallback_max_bytes=Budget.of(settings).store_bytes,
        deadline=side.backend_timeout,
        breaker_threshold=side.breaker_threshold,
        max_lock_ttl=side.max_lock_ttl,
    )


def clear_stale_socket(path: str) -> None:
    """Remove a socket file nobody listens on; refuse to steal one that is live."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"sidecar.socket_path {path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            os.unlink(path)
            log.info("removed stale socket %s left by an earlier run", path)
            return
        raise
    else:
        raise ConfigError(f"another process is serving on {path}; stop it or choose another sidecar.socket_path")
    finally:
        probe.close()


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set (or SIGTERM/SIGINT)."""
    side = settings.sidecar
    fd_limit = raise_fd_limit()
    metrics = SidecarMetrics()
    service = build_service(settings, metrics)
    budget = Budget.of(settings, fd_limit)
    server = create_server(settings, service, metrics, budget)
    probes = None
    socket_path = str(Path(side.socket_path))
    if side.metrics_port:  # bound first: a busy port must fail before the socket exists
        probes = create_probe_server(service, metrics, socket_path, budget)
        await probes.start_tcp(side.metrics_host, side.metrics_port)
    await service.start()
    Path(socket_path).parent.mkdir(parents=True, exist_ok=True)
    clear_stale_socket(socket_path)
    await server.start(socket_path)
    os.chmod(socket_path, side.socket_mode)
    log.info(
        "agentcache sidecar serving %s backend on %s (metrics on %s:%s; memory budget %d MiB, at most %d connections)",
        settings.cache.backend,
        socket_path,
        side.metrics_host,
        side.metrics_port or "off",
        server.budget.max_memory >> 20,
        server.budget.connections,
    )
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("shutting down: finishing in-flight requests")
        await server.close(side.shutdown_timeout)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)
        if probes:
            await probes.close(side.shutdown_timeout)
        await service.close()


def _loop_factory():
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agentcache-sidecar", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config",
        help="agent_config.yaml (default: $AGENTCACHE_CONFIG, else the embedded "
        "default: memory backend, ./agentcache.sock, metrics on 127.0.0.1:9464)",
    )
    parser.add_argument("--socket", help="override sidecar.socket_path")
    parser.add_argument("--metrics-port", type=int, help="override sidecar.metrics_port (0 disables)")
    args = parser.parse_args(argv)
    try:
        loaded = load_config(args.config)
    except ConfigError as exc:
        print(f"agentcache-sidecar: {exc}", file=sys.stderr)
        return 2
    settings = loaded.settings
    if args.metrics_port is not None and not 0 <= args.metrics_port <= 65535:
        print("agentcache-sidecar: --metrics-port must be between 0 and 65535", file=sys.stderr)
        return 2
    if args.socket:
        settings.sidecar.socket_path = args.socket
    if args.metrics_port is not None:
        settings.sidecar.metrics_port = args.metrics_port
    level = os.environ.get(ENV_LOG_LEVEL, settings.sidecar.log_level).upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for warning in loaded.warnings:
        log.warning(warning)
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(serve(settings))
    except ConfigError as exc:
        print(f"agentcache-sidecar: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"agentcache-sidecar: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
