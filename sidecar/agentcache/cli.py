"""``agentcache``: inspect and manage the cache of a sidecar from a shell, and validate its configuration.

Every user error (unreachable sidecar, missing key, bad file) is one line on
stderr and exit status 1; there are no tracebacks for them.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from .client import Cache, default_socket_path
from .errors import CacheError, CacheUnavailable

OK, FAIL, WARN, SKIP = "✅", "❌", "⚠️ ", "⏭️ "
WARM_BATCH = 500
PROGRESS_WIDTH = 30


class UserError(Exception):
    """A problem to report in one line, exit status 1."""


def _out(text: str = "") -> None:
    print(text, flush=True)


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$base64": base64.b64encode(value).decode("ascii")}
    return repr(value)


def _show(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=_json_default)


# --- key commands -----------------------------------------------------------------------------------


def cmd_get(cache: Cache, args: argparse.Namespace) -> int:
    found = cache.lookup(args.key)
    if not found.found:
        raise UserError(f"no value for {args.key!r}")
    if args.raw and isinstance(found.value, bytes):
        sys.stdout.buffer.write(found.value)
        sys.stdout.flush()
    elif args.raw and isinstance(found.value, str):
        _out(found.value)
    else:
        _out(_show(found.value))
    return 0


def _parse_value(text: str, as_string: bool) -> Any:
    if as_string:
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def cmd_set(cache: Cache, args: argparse.Namespace) -> int:
    stored = cache.set(args.key, _parse_value(args.value, args.string), args.ttl)
    _out(
        f"{OK} stored {args.key!r}"
        if stored
        else f"{WARN} the sidecar dropped the write (cache disabled or backend down)"
    )
    return 0 if stored else 1


def cmd_delete(cache: Cache, args: argparse.Namespace) -> int:
    deleted = cache.delete_many(args.keys)
    _out(f"deleted {deleted} of {len(set(args.keys))} key(s)")
    return 0


def cmd_keys(cache: Cache, args: argparse.Namespace) -> int:
    for key in cache.keys(args.pattern, args.limit):
        _out(key)
    return 0


def cmd_ttl(cache: Cache, args: argparse.Namespace) -> int:
    remaining = cache.ttl(args.key)
    if remaining is None:
        raise UserError(f"no value for {args.key!r}")
    _out("no expiry" if remaining < 0 else f"{remaining:g}")
    return 0


def _human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count} B"


def format_stats(stats: dict) -> str:
    """A two-column table of the sidecar's statistics."""
    rows = []
    for name, value in stats.items():
        if name == "time":
            continue
        if name == "hit_rate":
            shown = f"{float(value) * 100:.1f}%"
        elif name == "memory_usage":
            shown = _human_bytes(float(value))
        elif isinstance(value, bool):
            shown = "yes" if value else "no"
        else:
            shown = str(value)
        rows.append((name, shown))
    width = max((len(name) for name, _ in rows), default=0)
    return "\n".join(f"{name:<{width}}  {shown}" for name, shown in rows)


def cmd_stats(cache: Cache, args: argparse.Namespace) -> int:
    stats = cache.stats()
    _out(json.dumps(stats, indent=2) if args.json else format_stats(stats))
    return 0


def cmd_clear(cache: Cache, args: argparse.Namespace) -> int:
    if not args.yes:
        raise UserError("clear deletes every key under this sidecar's prefix; add --yes to confirm")
    _out(f"deleted {cache.clear()} key(s)")
    return 0


# --- warm -------------------------------------------------------------------------------------------


def read_warm_records(lines: list[str]) -> tuple[list[tuple[str, Any, float | None]], list[str]]:
    """Valid ``(key, value, ttl)`` records and one message per invalid line."""
    records, problems = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            problems.append(f"line {number}: not JSON ({exc.msg})")
            continue
        if not isinstance(record, dict) or not isinstance(record.get("key"), str) or "value" not in record:
            problems.append(f'line {number}: expected an object with "key" (a string) and "value"')
            continue
        ttl = record.get("ttl")
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl < 0):
            problems.append(f'line {number}: "ttl" must be a number of seconds >= 0, got {ttl!r}')
            continue
        value = record["value"]
        if isinstance(value, dict) and set(value) == {"$base64"}:
            try:
                value = base64.b64decode(value["$base64"], validate=True)
            except (binascii.Error, TypeError):
                problems.append(f'line {number}: "$base64" is not valid base64')
                continue
        records.append((record["key"], value, ttl))
    return records, problems


