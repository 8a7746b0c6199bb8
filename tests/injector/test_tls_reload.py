"""Certificates kept by someone else (cert-manager, the chart) are picked up without a restart."""

from __future__ import annotations

import asyncio
import datetime as dt

import aiohttp
import pytest

from agentcache_operator.injector import certs
from agentcache_operator.injector.kubeapi import StaticLookup
from agentcache_operator.injector.patch import SidecarDefaults
from agentcache_operator.injector.server import Injector
from agentcache_operator.injector.tls import FileCertificates

from .helpers import INSTALL_NAMESPACE, SERVICE, client_ssl_context

HOST = f"{SERVICE}.{INSTALL_NAMESPACE}.svc"


def write_bundle(directory, now):
    bundle = certs.new_bundle(certs.service_dns_names(SERVICE, INSTALL_NAMESPACE), now)
    (directory / "tls.crt").write_bytes(bundle.cert)
    (directory / "tls.key").write_bytes(bundle.key)
    (directory / "ca.pem").write_bytes(bundle.ca_cert)
    return directory / "ca.pem"


async def healthz(port: int, ca_file) -> int:
    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"https://127.0.0.1:{port}/healthz", ssl=client_ssl_context(ca_file), server_hostname=HOST
        ) as reply:
            return reply.status


async def test_rotated_files_are_served_to_new_connections(tmp_path):
    now = dt.datetime.now(dt.timezone.utc)
    first_ca = write_bundle(tmp_path, now).read_bytes()
    (tmp_path / "first-ca.pem").write_bytes(first_ca)
    injector = Injector(
        StaticLookup([]),
        SidecarDefaults(),
        FileCertificates(tmp_path / "tls.crt", tmp_path / "tls.key"),
        refresh_seconds=0.05,
    )
    port = await injector.start("127.0.0.1", 0)
    try:
        assert await healthz(port, tmp_path / "first-ca.pem") == 200
        second_ca = write_bundle(tmp_path, now)  # what cert-manager does on renewal
        for _ in range(100):
            try:
                assert await healthz(port, second_ca) == 200
                break
            except aiohttp.ClientConnectorCertificateError:
                await asyncio.sleep(0.05)
        else:
            pytest.fail("the renewed certificate was never served")
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await healthz(port, tmp_path / "first-ca.pem")
    finally:
        await injector.stop()


async def test_unreadable_files_are_a_clear_error(tmp_path):
    injector = Injector(StaticLookup([]), SidecarDefaults(), FileCertificates(tmp_path / "no.crt", tmp_path / "no.key"))
    with pytest.raises(RuntimeError, match="cannot read the TLS certificate"):
        await injector.start("127.0.0.1", 0)
    assert injector.port is None  # nothing was left listening
    await injector.stop()
