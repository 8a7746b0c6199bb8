"""A Kubernetes API server emulator good enough for real ``kubectl`` and ``kopf run``.

Run it as ``python -m tests.support.k8s_emulator --port N`` (``--port 0`` picks a free
port); it serves plain HTTP on 127.0.0.1 and prints ``listening on http://HOST:PORT``
once it accepts connections. It keeps everything in memory and has no authentication.

It is built on kmock's ``KubernetesEmulator`` (kmock 0.8), which gives us the aiohttp
server (``kmock.Server``), the parsing of Kubernetes URLs into resource, namespace,
name and subresource (``kmock.Request``), the discovery documents (``/api``, ``/apis``,
``/apis/<group>[/<version>]`` from ``kmock.resources``), the merge-patch and
JSON-patch primitives, the object store with its history (``emulator.objects``) and
the DSL for ad-hoc reactions on non-resource paths. kmock alone breaks kopf and
kubectl, so this subclass changes the following, and only this:

* Requests for resources (a URL with a plural) are served here, not by kmock's
  fallbacks: kmock's handlers keep no per-object metadata and replay everything.
  DSL reactions therefore apply to non-resource paths only.
* Every object gets ``metadata.uid``, ``creationTimestamp``, ``generation`` (bumped
  only when something other than ``metadata`` and ``status`` changes) and a
  ``resourceVersion`` taken from one monotonic revision counter, like etcd's; a
  write that changes nothing keeps the resourceVersion and emits no event.
* Watches honour ``resourceVersion``: with a revision they replay only the events
  after it (410 Gone once it has been compacted away), without one they send the
  current objects as ADDED; ``sendInitialEvents`` ends the initial burst with the
  ``k8s.io/initial-events-end`` bookmark; ``allowWatchBookmarks`` adds periodic
  BOOKMARK events; ``timeoutSeconds``, label and field selectors work, and an object
  that stops or starts matching a selector is sent as DELETED or ADDED.
* A failed JSON-patch ``test`` (or a missing path) answers 422 Invalid, not 500.
* ``/status``: PUT/PATCH there changes only ``.status``; writes to the main resource
  of a kind with a status subresource keep the stored ``.status``, and create drops it.
* PUT replaces the object, with 409 Conflict on a stale ``metadata.resourceVersion``.
* Lists have ``kind: <Kind>List``, ``apiVersion`` and ``metadata.resourceVersion``;
  ``Accept: ...;as=Table`` (what ``kubectl get`` asks for) gets a Name/Age table.
* ``metadata.generateName``; namespaced objects need an existing namespace.
* DELETE honours finalizers (``deletionTimestamp`` set, the object stays until an
  update removes the last finalizer), ``preconditions`` and ``propagationPolicy``
  (Orphan strips the owner references; Background and Foreground both delete the
  dependents right away). Objects whose ``ownerReferences`` name a removed uid, and
  have no other live owner, are deleted in turn (cascading); deleting a Namespace
  deletes its contents, deleting a CRD removes its custom resources.
* Patch content types: merge patch; strategic merge patch (a merge patch that also
  merges well-known lists by key, e.g. containers by name, and obeys ``$patch``,
  ``$retainKeys`` and ``$deleteFromPrimitiveList``); JSON patch; server-side apply
  (``application/apply-patch+yaml``: create-or-merge like a strategic merge;
  ``fieldManager`` is accepted, field ownership is not tracked). ``dryRun`` is honoured.
* Creating an ``apiextensions.k8s.io/v1`` CustomResourceDefinition serves its kinds
  (and marks it Established); built-in kinds are declared in ``BUILTIN_TYPES``.
* Discovery lists only declared kinds (kmock would also list kinds of soft-deleted
  objects), ``core/v1`` as ``groupVersion: v1`` (kmock says ``/v1``, which client-go
  rejects), subresources with their own verbs; ``/version`` reports 1.35.
* URLs of the Namespace resource (``/api/v1/namespaces[/NAME[/status]]``) are parsed
  here: kmock 0.8 takes them for a namespace scope and fails on ``/api/v1/namespaces``.
* Errors are ``Status`` objects with the standard ``reason`` (NotFound, AlreadyExists,
  Conflict, Invalid...) that client-go and kopf test for, without tracebacks.
* kubectl's typed generators (``kubectl create namespace|configmap|secret|serviceaccount``)
  send protobuf; those four kinds are decoded, other protobuf bodies get 415.
* Namespaces carry the ``kubernetes.io/metadata.name`` label, as the API server sets it.
* An ``immutable: true`` Secret or ConfigMap refuses changes to its data (422), as the API server does.
* A Secret's write-only ``stringData`` is folded into ``data`` (base64, overriding the same
  key there) on every write, and never stored or returned, as the API server does.
* Admission webhooks are called on CREATE (mutating, then validating; rules, namespace and
  object selectors, failurePolicy, caBundle); only ``clientConfig.url`` is reachable, a
  Service-backed webhook fails as one without endpoints would. kmock has no admission.

Not emulated: admission on update or delete, OpenAPI documents (use ``kubectl apply
--validate=false``), schema validation and defaulting, pagination (``limit`` is
ignored), field ownership, controllers (no pods are ever scheduled or run).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import dataclasses
import datetime
import json
import re
import secrets
import signal
import ssl
import sys
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import yaml
from kmock import KubernetesEmulator, KubernetesError, ResourceInfo, Server, resource
from kmock._internal import dicts, enums, parsing, rendering

Obj = dict[str, Any]

VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
EVENT_LOG_LIMIT = 50_000
STATUS_SUBRESOURCE = "status"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set on every namespace, as the API server does
NAMESPACE_PATH = re.compile(r"^/api/v1/namespaces(?:/([^/]+)(?:/(status|finalize))?)?/?$")


@dataclasses.dataclass(frozen=True)
class ResourceType:
    """One served kind at one group/version (what a discovery entry describes)."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    has_status: bool = False
    categories: tuple[str, ...] = ()
    storage_version: str = ""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def serving_key(self) -> resource:
        return resource(self.group, self.version, self.plural)

    @property
    def storage_key(self) -> resource:
        """Objects of all served versions of a kind live under the storage version."""
        return resource(self.group, self.storage_version or self.version, self.plural)

    @property
    def description(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


IN_CATEGORY_ALL = {"pods", "services", "deployments", "statefulsets", "replicasets", "daemonsets", "jobs",
                   "cronjobs"}


def _builtin(api_version: str, plural: str, kind: str, *, namespaced: bool = True,
             short: tuple[str, ...] = (), status: bool = False) -> ResourceType:
    group, _, version = api_version.rpartition("/")
    categories = ("all",) if plural in IN_CATEGORY_ALL else ()
    return ResourceType(group, version, plural, kind, namespaced, short, status, categories)


BUILTIN_TYPES: tuple[ResourceType, ...] = (
    _builtin("v1", "namespaces", "Namespace", namespaced=False, short=("ns",), status=True),
    _builtin("v1", "configmaps", "ConfigMap", short=("cm",)),
    _builtin("v1", "secrets", "Secret"),
    _builtin("v1", "services", "Service", short=("svc",), status=True),
    _builtin("v1", "serviceaccounts", "ServiceAccount", short=("sa",)),
    _builtin("v1", "pods", "Pod", short=("po",), status=True),
    _builtin("v1", "events", "Event", short=("ev",)),
    _builtin("v1", "persistentvolumeclaims", "PersistentVolumeClaim", short=("pvc",), status=True),
    _builtin("v1", "endpoints", "Endpoints", short=("ep",)),
    _builtin("apps/v1", "deployments", "Deployment", short=("deploy",), status=True),
    _builtin("apps/v1", "statefulsets", "StatefulSet", short=("sts",), status=True),
    _builtin("apps/v1", "replicasets", "ReplicaSet", short=("rs",), status=True),
    _builtin("apps/v1", "daemonsets", "DaemonSet", short=("ds",), status=True),
    _builtin("policy/v1", "poddisruptionbudgets", "PodDisruptionBudget", short=("pdb",), status=True),
    _builtin("networking.k8s.io/v1", "networkpolicies", "NetworkPolicy", short=("netpol",)),
    _builtin("batch/v1", "jobs", "Job", status=True),
    _builtin("batch/v1", "cronjobs", "CronJob", short=("cj",), status=True),
    _builtin("rbac.authorization.k8s.io/v1", "roles", "Role"),
    _builtin("rbac.authorization.k8s.io/v1", "rolebindings", "RoleBinding"),
    _builtin("rbac.authorization.k8s.io/v1", "clusterroles", "ClusterRole", namespaced=False),
    _builtin("rbac.authorization.k8s.io/v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False),
    _builtin("admissionregistration.k8s.io/v1", "mutatingwebhookconfigurations",
             "MutatingWebhookConfiguration", namespaced=False),
    _builtin("admissionregistration.k8s.io/v1", "validatingwebhookconfigurations",
             "ValidatingWebhookConfiguration", namespaced=False),
    _builtin("apiextensions.k8s.io/v1", "customresourcedefinitions", "CustomResourceDefinition",
             namespaced=False, short=("crd", "crds"), status=True),
    _builtin("coordination.k8s.io/v1", "leases", "Lease"),
    _builtin("events.k8s.io/v1", "events", "Event", short=("ev",)),
)
NAMESPACE_TYPE = BUILTIN_TYPES[0]
CRD_TYPE = next(t for t in BUILTIN_TYPES if t.kind == "CustomResourceDefinition")
SECRET_TYPE = next(t for t in BUILTIN_TYPES if t.kind == "Secret")


@attrs.frozen
class ApiError(KubernetesError):
    """An API answer that is a ``Status`` failure with a standard ``reason``."""


def _error(status: int, reason: str, message: str, **details: Any) -> ApiError:
    return ApiError(status=status, reason=reason, message=message, details=details)


def _not_found(rtype: ResourceType, name: str) -> ApiError:
    return _error(404, "NotFound", f'{rtype.description} "{name}" not found',
                  name=name, group=rtype.group, kind=rtype.plural)


def _invalid(rtype: ResourceType, name: str | None, message: str) -> ApiError:
    return _error(422, "Invalid", f'{rtype.kind} "{name or ""}" is invalid: {message}',
                  name=name, group=rtype.group, kind=rtype.kind)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- patching --------------------------------------------------------------------------------

# Strategic-merge keys of the lists that matter to us (field name -> merge key).
LIST_MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name",
    "volumes": "name", "env": "name", "volumeMounts": "mountPath", "volumeDevices": "devicePath",
    "imagePullSecrets": "name", "hostAliases": "ip", "ownerReferences": "uid",
    "conditions": "type", "topologySpreadConstraints": "topologyKey", "resourceClaims": "name",
}
PRIMITIVE_MERGE_LISTS = {"finalizers"}


def _list_merge_key(field: str, items: list[Any]) -> str | None:
    if not items or not all(isinstance(item, dict) for item in items):
        return None
    if field == "ports":
        return "containerPort" if all("containerPort" in item for item in items) else "port"
    return LIST_MERGE_KEYS.get(field)


def _without_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_without_directives(v) for v in value if not (isinstance(v, dict) and "$patch" in v)]
    return value


