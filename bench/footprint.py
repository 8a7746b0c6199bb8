"""Footprint benchmark: the sidecar's memory and start time and the SDK's import time, beside their floors.

For the sidecar with the memory backend (the embedded default, as a new user
starts it) and with the valkey backend (a valkey-server on a Unix socket),
and for the floor of Python (a minimal asyncio.Protocol server answering a
fixed 200 on a Unix socket and a TCP port, started the same way), prints:
  - start: exec to the socket answering ``GET /healthz`` and to ``/readyz``
    answering 200 on the TCP port (the kubelet's probe),
  - RSS at rest (``VmRSS`` of /proc/<pid>/status after the start and a few
    requests),
  - RSS and peak RSS (``VmHWM``) after 100k operations (alternate PUT and GET
    of 100 B values over 10,000 keys, raw HTTP/1.1 on the socket, 16
    requests pipelined at a time),
and the SDK's import time in a fresh interpreter (``import agentcache``,
``from agentcache import cached, get_cache`` and ``..., AsyncCache``, minus
``python -c pass``; and what it adds to an agent that imported asyncio) beside
``import asyncio`` (the floor: the async client needs it). Each figure is the
median of ``--rounds`` rounds, the systems measured in turn within a round.
Dapr's sidecar memory is the figure Dapr publishes (not measured here).
The packages' bytecode is compiled first (as ``pip install`` does), so that no
figure includes compiling sources (``PYTHONDONTWRITEBYTECODE`` would otherwise
make every start compile them).

    python bench/footprint.py [--rounds 5] [--ops 100000]
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import importlib.util
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from _common import start_valkey  # bench/ is sys.path[0] when a benchmark runs as a script

DAPR_MB = (18.2, 23.0)
DAPR_SOURCE = (
    "Dapr's published performance docs (docs.dapr.io/operations/performance-and-scalability/): "
    "daprd ~18.2 MB in the actor activation test, 23 MB at 1,000 req/s in the service invocation test"
)
VALUE = b"v" * 100
KEYS = 10_000
PIPELINE = 16

FLOOR_SERVER = r"""
import asyncio, os, sys

