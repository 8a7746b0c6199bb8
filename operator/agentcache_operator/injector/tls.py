"""Where the injector's serving certificate comes from, and keeping it fresh.

- ``FileCertificates``: certificate files someone else maintains (cert-manager,
  or the chart's Secret mounted as a volume); re-read when they change.
- ``ManagedCertificates``: the injector makes and rotates its own CA and
  certificate (``certs.ensure_bundle``), stored in a Secret (``SecretStore``,
  shared by all replicas) or a directory (``DirectoryStore``, for running
  outside a cluster), and keeps the webhook configuration's caBundle in sync.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path
from typing import Awaitable, Callable, Protocol

from ..kube import ApiError
from . import certs
from .kubeapi import KubeApi

log = logging.getLogger(__name__)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class CertificateSource(Protocol):
    async def load(self) -> tuple[bytes, bytes]:
        """The current serving (certificate, key) PEM; may renew them first."""


class FileCertificates:
    def __init__(self, cert_file: str | os.PathLike, key_file: str | os.PathLike):
        self.cert_file, self.key_file = Path(cert_file), Path(key_file)

    async def load(self) -> tuple[bytes, bytes]:
        try:
            return self.cert_file.read_bytes(), self.key_file.read_bytes()
        except OSError as error:
            raise RuntimeError(f"cannot read the TLS certificate: {error}") from None


class BundleStore(Protocol):
    async def read(self) -> certs.CertBundle | None: ...

    async def write(self, bundle: certs.CertBundle) -> bool:
        """Store ``bundle``; False when someone else changed the store meanwhile (read again)."""


class DirectoryStore:
    """The bundle as files (tls.crt, tls.key, ca.crt, ca.key, ca-previous.crt), keys mode 0600."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)

    async def read(self) -> certs.CertBundle | None:
        return certs.CertBundle.from_parts(
            {path.name: path.read_bytes() for path in self.directory.glob("*") if path.name in certs.SECRET_KEYS}
        )

    async def write(self, bundle: certs.CertBundle) -> bool:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        parts = {
            certs.KEY_CERT: bundle.cert,
            certs.KEY_KEY: bundle.key,
            certs.KEY_CA: bundle.ca_cert,
            certs.KEY_CA_KEY: bundle.ca_key,
            certs.KEY_PREVIOUS_CA: bundle.previous_ca,
        }
        for key, value in parts.items():
            path = self.directory / key
            if not value:
                path.unlink(missing_ok=True)
                continue
            temporary = path.with_name(path.name + ".tmp")
            temporary.touch(mode=0o600)
            temporary.write_bytes(value)
            temporary.replace(path)
        return True


class SecretStore:
    """The bundle in a ``kubernetes.io/tls`` Secret; writes are optimistic (resourceVersion)."""

    def __init__(self, api: KubeApi, namespace: str, name: str, labels: dict[str, str] | None = None):
        self.api, self.namespace, self.name, self.labels = api, namespace, name, labels
        self._seen: dict | None = None

    @property
    def path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/secrets/{self.name}"

    async def read(self) -> certs.CertBundle | None:
        self._seen = await self.api.get(self.path)
        return certs.CertBundle.from_secret(self._seen)

    async def write(self, bundle: certs.CertBundle) -> bool:
        secret = certs.render_tls_secret(self.name, self.namespace, bundle, self.labels)
        try:
            if self._seen is None:
                await self.api.request("POST", f"/api/v1/namespaces/{self.namespace}/secrets", secret)
            else:
                secret["metadata"]["resourceVersion"] = self._seen["metadata"]["resourceVersion"]
                secret["metadata"]["labels"] = {**(self._seen["metadata"].get("labels") or {}), **(self.labels or {})}
                await self.api.request("PUT", self.path, secret)
        except ApiError as error:
            if error.status == 409:
                return False
            raise
        return True


class ManagedCertificates:
    """A CA and serving certificate the injector makes, shares through ``store`` and rotates."""

    def __init__(
        self,
        store: BundleStore,
        dns_names: list[str],
        publish_ca: Callable[[bytes], Awaitable[object]] | None = None,
        clock: Callable[[], dt.datetime] = utc_now,
    ):
        self.store, self.dns_names, self.publish_ca, self.clock = store, dns_names, publish_ca, clock
        self.bundle: certs.CertBundle | None = None

    async def load(self) -> tuple[bytes, bytes]:
        for _ in range(5):
            stored = await self.store.read()
            bundle, reason = certs.ensure_bundle(stored, self.dns_names, self.clock())
            if reason is None or await self.store.write(bundle):
                break
            log.info("another injector replica changed the certificate first; reading it")
        else:
            raise RuntimeError("the certificate store kept changing under the injector")
        if reason:
            log.info("new webhook certificate (valid until %s): %s", certs.not_valid_after(bundle.cert), reason)
        if self.publish_ca is not None:
            await self.publish_ca(bundle.ca_bundle)
        self.bundle = bundle
        return bundle.cert, bundle.key


class WebhookCaBundle:
    """Sets the caBundle of a MutatingWebhookConfiguration to the injector's CA (a JSON patch, only when different)."""

    def __init__(self, api: KubeApi, name: str):
        self.api, self.name = api, name

    @property
    def path(self) -> str:
        return f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{self.name}"

    async def __call__(self, ca_bundle: bytes) -> bool:
        configuration = await self.api.get(self.path)
        if configuration is None:
            log.warning("MutatingWebhookConfiguration %s not found; its caBundle is not set", self.name)
            return False
        ops = certs.ca_bundle_patch(configuration, ca_bundle)
        if not ops:
            return False
        await self.api.request("PATCH", self.path, ops, content_type="application/json-patch+json")
        log.info("caBundle of MutatingWebhookConfiguration %s updated", self.name)
        return True