def strategic_merge(target: Any, patch: Any) -> Any:
    """A strategic merge patch: a merge patch plus keyed list merging and ``$`` directives.

    Returns ``None`` when the patch deletes the whole map (``$patch: delete``).
    """
    if not isinstance(patch, dict):
        return _without_directives(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace" or not isinstance(target, dict):
        return _without_directives(patch)
    result = dict(target)
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            result[field] = [item for item in result.get(field) or [] if item not in value]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = strategic_merge(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(key, result.get(key), value)
        else:
            result[key] = value
    if "$retainKeys" in patch:
        result = {k: v for k, v in result.items() if k in patch["$retainKeys"]}
    return result


def _merge_list(field: str, current: Any, items: list[Any]) -> list[Any]:
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in items):
        return _without_directives(items)
    if not isinstance(current, list):
        current = []
    if field in PRIMITIVE_MERGE_LISTS and all(not isinstance(item, (dict, list)) for item in items):
        return current + [item for item in items if item not in current]
    merge_key = _list_merge_key(field, [i for i in items if not (isinstance(i, dict) and "$patch" in i)])
    if merge_key is None:
        return _without_directives(items)
    result = list(current)
    for item in items:
        index = next((i for i, old in enumerate(result)
                      if isinstance(old, dict) and old.get(merge_key) == item.get(merge_key)), None)
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append(_without_directives(item))
        else:
            result[index] = strategic_merge(result[index], item)
    return result


# --- protobuf (kubectl's typed generators, e.g. `kubectl create namespace`, send it) -------------

# Field numbers from k8s.io/api generated.proto, for the kinds kubectl's generators create.
# A schema maps a field number to (name, how): how is "str", "int", "bool", "b64" (bytes shown
# as base64), "strs" (repeated string), "map" / "b64map" (map<string, string|bytes>),
# or a nested schema; a list around a nested schema makes it repeated.
_OWNER_REFERENCE = {1: ("kind", "str"), 3: ("name", "str"), 4: ("uid", "str"), 5: ("apiVersion", "str"),
                    6: ("controller", "bool"), 7: ("blockOwnerDeletion", "bool")}
_OBJECT_META = {1: ("name", "str"), 2: ("generateName", "str"), 3: ("namespace", "str"),
                6: ("resourceVersion", "str"), 11: ("labels", "map"), 12: ("annotations", "map"),
                13: ("ownerReferences", [_OWNER_REFERENCE]), 14: ("finalizers", "strs")}
_LOCAL_REFERENCE = {1: ("name", "str")}
PROTOBUF_SCHEMAS: dict[str, dict[int, tuple[str, Any]]] = {
    "Namespace": {1: ("metadata", _OBJECT_META), 2: ("spec", {1: ("finalizers", "strs")})},
    "ConfigMap": {1: ("metadata", _OBJECT_META), 2: ("data", "map"), 3: ("binaryData", "b64map"),
                  4: ("immutable", "bool")},
    "Secret": {1: ("metadata", _OBJECT_META), 2: ("data", "b64map"), 3: ("type", "str"),
               4: ("stringData", "map"), 5: ("immutable", "bool")},
    "ServiceAccount": {1: ("metadata", _OBJECT_META), 3: ("imagePullSecrets", [_LOCAL_REFERENCE]),
                       4: ("automountServiceAccountToken", "bool")},
}
PROTOBUF_MAGIC = b"k8s\x00"


def _protobuf_fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """Split a protobuf message into (field number, varint or bytes) pairs."""
    fields, pos = [], 0

    def varint() -> int:
        nonlocal pos
        result = shift = 0
        while True:
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result

    while pos < len(data):
        tag = varint()
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            fields.append((number, varint()))
        elif wire_type == 2:
            size = varint()
            fields.append((number, data[pos:pos + size]))
            pos += size
        elif wire_type in (1, 5):
            pos += 8 if wire_type == 1 else 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
    return fields


def _protobuf_message(data: bytes, schema: dict[int, tuple[str, Any]]) -> Obj:
    result: Obj = {}
    for number, value in _protobuf_fields(data):
        if number not in schema:
            continue
        name, how = schema[number]
        if how == "str":
            if value:
                result[name] = value.decode()
        elif how == "int":
            result[name] = value
        elif how == "bool":
            result[name] = bool(value)
        elif how == "strs":
            result.setdefault(name, []).append(value.decode())
        elif how in ("map", "b64map"):
            entry = dict(_protobuf_fields(value))
            raw = entry.get(2, b"")
            shown = base64.b64encode(raw).decode() if how == "b64map" else raw.decode()
            result.setdefault(name, {})[entry.get(1, b"").decode()] = shown
        elif isinstance(how, list):
            result.setdefault(name, []).append(_protobuf_message(value, how[0]))
        else:
            result[name] = _protobuf_message(value, how)
    return result


def decode_protobuf(body: bytes, rtype: ResourceType) -> Obj:
    """Decode the protobuf body of the few kinds kubectl's typed generators send."""
    schema = PROTOBUF_SCHEMAS.get(rtype.kind)
    if schema is None or not body.startswith(PROTOBUF_MAGIC):
        raise _error(415, "UnsupportedMediaType", f"this emulator reads protobuf only for "
                                                  f"{', '.join(PROTOBUF_SCHEMAS)}; send JSON "
                                                  "(e.g. kubectl create ... -o json --dry-run=client "
                                                  "| kubectl apply -f -)")
    try:
        envelope = dict(_protobuf_fields(body[len(PROTOBUF_MAGIC):]))
        obj = _protobuf_message(envelope[2], schema)
    except (ValueError, KeyError, IndexError, UnicodeDecodeError) as exc:
        raise _error(400, "BadRequest", f"cannot decode the protobuf body: {exc}")
    return {"apiVersion": rtype.api_version, "kind": rtype.kind, **obj}


# --- selectors -------------------------------------------------------------------------------

_SET_TERM = re.compile(r"^\s*(!?)([\w./-]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$")
_EQ_TERM = re.compile(r"^\s*([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)\s*$")


def parse_label_selector(text: str) -> Callable[[dict[str, str]], bool]:
    """Compile ``a=b,c!=d,e in (f,g),h,!i`` into a predicate over a labels dict."""
    terms: list[Callable[[dict[str, str]], bool]] = []
    for raw in re.split(r",(?![^()]*\))", text or ""):
        if not raw.strip():
            continue
        if match := _EQ_TERM.match(raw):
            key, op, value = match.groups()
            terms.append((lambda k, v: lambda labels: labels.get(k) != v)(key, value) if op == "!="
                         else (lambda k, v: lambda labels: labels.get(k) == v)(key, value))
        elif match := _SET_TERM.match(raw):
            negated, key, op, values = match.groups()
            options = {v.strip() for v in (values or "").split(",") if v.strip()}
            if op == "in":
                terms.append((lambda k, o: lambda labels: labels.get(k) in o)(key, options))
            elif op == "notin":
                terms.append((lambda k, o: lambda labels: labels.get(k) not in o)(key, options))
            else:
                terms.append((lambda k, n: lambda labels: (k in labels) != n)(key, bool(negated)))
        else:
            raise _error(400, "BadRequest", f"unable to parse requirement: {raw.strip()!r}")
    return lambda labels: all(term(labels) for term in terms)


def parse_field_selector(text: str) -> Callable[[Obj], bool]:
    """Compile ``metadata.name=x,status.phase!=y`` into a predicate over an object."""
    terms: list[tuple[list[str], bool, str]] = []
    for raw in (text or "").split(","):
        if not raw.strip():
            continue
        match = _EQ_TERM.match(raw)
        if not match:
            raise _error(400, "BadRequest", f"invalid field selector: {raw.strip()!r}")
        path, op, value = match.groups()
        terms.append((path.split("."), op == "!=", value))

    def lookup(obj: Any, path: list[str]) -> str:
        for part in path:
            obj = obj.get(part) if isinstance(obj, dict) else None
        return "" if obj is None else str(obj)

    return lambda obj: all((lookup(obj, path) == value) != negated for path, negated, value in terms)


# --- the emulator ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class WatchEvent:
    revision: int
    storage_key: resource
    type: str
    object: Obj
    previous: Obj | None


@dataclasses.dataclass
class _Watcher:
    storage_key: resource
    queue: asyncio.Queue[WatchEvent | None]


@attrs.define(kw_only=True)
class ApiServerEmulator(KubernetesEmulator):
    """kmock's KubernetesEmulator with the API server semantics kopf and kubectl need."""

    bookmark_interval: float = 5.0
    _types: dict[resource, ResourceType] = attrs.field(factory=dict, init=False)
    _revision: int = attrs.field(default=0, init=False)
    _events: list[WatchEvent] = attrs.field(factory=list, init=False)
    _compacted_revision: int = attrs.field(default=0, init=False)
    _watchers: list[_Watcher] = attrs.field(factory=list, init=False)
    _uids: dict[str, tuple[resource, str | None, str]] = attrs.field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        # kmock's scaffold gives discovery, /version and the 404 fallback; resource requests
        # never reach kmock's stateless KubernetesEmulator fallbacks (see _handle).
        super(KubernetesEmulator, self).__attrs_post_init__()
        for rtype in BUILTIN_TYPES:
            self._declare(rtype)
        for name in DEFAULT_NAMESPACES:
            self._create(NAMESPACE_TYPE, None, {"metadata": {"name": name}})

    # --- plumbing ------------------------------------------------------------------------

    def _declare(self, rtype: ResourceType) -> None:
        self._types[rtype.serving_key] = rtype
        self.resources[rtype.serving_key] = ResourceInfo(
            namespaced=rtype.namespaced, kind=rtype.kind, singular=rtype.singular, verbs=VERBS,
            shortnames=rtype.short_names, categories=rtype.categories,
            subresources={STATUS_SUBRESOURCE} if rtype.has_status else set())

    def _undeclare(self, group: str, plural: str) -> None:
        for key in [k for k, t in self._types.items() if t.group == group and t.plural == plural]:
            del self._types[key]
            del self.resources[key]

    def _get_resources(self) -> list[resource]:
        return list(self.resources)

    async def _serve_server_version(self, request: rendering.Request) -> rendering.Payload:
        return {"major": "1", "minor": "35", "gitVersion": "v1.35.0-kmock-emulator",
                "gitTreeState": "clean", "goVersion": "python", "compiler": "kmock",
                "platform": "linux/amd64", "buildDate": "2026-01-01T00:00:00Z", "gitCommit": ""}

    async def _serve_version(self, request: rendering.Request) -> rendering.Payload:
        assert request.resource is not None
        group, version = request.resource.group, request.resource.version
        served = [t for t in self._types.values() if t.group == group and t.version == version]
        if not served:
            raise _error(404, "NotFound", "the server could not find the requested resource")
        resources = []
        for rtype in served:
            entry = {"name": rtype.plural, "singularName": rtype.singular, "namespaced": rtype.namespaced,
                     "kind": rtype.kind, "verbs": list(VERBS)}
            if rtype.short_names:
                entry["shortNames"] = list(rtype.short_names)
            if rtype.categories:
                entry["categories"] = list(rtype.categories)
            resources.append(entry)
            if rtype.has_status:
                resources.append({"name": f"{rtype.plural}/{STATUS_SUBRESOURCE}", "singularName": "",
                                  "namespaced": rtype.namespaced, "kind": rtype.kind,
                                  "verbs": ["get", "patch", "update"]})
        return {"apiVersion": "v1", "kind": "APIResourceList",
                "groupVersion": f"{group}/{version}" if group else version, "resources": resources}

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """Like kmock's, but with Namespace URLs parsed right (kmock 0.8 takes them for scopes)."""
        await raw_request.read()
        try:
            request = await self._parse_request(raw_request)
            self._requests.append(request)
            return await self._handle(request)
        except Exception as exc:
            if self._errors:
                self._errors[-1].append(exc)
            return await self._render_error(exc)

    async def _parse_request(self, raw_request: aiohttp.web.BaseRequest) -> rendering.Request:
        match = NAMESPACE_PATH.match(raw_request.path)
        if match is None:
            return await rendering.Request._parse(raw_request, id=len(self._requests))
        body = await raw_request.read()
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        name, subresource = match.groups()
        path = parsing.ParsedPath("", "v1", "namespaces", None, name, subresource)
        method = enums.method(raw_request.method)
        return rendering.Request(
            id=len(self._requests), raw_request=raw_request, url=raw_request.url, method=method,
            params=dict(raw_request.query), headers=dict(raw_request.headers),
            cookies=dict(raw_request.cookies), data=data, body=body, text=body.decode("utf-8", "replace"),
            action=parsing.guess_k8s(path, method, dict(raw_request.query)),
            resource=resource("", "v1", "namespaces"), namespace=None, name=name, subresource=subresource)

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        if isinstance(exc, ApiError):
            return aiohttp.web.json_response(_status_body(exc), status=exc.status)
        if isinstance(exc, KubernetesError) and exc.status == 404:  # kmock's unknown-endpoint answer
            return await self._render_error(_error(404, "NotFound", "the server could not find the requested resource"))
        return await super()._render_error(exc)

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if request.resource is None or request.resource.plural is None:
            return await super(KubernetesEmulator, self)._handle(request)
        try:
            return await self._serve_resource(request)
        except ApiError as exc:
            return await self._render_error(exc)

    def _type_of(self, request: rendering.Request) -> ResourceType:
        assert request.resource is not None
        rtype = self._types.get(request.resource)
        if rtype is None or (request.namespace is not None and not rtype.namespaced):
            raise _error(404, "NotFound", "the server could not find the requested resource")
        return rtype

    # --- request dispatch ------------------------------------------------------------------

    async def _serve_resource(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        rtype = self._type_of(request)
        method, name, sub = request.method.value, request.name, request.subresource
        if sub not in (None, STATUS_SUBRESOURCE) or (sub and not rtype.has_status):
            raise _error(404, "NotFound", "the server could not find the requested resource")
        dry_run = "dryRun" in request.params
        if method == "GET" and request.params.get("watch") in ("true", "1"):
            return await self._serve_watch(request, rtype)
        if method == "GET" and name is None:
            items = self._select(rtype, request.namespace, request.params)
            return self._respond(request, rtype, self._as_list(rtype, items))
        if method == "GET":
            return self._respond(request, rtype, self._require(rtype, request.namespace, name))
        if method == "POST" and name is None and sub is None:
            body = await self._admit(rtype, request.namespace, _parse_body(request, rtype), dry_run=dry_run)
            created = self._create(rtype, request.namespace, body, dry_run=dry_run)
            return self._respond(request, rtype, created, status=201)
        if method == "PUT" and name is not None:
            body = _parse_body(request, rtype)
            return self._respond(request, rtype, self._replace(rtype, request.namespace, name, body,
                                                               sub, dry_run=dry_run))
        if method == "PATCH" and name is not None:
            return self._respond(request, rtype, self._patch(request, rtype, name, dry_run=dry_run))
        if method == "DELETE" and name is not None and sub is None:
            options = request.data if isinstance(request.data, dict) else {}
            return self._respond(request, rtype, self._delete(rtype, request.namespace, name, {
                **options, **request.params}, dry_run=dry_run))
        if method == "DELETE" and name is None:
            items = self._select(rtype, request.namespace, request.params)
            for item in items:
                meta = item["metadata"]
                self._delete(rtype, meta.get("namespace"), meta["name"], dict(request.params),
                             dry_run=dry_run)
            return self._respond(request, rtype, self._as_list(rtype, items))
        raise _error(405, "MethodNotAllowed", f"the server does not allow this method on {rtype.description}")

    def _respond(self, request: rendering.Request, rtype: ResourceType, payload: Obj,
                 status: int = 200) -> aiohttp.web.StreamResponse:
        if "as=Table" in request.headers.get("Accept", ""):
            payload = _as_table(payload)
        return aiohttp.web.json_response(_for_version(payload, rtype), status=status)

    # --- reading ---------------------------------------------------------------------------

    def _live(self, storage_key: resource, namespace: str | None, name: str) -> Obj | None:
        key = (storage_key, namespace, name)
        if key not in self._objects or self._objects[key].deleted:
            return None
        return copy.deepcopy(self._objects[key].raw)

    def _require(self, rtype: ResourceType, namespace: str | None, name: str) -> Obj:
        obj = self._live(rtype.storage_key, namespace if rtype.namespaced else None, name)
        if obj is None:
            raise _not_found(rtype, name)
        return obj

    def _all_live(self) -> Iterable[tuple[resource, Obj]]:
        for (storage_key, _, _), stored in list(self._objects.items()):
            if not stored.deleted:
                yield storage_key, stored.raw

    def _select(self, rtype: ResourceType, namespace: str | None, params: dict[str, str]) -> list[Obj]:
        matches = _selector(params, namespace)
        items = [copy.deepcopy(obj) for key, obj in self._all_live()
                 if key == rtype.storage_key and matches(obj)]
        return sorted(items, key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"]))

    def _as_list(self, rtype: ResourceType, items: list[Obj]) -> Obj:
        return {"apiVersion": rtype.api_version, "kind": f"{rtype.kind}List",
                "metadata": {"resourceVersion": str(self._revision)}, "items": items}

    # --- writing -----------------------------------------------------------------------------

    def _commit(self, rtype: ResourceType, event_type: str, obj: Obj, previous: Obj | None) -> Obj:
        """Store a new state (or the removal) of an object at the next revision and publish it."""
        self._revision += 1
        obj["metadata"]["resourceVersion"] = str(self._revision)
        meta = obj["metadata"]
        key = (rtype.storage_key, meta.get("namespace"), meta["name"])
        if event_type == "DELETED":
            self._objects[key].delete()
            self._uids.pop(meta["uid"], None)
        elif key in self._objects:
            self._objects[key].create(obj)
        else:
            self._objects[key] = obj
        if event_type != "DELETED":
            self._uids[meta["uid"]] = key
        event = WatchEvent(self._revision, rtype.storage_key, event_type, obj, previous)
        self._events.append(event)
        if len(self._events) > EVENT_LOG_LIMIT:
            dropped = self._events[: len(self._events) - EVENT_LOG_LIMIT]
            del self._events[: len(dropped)]
            self._compacted_revision = dropped[-1].revision
        for watcher in self._watchers:
            if watcher.storage_key == rtype.storage_key:
                watcher.queue.put_nowait(event)
        return copy.deepcopy(obj)

    def _create(self, rtype: ResourceType, namespace: str | None, body: Obj, *, dry_run: bool = False) -> Obj:
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise _error(400, "BadRequest", "metadata must be an object")
        if rtype.namespaced:
            if namespace and meta.get("namespace") not in (None, "", namespace):
                raise _error(400, "BadRequest", "the namespace of the provided object does not match "
                                                "the namespace sent on the request")
            namespace = namespace or meta.get("namespace") or "default"
            meta["namespace"] = namespace
            namespace_obj = self._live(NAMESPACE_TYPE.storage_key, None, namespace)
            if namespace_obj is None:
                raise _not_found(NAMESPACE_TYPE, namespace)
            if namespace_obj["metadata"].get("deletionTimestamp"):
                raise _error(403, "Forbidden", f'unable to create new content in namespace {namespace} '
                                               "because it is being terminated")
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(secrets.choice("bcdfghjklmnpqrstvwxz2456789")
                                                          for _ in range(5))
        if not meta.get("name"):
            raise _invalid(rtype, None, "metadata.name: Required value: name or generateName is required")
        if obj.get("kind") not in (None, rtype.kind):
            raise _error(400, "BadRequest", f"the kind {obj['kind']!r} does not match {rtype.kind!r}")
        if self._live(rtype.storage_key, meta.get("namespace"), meta["name"]) is not None:
            raise _error(409, "AlreadyExists", f'{rtype.description} "{meta["name"]}" already exists',
                         name=meta["name"], group=rtype.group, kind=rtype.plural)
        obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
        _fold_string_data(rtype, obj)
        for system_field in ("deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"):
            meta.pop(system_field, None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
        if rtype.has_status:
            obj.pop("status", None)
        if rtype is NAMESPACE_TYPE:
            obj["status"] = {"phase": "Active"}
            meta.setdefault("labels", {})[NAMESPACE_NAME_LABEL] = meta["name"]
        elif rtype is CRD_TYPE:
            obj["status"] = _crd_status(obj)
        if dry_run:
            return obj
        created = self._commit(rtype, "ADDED", obj, None)
        if rtype is CRD_TYPE:
            self._sync_crd(created)
        return created

    def _update(self, rtype: ResourceType, old: Obj, new: Obj, subresource: str | None,
                *, dry_run: bool = False) -> Obj:
        """Write ``new`` over ``old``, keeping what clients may not change; no-ops keep the revision."""
        if subresource == STATUS_SUBRESOURCE:
            candidate = copy.deepcopy(old)
            if "status" in new:
                candidate["status"] = new["status"]
            else:
                candidate.pop("status", None)
        else:
            candidate = copy.deepcopy(new)
            if rtype.has_status:
                if "status" in old:
                    candidate["status"] = copy.deepcopy(old["status"])
                else:
                    candidate.pop("status", None)
        _fold_string_data(rtype, candidate)
        _check_immutable_data(rtype, old, candidate)
        meta, old_meta = candidate.setdefault("metadata", {}), old["metadata"]
        for system_field in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp",
                             "deletionGracePeriodSeconds", "generation", "resourceVersion"):
            if system_field in old_meta:
                meta[system_field] = old_meta[system_field]
            else:
                meta.pop(system_field, None)
        meta.pop("managedFields", None)
        candidate["apiVersion"], candidate["kind"] = old["apiVersion"], old["kind"]
        if rtype is CRD_TYPE:
            candidate["status"] = _crd_status(candidate)
        elif rtype is NAMESPACE_TYPE:
            meta.setdefault("labels", {})[NAMESPACE_NAME_LABEL] = meta["name"]
        if _spec_of(candidate) != _spec_of(old):
            meta["generation"] = old_meta.get("generation", 1) + 1
        if candidate == old:
            return old
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and rtype is not NAMESPACE_TYPE:
            return candidate if dry_run else self._remove(rtype, candidate, old)
        if dry_run:
            return candidate
        updated = self._commit(rtype, "MODIFIED", candidate, old)
        if rtype is CRD_TYPE:
            self._sync_crd(updated)
        return updated

    def _replace(self, rtype: ResourceType, namespace: str | None, name: str, body: Obj,
                 subresource: str | None, *, dry_run: bool) -> Obj:
        old = self._require(rtype, namespace, name)
        meta = body.get("metadata") or {}
        if meta.get("name") not in (None, name):
            raise _error(400, "BadRequest", "the name of the object does not match the name on the URL")
        expected = meta.get("resourceVersion")
        if expected and expected != old["metadata"]["resourceVersion"]:
            raise _error(409, "Conflict", f'Operation cannot be fulfilled on {rtype.description} "{name}": '
                                          "the object has been modified; please apply your changes "
                                          "to the latest version and try again",
                         name=name, group=rtype.group, kind=rtype.plural)
        return self._update(rtype, old, body, subresource, dry_run=dry_run)

    def _patch(self, request: rendering.Request, rtype: ResourceType, name: str, *, dry_run: bool) -> Obj:
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        namespace = request.namespace if rtype.namespaced else None
        if content_type == "application/apply-patch+yaml":
            try:
                body = request.data if isinstance(request.data, dict) else yaml.safe_load(request.text)
            except yaml.YAMLError as exc:
                raise _error(400, "BadRequest", f"the apply configuration is not valid YAML: {exc}")
            if not isinstance(body, dict):
                raise _error(400, "BadRequest", "the apply configuration must be an object")
            old = self._live(rtype.storage_key, namespace, name)
            if old is None:
                body.setdefault("metadata", {})["name"] = name
                return self._create(rtype, namespace, body, dry_run=dry_run)
            return self._update(rtype, old, strategic_merge(old, body), request.subresource, dry_run=dry_run)
        old = self._require(rtype, namespace, name)
        patch = request.data
        if content_type == "application/json-patch+json":
            if not isinstance(patch, list):
                raise _error(400, "BadRequest", "a JSON patch must be a list of operations")
            try:
                new = dicts.json_patch_dict(old, patch)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                raise _invalid(rtype, name, f"the JSON patch failed: {exc}")
        elif content_type == "application/merge-patch+json":
            new = dicts.merge_patch_dict(old, _require_object_patch(patch))
        elif content_type == "application/strategic-merge-patch+json":
            new = strategic_merge(old, _require_object_patch(patch))
        else:
            raise _error(415, "UnsupportedMediaType", f"the body of the request was in an unknown format: "
                                                      f"{content_type or '(none)'}")
        return self._update(rtype, old, dict(new), request.subresource, dry_run=dry_run)

    # --- deleting ----------------------------------------------------------------------------

    def _delete(self, rtype: ResourceType, namespace: str | None, name: str, options: dict[str, Any],
                *, dry_run: bool = False) -> Obj:
        obj = self._require(rtype, namespace, name)
        meta = obj["metadata"]
        preconditions = options.get("preconditions") or {}
        for field in ("uid", "resourceVersion"):
            if preconditions.get(field) and preconditions[field] != meta.get(field):
                raise _error(409, "Conflict", f"Precondition failed: {field} in precondition: "
                                              f"{preconditions[field]}, {field} in object meta: {meta.get(field)}")
        if dry_run or meta.get("deletionTimestamp"):
            return obj
        if options.get("propagationPolicy") == "Orphan" or options.get("orphanDependents") in (True, "true"):
            self._orphan_dependents(meta["uid"])
        if not meta.get("finalizers") and rtype is not NAMESPACE_TYPE:
            return self._remove(rtype, obj, obj)
        marked = copy.deepcopy(obj)
        marked["metadata"].update(deletionTimestamp=_now(), deletionGracePeriodSeconds=0)
        if rtype is NAMESPACE_TYPE:
            marked["status"] = {"phase": "Terminating"}
        result = self._commit(rtype, "MODIFIED", marked, obj)
        if rtype is NAMESPACE_TYPE:
            for key, item in list(self._all_live()):
                item_name = item["metadata"]["name"]
                if item["metadata"].get("namespace") == name and self._live(key, name, item_name) is not None:
                    self._delete(self._type_for_storage(key), name, item_name, {})
            return self._finish_namespace(name) or result
        return result

    def _remove(self, rtype: ResourceType, obj: Obj, previous: Obj) -> Obj:
        """Remove an object for good, then collect what depended on it."""
        removed = self._commit(rtype, "DELETED", copy.deepcopy(obj), previous)
        meta = removed["metadata"]
        self._collect_dependents(meta["uid"])
        if rtype is CRD_TYPE:
            self._drop_crd(removed)
        if meta.get("namespace"):
            self._finish_namespace(meta["namespace"])
        return removed

    def _type_for_storage(self, storage_key: resource) -> ResourceType:
        return next(t for t in self._types.values() if t.storage_key == storage_key)

    def _finish_namespace(self, name: str) -> Obj | None:
        namespace = self._live(NAMESPACE_TYPE.storage_key, None, name)
        if namespace is None or not namespace["metadata"].get("deletionTimestamp"):
            return None
        if namespace["metadata"].get("finalizers"):
            return None
        if any(obj["metadata"].get("namespace") == name for _, obj in self._all_live()):
            return None
        return self._remove(NAMESPACE_TYPE, namespace, namespace)

    def _dependents(self, uid: str) -> list[tuple[resource, Obj]]:
        return [(key, copy.deepcopy(obj)) for key, obj in self._all_live()
                if any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])]

    def _collect_dependents(self, uid: str) -> None:
        for key, obj in self._dependents(uid):
            refs = obj["metadata"].get("ownerReferences") or []
            if any(ref.get("uid") in self._uids for ref in refs if ref.get("uid") != uid):
                continue
            meta = obj["metadata"]
            if self._live(key, meta.get("namespace"), meta["name"]) is not None:
                self._delete(self._type_for_storage(key), meta.get("namespace"), meta["name"], {})

    def _orphan_dependents(self, uid: str) -> None:
        for key, obj in self._dependents(uid):
            new = copy.deepcopy(obj)
            new["metadata"]["ownerReferences"] = [
                ref for ref in obj["metadata"]["ownerReferences"] if ref.get("uid") != uid]
            if not new["metadata"]["ownerReferences"]:
                del new["metadata"]["ownerReferences"]
            self._update(self._type_for_storage(key), obj, new, None)

    # --- custom resource definitions -------------------------------------------------------------

    def _sync_crd(self, crd: Obj) -> None:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        group, plural = spec.get("group", ""), names.get("plural", "")
        self._undeclare(group, plural)
        versions = [v for v in spec.get("versions") or [] if v.get("served", True)]
        storage = next((v["name"] for v in versions if v.get("storage")), versions[0]["name"] if versions else "")
        for version in versions:
            self._declare(ResourceType(
                group, version["name"], plural, names.get("kind", ""), spec.get("scope") != "Cluster",
                tuple(names.get("shortNames") or ()),
                STATUS_SUBRESOURCE in ((version.get("subresources") or {})), tuple(names.get("categories") or ()),
                storage))

    def _drop_crd(self, crd: Obj) -> None:
        spec = crd.get("spec") or {}
        group, plural = spec.get("group", ""), (spec.get("names") or {}).get("plural", "")
        for key, obj in list(self._all_live()):
            if key.group == group and key.plural == plural:
                self._remove(self._type_for_storage(key), copy.deepcopy(obj), copy.deepcopy(obj))
        self._undeclare(group, plural)

    # --- admission webhooks (on create) ------------------------------------------------------------

    async def _admit(self, rtype: ResourceType, namespace: str | None, obj: Obj, *, dry_run: bool) -> Obj:
        """Call the matching mutating, then validating, webhooks as the API server does on CREATE.

        Only ``clientConfig.url`` can be reached: a webhook behind a Service has no endpoints
        here (no pods run), so calling it fails and its ``failurePolicy`` decides.
        """
        if rtype.namespaced:
            namespace = namespace or (obj.get("metadata") or {}).get("namespace") or "default"
        namespace_obj = self._live(NAMESPACE_TYPE.storage_key, None, namespace) if namespace else obj
        namespace_labels = ((namespace_obj or {}).get("metadata") or {}).get("labels") or {}
        for kind, mutating in (("MutatingWebhookConfiguration", True), ("ValidatingWebhookConfiguration", False)):
            config_type = next(t for t in BUILTIN_TYPES if t.kind == kind)
            configs = sorted((c for key, c in self._all_live() if key == config_type.storage_key),
                             key=lambda c: c["metadata"]["name"])
            for webhook in (w for config in configs for w in config.get("webhooks") or []):
                if _webhook_applies(webhook, rtype, namespace_labels, obj):
                    obj = await _call_webhook(webhook, rtype, namespace, obj, mutating=mutating, dry_run=dry_run)
        return obj

    # --- watching ----------------------------------------------------------------------------

    async def _serve_watch(self, request: rendering.Request, rtype: ResourceType) -> aiohttp.web.StreamResponse:
        params = dict(request.params)
        if request.name:
            selector = ",".join(filter(None, [params.get("fieldSelector"), f"metadata.name={request.name}"]))
            params["fieldSelector"] = selector
        matches = _selector(params, request.namespace)
        bookmarks = params.get("allowWatchBookmarks") in ("true", "1")
        send_initial = params.get("sendInitialEvents") in ("true", "1")
        since = params.get("resourceVersion", "")
        timeout = float(params["timeoutSeconds"]) if params.get("timeoutSeconds") else None

        if send_initial or since in ("", "0"):
            initial = [{"type": "ADDED", "object": obj} for obj in self._select(rtype, request.namespace, params)]
        else:
            try:
                revision = int(since)
            except ValueError:
                raise _error(400, "BadRequest", f"invalid resourceVersion: {since!r}")
            if revision < self._compacted_revision:
                initial = [{"type": "ERROR", "object": _status_body(_error(
                    410, "Expired", f"too old resource version: {revision} ({self._compacted_revision})"))}]
            else:
                initial = [e for e in (_filtered(event, matches) for event in self._events
                                       if event.revision > revision and event.storage_key == rtype.storage_key)
                           if e is not None]
        watcher = _Watcher(rtype.storage_key, asyncio.Queue())
        self._watchers.append(watcher)  # no await since the snapshot above: no event is lost

        as_table = "as=Table" in request.headers.get("Accept", "")
        assert request._raw_request is not None
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        try:
            await response.prepare(request._raw_request)
            for event in initial:
                await _write_event(response, event, rtype, as_table)
            if initial and initial[-1]["type"] == "ERROR":
                return response
            if send_initial:
                await _write_event(response, self._bookmark(rtype, initial_end=True), rtype)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout if timeout is not None else None
            while deadline is None or loop.time() < deadline:
                wait = self.bookmark_interval if bookmarks else None
                if deadline is not None:
                    remaining = deadline - loop.time()
                    wait = remaining if wait is None else min(wait, remaining)
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), timeout=wait)
                except TimeoutError:
                    if bookmarks and (deadline is None or loop.time() < deadline):
                        await _write_event(response, self._bookmark(rtype), rtype)
                    continue
                if event is None:  # the server is shutting down
                    break
                shown = _filtered(event, matches)
                if shown is not None:
                    await _write_event(response, shown, rtype, as_table)
        except ConnectionResetError:
            pass
        finally:
            self._watchers.remove(watcher)
        return response

    def _bookmark(self, rtype: ResourceType, *, initial_end: bool = False) -> Obj:
        meta: Obj = {"resourceVersion": str(self._revision)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {"type": "BOOKMARK", "object": {"apiVersion": rtype.api_version, "kind": rtype.kind,
                                               "metadata": meta}}

    def stop_watches(self) -> None:
        """End every open watch stream (so that the server can shut down at once)."""
        for watcher in self._watchers:
            watcher.queue.put_nowait(None)


def label_selector_matches(selector: Obj | None, labels: dict[str, str]) -> bool:
    """A LabelSelector object (``matchLabels``, ``matchExpressions``); empty or absent matches all."""
    selector = selector or {}
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if not {"In": lambda: labels.get(key) in values, "NotIn": lambda: labels.get(key) not in values,
                "Exists": lambda: key in labels, "DoesNotExist": lambda: key not in labels}[operator]():
            return False
    return True


def _webhook_applies(webhook: Obj, rtype: ResourceType, namespace_labels: dict[str, str], obj: Obj) -> bool:
    def listed(values: list[str] | None, value: str) -> bool:
        return bool(values) and ("*" in values or value in values)

    scope = "Namespaced" if rtype.namespaced else "Cluster"
    rule_matches = any(
        listed(rule.get("operations"), "CREATE") and listed(rule.get("apiGroups"), rtype.group)
        and listed(rule.get("apiVersions"), rtype.version) and listed(rule.get("resources"), rtype.plural)
        and rule.get("scope", "*") in ("*", scope)
        for rule in webhook.get("rules") or [])
    return (rule_matches
            and label_selector_matches(webhook.get("namespaceSelector"), namespace_labels)
            and label_selector_matches(webhook.get("objectSelector"), (obj.get("metadata") or {}).get("labels") or {}))


async def _call_webhook(webhook: Obj, rtype: ResourceType, namespace: str | None, obj: Obj,
                        *, mutating: bool, dry_run: bool) -> Obj:
    """Send one AdmissionReview; answer the (maybe patched) object or raise the refusal."""
    meta = obj.get("metadata") or {}
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": str(uuid.uuid4()), "operation": "CREATE", "dryRun": dry_run,
        "kind": {"group": rtype.group, "version": rtype.version, "kind": rtype.kind},
        "resource": {"group": rtype.group, "version": rtype.version, "resource": rtype.plural},
        "requestKind": {"group": rtype.group, "version": rtype.version, "kind": rtype.kind},
        "requestResource": {"group": rtype.group, "version": rtype.version, "resource": rtype.plural},
        "name": meta.get("name", ""), "namespace": namespace, "object": obj, "oldObject": None,
        "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}}}
    name = webhook.get("name", "")
    client_config = webhook.get("clientConfig") or {}
    try:
        if not client_config.get("url"):
            service = client_config.get("service") or {}
            raise ConnectionError(f'no endpoints available for service "{service.get("namespace")}/'
                                  f'{service.get("name")}" (this emulator runs no pods)')
        ca_bundle = client_config.get("caBundle")
        context = ssl.create_default_context(cadata=base64.b64decode(ca_bundle).decode() if ca_bundle else None)
        timeout = aiohttp.ClientTimeout(total=webhook.get("timeoutSeconds") or 10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.post(client_config["url"], json=review, ssl=context) as response:
                response.raise_for_status()
                answer = (await response.json()).get("response") or {}
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        if webhook.get("failurePolicy", "Fail") == "Ignore":
            return obj
        raise _error(500, "InternalError", f'Internal error occurred: failed calling webhook "{name}": {exc}')
    if not answer.get("allowed"):
        status = answer.get("status") or {}
        raise _error(status.get("code") or 400, status.get("reason") or "BadRequest",
                     f'admission webhook "{name}" denied the request: {status.get("message", "")}')
    if mutating and answer.get("patch"):
        try:
            return dict(dicts.json_patch_dict(obj, json.loads(base64.b64decode(answer["patch"]))))
        except (ValueError, jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise _error(500, "InternalError", f'admission webhook "{name}" returned an unusable patch: {exc}')
    return obj


def _filtered(event: WatchEvent, matches: Callable[[Obj], bool]) -> Obj | None:
    """The event as a watcher with a selector sees it (objects leaving the selection are DELETED)."""
    now = matches(event.object)
    before = event.previous is not None and matches(event.previous)
    if event.type == "MODIFIED" and now != before:
        return {"type": "ADDED" if now else "DELETED", "object": event.object}
    if now or (event.type == "DELETED" and before):
        return {"type": event.type, "object": event.object}
    return None


async def _write_event(response: aiohttp.web.StreamResponse, event: Obj, rtype: ResourceType,
                       as_table: bool = False) -> None:
    shown_object = _for_version(event["object"], rtype)
    if as_table and event["type"] in ("ADDED", "MODIFIED", "DELETED"):
        shown_object = _as_table(shown_object)
    shown = {"type": event["type"], "object": shown_object}
    await response.write(json.dumps(shown, separators=(",", ":")).encode() + b"\n")


def _selector(params: dict[str, str], namespace: str | None) -> Callable[[Obj], bool]:
    labels = parse_label_selector(params.get("labelSelector", ""))
    fields = parse_field_selector(params.get("fieldSelector", ""))
    return lambda obj: (
        (namespace is None or obj["metadata"].get("namespace") == namespace)
        and labels(obj["metadata"].get("labels") or {}) and fields(obj))


def _for_version(payload: Obj, rtype: ResourceType) -> Obj:
    """Objects are stored once per kind; show them in the requested version (no conversion)."""
    if payload.get("kind") == rtype.kind and payload.get("apiVersion") != rtype.api_version:
        return {**payload, "apiVersion": rtype.api_version}
    if isinstance(payload.get("items"), list):
        return {**payload, "items": [_for_version(item, rtype) for item in payload["items"]]}
    return payload


def _fold_string_data(rtype: ResourceType, obj: Obj) -> None:
    """Move a Secret's ``stringData`` into ``data`` (base64; it wins over the same key in ``data``)."""
    if rtype is not SECRET_TYPE or "stringData" not in obj:
        return
    string_data = obj.pop("stringData") or {}
    if not isinstance(string_data, dict) or not all(isinstance(v, str) for v in string_data.values()):
        raise _error(400, "BadRequest", "stringData must map keys to strings")
    data = obj.get("data") or {}
    if not isinstance(data, dict):
        raise _error(400, "BadRequest", "data must map keys to base64 strings")
    obj["data"] = {**data, **{key: base64.b64encode(value.encode()).decode() for key, value in string_data.items()}}


def _check_immutable_data(rtype: ResourceType, old: Obj, new: Obj) -> None:
    """An ``immutable: true`` Secret or ConfigMap keeps its data and stays immutable (422 otherwise)."""
    if rtype.kind not in ("Secret", "ConfigMap") or old.get("immutable") is not True:
        return
    for field in ("data", "binaryData", "immutable"):
        if old.get(field) != new.get(field):
            raise _invalid(rtype, old["metadata"]["name"],
                           f"{field}: Forbidden: field is immutable when `immutable` is set")


def _spec_of(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _status_body(exc: KubernetesError) -> Obj:
    return {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
            "code": exc.status, "reason": exc.reason, "message": exc.message, "details": exc.details or {}}


def _parse_body(request: rendering.Request, rtype: ResourceType) -> Obj:
    content_type = request.headers.get("Content-Type", "")
    if "protobuf" in content_type:
        return decode_protobuf(request.body, rtype)
    if "cbor" in content_type:
        raise _error(415, "UnsupportedMediaType", f"the body of the request was in an unknown format: "
                                                  f"{content_type}; send JSON")
    body = request.data
    if not isinstance(body, dict):
        try:
            body = yaml.safe_load(request.text)
        except yaml.YAMLError:
            body = None
    if not isinstance(body, dict):
        raise _error(400, "BadRequest", f"the body of a {rtype.kind} request must be a JSON object")
    return body


def _require_object_patch(patch: Any) -> Obj:
    if not isinstance(patch, dict):
        raise _error(400, "BadRequest", "a merge patch must be a JSON object")
    return patch


def _crd_status(crd: Obj) -> Obj:
    spec = crd.get("spec") or {}
    versions = spec.get("versions") or []
    storage = [v["name"] for v in versions if v.get("storage")]
    conditions = [{"type": kind, "status": "True", "reason": reason, "message": message,
                   "lastTransitionTime": crd["metadata"].get("creationTimestamp") or _now()}
                  for kind, reason, message in (
                      ("NamesAccepted", "NoConflicts", "no conflicts found"),
                      ("Established", "InitialNamesAccepted", "the initial names have been accepted"))]
    return {"acceptedNames": spec.get("names") or {}, "conditions": conditions, "storedVersions": storage}


def _age(timestamp: str | None) -> str:
    if not timestamp:
        return "<unknown>"
    created = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    seconds = int((datetime.datetime.now(datetime.UTC) - created).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * 2:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _as_table(payload: Obj) -> Obj:
    """The server-side printing ``kubectl get`` asks for: a Name/Age table."""
    items = payload["items"] if isinstance(payload.get("items"), list) else [payload]
    return {
        "apiVersion": "meta.k8s.io/v1", "kind": "Table",
        "metadata": {"resourceVersion": (payload.get("metadata") or {}).get("resourceVersion", "")},
        "columnDefinitions": [
            {"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0},
            {"name": "Age", "type": "string", "format": "", "description": "Age", "priority": 0},
        ],
        "rows": [{"cells": [item["metadata"]["name"], _age(item["metadata"].get("creationTimestamp"))],
                  "object": item} for item in items],
    }


async def serve(host: str, port: int, *, bookmark_interval: float) -> None:
    """Serve until SIGINT/SIGTERM; print the address once connections are accepted."""
    emulator = ApiServerEmulator(bookmark_interval=bookmark_interval)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    async with emulator, Server(emulator, host=host, port=port) as server:
        print(f"listening on http://{server.host}:{server.port}", flush=True)
        await stopping.wait()
        emulator.stop_watches()
        await asyncio.sleep(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.k8s_emulator", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on start)")
    parser.add_argument("--bookmark-interval", type=float, default=5.0,
                        help="seconds between BOOKMARK events on watches that allow them")
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.host, args.port, bookmark_interval=args.bookmark_interval))
    except OSError as exc:
        sys.exit(f"k8s_emulator: cannot listen on {args.host}:{args.port}: {exc}")


if __name__ == "__main__":
    main()
