"""Helpers the benchmarks share: a valkey-server of the tests' tools on a Unix socket."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.support.tools import find_tool  # noqa: E402


def start_valkey(workdir: Path) -> tuple[subprocess.Popen, str]:
    """A valkey-server listening only on ``workdir/valkey.sock``, without persistence."""
    sock = str(workdir / "valkey.sock")
    proc = subprocess.Popen(
        [
            find_tool("valkey-server"),
            "--port",
            "0",
            "--unixsocket",
            sock,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not os.path.exists(sock):
        if time.monotonic() > deadline:
            raise RuntimeError("valkey-server did not start")
        time.sleep(0.02)
    return proc, sock
