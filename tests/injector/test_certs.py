"""The injector's own CA and serving certificate (pure functions, with an explicit clock)."""

from __future__ import annotations

import base64
import datetime as dt
import ssl

import pytest
from cryptography import x509

from agentcache_operator.injector import certs
from agentcache_operator.injector.webhook import render_webhook_configuration

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
DNS = certs.service_dns_names("agentcache-injector", "agentcache")


@pytest.fixture(scope="module")
def bundle():
    made, reason = certs.ensure_bundle(None, DNS, NOW)
    assert reason == "no certificate yet"
    return made


def load(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def test_serving_certificate_is_signed_by_the_ca_for_the_service_names(bundle):
    cert, ca = load(bundle.cert), load(bundle.ca_cert)
    cert.verify_directly_issued_by(ca)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == DNS
    assert "agentcache-injector.agentcache.svc" in DNS
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert cert.not_valid_after_utc <= ca.not_valid_after_utc
    context = certs.server_ssl_context(bundle.cert, bundle.key)  # the pair loads into a TLS server
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_good_bundle_is_reused(bundle):
    again, reason = certs.ensure_bundle(bundle, DNS, NOW + dt.timedelta(days=100))
    assert reason is None and again is bundle


def test_expiring_certificate_is_reissued_by_the_same_ca(bundle):
    later = NOW + dt.timedelta(days=340)
    renewed, reason = certs.ensure_bundle(bundle, DNS, later)
    assert "serving certificate expires" in reason
    assert renewed.ca_cert == bundle.ca_cert and renewed.ca_bundle == bundle.ca_bundle  # caBundle unchanged
    assert renewed.cert != bundle.cert
    assert load(renewed.cert).not_valid_after_utc > later + dt.timedelta(days=300)
    load(renewed.cert).verify_directly_issued_by(load(bundle.ca_cert))


def test_new_service_name_reissues_the_certificate(bundle):
    names = certs.service_dns_names("renamed", "agentcache")
    renewed, reason = certs.ensure_bundle(bundle, names, NOW)
    assert "service needs" in reason and renewed.ca_cert == bundle.ca_cert
    assert (
        load(renewed.cert)
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value.get_values_for_type(x509.DNSName)
        == names
    )


def test_certificate_from_a_foreign_ca_is_replaced(bundle):
    other, _ = certs.ensure_bundle(None, DNS, NOW)
    mixed = certs.CertBundle(ca_cert=bundle.ca_cert, ca_key=bundle.ca_key, cert=other.cert, key=other.key)
    fixed, reason = certs.ensure_bundle(mixed, DNS, NOW)
    assert reason == "the serving certificate is not signed by the CA"
    load(fixed.cert).verify_directly_issued_by(load(bundle.ca_cert))


def test_expiring_ca_is_replaced_and_the_old_one_stays_trusted_until_it_expires(bundle):
    late = NOW + dt.timedelta(days=certs.CA_DAYS - 200)
    rotated, reason = certs.ensure_bundle(bundle, DNS, late)
    assert "the CA expires" in reason
    assert rotated.ca_cert != bundle.ca_cert and rotated.previous_ca == bundle.ca_cert
    assert rotated.ca_bundle == rotated.ca_cert + bundle.ca_cert
    load(rotated.cert).verify_directly_issued_by(load(rotated.ca_cert))
    assert certs.ensure_bundle(rotated, DNS, late + dt.timedelta(days=1))[1] is None
    after_old_expiry = NOW + dt.timedelta(days=certs.CA_DAYS + 1)
    cleaned, reason = certs.ensure_bundle(rotated, DNS, after_old_expiry)
    assert reason == "the retired CA has expired"
    assert cleaned.previous_ca == b"" and cleaned.ca_cert == rotated.ca_cert


def test_secret_round_trip_and_unreadable_secrets(bundle):
    secret = certs.render_tls_secret("tls", "agentcache", bundle, {"app": "x"})
    assert secret["type"] == "kubernetes.io/tls"
    assert set(secret["data"]) == {"tls.crt", "tls.key", "ca.crt", "ca.key"}
    assert certs.CertBundle.from_secret(secret) == bundle
    assert certs.CertBundle.from_secret(None) is None
    assert certs.CertBundle.from_secret({"data": {**secret["data"], "ca.key": "bm90IGEga2V5"}}) is None
    assert certs.CertBundle.from_secret({"data": {**secret["data"], "tls.crt": "%%%"}}) is None
    chart_made = {"data": {k: v for k, v in secret["data"].items() if k != "ca.key"}}  # no CA key: cannot re-sign
    assert certs.CertBundle.from_secret(chart_made) is None


def test_ca_bundle_patch_only_when_different(bundle):
    config = render_webhook_configuration("w", "agentcache", "agentcache-injector", None)
    ops = certs.ca_bundle_patch(config, bundle.ca_bundle)
    assert ops == [
        {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": base64.b64encode(bundle.ca_bundle).decode()}
    ]
    synced = render_webhook_configuration("w", "agentcache", "agentcache-injector", bundle.ca_bundle)
    assert certs.ca_bundle_patch(synced, bundle.ca_bundle) == []


def test_a_certificate_needs_a_name(bundle):
    with pytest.raises(ValueError, match="at least one DNS name"):
        certs.issue_serving_cert(bundle.ca_cert, bundle.ca_key, [], NOW)