class Http(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buf = transport, b""

    def data_received(self, data):
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in self.buf[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length :]
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

async def main(path, port):
    loop = asyncio.get_running_loop()
    await loop.create_server(Http, "127.0.0.1", port)
    await loop.create_unix_server(Http, path)
    await asyncio.Event().wait()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of ``pid`` in MB (10^6 bytes, as Dapr counts)."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) * 1024 / 1e6
    return found


class Client:
    """Raw HTTP/1.1 over a Unix socket, keep-alive, answers read by Content-Length."""

    def __init__(self, path: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, requests: list[bytes]) -> list[int]:
        self.sock.sendall(b"".join(requests))
        return [self._answer() for _ in requests]

    def _answer(self) -> int:
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            self._fill()
        head = self.buf[:end].split(b"\r\n")
        status = int(head[0].split()[1])
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(self.buf) < end + 4 + length:
            self._fill()
        self.buf = self.buf[end + 4 + length :]
        return status

    def _fill(self) -> None:
        data = self.sock.recv(262144)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buf += data


def put(key: str) -> bytes:
    return (
        f"PUT /v1/keys/{key} HTTP/1.1\r\nHost: b\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {len(VALUE)}\r\n\r\n"
    ).encode() + VALUE


def get(key: str) -> bytes:
    return f"GET /v1/keys/{key} HTTP/1.1\r\nHost: b\r\n\r\n".encode()


def load(path: str, ops: int) -> None:
    client = Client(path)
    try:
        for start in range(0, ops, PIPELINE):
            batch = [
                put(f"k{(i // 2) % KEYS}") if i % 2 == 0 else get(f"k{(i // 2) % KEYS}")
                for i in range(start, min(ops, start + PIPELINE))
            ]
            for code in client.send(batch):
                assert code in (200, 204), code
    finally:
        client.close()


def socket_answers(path: str) -> bool:
    try:
        client = Client(path)
    except OSError:
        return False
    try:
        return client.send([b"GET /healthz HTTP/1.1\r\nHost: b\r\n\r\n"])[0] == 200
    except OSError:
        return False
    finally:
        client.close()


def tcp_ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"GET /readyz HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
            return conn.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


class Target:
    def __init__(self, label: str, command: list[str], sock: str, port: int):
        self.label, self.command, self.sock, self.port = label, command, sock, port

    def measure(self, ops: int) -> dict[str, float]:
        """One start: exec to ready, RSS at rest, RSS and peak after ``ops`` operations."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.sock)
        began = time.perf_counter()
        proc = subprocess.Popen(self.command, env={**os.environ, "AGENTCACHE_LOG_LEVEL": "warning"})
        try:
            found: dict[str, float] = {}
            deadline = began + 30
            while "socket" not in found or "ready" not in found:
                if time.perf_counter() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{self.label} did not start")
                if "socket" not in found and socket_answers(self.sock):
                    found["socket"] = time.perf_counter() - began
                if "ready" not in found and tcp_ready(self.port):
                    found["ready"] = time.perf_counter() - began
                time.sleep(0.001)
            load(self.sock, 20)
            time.sleep(0.3)
            found["rest"] = status(proc.pid)["VmRSS"]
            load(self.sock, ops)
            time.sleep(0.3)
            after = status(proc.pid)
            found["loaded"], found["peak"] = after["VmRSS"], after["VmHWM"]
            return found
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)


def import_time(code: str) -> float:
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - began


IMPORTS = {
    "floor: import asyncio": ("import asyncio", "pass"),
    "import agentcache": ("import agentcache", "pass"),
    "from agentcache import cached, get_cache": ("from agentcache import cached, get_cache", "pass"),
    "from agentcache import cached, AsyncCache": ("from agentcache import cached, AsyncCache", "pass"),
    "the same in an async agent (after asyncio)": (
        "import asyncio; from agentcache import cached, get_cache",
        "import asyncio",
    ),
}
"""label: (code, the code whose time is subtracted)"""


def compile_packages() -> None:
    """Write the bytecode of agentcache and agentcache_sidecar, wherever they are imported from."""
    for name in ("agentcache", "agentcache_sidecar"):
        spec = importlib.util.find_spec(name)
        if spec and spec.submodule_search_locations:
            for folder in spec.submodule_search_locations:
                compileall.compile_dir(folder, quiet=1)


def run(args) -> None:
    compile_packages()
    workdir = Path(tempfile.mkdtemp(prefix="agentcache-footprint-"))
    valkey_proc, valkey_sock = start_valkey(workdir)
    try:
        floor_port, memory_port, valkey_port = free_port(), free_port(), free_port()
        floor_sock, memory_sock, valkey_sidecar_sock = (str(workdir / f"{n}.sock") for n in ("floor", "mem", "vk"))
        config = workdir / "valkey.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "cache": {"backend": "valkey", "key_prefix": "bench:"},
                    "services": {"valkey": {"config": {"url": f"unix://{valkey_sock}"}}},
                    "sidecar": {"socket_path": valkey_sidecar_sock, "metrics_port": valkey_port},
                }
            )
        )
        sidecar = [sys.executable, "-m", "agentcache_sidecar.main"]
        targets = [
            Target("floor: asyncio server", [sys.executable, "-c", FLOOR_SERVER, floor_sock, str(floor_port)],
                   floor_sock, floor_port),
            Target("sidecar/memory", [*sidecar, "--socket", memory_sock, "--metrics-port", str(memory_port)],
                   memory_sock, memory_port),
            Target("sidecar/valkey", [*sidecar, "--config", str(config)], valkey_sidecar_sock, valkey_port),
        ]  # fmt: skip
        results: dict[tuple[str, str], list[float]] = {}
        imports: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for target in targets:
                for name, value in target.measure(args.ops).items():
                    results.setdefault((target.label, name), []).append(value)
            for _ in range(args.imports):
                base = {code: import_time(code) for code in {base for _, base in IMPORTS.values()}}
                for label, (code, subtracted) in IMPORTS.items():
                    imports.setdefault(label, []).append(import_time(code) - base[subtracted])
        report(results, imports, [t.label for t in targets], args)
    finally:
        valkey_proc.terminate()
        valkey_proc.wait(timeout=15)


def report(results, imports, labels, args) -> None:
    med = {key: statistics.median(values) for key, values in results.items()}
    floor = labels[0]
    print(
        f"\nAgentCache footprint: medians of {args.rounds} rounds, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}, {args.ops} operations\n"
    )
    header = (
        f"{'system':22} {'socket ms':>9} {'ready ms':>9} {'x floor':>7} {'rest MB':>8} {'x floor':>7} "
        f"{'loaded MB':>9} {'peak MB':>8} {'x floor':>7}"
    )
    print(header)
    print("-" * len(header))
    for label in labels:
        m = {name: med[(label, name)] for name in ("socket", "ready", "rest", "loaded", "peak")}
        print(
            f"{label:22} {m['socket'] * 1e3:9.0f} {m['ready'] * 1e3:9.0f} "
            f"{m['ready'] / med[(floor, 'ready')]:7.2f} {m['rest']:8.1f} {m['rest'] / med[(floor, 'rest')]:7.2f} "
            f"{m['loaded']:9.1f} {m['peak']:8.1f} {m['loaded'] / med[(floor, 'loaded')]:7.2f}"
        )
    print(f"{'Dapr sidecar (published)':22} {'':9} {'':9} {'':7} {DAPR_MB[0]:4.1f}-{DAPR_MB[1]:<3.0f}")
    print(f"  ({DAPR_SOURCE})")
    print(
        f"\nSDK import time in a fresh interpreter, minus `python -c pass` (the last: minus `import asyncio`), "
        f"median of {args.rounds * args.imports}:"
    )
    base = statistics.median(imports["floor: import asyncio"])
    for label, values in imports.items():
        value = statistics.median(values)
        print(f"  {label:42} {value * 1e3:6.1f} ms   x floor {value / base:5.2f}")
    print("\nMB are 10^6 bytes of VmRSS / VmHWM (/proc/<pid>/status); targets: rest <= 20 MB, ready <= 150 ms, "
          "import <= 30 ms.")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ops", type=int, default=100_000)
    parser.add_argument("--imports", type=int, default=4, help="import timings per round")
    args = parser.parse_args()
    run(args)


if __name__ == "__main__":
    main()
