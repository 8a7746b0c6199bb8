"""The socket API against its OpenAPI description: served, complete, and held to it by schemathesis.

schemathesis (all its checks, every phase) runs against a live sidecar per
backend, through a byte-for-byte TCP-to-Unix-socket forwarder.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from agentcache_sidecar.openapi import SPEC
from tests.support.unix_proxy import UnixSocketProxy

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
OPERATIONS = sorted(
    f"{method.upper()} {path}" for path, item in SPEC["paths"].items() for method in item if method != "parameters"
)


async def test_the_description_is_served_and_names_every_route(sidecar):
    async with sidecar.session() as http:
        async with http.get("/v1/openapi.json") as response:
            assert response.status == 200 and response.content_type == "application/json"
            assert await response.json() == SPEC
        async with http.put("/v1/openapi.json") as response:  # a 405 says what is allowed
            assert response.status == 405 and response.headers["Allow"] == "GET"
    assert len(OPERATIONS) == 16  # app.create_server: its 9 exact routes and KeyApi's 7 routes
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                assert {"400", "500"} <= set(operation["responses"]), f"{method} {path} lacks its errors"


@pytest.mark.parametrize("query", ["ttl=&ttl=5", "ttl=5&ttl=t", "ttl="])
async def test_a_query_parameter_is_one_value(sidecar, query):
    """Found by schemathesis: ``ttl=&ttl=t`` and ``limit=`` used to mean "the default"."""
    async with sidecar.session() as http:
        for method, path in (("PUT", "/v1/keys/k"), ("POST", "/v1/keys/k/lock"), ("GET", "/v1/keys")):
            async with http.request(
                method, f"{path}?{query.replace('ttl', 'limit' if method == 'GET' else 'ttl')}", data=b"v"
            ) as response:
                assert response.status == 400, (method, path, query)
                assert (await response.json())["error"] in ("bad_query", "bad_ttl", "bad_limit")


def test_schemathesis_finds_no_failure(sidecar, tmp_path):
    proxy = UnixSocketProxy(sidecar.socket_path)
    try:
        result = subprocess.run(
            [
                str(SCHEMATHESIS),
                "run",
                f"{proxy.url}/v1/openapi.json",
                "--url",
                proxy.url,
                "--checks",
                "all",
                "--max-examples",
                "25",
                "--seed",
                "13",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )  # its cache stays out of the tree
    finally:
        proxy.close()
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-8000:]
    # schemathesis generates no HEAD requests: HEAD /v1/keys/{key} is driven by test_node_client.py
    assert (
        f"Selected: {len(OPERATIONS) - 1}/{len(OPERATIONS) - 1}" in report
        and f"Tested: {len(OPERATIONS) - 1}" in report
    ), report[-3000:]
    generated, passed = map(int, re.search(r"(\d+) generated, (\d+) passed", report).groups())
    assert generated == passed > 10 * len(OPERATIONS), report[-3000:]
    assert "Dropped" not in report, "a pattern schemathesis cannot use is not checked"
