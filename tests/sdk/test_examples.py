"""Every script in examples/ runs to completion against a real sidecar (each asserts its own behaviour)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.sidecar import SidecarProcess

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))
EXPECTED_OUTPUT = {
    "weather.py": "API called 1 time",
    "llm_response.py": "3 generations for 5 calls",
    "api_response.py": "3 calls, 2 HTTP requests",
    "db_query.py": "3 calls ran 2 queries",
    "user_preferences.py": "database reads: 2 for 3 calls",
    "basic_operations.py": "get_many:",
    "cache_warming.py": "warmed 6 keys",
    "invalidation.py": "invalidated 3 keys of user 123",
    "stats.py": "'hit_rate'",
    "debug_key.py": "'exists': True",
    "conditional_caching.py": "6 calls, 4 computations",
}


@pytest.fixture(scope="module")
def example_sidecar(tmp_path_factory):
    process = SidecarProcess(tmp_path_factory.mktemp("examples"), {"cache": {"backend": "memory"}}).start()
    yield process
    process.stop()


def test_every_seed_example_has_a_script():
    assert sorted(EXPECTED_OUTPUT) == [script.name for script in SCRIPTS]


@pytest.mark.parametrize("script", SCRIPTS, ids=[script.stem for script in SCRIPTS])
def test_example_runs(script, example_sidecar):
    env = {**os.environ, "AGENTCACHE_SOCKET": example_sidecar.socket_path, "PYTHONWARNINGS": "error::ResourceWarning"}
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert EXPECTED_OUTPUT[script.name] in result.stdout
    assert "Unclosed" not in result.stderr and "Traceback" not in result.stderr