def _batches(records: list[tuple[str, Any, float | None]], size: int) -> Iterator[tuple[dict, float | None]]:
    """Consecutive records with the same ttl, at most ``size`` per batch."""
    batch: dict[str, Any] = {}
    batch_ttl: float | None = None
    for key, value, ttl in records:
        if batch and (ttl != batch_ttl or len(batch) >= size):
            yield batch, batch_ttl
            batch = {}
        batch_ttl = ttl
        batch[key] = value
    if batch:
        yield batch, batch_ttl


class Progress:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, total: int):
        self.total = total
        self.enabled = sys.stderr.isatty() and total > 0

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        filled = PROGRESS_WIDTH * done // self.total
        bar = "#" * filled + "." * (PROGRESS_WIDTH - filled)
        sys.stderr.write(f"\rwarming [{bar}] {done}/{self.total} keys")
        sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


def cmd_warm(cache: Cache, args: argparse.Namespace) -> int:
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {args.file}: {getattr(exc, 'strerror', None) or exc}") from None
    records, problems = read_warm_records(text.splitlines())
    started = time.monotonic()
    progress = Progress(len(records))
    done = batches = 0
    dropped = False
    try:
        for batch, ttl in _batches(records, args.batch_size):
            dropped |= not cache.set_many(batch, ttl)
            done += len(batch)
            batches += 1
            progress.update(done)
    finally:
        progress.finish()
    elapsed = time.monotonic() - started
    for problem in problems:
        _out(f"{FAIL} {problem}")
    _out(
        f"{OK if not problems else WARN} warmed {done} key(s) in {batches} batch(es) in {elapsed:.2f} s"
        + (f"; skipped {len(problems)} invalid line(s)" if problems else "")
    )
    if dropped:
        _out(f"{WARN} the sidecar dropped writes (cache disabled or backend down)")
    return 1 if problems or dropped else 0


# --- validate-config -------------------------------------------------------------------------------


