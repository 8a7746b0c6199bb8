"""The ``agentcache`` CLI against real sidecars, and ``validate-config`` on every AgentUp configuration shape."""

from __future__ import annotations

import json
import os
import pty
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agentcache import Cache
from agentcache.cli import main
from tests.support import agentup

SHAPES = agentup.fixture_files()


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def cli(sidecar, capsys):
    Cache(sidecar.socket_path).clear()
    return lambda *argv: run(capsys, "--socket", sidecar.socket_path, *argv)


def test_set_get_ttl_keys_delete(cli):
    assert cli("set", "user:1", '{"name": "Alice"}', "--ttl", "60")[0] == 0
    assert cli("set", "greeting", "hello world")[0] == 0
    assert cli("set", "number-as-text", "42", "--string")[0] == 0
    code, out, _ = cli("get", "user:1")
    assert code == 0 and json.loads(out) == {"name": "Alice"}
    assert cli("get", "greeting")[1].strip() == '"hello world"'
    assert cli("get", "greeting", "--raw")[1] == "hello world\n"
    assert json.loads(cli("get", "number-as-text")[1]) == "42"
    code, out, _ = cli("ttl", "user:1")
    assert code == 0 and 59 < float(out) <= 60
    assert cli("set", "forever", "1", "--ttl", "0")[0] == 0
    assert cli("ttl", "forever")[1].strip() == "no expiry"
    assert cli("keys")[1].split() == ["forever", "greeting", "number-as-text", "user:1"]
    assert cli("keys", "user:*")[1].split() == ["user:1"]
    assert cli("delete", "user:1", "greeting", "nope")[1].strip() == "deleted 2 of 3 key(s)"
    code, _, err = cli("get", "user:1")
    assert code == 1 and err.strip() == "agentcache: no value for 'user:1'"
    assert cli("ttl", "user:1")[0] == 1


def test_bad_key_is_one_line(cli):
    code, _, err = cli("get", "bad\x01key")
    assert code == 1 and err.startswith("agentcache: ") and "control character" in err and len(err.splitlines()) == 1


def test_stats_table_and_json(cli):
    cli("set", "a", "1")
    cli("get", "a")
    code, out, _ = cli("stats")
    assert code == 0
    table = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in out.splitlines())
    assert table["key_count"] == "1" and table["hit_rate"].endswith("%") and table["enabled"] == "yes"
    assert json.loads(cli("stats", "--json")[1])["key_count"] == 1


def test_clear_needs_yes(cli):
    cli("set", "a", "1")
    code, _, err = cli("clear")
    assert code == 1 and "--yes" in err
    assert cli("keys")[1].split() == ["a"]
    assert cli("clear", "--yes")[1].strip() == "deleted 1 key(s)"
    assert cli("keys")[1] == ""


def test_warm_loads_json_lines_in_batches(cli, sidecar, tmp_path):
    lines = [
        json.dumps({"key": f"user_prefs:{i}", "value": {"theme": "dark", "i": i}, "ttl": 3600}) for i in range(120)
    ]
    lines += [
        json.dumps({"key": "weather:london", "value": {"temp": 12}, "ttl": 1800}),
        json.dumps({"key": "blob", "value": {"$base64": "AAE="}}),
        "",
        "not json",
        json.dumps({"value": 1}),
        json.dumps({"key": "k", "value": 1, "ttl": -3}),
    ]
    data = tmp_path / "warm.jsonl"
    data.write_text("\n".join(lines) + "\n")
    code, out, _ = cli("warm", str(data), "--batch-size", "50")
    assert code == 1, "invalid lines make the exit status 1"
    assert "warmed 122 key(s) in 5 batch(es)" in out and "skipped 3 invalid line(s)" in out
    assert "line 124: not JSON" in out and "line 125" in out and "line 126" in out
    cache = Cache(sidecar.socket_path)
    assert cache.get("user_prefs:7") == {"theme": "dark", "i": 7}
    assert 1790 < cache.ttl("weather:london") <= 1800 and 3590 < cache.ttl("user_prefs:0") <= 3600
    assert cache.get("blob") == b"\x00\x01"
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(lines[:3]))
    assert cli("warm", str(good))[0] == 0
    code, _, err = cli("warm", str(tmp_path / "missing.jsonl"))
    assert code == 1 and "cannot read" in err


