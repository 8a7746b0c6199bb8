"""AdmissionReview v1 in, AdmissionReview v1 response out (pure).

``parse_review`` rejects what is not an AdmissionReview for a pod with
``MalformedReview`` (the server answers HTTP 400). ``decide`` is given the
review and every AgentCache named by the pod's label, in any namespace (so that
a refusal can say the cache exists elsewhere), and answers: allow with a patch,
allow unchanged, or refuse with a message that names the cache.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Iterable

from .. import names
from .patch import InjectionError, SidecarDefaults, build_patch, has_sidecar

REVIEW_API_VERSION = "admission.k8s.io/v1"


class MalformedReview(ValueError):
    """The request body is not an AdmissionReview v1 the injector can answer."""


@dataclass(frozen=True)
class Request:
    uid: str
    namespace: str
    operation: str
    kind: str
    object: dict

    @property
    def cache_name(self) -> str | None:
        return ((self.object.get("metadata") or {}).get("labels") or {}).get(names.LABEL_CACHE)


NATIVE_SIDECARS_SINCE = (1, 29)


def parse_review(review: object) -> Request:
    """The ``request`` of an AdmissionReview, checked enough to answer it safely."""
    if not isinstance(review, dict):
        raise MalformedReview("the body must be a JSON object (an AdmissionReview)")
    if review.get("apiVersion") != REVIEW_API_VERSION or review.get("kind") != "AdmissionReview":
        raise MalformedReview(
            f"expected apiVersion {REVIEW_API_VERSION} kind AdmissionReview, got "
            f"{review.get('apiVersion')!r} {review.get('kind')!r}"
        )
    request = review.get("request")
    if not isinstance(request, dict):
        raise MalformedReview("the AdmissionReview has no request object")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise MalformedReview("request.uid must be a non-empty string")
    kind = request.get("kind") or {}
    kind_name = kind.get("kind") if isinstance(kind, dict) else None
    obj = request.get("object")
    operation = request.get("operation")
    if not isinstance(operation, str):
        raise MalformedReview("request.operation must be a string")
    if kind_name == "Pod" and operation == "CREATE":
        if not isinstance(obj, dict) or not isinstance(obj.get("spec"), dict):
            raise MalformedReview("request.object must be a Pod with a spec")
        _check_pod_shape(obj)
        namespace = request.get("namespace") or (obj.get("metadata") or {}).get("namespace")
        if not isinstance(namespace, str) or not namespace:
            raise MalformedReview("request.namespace must name the pod's namespace")
    else:
        namespace = request.get("namespace") or ""
    return Request(uid=uid, namespace=namespace, operation=operation, kind=kind_name or "", object=obj or {})


def _check_pod_shape(obj: dict) -> None:
    """The parts of a pod the patch reads have the types the Pod schema gives them."""
    metadata = obj.get("metadata", {})
    if not isinstance(metadata, dict):
        raise MalformedReview("request.object.metadata must be an object")
    for field in ("labels", "annotations"):
        value = metadata.get(field)
        if value is not None and not (isinstance(value, dict) and all(isinstance(v, str) for v in value.values())):
            raise MalformedReview(f"request.object.metadata.{field} must map names to strings")
    spec = obj["spec"]
    for field in ("initContainers", "containers", "volumes"):
        value = spec.get(field)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, dict) for v in value)):
            raise MalformedReview(f"request.object.spec.{field} must be a list of objects")
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for field in ("env", "volumeMounts", "ports"):
            value = container.get(field)
            if value is not None and not (isinstance(value, list) and all(isinstance(v, dict) for v in value)):
                raise MalformedReview(
                    f"request.object.spec container {container.get('name')!r}: {field} must be a list of objects"
                )


def response(
    uid: str,
    *,
    patch: list[dict] | None = None,
    denied: str | None = None,
    code: int = 403,
    warnings: Iterable[str] = (),
) -> dict:
    """An AdmissionReview answer: allowed (with a base64 JSONPatch when not empty) or denied."""
    answer: dict = {"uid": uid, "allowed": denied is None}
    if denied is not None:
        answer["status"] = {"code": code, "message": denied}
    elif patch:
        answer["patchType"] = "JSONPatch"
        answer["patch"] = base64.b64encode(json.dumps(patch, separators=(",", ":")).encode()).decode()
    if warnings:
        answer["warnings"] = list(warnings)
    return {"apiVersion": REVIEW_API_VERSION, "kind": "AdmissionReview", "response": answer}


def needs_lookup(request: Request) -> bool:
    """Whether answering needs the AgentCache (not for other objects or already injected pods)."""
    return (
        request.kind == "Pod"
        and request.operation == "CREATE"
        and request.cache_name is not None
        and not has_sidecar(request.object)
    )


def decide(request: Request, caches: Iterable[dict], settings: SidecarDefaults) -> dict:
    """The answer to ``request``, given the AgentCaches named by its label in every namespace."""
    if not needs_lookup(request):
        return response(request.uid)
    name = request.cache_name
    where = f"namespace {request.namespace!r}"
    candidates = list(caches)
    cache = next((c for c in candidates if c["metadata"].get("namespace") == request.namespace), None)
    if cache is None:
        elsewhere = sorted({c["metadata"].get("namespace") for c in candidates if c["metadata"].get("name") == name})
        if elsewhere:
            return response(
                request.uid,
                code=403,
                denied=(
                    f"AgentCache {name!r} is not in {where} (it exists in {', '.join(elsewhere)}); "
                    f"a pod can only use an AgentCache of its own namespace. Create one in {request.namespace!r} "
                    f"or change the pod's {names.LABEL_CACHE} label"
                ),
            )
        return response(
            request.uid,
            code=404,
            denied=(f"AgentCache {name!r} not found in {where}: create it, or fix the pod's {names.LABEL_CACHE} label"),
        )
    status = cache.get("status") or {}
    if cache["metadata"].get("deletionTimestamp"):
        return response(request.uid, code=409, denied=f"AgentCache {name!r} in {where} is being deleted")
    if status.get("phase") == "Failed" and failure_reason(status) == names.REASON_INVALID_SPEC:
        return response(
            request.uid,
            code=409,
            denied=(f"AgentCache {name!r} in {where} has a spec that cannot work: {failure_message(status)}"),
        )
    version = settings.kubernetes_version
    if version is not None and version < NATIVE_SIDECARS_SINCE:
        return response(
            request.uid,
            code=403,
            denied=(
                f"this cluster runs Kubernetes {version[0]}.{version[1]}; the cache sidecar of AgentCache {name!r} is a "
                f"native sidecar (an init container with restartPolicy: Always), which needs Kubernetes "
                f"{NATIVE_SIDECARS_SINCE[0]}.{NATIVE_SIDECARS_SINCE[1]} or newer: upgrade the cluster, or remove the "
                f"pod's {names.LABEL_CACHE} label"
            ),
        )
    try:
        patch = build_patch(request.object, cache, request.namespace, settings)
    except InjectionError as error:
        return response(request.uid, code=400, denied=f"cannot add the cache sidecar of AgentCache {name!r}: {error}")
    warnings = []
    if status.get("phase") == "Failed":  # e.g. a Secret not created yet: the pod starts once it is
        warnings.append(f"AgentCache {name!r} has failed: {failure_message(status)}")
    elif status.get("phase") != "Ready":
        warnings.append(
            f"AgentCache {name!r} is {status.get('phase') or 'not yet reconciled'}; "
            f"the pod waits for its cache sidecar to become ready"
        )
    return response(request.uid, patch=patch, warnings=warnings)


def failure_reason(status: dict) -> str | None:
    return next((c.get("reason") for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)


def failure_message(status: dict) -> str:
    """Why a cache failed: the Ready condition's message, else ``status.message``."""
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready" and condition.get("message"):
            return condition["message"]
    return status.get("message") or "no reason given in its status"
