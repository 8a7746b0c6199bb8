"""A full disk under the file backend drops writes one by one (counted) while reads keep being served.

The disk is a real 2 MiB tmpfs filled up (ENOSPC) when this runs as root and may mount; otherwise the
sidecar runs under RLIMIT_FSIZE, so the kernel refuses its larger writes (EFBIG). Both are a write the disk
refuses. Before: one failed write marked the whole backend down, and 163 of 200 reads of an existing key
missed while /readyz said ready.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import resource
import signal
import subprocess
from pathlib import Path

import pytest

from .conftest import connect, raw_request, read_answer, start_sidecars_with

MiB = 2**20


@contextlib.contextmanager
def small_disk(path: Path, kind: str):
    """True when a 2 MiB tmpfs is mounted at ``path`` (asked for and possible); else the caller limits file sizes."""
    path.mkdir()
    mounted = (
        kind == "tmpfs"
        and os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(path)], capture_output=True
        ).returncode
        == 0
    )
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> Path:
    """Write a file until the file system says ENOSPC."""
    filler = path / "filler"
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def limit_file_size() -> None:  # runs in the sidecar's process before exec
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))


@pytest.mark.parametrize("kind", ["tmpfs", "rlimit"])
def test_full_disk_drops_writes_and_serves_reads(sidecar_factory, tmp_path, monkeypatch, kind):
    storage = tmp_path / "disk"
    with small_disk(storage, kind) as tmpfs:
        if not tmpfs:
            start_sidecars_with(monkeypatch, limit_file_size)
        sidecar = sidecar_factory(
            {"cache": {"backend": "file", "storage_dir": str(storage), "key_prefix": "d:", "max_file_size": 4 * MiB}}
        )
        sock = connect(sidecar.socket_path)
        sock.sendall(raw_request("/v1/keys/existing", "PUT", b"kept"))
        assert read_answer(sock)[0] == 204
        filler = fill(storage) if tmpfs else None
        value = b"v" * (512 * 1024)  # larger than RLIMIT_FSIZE; the tmpfs is full anyway
        for i in range(20):
            sock.sendall(raw_request(f"/v1/keys/new{i}", "PUT", value))
            status, _ = read_answer(sock)
            assert status == 204
        reads = []
        for _ in range(200):
            sock.sendall(raw_request("/v1/keys/existing"))
            reads.append(read_answer(sock))
        sock.sendall(raw_request("/readyz"))
        ready_status, ready = read_answer(sock)
        sock.sendall(raw_request("/v1/stats"))
        stats = json.loads(read_answer(sock)[1])
        if filler is not None:
            filler.unlink()
            sock.sendall(raw_request("/v1/keys/after", "PUT", b"room again"))
            assert read_answer(sock)[0] == 204
            sock.sendall(raw_request("/v1/keys/after"))
            assert read_answer(sock) == (200, b"room again")
        sock.close()
    assert reads == [(200, b"kept")] * 200
    assert ready_status == 200 and b'"writes_failing": true' in ready and b'"backend_up": true' in ready
    assert stats["dropped_writes"] == 20 and stats["write_errors"] == 20
    assert ("no space left" if tmpfs else "file too large") in stats["last_write_error"]
