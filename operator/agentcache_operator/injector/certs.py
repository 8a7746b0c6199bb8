"""The injector's TLS without cert-manager: a CA and a serving certificate made with ``cryptography``.

Everything here is pure except key generation's randomness. The bundle lives in
one Secret (``tls.crt``, ``tls.key``, ``ca.crt``, ``ca.key`` and, during a CA
rotation, ``ca-previous.crt``). Invariants of ``ensure_bundle``:

- a missing or unreadable bundle is replaced by a new CA and certificate;
- the serving certificate is re-issued by the SAME CA when fewer than
  ``renew_before`` remain, when its DNS names differ from the service's, or when
  the CA did not sign it, so the webhook's caBundle does not change;
- the CA is replaced when fewer than ``ca_renew_before`` remain; the old CA stays
  in the trusted bundle (``ca-previous.crt``) until it expires, so API servers
  that still hold the old caBundle keep trusting the webhook during the change.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import ssl
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
CERT_DAYS = 365
RENEW_BEFORE = dt.timedelta(days=30)
CA_RENEW_BEFORE = dt.timedelta(days=365)
BACKDATE = dt.timedelta(minutes=5)  # tolerate clocks slightly behind ours

KEY_CERT, KEY_KEY, KEY_CA, KEY_CA_KEY, KEY_PREVIOUS_CA = "tls.crt", "tls.key", "ca.crt", "ca.key", "ca-previous.crt"
SECRET_KEYS = (KEY_CERT, KEY_KEY, KEY_CA, KEY_CA_KEY, KEY_PREVIOUS_CA)


@dataclass(frozen=True)
class CertBundle:
    """PEM bytes of the CA, its key, the serving certificate and key, and a CA being retired."""

    ca_cert: bytes
    ca_key: bytes
    cert: bytes
    key: bytes
    previous_ca: bytes = b""

    @property
    def ca_bundle(self) -> bytes:
        """What the webhook configuration's caBundle must hold: the CA, plus the retiring one."""
        return self.ca_cert + self.previous_ca

    def secret_data(self) -> dict[str, str]:
        data = {KEY_CERT: self.cert, KEY_KEY: self.key, KEY_CA: self.ca_cert, KEY_CA_KEY: self.ca_key}
        if self.previous_ca:
            data[KEY_PREVIOUS_CA] = self.previous_ca
        return {key: base64.b64encode(value).decode() for key, value in data.items()}

    @classmethod
    def from_parts(cls, parts: dict[str, bytes]) -> CertBundle | None:
        """The bundle from its PEM parts by Secret key, or None when a part is missing or is not PEM."""
        try:
            x509.load_pem_x509_certificate(parts[KEY_CERT])
            x509.load_pem_x509_certificate(parts[KEY_CA])
            serialization.load_pem_private_key(parts[KEY_KEY], password=None)
            serialization.load_pem_private_key(parts[KEY_CA_KEY], password=None)
        except (KeyError, ValueError, TypeError):
            return None
        return cls(
            ca_cert=parts[KEY_CA],
            ca_key=parts[KEY_CA_KEY],
            cert=parts[KEY_CERT],
            key=parts[KEY_KEY],
            previous_ca=parts.get(KEY_PREVIOUS_CA, b""),
        )

    @classmethod
    def from_secret(cls, secret: dict | None) -> CertBundle | None:
        """The bundle in a Secret's data, or None when a part is missing or is not PEM."""
        data = (secret or {}).get("data") or {}
        try:
            parts = {key: base64.b64decode(value, validate=True) for key, value in data.items()}
        except (ValueError, TypeError):
            return None
        return cls.from_parts(parts)