def _redact(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def _check_valkey(settings: Any) -> bool:
    """Ping the configured Valkey and round-trip a test key under the key_prefix (the seed's script)."""
    import valkey
    from valkey.cluster import ValkeyCluster

    from agentcache_sidecar.backends.valkey import _pool_kwargs

    config = settings.valkey
    shown = _redact(config.url)
    kwargs = {**_pool_kwargs(config), "client_name": "agentcache-validate-config"}
    try:
        if config.cluster:
            client = ValkeyCluster.from_url(config.url, **kwargs)
        else:
            client = valkey.Valkey.from_url(config.url, db=config.db, **kwargs)
        with client:
            client.ping()
            _out(f"{OK} Valkey connection successful: {shown} (db {config.db})")
            test_key = f"{settings.cache.key_prefix}config_test:{secrets.token_hex(6)}"
            expected = secrets.token_hex(8).encode()
            client.set(test_key, expected, ex=60)
            value = client.get(test_key)
            client.delete(test_key)
    except Exception as exc:  # every client failure is a failed check, reported in one line
        _out(f"{FAIL} Valkey connection failed: {shown}: {str(exc) or type(exc).__name__}")
        return False
    if value != expected:
        _out(f"{FAIL} Cache operations failed: wrote {expected!r} to {test_key}, read back {value!r}")
        return False
    _out(f"{OK} Cache operations working (set/get/delete of {test_key})")
    return True


def _check_storage_dir(storage_dir: str) -> bool:
    path = Path(storage_dir).resolve()
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        _out(f"{FAIL} File cache directory is not writable: {path} ({existing} is not a writable directory)")
        return False
    _out(f"{OK} File cache directory is writable: {path}" + ("" if existing == path else " (will be created)"))
    return True


def cmd_validate_config(args: argparse.Namespace) -> int:
    from agentcache_sidecar.config import ConfigError, load_config

    try:
        loaded = load_config(args.file)
    except ConfigError as exc:
        _out(f"{FAIL} {exc}")
        return 1
    settings = loaded.settings
    cache = settings.cache
    _out(f"{OK} Configuration is valid: {args.file}")
    for warning in loaded.warnings:
        _out(f"{WARN} {warning}")
    _out(f"{OK} Cache backend: {cache.backend} (default_ttl {cache.default_ttl:g} s, key_prefix {cache.key_prefix!r})")
    if not cache.enabled:
        _out(f"{WARN} cache.enabled is false: every get misses and every set is dropped")
    if cache.backend == "memory":
        _out(
            f"{OK} Memory cache configured: max_size {cache.max_size} items, cleanup every {cache.cleanup_interval:g} s"
        )
        return 0
    if cache.backend == "file":
        _out(f"{OK} File cache configured: {cache.storage_dir} (max_file_size {cache.max_file_size} bytes)")
        if args.no_connect:
            _out(f"{SKIP} storage directory check skipped (--no-connect)")
            return 0
        return 0 if _check_storage_dir(cache.storage_dir) else 1
    if settings.services.valkey is None:
        _out(f"{WARN} services.valkey is not configured; using {settings.valkey.url}")
    if args.no_connect:
        _out(f"{SKIP} Valkey connection check skipped (--no-connect): {_redact(settings.valkey.url)}")
        return 0
    return 0 if _check_valkey(settings) else 1


# --- the parser -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentcache", description="Inspect and manage an agentcache sidecar.")
    parser.add_argument(
        "--socket",
        default=None,
        help=f"the sidecar's Unix socket (default: $AGENTCACHE_SOCKET, else {default_socket_path()})",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    get = commands.add_parser("get", help="print a value (JSON)")
    get.add_argument("key")
    get.add_argument("--raw", action="store_true", help="write bytes and strings as they are")
    get.set_defaults(run=cmd_get)

    put = commands.add_parser("set", help="store a value (JSON if it parses, else a string)")
    put.add_argument("key")
    put.add_argument("value")
    put.add_argument("--ttl", type=float, default=None, help="seconds (default: the sidecar's default_ttl)")
    put.add_argument("--string", action="store_true", help="store VALUE as a string even if it parses as JSON")
    put.set_defaults(run=cmd_set)

    delete = commands.add_parser("delete", help="delete keys")
    delete.add_argument("keys", nargs="+", metavar="KEY")
    delete.set_defaults(run=cmd_delete)

    keys = commands.add_parser("keys", help="list keys matching a glob pattern")
    keys.add_argument("pattern", nargs="?", default="*")
    keys.add_argument("--limit", type=int, default=1000)
    keys.set_defaults(run=cmd_keys)

    ttl = commands.add_parser("ttl", help="remaining seconds of a key")
    ttl.add_argument("key")
    ttl.set_defaults(run=cmd_ttl)

    stats = commands.add_parser("stats", help="hits, misses, hit rate, keys, memory")
    stats.add_argument("--json", action="store_true", help="machine-readable JSON")
    stats.set_defaults(run=cmd_stats)

    clear = commands.add_parser("clear", help="delete every key under the sidecar's prefix")
    clear.add_argument("--yes", action="store_true", help="confirm")
    clear.set_defaults(run=cmd_clear)

    validate = commands.add_parser("validate-config", help="check an agent_config.yaml (and connect to Valkey)")
    validate.add_argument("file")
    validate.add_argument("--no-connect", action="store_true", help="check the file only, connect to nothing")
    validate.set_defaults(run=None)

    warm = commands.add_parser("warm", help='load JSON lines {"key", "value", "ttl"} into the cache')
    warm.add_argument("file", help="a .jsonl file, or - for stdin")
    warm.add_argument("--batch-size", type=int, default=WARM_BATCH)
    warm.set_defaults(run=cmd_warm)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "validate-config":
        return cmd_validate_config(args)
    if getattr(args, "batch_size", 1) < 1 or getattr(args, "limit", 1) < 1:
        print("agentcache: --batch-size and --limit must be at least 1", file=sys.stderr)
        return 1
    if not args.timeout > 0:
        print("agentcache: --timeout must be a positive number of seconds", file=sys.stderr)
        return 1
    socket_path = args.socket or default_socket_path()
    cache = Cache(socket_path, timeout=args.timeout)
    try:
        return args.run(cache, args)
    except CacheUnavailable as exc:
        print(f"agentcache: {exc.message} (is it running? use --socket or AGENTCACHE_SOCKET)", file=sys.stderr)
    except (CacheError, UserError) as exc:
        print(f"agentcache: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("agentcache: interrupted", file=sys.stderr)
        return 130
    finally:
        cache.close()
    return 1


if __name__ == "__main__":
    sys.exit(main())
