"""Clients that are not Python: Node's built-in ``http`` module, and the README's ``curl --unix-socket`` lines."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

from tests.support.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
NODE_CLIENT = Path(__file__).with_name("node") / "client.mjs"


def test_node_drives_set_get_batch_and_lock(sidecar):
    node = require_tool("node")
    result = subprocess.run([node, str(NODE_CLIENT), sidecar.socket_path], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "node client: set, get, head, batch, lock: ok" in result.stdout


def readme_curl_lines() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"^(curl --unix-socket \./agentcache\.sock [^\n]*?)(?:\s+#.*)?$", text, re.M)


def test_the_readmes_curl_examples_run(sidecar, tmp_path):
    require_tool("curl")
    lines = readme_curl_lines()
    assert len(lines) == 3, lines
    (tmp_path / "agentcache.sock").symlink_to(sidecar.socket_path)
    outputs = []
    for line in lines:
        result = subprocess.run(shlex.split(line), capture_output=True, text=True, cwd=tmp_path, timeout=30)
        assert result.returncode == 0, (line, result.stderr)
        outputs.append(result.stdout)
    assert outputs[1] == "v"  # the README's "-> v"
    assert '"hits"' in outputs[2] and '"backend"' in outputs[2]
