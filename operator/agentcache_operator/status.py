"""From observed children and pods to ``status`` (phase, conditions, pod counts): pure functions, no API calls.

Phases:
- Pending: not usable yet and never was (pods starting, cluster forming).
- Ready: every child is ready.
- Degraded: usable but not fully ready, or usable before and not now.
- Failed: the operator cannot honour the spec; the message says what to fix.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from . import names
from .render import Cache, endpoint

PHASES = ("Pending", "Ready", "Degraded", "Failed")


@dataclass(frozen=True)
class Assessment:
    phase: str
    reason: str
    message: str
    progressing: bool = False


@dataclass
class Observed:
    """What the reconcile saw of the children after applying them."""

    statefulsets: list[dict[str, Any]] = field(default_factory=list)
    bootstrap_job: dict[str, Any] | None = None
    injected_pods: int = 0
    uninjected_pods: int = 0
    outdated_pods: int = 0
    config_hash: str | None = None  # of the sidecar ConfigMap as applied; None when this reconcile applied none


def sidecar_config_hash(cache: Cache, objects: list[dict[str, Any]]) -> str | None:
    """The ``agentcache.io/config-hash`` annotated on ``cache``'s sidecar ConfigMap among ``objects``, if there."""
    for obj in objects:
        if obj.get("kind") == "ConfigMap" and obj["metadata"]["name"] == names.config_map_name(cache.name):
            return (obj["metadata"].get("annotations") or {}).get(names.ANNOTATION_CONFIG_HASH)
    return None


def count_pods(pods: list[dict[str, Any]], cache_name: str, config_hash: str | None) -> tuple[int, int, int]:
    """Pods labelled with ``cache_name``: (with the sidecar, without it, with the sidecar but not ``config_hash``).

    A pod is outdated when its ``agentcache.io/config-hash`` annotation (the hash its sidecar
    started with, set by the injector) differs from ``config_hash``; a missing annotation differs
    too. With no known ``config_hash`` no pod is outdated.
    """
    mine = [p for p in pods if (p["metadata"].get("labels") or {}).get(names.LABEL_CACHE) == cache_name]
    injected = [p for p in mine if p["metadata"]["labels"].get(names.LABEL_INJECTED) == "true"]
    outdated = 0
    if config_hash is not None:
        outdated = sum(
            1
            for p in injected
            if (p["metadata"].get("annotations") or {}).get(names.ANNOTATION_CONFIG_HASH) != config_hash
        )
    return len(injected), len(mine) - len(injected), outdated


def _ready(statefulset: dict[str, Any]) -> tuple[int, int]:
    wanted = int(statefulset.get("spec", {}).get("replicas", 1))
    return int((statefulset.get("status") or {}).get("readyReplicas") or 0), wanted


def _rolling(statefulset: dict[str, Any]) -> bool:
    status = statefulset.get("status") or {}
    behind = int(status.get("observedGeneration") or 0) < int(statefulset["metadata"].get("generation") or 0)
    revisions = status.get("updateRevision") and status.get("currentRevision") != status.get("updateRevision")
    return bool(behind or revisions)


def _job_state(job: dict[str, Any] | None) -> str:
    if job is None:
        return "missing"
    status = job.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("status") == "True" and condition.get("type") in ("Complete", "Failed"):
            return condition["type"].lower()
    if int(status.get("succeeded") or 0) >= 1:
        return "complete"
    return "running"


def assess(cache: Cache, observed: Observed, previous_phase: str | None) -> Assessment:
    """The phase of a cache whose children were just applied."""
    if not cache.managed_valkey:
        where = "its sidecar config" if cache.spec["backend"] != "valkey" else f"external Valkey {endpoint(cache)}"
        return Assessment("Ready", "ConfigApplied", f"{cache.spec['backend']} cache; agents use {where}")
    lines, all_ready, usable = [], True, True
    for statefulset in observed.statefulsets:
        ready, wanted = _ready(statefulset)
        lines.append(f"StatefulSet {statefulset['metadata']['name']}: {ready}/{wanted} pods ready")
        all_ready = all_ready and ready >= wanted
        primary = statefulset["metadata"]["name"] == names.valkey_name(cache.name)
        if primary and cache.valkey["topology"] != "cluster":
            usable = usable and ready >= 1
        elif primary:
            usable = usable and ready >= cache.valkey["shards"]
    rolling = any(_rolling(s) for s in observed.statefulsets)
    if cache.valkey["topology"] == "cluster":
        job = _job_state(observed.bootstrap_job)
        if job == "failed":
            return Assessment(
                "Failed",
                "ClusterBootstrapFailed",
                "the cluster bootstrap Job failed; read its logs "
                f"(kubectl logs -n {cache.namespace} job/{cache.name}-valkey-bootstrap), fix the cause, "
                "and delete the Job so the operator runs it again",
            )
        if job != "complete":
            lines.append("cluster not formed yet (bootstrap Job running)")
            usable = all_ready = False
    message = "; ".join(lines)
    if all_ready:
        return Assessment("Ready", "AllReplicasReady", message, progressing=rolling)
    if usable or previous_phase in ("Ready", "Degraded"):
        return Assessment("Degraded", "ReplicasNotReady", message, progressing=True)
    return Assessment("Pending", "WaitingForPods", message, progressing=True)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def conditions(assessment: Assessment, generation: int, previous: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ready, Progressing and Degraded; a condition keeps its lastTransitionTime until its status flips."""
    phase = assessment.phase
    wanted = [
        ("Ready", phase == "Ready", assessment.reason, assessment.message),
        (
            "Progressing",
            assessment.progressing and phase != "Failed",
            "RollingOut" if assessment.progressing else "Stable",
            assessment.message if assessment.progressing else "nothing to roll out",
        ),
        (
            "Degraded",
            phase in ("Degraded", "Failed"),
            assessment.reason if phase in ("Degraded", "Failed") else "AsExpected",
            assessment.message if phase in ("Degraded", "Failed") else "all children as expected",
        ),
    ]
    before = {c.get("type"): c for c in previous}
    result = []
    for kind, value, reason, message in wanted:
        status = "True" if value else "False"
        old = before.get(kind, {})
        since = old.get("lastTransitionTime") if old.get("status") == status else None
        result.append(
            {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "observedGeneration": generation,
                "lastTransitionTime": since or _now(),
            }
        )
    return result


def status(cache: Cache, assessment: Assessment, observed: Observed, previous: dict[str, Any]) -> dict[str, Any]:
    """The ``status`` to write (a merge patch: ``configHash`` is left as it was when none was applied)."""
    result: dict[str, Any] = {
        "phase": assessment.phase,
        "observedGeneration": cache.generation,
        "conditions": conditions(assessment, cache.generation, previous.get("conditions") or []),
        "injectedPods": observed.injected_pods,
        "uninjectedPods": observed.uninjected_pods,
        "outdatedPods": observed.outdated_pods,
    }
    if observed.config_hash is not None:
        result["configHash"] = observed.config_hash
    # null removes a stale endpoint in the merge patch: a Failed cache has none
    result["endpoint"] = endpoint(cache) if assessment.phase != "Failed" else None
    return result


def failed(reason: str, message: str) -> Assessment:
    return Assessment("Failed", reason, message)


def changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether writing ``new`` over ``old`` changes anything but timestamps."""

    def strip(value: dict[str, Any]) -> dict[str, Any]:
        return {
            **{k: v for k, v in value.items() if k != "conditions"},
            "conditions": [
                {k: v for k, v in c.items() if k != "lastTransitionTime"} for c in value.get("conditions") or []
            ],
        }

    relevant = {k: old.get(k) for k in new}
    return strip(relevant) != strip(new)
