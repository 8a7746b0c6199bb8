"""Pieces every renderer shares: labels, quantities, security contexts, hashes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from .. import names, quantity
from ..crd import with_defaults


class SpecError(ValueError):
    """A spec the schema admits but the operator cannot honour; the message says what to fix."""


def quantity_bytes(value: int | str, field: str) -> int:
    """Bytes in a Kubernetes quantity (``256Mi``, ``1G``, ``1e6``, 1024), rounded up."""
    number = quantity.parse(value)
    if number is None:
        raise SpecError(f"{field}: {value!r} is not a quantity (examples: 256Mi, 1Gi, 500M)")
    return int(number.to_integral_value(rounding="ROUND_CEILING"))


def script(name: str) -> str:
    """A shell script of the package (``scripts/NAME``; shellcheck checks them in ``make lint``)."""
    return resources.files("agentcache_operator").joinpath("scripts", name).read_text(encoding="utf-8")


def mebibytes(value: int) -> str:
    """A byte count as a whole number of ``Mi``, rounded up."""
    return f"{-(-value // 2**20)}Mi"


def config_hash(data: Any) -> str:
    """A stable short hash of JSON-able data (for the config-hash annotation)."""
    encoded = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


@dataclass(frozen=True)
class Cache:
    """One AgentCache: identity plus its spec with every CRD default filled in."""

    name: str
    namespace: str
    uid: str
    spec: dict[str, Any]
    generation: int = 0

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Cache:
        meta = body.get("metadata", {})
        return cls(
            name=meta["name"],
            namespace=meta.get("namespace") or "default",
            uid=meta.get("uid", ""),
            spec=with_defaults(body.get("spec")),
            generation=int(meta.get("generation") or 0),
        )

    @property
    def valkey(self) -> dict[str, Any]:
        return self.spec["valkey"]

    @property
    def managed_valkey(self) -> bool:
        return self.spec["backend"] == "valkey" and self.valkey["mode"] == "managed"

    @property
    def key_prefix(self) -> str:
        return self.spec["keyPrefix"] or names.default_key_prefix(self.namespace, self.name)


def labels(cache: Cache, component: str) -> dict[str, str]:
    """Labels of every child; ``selector_labels`` is the immutable subset used in selectors."""
    return {
        **selector_labels(cache, component),
        names.LABEL_NAME: "agentcache",
        names.LABEL_MANAGED_BY: names.MANAGED_BY,
    }


def selector_labels(cache: Cache, component: str) -> dict[str, str]:
    return {names.LABEL_INSTANCE: cache.name, names.LABEL_COMPONENT: component}


def metadata(cache: Cache, name: str, component: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """Child metadata; owner references are added by the reconciler (``kopf.adopt`` from the handlers), not here."""
    meta: dict[str, Any] = {"name": name, "namespace": cache.namespace, "labels": labels(cache, component)}
    if annotations:
        meta["annotations"] = annotations
    return meta


def spread_over_nodes(selector: dict[str, str]) -> dict[str, Any]:
    """Prefer one pod matching ``selector`` per node (only preferred: a small cluster still schedules them)."""
    term = {"labelSelector": {"matchLabels": selector}, "topologyKey": "kubernetes.io/hostname"}
    return {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": term}]
        }
    }


def pod_security_context(uid: int) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
