"""Configuration loading: every YAML block of the seed page, env substitution, clear errors."""

from __future__ import annotations

import pytest
import yaml

from agentcache_sidecar.config import ConfigError, load_config, parse_settings, substitute_env
from tests.support.seed import code_blocks

SEED_ENV = {"VALKEY_CACHE_URL": "valkey://cache.example:6380"}
YAML_BLOCKS = code_blocks("yaml")


@pytest.mark.parametrize("line, block", YAML_BLOCKS, ids=[f"seed-line-{line}" for line, _ in YAML_BLOCKS])
def test_every_seed_yaml_block_loads_as_written(line, block):
    loaded = parse_settings(yaml.safe_load(block), environ=SEED_ENV, source=f"seed:{line}")
    assert loaded.settings.cache.backend in ("memory", "file", "valkey")
    assert not [w for w in loaded.warnings if "cache." in w], loaded.warnings


def test_seed_blocks_cover_every_backend_and_environment():
    backends = {parse_settings(yaml.safe_load(b), environ=SEED_ENV).settings.cache.backend for _, b in YAML_BLOCKS}
    assert backends == {"memory", "file", "valkey"}


def test_production_block_defaults_and_env():
    block = next(b for _, b in YAML_BLOCKS if "${VALKEY_CACHE_DB:1}" in b)
    settings = parse_settings(yaml.safe_load(block), environ={"VALKEY_CACHE_URL": "valkey://prod:6379"}).settings
    assert settings.valkey.url == "valkey://prod:6379"
    assert settings.valkey.db == 1
    assert settings.cache.key_prefix == "prod:cache:"
    overridden = parse_settings(
        yaml.safe_load(block),
        environ={"VALKEY_CACHE_URL": "valkey://prod:6379", "VALKEY_CACHE_DB": "3", "CACHE_KEY_PREFIX": "x:"},
    ).settings
    assert (overridden.valkey.db, overridden.cache.key_prefix) == (3, "x:")


def test_missing_env_without_default_names_the_variable():
    block = next(b for _, b in YAML_BLOCKS if "${VALKEY_CACHE_DB:1}" in b)
    with pytest.raises(ConfigError, match=r"services.valkey.config.url: environment variable VALKEY_CACHE_URL"):
        parse_settings(yaml.safe_load(block), environ={})


def test_high_performance_pool_kwargs_feed_typed_settings():
    block = next(b for _, b in YAML_BLOCKS if "connection_pool_kwargs" in b)
    valkey = parse_settings(yaml.safe_load(block)).settings.valkey
    assert (valkey.max_connections, valkey.socket_timeout, valkey.socket_connect_timeout) == (50, 5, 5)
    assert valkey.retry_on_timeout and valkey.socket_keepalive


def test_high_performance_cache_options():
    block = next(b for _, b in YAML_BLOCKS if "pipeline_size" in b)
    cache = parse_settings(yaml.safe_load(block)).settings.cache
    assert cache.compression is True and cache.pipeline_size == 100 and cache.serialization == "pickle"


def test_testing_environment_disables_cache():
    block = next(b for _, b in YAML_BLOCKS if "enabled: false" in b)
    assert parse_settings(yaml.safe_load(block)).settings.cache.enabled is False


def test_substitution_in_nested_lists_and_defaults():
    assert substitute_env({"a": ["${X:1}", {"b": "pre-${Y}-post"}]}, {"Y": "y"}) == {"a": ["1", {"b": "pre-y-post"}]}


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ({"cache": {"backend": "redis"}}, "cache.backend: 'redis' is not valid: must be one of memory, file or valkey"),
        ({"cache": {"default_ttl": -5}}, "cache.default_ttl: -5"),
        ({"cache": {"max_size": "lots"}}, "cache.max_size: 'lots'"),
        ({"cache": {"enabled": "perhaps"}}, "cache.enabled: 'perhaps'"),
        ({"services": {"valkey": {"config": {"url": "http://x"}}}}, "services.valkey.config.url: 'http://x'"),
        ({"services": {"valkey": {"config": {"db": 99}}}}, "services.valkey.config.db: 99"),
        ({"services": {"valkey": {"config": {"connection_pool_kwargs": {"bogus": 1}}}}}, "unsupported keys ['bogus']"),
        ({"sidecar": {"socket_mode": "rwx"}}, "sidecar.socket_mode: 'rwx'"),
        ({"sidecar": {"fallback": "retry"}}, "sidecar.fallback: 'retry' is not valid: must be one of miss or memory"),
        ({"sidecar": {"metrics_port": 70000}}, "sidecar.metrics_port: 70000"),
        ({"cache": {"key_prefix": "a\nb"}}, "cache.key_prefix"),
        (["not", "a", "mapping"], "top level must be a mapping"),
    ],
)
def test_wrong_values_name_key_value_and_allowed(raw, fragment):
    with pytest.raises(ConfigError) as info:
        parse_settings(raw, environ={})
    assert fragment in str(info.value)


def test_unknown_keys_warn_and_load():
    loaded = parse_settings({"cache": {"backend": "memory", "colour": "blue"}, "extra_section": {}}, environ={})
    assert any("cache.colour" in w for w in loaded.warnings)
    assert any("extra_section" in w for w in loaded.warnings)


def test_password_from_url_then_field_then_env():
    settings = parse_settings({"services": {"valkey": {"config": {"url": "valkey://:p%40ss@h:6379"}}}}).settings
    assert settings.valkey.effective_password() == "p@ss"


def test_load_config_file_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_config(tmp_path / "missing.yaml", environ={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("cache: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad, environ={})


def test_embedded_default_and_env_path(tmp_path):
    default = load_config(None, environ={}).settings
    assert (default.cache.backend, default.sidecar.socket_path, default.sidecar.metrics_port) == (
        "memory",
        "./agentcache.sock",
        9464,
    )
    path = tmp_path / "c.yaml"
    path.write_text("cache:\n  backend: file\n")
    assert load_config(None, environ={"AGENTCACHE_CONFIG": str(path)}).settings.cache.backend == "file"


@pytest.mark.parametrize(
    "url, fragment",
    [
        ("valkey://127.0.0.1:notaport", "the port must be a number"),
        ("valkey://:6379", "names no host"),
        ("unix://", "socket's path"),
    ],
)
def test_bad_valkey_urls_are_config_errors(url, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse_settings({"services": {"valkey": {"config": {"url": url}}}}, environ={})


def test_non_utf8_config_file_is_a_clear_error(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path, environ={})