def service_dns_names(service: str, namespace: str) -> list[str]:
    """The names the API server may use for a Service (it uses ``<svc>.<ns>.svc``)."""
    return [service, f"{service}.{namespace}", f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local"]


def _san(name: str) -> x509.GeneralName:
    """An IP address SAN for an address (a webhook reached by URL at an IP), else a DNS name."""
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def generate_ca(common_name: str, now: dt.datetime, days: int = CA_DAYS) -> tuple[bytes, bytes]:
    """A self-signed CA that can only sign end-entity certificates (path length 0): (cert, key) PEM."""
    key = _new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def issue_serving_cert(
    ca_cert_pem: bytes, ca_key_pem: bytes, dns_names: list[str], now: dt.datetime, days: int = CERT_DAYS
) -> tuple[bytes, bytes]:
    """A server certificate for ``dns_names`` (IP addresses too) signed by the CA, never outliving it: (cert, key) PEM."""
    if not dns_names:
        raise ValueError("a serving certificate needs at least one DNS name")
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    key = _new_key()
    not_after = min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([_san(n) for n in dns_names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=False,
                key_cert_sign=False,
                crl_sign=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def new_bundle(dns_names: list[str], now: dt.datetime, previous_ca: bytes = b"") -> CertBundle:
    ca_cert, ca_key = generate_ca(f"agentcache-injector-ca-{now:%Y%m%d}", now)
    cert, key = issue_serving_cert(ca_cert, ca_key, dns_names, now)
    return CertBundle(ca_cert=ca_cert, ca_key=ca_key, cert=cert, key=key, previous_ca=previous_ca)


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _ca_problem(bundle: CertBundle, now: dt.datetime, ca_renew_before: dt.timedelta) -> str | None:
    ca = x509.load_pem_x509_certificate(bundle.ca_cert)
    if ca.not_valid_after_utc - now < ca_renew_before:
        return f"the CA expires {ca.not_valid_after_utc:%Y-%m-%d}"
    return None


def _cert_problem(bundle: CertBundle, dns_names: list[str], now: dt.datetime, renew_before: dt.timedelta) -> str | None:
    cert = x509.load_pem_x509_certificate(bundle.cert)
    if cert.not_valid_after_utc - now < renew_before:
        return f"the serving certificate expires {cert.not_valid_after_utc:%Y-%m-%d}"
    if not _signed_by(cert, x509.load_pem_x509_certificate(bundle.ca_cert)):
        return "the serving certificate is not signed by the CA"
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "the serving certificate has no DNS names"
    names = sorted([*sans.get_values_for_type(x509.DNSName), *map(str, sans.get_values_for_type(x509.IPAddress))])
    if names != sorted(dns_names):
        return f"the serving certificate names {names}, the service needs {sorted(dns_names)}"
    return None


def _previous_ca_expired(bundle: CertBundle, now: dt.datetime) -> bool:
    return bool(bundle.previous_ca) and x509.load_pem_x509_certificate(bundle.previous_ca).not_valid_after_utc <= now


def rotation_reason(
    bundle: CertBundle | None,
    dns_names: list[str],
    now: dt.datetime,
    renew_before: dt.timedelta = RENEW_BEFORE,
    ca_renew_before: dt.timedelta = CA_RENEW_BEFORE,
) -> str | None:
    """Why the bundle must change now, or None when it is good."""
    if bundle is None:
        return "no certificate yet"
    return (
        _ca_problem(bundle, now, ca_renew_before)
        or _cert_problem(bundle, dns_names, now, renew_before)
        or ("the retired CA has expired" if _previous_ca_expired(bundle, now) else None)
    )


def ensure_bundle(
    bundle: CertBundle | None,
    dns_names: list[str],
    now: dt.datetime,
    renew_before: dt.timedelta = RENEW_BEFORE,
    ca_renew_before: dt.timedelta = CA_RENEW_BEFORE,
) -> tuple[CertBundle, str | None]:
    """The bundle to use from now on and why it changed (None: unchanged, reuse it)."""
    reason = rotation_reason(bundle, dns_names, now, renew_before, ca_renew_before)
    if reason is None:
        return bundle, None
    if bundle is None:
        return new_bundle(dns_names, now), reason
    if _ca_problem(bundle, now, ca_renew_before):
        ca_expiry = x509.load_pem_x509_certificate(bundle.ca_cert).not_valid_after_utc
        return new_bundle(dns_names, now, previous_ca=bundle.ca_cert if ca_expiry > now else b""), reason
    previous = b"" if _previous_ca_expired(bundle, now) else bundle.previous_ca
    cert, key = bundle.cert, bundle.key
    if _cert_problem(bundle, dns_names, now, renew_before):
        cert, key = issue_serving_cert(bundle.ca_cert, bundle.ca_key, dns_names, now)
    return replace(bundle, cert=cert, key=key, previous_ca=previous), reason


def render_tls_secret(name: str, namespace: str, bundle: CertBundle, labels: dict[str, str] | None = None) -> dict:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "kubernetes.io/tls",
        "data": bundle.secret_data(),
    }
    if labels:
        secret["metadata"]["labels"] = dict(labels)
    return secret


def ca_bundle_patch(webhook_configuration: dict, ca_bundle_pem: bytes) -> list[dict]:
    """JSONPatch ops that set every webhook's caBundle to ``ca_bundle_pem``; [] when all already do."""
    expected = base64.b64encode(ca_bundle_pem).decode()
    ops = []
    for index, webhook in enumerate(webhook_configuration.get("webhooks") or []):
        client = webhook.get("clientConfig") or {}
        if client.get("caBundle") != expected:
            ops.append({"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": expected})
    return ops


def server_ssl_context(cert_pem: bytes, key_pem: bytes, context: ssl.SSLContext | None = None) -> ssl.SSLContext:
    """A TLS 1.2+ server context holding the certificate; ``context`` is reloaded in place when given.

    ``ssl`` loads certificates only from files, so they pass through a private
    temporary directory that is removed at once.
    """
    if context is None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory(prefix="agentcache-tls-") as folder:
        cert_file, key_file = Path(folder, "tls.crt"), Path(folder, "tls.key")
        cert_file.write_bytes(cert_pem)
        key_file.touch(mode=0o600)
        key_file.write_bytes(key_pem)
        context.load_cert_chain(cert_file, key_file)
    return context


def not_valid_after(cert_pem: bytes) -> dt.datetime:
    return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc
