"""kopf handlers: thin triggers of ``Reconciler`` (see reconcile.py for what a reconcile does).

- create / update / resume of an AgentCache: reconcile now (kopf retries API faults);
- a resync loop that visits every cache seen once per ``AGENTCACHE_RESYNC_SECONDS`` (default
  600), spread over that period with jitter rather than all at once: restores drift the watches
  missed (e.g. a deleted Secret). It is not a ``kopf.timer`` because kopf puts a finalizer on every
  object with a timer, and deleting a cache would then hang while the operator is down;
- any event on a child the operator manages (edited or deleted by hand, a StatefulSet
  becoming ready): reconcile its owner;
- any event on a pod labelled ``agentcache.io/cache``: recount its cache's pods (nothing else).
Children and pods are watched with server-side label selectors and paged lists, so the
operator's memory and watch traffic follow the caches, not the size of the cluster.
No finalizer: everything the operator creates lives in Kubernetes and is owned by the
AgentCache, so deletion cascades through ownerReferences.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from typing import Any

import kopf

from . import names
from .kube import ApiError, Client
from .reconcile import Reconciler

RESYNC_SECONDS = float(os.environ.get("AGENTCACHE_RESYNC_SECONDS", "600"))
LIST_PAGE_SIZE = 500
SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
WATCHED_CHILDREN = (  # (group/version, plural, kind); Secrets are left to the resync: watching all is too broad
    ("v1", "configmaps", "ConfigMap"),
    ("v1", "services", "Service"),
    ("apps/v1", "statefulsets", "StatefulSet"),
    ("policy/v1", "poddisruptionbudgets", "PodDisruptionBudget"),
    ("networking.k8s.io/v1", "networkpolicies", "NetworkPolicy"),
    ("batch/v1", "jobs", "Job"),
)


class _State:
    def __init__(self) -> None:
        self.reconciler: Reconciler | None = None
        self.known: set[tuple[str, str]] = set()  # (namespace, name) of every AgentCache seen
        self.resync: asyncio.Task[None] | None = None


state = _State()


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=names.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=names.GROUP,
        key="last-handled-configuration",
    )
    settings.posting.level = logging.WARNING  # the operator posts its own phase-transition events
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.chunk_size = LIST_PAGE_SIZE
    for api_version, plural, _kind in WATCHED_CHILDREN:
        settings.watching.label_selectors[api_version, plural] = f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY}"
    settings.watching.label_selectors["v1", "pods"] = names.LABEL_CACHE


@kopf.on.login()
async def login(**kwargs: Any) -> kopf.ConnectionInfo:
    """Credentials from ``$KUBECONFIG`` as it is now, else the pod's service account."""
    if os.environ.get("KUBECONFIG") or not os.path.exists(SERVICE_ACCOUNT_TOKEN):
        info = kopf.login_with_kubeconfig(**kwargs)
    else:
        info = kopf.login_with_service_account(**kwargs)
    if info is None:
        raise kopf.LoginError("no credentials: set KUBECONFIG, or run in a pod with a service account")
    client = Client(info)
    if state.reconciler is None:
        state.reconciler = Reconciler(client, kopf.adopt)
    else:
        old, state.reconciler.client = state.reconciler.client, client
        await old.close()
    return info


@kopf.on.cleanup()
async def close(**_: Any) -> None:
    if state.resync is not None:
        state.resync.cancel()
    if state.reconciler is not None:
        await state.reconciler.client.close()


def _namespaced(namespace: str | None) -> str:
    """AgentCaches, their children and pods are namespaced: kopf always passes their namespace."""
    assert namespace is not None
    return namespace


def _reconciler() -> Reconciler:
    if state.reconciler is None:
        raise kopf.TemporaryError("not logged in yet", delay=1)
    return state.reconciler


@kopf.on.resume(names.GROUP, names.VERSION, names.PLURAL)
@kopf.on.create(names.GROUP, names.VERSION, names.PLURAL)
@kopf.on.update(names.GROUP, names.VERSION, names.PLURAL)
async def reconcile(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> None:
    _reconciler().observe_cache(dict(body))
    try:
        await _reconciler().reconcile_now(_namespaced(namespace), name)
    except ApiError as error:
        if error.status == 404:  # deleted while being reconciled (or its namespace is going): nothing to do
            return
        raise kopf.TemporaryError(f"API server: {error}", delay=5) from error


@kopf.on.event(names.GROUP, names.VERSION, names.PLURAL)
async def cache_event(type: str | None, body: kopf.Body, namespace: str | None, name: str, **_: Any) -> None:
    """Keeps the set of caches the resync loop visits, and their latest bodies."""
    namespace = _namespaced(namespace)
    if type == "DELETED":
        state.known.discard((namespace, name))
        if state.reconciler is not None:
            state.reconciler.forget(namespace, name)
    else:
        state.known.add((namespace, name))
        if state.reconciler is not None:
            state.reconciler.observe_cache(dict(body))


async def _resync_forever() -> None:
    """Visit every known cache once per period, one at a time in random order, evenly spaced."""
    while True:
        keys = list(state.known)
        random.shuffle(keys)
        if not keys:  # none seen yet (the operator is starting): look again soon, not a whole period later
            await asyncio.sleep(min(RESYNC_SECONDS, 5.0))
        for key in keys:
            await asyncio.sleep(RESYNC_SECONDS / len(keys) * random.uniform(0.5, 1.5))
            if state.reconciler is not None and key in state.known:
                state.reconciler.schedule(*key)


@kopf.on.startup()
async def start_resync(**_: Any) -> None:
    state.resync = asyncio.create_task(_resync_forever())


def _child_handler(kind: str):
    async def child_event(type: str | None, body: kopf.Body, namespace: str, name: str, **_: Any) -> None:
        """A child changed: reconcile its owner, unless this is the version the operator just wrote."""
        reconciler = _reconciler()
        reconciler.observe_child(kind, dict(body), deleted=type == "DELETED")
        version = body.get("metadata", {}).get("resourceVersion")
        for ref in body.get("metadata", {}).get("ownerReferences") or []:
            if ref.get("kind") != names.KIND or not ref.get("apiVersion", "").startswith(f"{names.GROUP}/"):
                continue
            if type != "DELETED" and reconciler.is_own_write((namespace, ref["name"]), kind, name, version):
                continue
            reconciler.schedule(namespace, ref["name"])

    return child_event


for _api_version, _plural, _kind in WATCHED_CHILDREN:
    kopf.on.event(
        _api_version,
        _plural,
        id=f"child-{_plural}",
        labels={names.LABEL_MANAGED_BY: names.MANAGED_BY},
    )(_child_handler(_kind))


@kopf.on.event("v1", "pods", labels={names.LABEL_CACHE: kopf.PRESENT})
async def pod_event(type: str | None, body: kopf.Body, namespace: str | None, **_: Any) -> None:
    reconciler = _reconciler()
    reconciler.observe_pod(dict(body), deleted=type == "DELETED")
    cache = body.get("metadata", {}).get("labels", {}).get(names.LABEL_CACHE)
    if cache:
        reconciler.recount(_namespaced(namespace), cache)
