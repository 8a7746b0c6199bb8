"""The MutatingWebhookConfiguration of the injector (pure; the chart's template reproduces it)."""

from __future__ import annotations

import base64

from .. import names

WEBHOOK_NAME = "inject.agentcache.io"
MUTATE_PATH = "/mutate"
SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")
FAILURE_POLICIES = ("Fail", "Ignore")
CERT_MANAGER_INJECT_CA = "cert-manager.io/inject-ca-from"
NAMESPACE_LABEL = "kubernetes.io/metadata.name"  # set by the API server on every namespace


def render_webhook_configuration(
    name: str,
    namespace: str,
    service: str,
    ca_bundle: bytes | str | None,
    failure_policy: str = "Fail",
    timeout_seconds: int = 5,
    cert_manager: bool = False,
    certificate: str | None = None,
    port: int = 443,
    watch_namespace: str | None = None,
    labels: dict[str, str] | None = None,
) -> dict:
    """A MutatingWebhookConfiguration that sends CREATE of pods labelled ``agentcache.io/cache`` to the injector.

    ``ca_bundle`` is the PEM of the CA (bytes or text); it is left out when
    ``cert_manager`` is true (cert-manager's CA injector fills it from
    ``certificate``, default ``name``) or when it is not known yet (the injector
    fills it at start). The system namespaces and the injector's own
    ``namespace`` never match; ``watch_namespace`` restricts matching to one
    namespace (a namespaced install).
    """
    if failure_policy not in FAILURE_POLICIES:
        raise ValueError(f"failure_policy {failure_policy!r} must be one of {', '.join(FAILURE_POLICIES)}")
    if not isinstance(timeout_seconds, int) or not 1 <= timeout_seconds <= 30:
        raise ValueError(f"timeout_seconds {timeout_seconds!r} must be an integer from 1 to 30")
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port!r} must be from 1 to 65535")
    client_config: dict = {"service": {"name": service, "namespace": namespace, "path": MUTATE_PATH, "port": port}}
    metadata: dict = {"name": name}
    if labels:
        metadata["labels"] = dict(labels)
    if cert_manager:
        metadata["annotations"] = {CERT_MANAGER_INJECT_CA: f"{namespace}/{certificate or name}"}
    elif ca_bundle:
        pem = ca_bundle.encode() if isinstance(ca_bundle, str) else ca_bundle
        client_config["caBundle"] = base64.b64encode(pem).decode()
    if watch_namespace:
        namespace_selector = {"matchLabels": {NAMESPACE_LABEL: watch_namespace}}
    else:
        excluded = list(dict.fromkeys([*SYSTEM_NAMESPACES, namespace]))
        namespace_selector = {"matchExpressions": [{"key": NAMESPACE_LABEL, "operator": "NotIn", "values": excluded}]}
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": metadata,
        "webhooks": [
            {
                "name": WEBHOOK_NAME,
                "admissionReviewVersions": ["v1"],
                "clientConfig": client_config,
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                        "scope": "Namespaced",
                    }
                ],
                "objectSelector": {"matchExpressions": [{"key": names.LABEL_CACHE, "operator": "Exists"}]},
                "namespaceSelector": namespace_selector,
                "failurePolicy": failure_policy,
                "matchPolicy": "Equivalent",
                "sideEffects": "None",
                "reinvocationPolicy": "IfNeeded",
                "timeoutSeconds": timeout_seconds,
            }
        ],
    }
