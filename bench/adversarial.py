"""The attacks of issue 12 against real sidecars, with the figures the issue asks for.

Each attack is bounded in count and time and aims only at a sidecar's Unix socket
(or a local valkey-server); the sidecar runs with ``sidecar.max_memory: 128Mi``
(a key an older sidecar ignores with a warning). For each attack it prints the
sidecar's peak RSS, a well-behaved client's p50/max latency during the attack and
what the attacker got. To measure the code before a change, put that code first
on the path; the sidecar processes inherit it:

    .venv/bin/python bench/adversarial.py
    git archive main | tar -x -C /tmp/before
    PYTHONPATH=/tmp/before/sidecar:/tmp/before/operator .venv/bin/python bench/adversarial.py
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.adversarial.conftest import GoodClient, PeakRss, connect, raw_request, read_answer  # noqa: E402
from tests.support.sidecar import SidecarProcess  # noqa: E402
from tests.support.valkey import ValkeyProcess  # noqa: E402

MiB = 2**20


class Run:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.count = 0

    def sidecar(self, cache: dict | None = None, services: dict | None = None, **side) -> SidecarProcess:
        self.count += 1
        config = {
            "cache": {"backend": "memory", "key_prefix": "b:", **(cache or {})},
            "sidecar": {"max_memory": "128Mi", **side},
        }
        if services:
            config["services"] = services
        return SidecarProcess(self.workdir / f"s{self.count}", config).start()


def good_figures(good: GoodClient) -> dict:
    lat = good.latencies or [float("nan")]
    return {
        "good_p50_ms": round(statistics.median(lat) * 1000, 2),
        "good_max_ms": round(max(lat) * 1000, 1),
        "good_non200": sum(s != 200 for s in good.statuses),
        "good_wrong": good.wrong,
    }


def attacked(sidecar: SidecarProcess, attack) -> dict:
    """Run ``attack()`` while a well-behaved client reads (in a process of its own, so that the attacker's
    work here does not slow it down); peak RSS and the client's figures."""
    good = subprocess.Popen(
        [sys.executable, __file__, "--good", sidecar.socket_path], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    good.stdout.readline()  # started
    with PeakRss(sidecar.proc.pid) as memory:
        result = attack() or {}
    figures = json.loads(good.communicate(b"stop\n", timeout=120)[0])
    sidecar.stop()
    return {**result, "peak_rss_mib": round(memory.peak / MiB, 1), **figures}


def good_client(socket_path: str) -> None:
    """``--good``: read until told to stop on stdin, then print the figures as JSON."""
    with GoodClient(socket_path) as good:
        print("started", flush=True)
        sys.stdin.readline()
    print(json.dumps(good_figures(good)), flush=True)


def idle_connections(run: Run) -> dict:
    sidecar = run.sidecar()

    def attack():
        held, answers = [], {"503": 0, "reset_or_refused": 0}
        for i in range(3000):
            try:
                sock = connect(sidecar.socket_path)
                if i % 2:
                    sock.sendall(b"GET /v1/keys/x HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                held.append(sock)
            except OSError:
                answers["reset_or_refused"] += 1
        time.sleep(12)  # past the default header_timeout (10 s)
        still_open = 0
        for sock in held:
            sock.setblocking(False)
            try:
                data = sock.recv(65536)
                answers["503"] += data.startswith(b"HTTP/1.1 503")
            except BlockingIOError:
                still_open += 1
            except OSError:
                answers["reset_or_refused"] += 1
            sock.close()
        return {**answers, "open_after_12s": still_open}

    return attacked(sidecar, attack)


def stalled_uploads(run: Run, declared: int = 32 * MiB, sent: int = 31 * MiB) -> dict:
    sidecar = run.sidecar()

    def attack():
        socks = []
        for i in range(20):
            sock = connect(sidecar.socket_path)
            sock.settimeout(2)
            try:
                sock.sendall(f"PUT /v1/keys/u{i} HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n\r\n".encode())
                sock.sendall(b"x" * sent)
            except OSError:
                pass
            socks.append(sock)
        time.sleep(3)
        answered = []
        for sock in socks:
            sock.settimeout(0.2)
            try:
                answered.append(sock.recv(12)[9:12].decode() or "closed")
            except OSError:
                answered.append("none")
            sock.close()
        return {"answers": dict(sorted({a: answered.count(a) for a in set(answered)}.items()))}

    return attacked(sidecar, attack)


def unread_answers(run: Run) -> dict:
    sidecar = run.sidecar()
    setter = connect(sidecar.socket_path)
    setter.sendall(raw_request("/v1/keys/big", "PUT", b"b" * (8 * MiB)))
    read_answer(setter, 30)
    setter.close()

    def attack():
        sock = connect(sidecar.socket_path)
        sock.sendall(raw_request("/v1/keys/big") * 60)
        time.sleep(5)
        sock.close()

    return attacked(sidecar, attack)


def _answer_while_sending(sidecar: SidecarProcess, chunks) -> dict:
    """Send ``chunks`` on one connection while a thread waits for the answer's status; when it came."""
    sock = connect(sidecar.socket_path)
    started = time.monotonic()
    status: list = []
    reader = threading.Thread(target=lambda: status.append(_first_status(sock, 60)))
    reader.start()
    try:
        for chunk in chunks:
            sock.sendall(chunk)
    except OSError:
        pass
    reader.join()
    sock.close()
    return {"answer": status[0], "answer_after_s": round(time.monotonic() - started, 2)}


def huge_header(run: Run) -> dict:
    sidecar = run.sidecar()
    line = [b"GET /x HTTP/1.1\r\nHost: x\r\nX-Huge: ", *[b"h" * MiB] * 160]
    return attacked(sidecar, lambda: _answer_while_sending(sidecar, line))


def _first_status(sock: socket.socket, timeout: float) -> str:
    sock.settimeout(timeout)
    try:
        return sock.recv(12)[9:12].decode() or "closed"
    except OSError as exc:
        return type(exc).__name__


def batch_bomb(run: Run) -> dict:
    sidecar = run.sidecar()
    bomb = b'{"items": {"k": [' + b"{}," * (31 * MiB // 3) + b"{}]}}"
    request = raw_request("/v1/batch/set", "POST", bomb, "Content-Type: application/json\r\n")
    return attacked(sidecar, lambda: _answer_while_sending(sidecar, [request]))


def hung_valkey(run: Run) -> dict:
    server = ValkeyProcess(run.workdir / "valkey").start()
    sidecar = run.sidecar(cache={"backend": "valkey"}, services={"valkey": {"config": {"url": server.url}}})
    latencies, statuses, stop = [], [], threading.Event()

    def load(n: int) -> None:
        sock = connect(sidecar.socket_path)
        i = 0
        while not stop.is_set():
            started = time.monotonic()
            sock.sendall(
                raw_request(f"/v1/keys/k{n}-{i % 20}", "PUT", b"v")
                if i % 3 == 0
                else raw_request(f"/v1/keys/k{n}-{i % 20}")
            )
            statuses.append(read_answer(sock, 60)[0])
            latencies.append(time.monotonic() - started)
            i += 1
        sock.close()

    workers = [threading.Thread(target=load, args=(n,)) for n in range(8)]
    for worker in workers:
        worker.start()
    time.sleep(0.5)
    os.kill(server.proc.pid, signal.SIGSTOP)
    time.sleep(5)
    probe = connect(sidecar.socket_path)
    probe.sendall(raw_request("/readyz"))
    ready = json.loads(read_answer(probe, 30)[1])
    probe.close()
    time.sleep(5)
    os.kill(server.proc.pid, signal.SIGCONT)
    time.sleep(2)
    stop.set()
    for worker in workers:
        worker.join()
    sidecar.stop()
    server.stop()
    return {
        "requests": len(latencies),
        "max_wait_ms": round(max(latencies) * 1000, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "5xx": sum(s >= 500 for s in statuses),
        "readyz_during": {k: ready.get(k) for k in ("ready", "backend_up", "circuit")},
    }


def stuck_sidecar_sdk(run: Run) -> dict:
    from agentcache import Cache, cached

    sidecar = run.sidecar()
    cache = Cache(sidecar.socket_path)

    @cached(ttl=60, cache=cache, key_template="f:{x}")
    def f(x):
        return x

    f(1)
    os.kill(sidecar.proc.pid, signal.SIGSTOP)
    durations = []
    try:
        for _ in range(5):
            started = time.monotonic()
            f(1)
            durations.append(round(time.monotonic() - started, 3))
    finally:
        os.kill(sidecar.proc.pid, signal.SIGCONT)
        sidecar.stop()
    return {"five_calls_s": durations}


def disk_full(run: Run) -> dict:
    storage = run.workdir / "disk"
    storage.mkdir(parents=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(storage)]).returncode:
        return {"skipped": "cannot mount a tmpfs here"}
    try:
        sidecar = run.sidecar(cache={"backend": "file", "storage_dir": str(storage)})
        sock = connect(sidecar.socket_path)
        sock.sendall(raw_request("/v1/keys/existing", "PUT", b"kept"))
        read_answer(sock)
        with open(storage / "filler", "wb", buffering=0) as filler:
            try:
                while True:
                    filler.write(b"\0" * 65536)
                    filler.flush()
            except OSError:
                pass
        writes = []
        for i in range(20):
            sock.sendall(raw_request(f"/v1/keys/n{i}", "PUT", b"v" * 100_000))
            writes.append(read_answer(sock)[0])
        hits = 0
        for _ in range(200):
            sock.sendall(raw_request("/v1/keys/existing"))
            hits += read_answer(sock)[0] == 200
        sock.sendall(raw_request("/readyz"))
        status, body = read_answer(sock)
        sock.close()
        sidecar.stop()
        return {
            "write_statuses": sorted(set(writes)),
            "reads_hit_of_200": hits,
            "readyz": status,
            "readyz_body": json.loads(body),
        }
    finally:
        subprocess.run(["umount", "-l", str(storage)])


def nested_tenants(run: Run) -> dict:
    server = ValkeyProcess(run.workdir / "valkey-t").start()
    services = {"valkey": {"config": {"url": server.url}}}
    wide = run.sidecar(cache={"backend": "valkey", "key_prefix": "a:"}, services=services)
    narrow = run.sidecar(cache={"backend": "valkey", "key_prefix": "a:b:"}, services=services)
    n, w = connect(narrow.socket_path), connect(wide.socket_path)
    n.sendall(raw_request("/v1/keys/secret", "PUT", b"narrow's"))
    read_answer(n)
    w.sendall(raw_request("/v1/keys/b:secret"))
    read_status = read_answer(w)[0]
    w.sendall(raw_request("/v1/keys?pattern=*"))
    listed = json.loads(read_answer(w)[1])["keys"]
    w.sendall(raw_request("/v1/keys", "DELETE"))
    deleted = json.loads(read_answer(w)[1])["deleted"]
    for sidecar in (wide, narrow):
        sidecar.stop()
    server.stop()
    return {"wide_reads_narrow": read_status, "wide_lists": listed, "wide_clear_deleted": deleted}


def locks(run: Run) -> dict:
    sidecar = run.sidecar()

    def attack():
        sock = connect(sidecar.socket_path)
        answers = sock.makefile("rb")
        ttl = None
        for start in range(0, 200_000, 1000):
            sock.sendall(
                b"".join(raw_request(f"/v1/keys/l{i}/lock?ttl=315360000", "POST") for i in range(start, start + 1000))
            )
            for _ in range(1000):
                answers.readline()
                length = 0
                while (line := answers.readline()) != b"\r\n":
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                ttl = json.loads(answers.read(length)).get("ttl", "10 years (as asked)")
        sock.close()
        return {"granted_ttl": ttl}

    return attacked(sidecar, attack)


ATTACKS = {
    "idle_connections": idle_connections,
    "stalled_uploads": stalled_uploads,
    "stalled_uploads_8mib": lambda run: stalled_uploads(run, 8 * MiB, 7 * MiB),
    "unread_answers": unread_answers,
    "huge_header": huge_header,
    "batch_bomb": batch_bomb,
    "hung_valkey": hung_valkey,
    "stuck_sidecar_sdk": stuck_sidecar_sdk,
    "disk_full": disk_full,
    "nested_tenants": nested_tenants,
    "locks_200k": locks,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("attacks", nargs="*", help=f"some of {', '.join(ATTACKS)} (default: all)")
    parser.add_argument("--good", metavar="SOCKET", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.good:
        return good_client(args.good)
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results = {}
    with tempfile.TemporaryDirectory(prefix="agentcache-adversarial-") as workdir:
        for name in args.attacks or list(ATTACKS):
            try:
                results[name] = ATTACKS[name](Run(Path(workdir) / name))
            except Exception as exc:  # an attack that breaks the sidecar is a result too
                results[name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            print(f"{name}: {json.dumps(results[name])}", flush=True)


if __name__ == "__main__":
    main()
