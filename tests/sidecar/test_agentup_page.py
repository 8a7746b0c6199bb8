"""AgentUp's cache page itself, when it sits beside the repository: every YAML block loads and validates as
written, and our shapes in tests/fixtures/agentup/ use every key the page uses."""

from __future__ import annotations

import pytest
import yaml

from agentcache.cli import main
from agentcache_sidecar.config import parse_settings
from tests.support import agentup

pytestmark = pytest.mark.agentup_page

BLOCKS = agentup.page_yaml_blocks()
PAGE_ENV = {"VALKEY_CACHE_URL": "valkey://cache.example:6380"}


def test_the_page_has_every_yaml_block():
    assert len(BLOCKS) == 18


@pytest.mark.parametrize("name, block", BLOCKS, ids=[name for name, _ in BLOCKS])
def test_every_page_block_loads_as_written(name, block):
    loaded = parse_settings(yaml.safe_load(block), environ=PAGE_ENV, source=name)
    assert loaded.settings.cache.backend in ("memory", "file", "valkey")
    assert not [w for w in loaded.warnings if "cache." in w], loaded.warnings


def test_our_shapes_use_every_key_of_the_page():
    page = set().union(*(agentup.key_paths(yaml.safe_load(block)) for _, block in BLOCKS))
    ours = set().union(
        *(agentup.key_paths(yaml.safe_load(path.read_text())) for path in agentup.fixture_files().values())
    )
    assert page - ours == set(), "tests/fixtures/agentup/ lacks keys the page uses"


@pytest.mark.parametrize("name, block", BLOCKS, ids=[name for name, _ in BLOCKS])
def test_validate_config_on_every_page_block(name, block, tmp_path, monkeypatch, capsys, shared_valkey):
    """Env-var URLs point at a real Valkey and are round-tripped; hard-coded hosts are checked with --no-connect."""
    monkeypatch.setenv("VALKEY_CACHE_URL", shared_valkey.url)
    monkeypatch.chdir(tmp_path)  # the file block's ./cache storage_dir
    config = tmp_path / "agent_config.yaml"
    config.write_text(block)
    document = yaml.safe_load(block)
    uses_valkey = document.get("cache", {}).get("backend") == "valkey"
    url = document.get("services", {}).get("valkey", {}).get("config", {}).get("url", "")
    hard_coded = uses_valkey and "${" not in url
    code = main(["validate-config", str(config)] + (["--no-connect"] if hard_coded else []))
    out = capsys.readouterr().out
    assert code == 0 and "❌" not in out, out
    if uses_valkey and not hard_coded:
        assert f"✅ Valkey connection successful: {shared_valkey.url}" in out
