"""Console scripts whose part is an install extra, and the one-line answer when that extra is missing.

``pip install agentcache`` is the SDK and the CLI; the sidecar, the operator
and the injector need ``agentcache[sidecar]`` or ``agentcache[operator]``. Their
console scripts point here, so that a missing extra is one line naming what to
install (exit status 1), not an ImportError traceback. An ImportError while
every requirement of the extra is installed is a bug and propagates.
"""

from __future__ import annotations

import importlib
import re
import sys
from importlib import metadata
from types import ModuleType
from typing import NoReturn

DISTRIBUTION = "agentcache"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def missing_requirements(extra: str) -> list[str]:
    """The distributions that ``agentcache[extra]`` requires and that are not installed."""
    missing = []
    for requirement in metadata.requires(DISTRIBUTION) or []:
        if not re.search(rf"""extra\s*==\s*['"]{re.escape(extra)}['"]""", requirement):
            continue
        match = _NAME.match(requirement)
        if match is None:
            continue
        try:
            metadata.version(match.group())
        except metadata.PackageNotFoundError:
            missing.append(match.group())
    return missing


def _refuse(extra: str, command: str, missing: list[str]) -> NoReturn:
    print(
        f"{command}: needs the '{extra}' extra (missing: {', '.join(missing)}); "
        f"install it with: pip install 'agentcache[{extra}]'",
        file=sys.stderr,
    )
    raise SystemExit(1)


def load(extra: str, module: str, command: str) -> ModuleType:
    """Import ``module`` of the ``extra`` part, or exit with one line naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        missing = missing_requirements(extra)
        if missing:
            _refuse(extra, command, missing)
        raise


def sidecar() -> int:
    return load("sidecar", "agentcache_sidecar.main", "agentcache-sidecar").main()


def operator() -> int:
    return load("operator", "agentcache_operator.main", "agentcache-operator").main()


def injector() -> int:
    return load("operator", "agentcache_operator.injector.main", "agentcache-injector").main()
