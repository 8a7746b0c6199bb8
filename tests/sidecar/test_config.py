"""Configuration loading: our AgentUp configuration shapes, env substitution, clear errors."""

from __future__ import annotations

import pytest
import yaml

from agentcache_sidecar.config import ConfigError, load_config, parse_settings, substitute_env
from tests.support import agentup

SHAPES = agentup.fixture_files()
SHAPE_ENV = {"VALKEY_CACHE_URL": "valkey://cache.example:6380"}


def shape(name: str, environ: dict | None = None):
    return parse_settings(
        yaml.safe_load(SHAPES[name].read_text()), environ=SHAPE_ENV if environ is None else environ, source=name
    )


@pytest.mark.parametrize("name", SHAPES)
def test_every_shape_loads_without_cache_warnings(name):
    loaded = shape(name)
    assert not [w for w in loaded.warnings if "cache." in w], loaded.warnings


def test_shapes_cover_every_backend():
    assert {shape(name).settings.cache.backend for name in SHAPES} == {"memory", "file", "valkey"}


def test_env_defaults_and_overrides():
    settings = shape("valkey-env-required", {"VALKEY_CACHE_URL": "valkey://prod:6379"}).settings
    assert (settings.valkey.url, settings.valkey.db, settings.cache.key_prefix) == (
        "valkey://prod:6379",
        4,
        "live:cache:",
    )
    overridden = shape(
        "valkey-env-required",
        {"VALKEY_CACHE_URL": "valkey://prod:6379", "VALKEY_CACHE_DB": "3", "CACHE_KEY_PREFIX": "x:"},
    ).settings
    assert (overridden.valkey.db, overridden.cache.key_prefix) == (3, "x:")
    assert shape("valkey-env", {}).settings.valkey.url == "valkey://cache.internal:6379"


def test_missing_env_without_default_names_the_variable():
    with pytest.raises(ConfigError, match=r"services.valkey.config.url: environment variable VALKEY_CACHE_URL"):
        shape("valkey-env-required", {})


def test_pool_kwargs_feed_typed_settings():
    valkey = shape("valkey-pool-kwargs").settings.valkey
    assert (valkey.max_connections, valkey.socket_timeout, valkey.socket_connect_timeout) == (40, 6, 3)
    assert valkey.retry_on_timeout and valkey.socket_keepalive


def test_tuned_cache_options():
    cache = shape("valkey-tuned").settings.cache
    assert cache.compression is True and cache.pipeline_size == 50 and cache.serialization == "msgpack"


def test_state_and_a_second_valkey_service_are_kept_apart():
    loaded = shape("valkey-with-state")
    assert loaded.settings.state == {
        "backend": "valkey",
        "url": "valkey://state.internal:6379",
        "key_prefix": "myagent:state:",
        "ttl": 7200,
    }
    assert loaded.settings.valkey.url == "valkey://cache.example:6380"
    assert [w for w in loaded.warnings if "valkey_state" in w], "a service we do not use is a warning"


def test_disabled_cache():
    assert shape("memory-disabled").settings.cache.enabled is False


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


def sentinel_config(**sentinel) -> dict:
    return {"cache": {"backend": "valkey"}, "services": {"valkey": {"config": {"sentinel": sentinel}}}}


def test_sentinel_section_names_the_primary_and_the_sentinels():
    loaded = parse_settings(sentinel_config(master_name="primary", addresses=["s-0.s.ns.svc:26379", "10.0.0.1:26379"]))
    assert loaded.warnings == []
    sentinel = loaded.settings.valkey.sentinel
    assert sentinel.master_name == "primary" and sentinel.addresses[1] == "10.0.0.1:26379"
    assert sentinel.password is None, "the Valkey password is used unless one is given"


@pytest.mark.parametrize(
    "raw, fragment",
    [
        (sentinel_config(master_name="p", addresses=["no-port"]), "sentinel.addresses: .*'no-port' is not host:port"),
        (sentinel_config(master_name="p", addresses=[]), "sentinel.addresses"),
        (sentinel_config(addresses=["s:26379"]), "sentinel.master_name"),
        (
            {
                "services": {
                    "valkey": {"config": {"cluster": True, "sentinel": {"master_name": "p", "addresses": ["s:1"]}}}
                }
            },
            "a Valkey Cluster has no Sentinel",
        ),
    ],
)
def test_a_wrong_sentinel_section_is_a_clear_error(raw, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse_settings(raw)


def test_substituted_strings_are_read_as_their_types():
    """``${VAR}`` makes every substituted value a string: numbers and booleans are read from it, as pydantic's lax
    mode read them; anything else stays an error."""
    loaded = parse_settings(
        {
            "cache": {"enabled": "${ON}", "max_size": "${SIZE}", "default_ttl": "${TTL}"},
            "sidecar": {"socket_mode": "0600", "log_level": "DEBUG", "max_memory": "64Mi"},
        },
        environ={"ON": "no", "SIZE": "25", "TTL": "2.5"},
    )
    cache, side = loaded.settings.cache, loaded.settings.sidecar
    assert (cache.enabled, cache.max_size, cache.default_ttl) == (False, 25, 2.5)
    assert (side.socket_mode, side.log_level, side.max_memory) == (0o600, "debug", 64 * 1024 * 1024)
    for raw, fragment in [
        ({"cache": {"max_size": "2.5"}}, "cache.max_size: '2.5' is not valid: must be an integer"),
        ({"cache": {"max_size": True}}, "cache.max_size: True is not valid: must be an integer"),
        ({"cache": {"default_ttl": "nan"}}, "cache.default_ttl: 'nan' is not valid: must be a finite number"),
        ({"cache": {"key_prefix": 5}}, "cache.key_prefix: 5 is not valid: must be a string"),
        ({"sidecar": {"metrics_port": 70000}}, "must be from 0 to 65535"),
        ({"cache": "memory"}, "cache: 'memory' is not valid: must be a mapping"),
    ]:
        with pytest.raises(ConfigError) as info:
            parse_settings(raw, environ={})
        assert fragment in str(info.value)


def test_every_error_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        parse_settings({"cache": {"backend": "redis", "max_size": 0}, "sidecar": {"near_cache": {"max_bytes": "x"}}})
    assert str(info.value).count(" is not valid: ") == 3
    assert "sidecar.near_cache.max_bytes: 'x' is not valid: must be a number of bytes" in str(info.value)


def test_near_cache_quantities_and_defaults():
    near = parse_settings({"sidecar": {"near_cache": {"max_bytes": "64Mi", "max_value_bytes": "1Ki"}}}).settings
    assert (near.sidecar.near_cache.max_bytes, near.sidecar.near_cache.max_value_bytes) == (64 << 20, 1024)
    default = parse_settings({}).settings.sidecar.near_cache
    assert (default.enabled, default.max_items, default.max_bytes, default.max_value_bytes) == (
        True,
        10000,
        32 << 20,
        1 << 20,
    )


def test_sections_built_directly_are_checked_and_keep_passwords_out_of_their_repr():
    from agentcache_sidecar.config import CacheSettings, ValkeySettings

    with pytest.raises(ConfigError, match="max_size: 0 is not valid"):
        CacheSettings(max_size=0)
    assert "hunter2" not in repr(ValkeySettings(password="hunter2"))
    assert ValkeySettings(db="3").db == 3
