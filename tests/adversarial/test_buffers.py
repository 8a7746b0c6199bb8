"""What a client makes the sidecar buffer is bounded by its budget, whatever the client does.

Before (default config): 20 stalled 31 MiB uploads +637 MB RSS, held forever; 60 pipelined GETs of an 8 MiB
value never read +492 MB; one 160 MiB header line buffered whole (others' p50 137 ms); a 31 MiB batch of
``[{},{},…]`` 944 MB and ~2 s of blocked event loop.
"""

from __future__ import annotations

import json
import socket
import threading
import time

from .conftest import MAX_MEMORY, GoodClient, PeakRss, connect, raw_request, read_answer

MiB = 2**20


def test_stalled_uploads_are_bounded_and_timed_out(guarded):
    sidecar = guarded({"body_timeout": 2.0})
    uploads: list[socket.socket] = []
    early = []
    with GoodClient(sidecar.socket_path) as good, PeakRss(sidecar.proc.pid) as memory:
        for i in range(20):
            sock = connect(sidecar.socket_path)
            declared = 32 * MiB if i % 2 else 8 * MiB
            sock.sendall(f"PUT /v1/keys/up{i} HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n\r\n".encode())
            uploads.append(sock)
        for sock in uploads:  # too large: refused at once; within the limit: the budget decides
            sock.settimeout(0.2)
            try:
                sock.sendall(b"x" * (7 * MiB))
            except (TimeoutError, BrokenPipeError, ConnectionResetError):
                pass
        for sock in uploads:
            try:
                early.append(read_answer(sock, timeout=5)[0])
            except (ConnectionError, TimeoutError):
                early.append(None)
            sock.close()
    good.check()
    assert memory.peak < MAX_MEMORY, f"peak RSS {memory.peak >> 20} MiB"
    assert early.count(413) == 10, early  # declared 32 MiB > max_value_bytes
    assert set(early) <= {413, 503, 408}, early  # the 8 MiB ones: refused (budget) or timed out (stalled)
    assert 408 in early, "a stalled upload is ended by body_timeout"


def test_unread_answers_hold_one_answer_per_connection(guarded):
    sidecar = guarded({"send_timeout": 3.0})
    setter = connect(sidecar.socket_path)
    setter.sendall(raw_request("/v1/keys/big", "PUT", b"b" * (8 * MiB)))
    assert read_answer(setter)[0] == 204
    setter.close()
    readers = []
    with GoodClient(sidecar.socket_path) as good, PeakRss(sidecar.proc.pid) as memory:
        for _ in range(4):
            sock = connect(sidecar.socket_path)
            sock.sendall(raw_request("/v1/keys/big") * 60)  # 60 pipelined GETs of 8 MiB, never read
            readers.append(sock)
        time.sleep(5.0)  # past send_timeout: the sidecar gave up on them
        aborted = busy = 0
        for sock in readers:
            sock.settimeout(1)
            received = b""
            try:
                while chunk := sock.recv(1 << 20):
                    received += chunk
                aborted += 1
            except ConnectionResetError:
                aborted += 1
            except TimeoutError:
                pass
            busy += b"HTTP/1.1 503" in received  # the budget of unsent answers was full: "busy, retry"
            sock.close()
    good.check()
    assert memory.peak < MAX_MEMORY, f"peak RSS {memory.peak >> 20} MiB"
    assert aborted >= 1, "a client that never reads is dropped after send_timeout"
    assert aborted + busy >= 4


def test_a_huge_header_line_is_refused_as_it_arrives(guarded):
    sidecar = guarded()
    sock = connect(sidecar.socket_path)
    answer: list = []

    def read() -> None:
        try:
            answer.append(read_answer(sock, timeout=10)[0])
        except (ConnectionError, TimeoutError) as exc:
            answer.append(exc)

    reader = threading.Thread(target=read)
    with GoodClient(sidecar.socket_path) as good, PeakRss(sidecar.proc.pid) as memory:
        reader.start()
        sent = 0
        sock.sendall(b"GET /v1/keys/x HTTP/1.1\r\nHost: x\r\nX-Huge: ")
        chunk = b"h" * MiB
        try:
            while sent < 160 * MiB:
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        reader.join()
        sock.close()
    good.check()
    assert answer == [431]
    assert memory.peak < MAX_MEMORY, f"peak RSS {memory.peak >> 20} MiB"


def test_batch_bombs_are_refused_before_they_are_parsed(guarded):
    sidecar = guarded()
    bomb_31 = b'{"items": {"k": [' + b"{}," * (31 * MiB // 3) + b"{}]}}"
    bomb_small = b'{"items": {"k": [' + b"{}," * (3 * MiB // 3) + b"{}]}}"  # under the body cap: too many objects
    with GoodClient(sidecar.socket_path) as good, PeakRss(sidecar.proc.pid) as memory:
        for bomb in (bomb_31, bomb_small, bomb_small):
            sock = connect(sidecar.socket_path)
            started = time.monotonic()
            try:
                sock.sendall(raw_request("/v1/batch/set", "POST", bomb, "Content-Type: application/json\r\n"))
            except (BrokenPipeError, ConnectionResetError):
                pass
            status, body = read_answer(sock, timeout=10)
            assert (status, json.loads(body)["error"]) == (413, "too_large")
            assert time.monotonic() - started < 5
            sock.close()
    good.check()
    assert memory.peak < MAX_MEMORY, f"peak RSS {memory.peak >> 20} MiB"