def test_warm_draws_a_progress_bar_on_a_terminal(sidecar, tmp_path):
    data = tmp_path / "warm.jsonl"
    data.write_text("\n".join(json.dumps({"key": f"k{i}", "value": i}) for i in range(30)))
    leader, follower = pty.openpty()
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "agentcache.cli",
                "--socket",
                sidecar.socket_path,
                "warm",
                str(data),
                "--batch-size",
                "10",
            ],
            stdout=subprocess.PIPE,
            stderr=follower,
            timeout=30,
        )
        os.close(follower)
        follower = -1
        terminal = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            terminal += chunk
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert result.returncode == 0
    assert b"\rwarming [##########....................] 10/30 keys" in terminal
    assert b"30/30 keys" in terminal
    assert "warmed 30 key(s) in 3 batch(es)" in result.stdout.decode()


def test_missing_socket_is_one_line_without_traceback(tmp_path):
    env = {**os.environ, "AGENTCACHE_SOCKET": str(tmp_path / "absent.sock")}
    result = subprocess.run(
        [Path(sys.executable).with_name("agentcache"), "stats"], capture_output=True, text=True, env=env, timeout=30
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "absent.sock" in result.stderr and "unreachable" in result.stderr


# --- validate-config ---------------------------------------------------------------------------------


def _hard_coded_valkey_url(document: dict) -> str | None:
    """The Valkey URL a valkey-backed shape connects to when it is hard-coded (not an env reference)."""
    if document["cache"]["backend"] != "valkey":
        return None
    url = document["services"]["valkey"]["config"]["url"]
    return None if "${" in url else url


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("name", SHAPES)
def test_validate_config_on_every_shape(name, tmp_path, monkeypatch, capsys, shared_valkey):
    """Env-var URLs point at a real Valkey and are round-tripped; hard-coded hosts are checked with --no-connect."""
    monkeypatch.setenv("VALKEY_CACHE_URL", shared_valkey.url)
    monkeypatch.chdir(tmp_path)  # the file shape's relative storage_dir
    config = tmp_path / "agent_config.yaml"
    config.write_text(SHAPES[name].read_text())
    document = yaml.safe_load(config.read_text())
    hard_coded = _hard_coded_valkey_url(document)
    code, out, _ = run(capsys, "validate-config", str(config), *(["--no-connect"] if hard_coded else []))
    assert code == 0, out
    assert out.startswith(f"✅ Configuration is valid: {config}")
    assert "❌" not in out
    if document["cache"]["backend"] == "valkey" and not hard_coded:
        assert f"✅ Valkey connection successful: {shared_valkey.url}" in out
        assert "✅ Cache operations working" in out
    if hard_coded:
        assert "skipped (--no-connect)" in out
    if document["cache"].get("enabled") is False:
        assert "cache.enabled is false" in out


def test_validate_config_connects_to_hard_coded_hosts(tmp_path, capsys):
    """``valkey://localhost:6379`` as AgentUp writes it: ❌ and exit 1 unless a server really listens there."""
    block = SHAPES["valkey-basic"].read_text()
    assert _hard_coded_valkey_url(yaml.safe_load(block)) == "valkey://localhost:6379"
    config = tmp_path / "agent_config.yaml"
    config.write_text(block.replace("db: 2", "db: 2\n      socket_connect_timeout: 1"))
    code, out, _ = run(capsys, "validate-config", str(config))
    if _listening("127.0.0.1", 6379):
        assert code == 0 and "✅ Cache operations working" in out
    else:
        assert code == 1
        assert "❌ Valkey connection failed: valkey://localhost:6379" in out
        assert len([line for line in out.splitlines() if "❌" in line]) == 1


def test_validate_config_round_trips_under_the_key_prefix(tmp_path, capsys, valkey_server):
    import valkey

    config = tmp_path / "agent_config.yaml"
    config.write_text(
        f"cache: {{backend: valkey, key_prefix: 'team-a:'}}\n"
        f"services: {{valkey: {{config: {{url: '{valkey_server.url}', db: 3}}}}}}\n"
    )
    code, out, _ = run(capsys, "validate-config", str(config))
    assert code == 0
    assert re.search(r"set/get/delete of team-a:config_test:[0-9a-f]{12}", out)
    assert valkey.Valkey.from_url(valkey_server.url, db=3).dbsize() == 0, "the test key is removed"


def test_validate_config_says_whether_valkey_tracks_the_prefix_for_the_near_cache(tmp_path, capsys, valkey_server):
    from agentcache_operator.render.tenancy import acl_rule
    from tests.support.valkey import ValkeyProcess

    config = tmp_path / "agent_config.yaml"
    config.write_text(
        "cache: {backend: valkey, key_prefix: 'team-a:'}\n"
        f"services: {{valkey: {{config: {{url: '{valkey_server.url}'}}}}}}\n"
    )
    code, out, _ = run(capsys, "validate-config", str(config))
    assert code == 0 and "✅ Near cache: Valkey tracks changes under 'team-a:'" in out
    acl = tmp_path / "users.acl"
    rule = acl_rule("team-a:").replace(" +client|tracking", "")
    acl.write_text(f"user default on nopass ~* &* +@all\nuser sidecar {rule} >pw\n")
    restricted = ValkeyProcess(tmp_path / "acl-valkey", extra_args=["--aclfile", str(acl)]).start()
    try:
        config.write_text(
            "cache: {backend: valkey, key_prefix: 'team-a:'}\n"
            f"services: {{valkey: {{config: {{url: 'valkey://sidecar:pw@127.0.0.1:{restricted.port}'}}}}}}\n"
        )
        code, out, _ = run(capsys, "validate-config", str(config))
    finally:
        restricted.stop()
    assert code == 0, out
    assert "✅ Cache operations working" in out
    assert "Near cache will be off: Valkey refused client tracking" in out


def test_validate_config_reports_errors_and_env_references(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.yaml"
    bad.write_text("cache:\n  backend: redis\n  default_ttl: -1\n")
    code, out, _ = run(capsys, "validate-config", str(bad))
    assert code == 1 and out.startswith("❌") and "cache.backend" in out and "cache.default_ttl" in out
    monkeypatch.delenv("VALKEY_CACHE_URL", raising=False)
    config = tmp_path / "prod.yaml"
    config.write_text(SHAPES["valkey-env-required"].read_text())
    code, out, _ = run(capsys, "validate-config", str(config), "--no-connect")
    assert code == 1 and "VALKEY_CACHE_URL" in out
    code, out, _ = run(capsys, "validate-config", str(tmp_path / "absent.yaml"))
    assert code == 1 and "cannot read" in out
    typo = tmp_path / "typo.yaml"
    typo.write_text("cache:\n  backend: memory\n  max_sise: 10\n")
    code, out, _ = run(capsys, "validate-config", str(typo))
    assert code == 0 and "⚠️" in out and "max_sise" in out


def test_validate_config_file_backend_checks_the_directory(tmp_path, capsys):
    config = tmp_path / "file.yaml"
    config.write_text(f"cache: {{backend: file, storage_dir: '{tmp_path / 'new' / 'cache'}'}}\n")
    code, out, _ = run(capsys, "validate-config", str(config))
    assert code == 0 and "writable" in out and "will be created" in out
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    config.write_text(f"cache: {{backend: file, storage_dir: '{blocker / 'cache'}'}}\n")
    code, out, _ = run(capsys, "validate-config", str(config))
    assert code == 1 and "❌ File cache directory is not writable" in out
