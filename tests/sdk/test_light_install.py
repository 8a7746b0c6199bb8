"""``pip install agentcache`` without extras, in a fresh virtualenv: the SDK and the CLI work against a running
sidecar, nothing of the sidecar's or the operator's dependencies is installed, and the console scripts of the
extras say which extra to install."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.sidecar import SidecarProcess

ROOT = Path(__file__).resolve().parents[2]
HEAVY = [
    "kopf",
    "kubernetes",
    "cryptography",
    "aiohttp",
    "valkey",
    "pydantic",
    "yaml",
    "prometheus_client",
    "zstandard",
    "jsonschema",
]
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def light_venv(tmp_path_factory) -> Path:
    """A virtualenv holding ``agentcache`` built from a copy of the repository's sources, without extras."""
    work = tmp_path_factory.mktemp("light")
    source = work / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for folder in ("sidecar", "operator", "charts/agentcache/crds"):
        shutil.copytree(
            ROOT / folder, source / folder, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
        )
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", str(source)],
        check=True,
        timeout=540,
    )
    return venv


@pytest.fixture(scope="module")
def memory_sidecar(tmp_path_factory):
    process = SidecarProcess(tmp_path_factory.mktemp("light-sidecar"), {"cache": {"backend": "memory"}}).start()
    yield process
    process.stop()


def run(venv: Path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv / "bin" / argv[0]), *argv[1:]], capture_output=True, text=True, timeout=60)


def test_no_package_of_an_extra_is_installed(light_venv):
    probe = f"import importlib.util, json; print(json.dumps([m for m in {HEAVY!r} if importlib.util.find_spec(m)]))"
    result = run(light_venv, "python", "-c", probe)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_cli_set_get_stats(light_venv, memory_sidecar):
    socket = ["--socket", memory_sidecar.socket_path]
    assert run(light_venv, "agentcache", *socket, "set", "light:k", '{"a": [1, 2]}').returncode == 0
    got = run(light_venv, "agentcache", *socket, "get", "light:k")
    assert got.returncode == 0 and json.loads(got.stdout) == {"a": [1, 2]}
    stats = run(light_venv, "agentcache", *socket, "stats", "--json")
    assert stats.returncode == 0 and json.loads(stats.stdout)["backend"] == "memory"


def test_sdk_async_and_sync(light_venv, memory_sidecar):
    script = textwrap.dedent(f"""
        import asyncio, agentcache

        @agentcache.cached(ttl=60, key_template="light:double:{{x}}")
        async def double(x):
            return 2 * x

        async def main():
            async with agentcache.AsyncCache({memory_sidecar.socket_path!r}) as cache:
                await cache.set("light:a", {{"n": 1}}, ttl=30)
                assert await cache.get("light:a") == {{"n": 1}}
                assert await cache.get_many(["light:a", "light:none"]) == {{"light:a": {{"n": 1}}, "light:none": None}}
        asyncio.run(main())
        with agentcache.Cache({memory_sidecar.socket_path!r}) as cache:
            cache.set("light:b", b"raw")
            assert cache.get("light:b") == b"raw"
        print("ok")
    """)
    result = run(light_venv, "python", "-c", script)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


@pytest.mark.parametrize(
    "argv, extra",
    [
        (["agentcache-sidecar"], "sidecar"),
        (["agentcache-operator"], "operator"),
        (["agentcache-injector"], "operator"),
        (["agentcache", "validate-config", "agent_config.yaml"], "sidecar"),
    ],
)
def test_a_missing_extra_is_one_line_naming_it(light_venv, argv, extra):
    result = run(light_venv, *argv)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"pip install 'agentcache[{extra}]'" in result.stderr
