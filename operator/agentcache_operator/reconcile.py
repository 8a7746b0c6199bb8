"""One reconcile of one AgentCache: fetch, render, apply, observe, report.

Every trigger (create/update/resume, the drift timer, an event on a child or on a
labelled pod) ends here, serialised per cache, so they all converge on the same
state. What the watches deliver (caches, children, labelled pods) is kept in memory,
so a reconcile reads the API server only for what is not watched (the managed
password Secret) and writes only what differs (see drift.py): at rest, nothing.
Applying is server-side apply with the operator as field manager.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import logging
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any

from . import names
from .drift import stamp, up_to_date
from .kube import ApiError, Client, path
from .metrics import RECONCILE_DURATION, RECONCILES, PhaseBook
from .render import Cache, SpecError, render_children
from .render.common import quantity_bytes
from .render.tenancy import prefix_conflict
from .render.valkey import PASSWORD_KEY
from .status import Assessment, Observed, assess, changed, count_pods, failed, sidecar_config_hash, status

logger = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)

# Children kinds, in the order they are applied: what pods mount comes first.
CHILD_KINDS = ("Secret", "ConfigMap", "Service", "StatefulSet", "PodDisruptionBudget", "NetworkPolicy", "Job")
CREATE_ONLY_KINDS = ("Job",)  # a Job's pod template is immutable; the bootstrap runs once
PASSWORD_BYTES = 32
RETRY_FIRST_SECONDS, RETRY_MAX_SECONDS = 2.0, 60.0  # a failed event-driven reconcile is retried, backing off
EVENT_TYPES = {"Ready": "Normal", "Pending": "Normal", "Degraded": "Warning", "Failed": "Warning"}


class SecretNotUsable(SpecError):
    """A Secret the cache needs is missing or wrong: fixable without changing the spec."""


class PrefixConflict(SpecError):
    """The cache's key prefix nests an older cache's on the same external Valkey and db."""


class Reconciler:
    """Reconciles caches; at most one reconcile per cache at a time, extra triggers coalesce."""

    def __init__(self, client: Client, adopt: Callable[[list[dict[str, Any]], Any], object]):
        """``adopt(children, owner)`` makes the AgentCache their owner (the handlers pass ``kopf.adopt``)."""
        self.client = client
        self.adopt = adopt
        self.phases = PhaseBook()
        self._locks: dict[Key, asyncio.Lock] = {}
        self._pending: set[Key] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._written: dict[Key, dict[tuple[str, str], str]] = {}  # cache -> (kind, child) -> resourceVersion
        self._caches: dict[Key, dict[str, Any]] = {}  # the latest AgentCache bodies the watch delivered
        self._children: dict[tuple[str, str, str], dict[str, Any]] = {}  # (namespace, kind, name) -> last seen
        self._pods: dict[Key, dict[str, dict[str, Any]]] = {}  # (namespace, cache) -> pod name -> its metadata
        self._grown: dict[Key, int] = {}  # generation whose volume size was last checked

    def observe_cache(self, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        self._caches[meta["namespace"], meta["name"]] = body

    def observe_child(self, kind: str, body: dict[str, Any], deleted: bool) -> None:
        """Remember a child as the watch delivered it (or forget it), for the next reconcile to compare."""
        meta = body.get("metadata", {})
        key = (meta.get("namespace", ""), kind, meta.get("name", ""))
        if deleted:
            self._children.pop(key, None)
        else:
            self._children[key] = _slim(body)

    def observe_pod(self, body: dict[str, Any], deleted: bool) -> None:
        """Keep the metadata of pods labelled with a cache, to count them without listing."""
        meta = body.get("metadata", {})
        for pods in self._pods.values():
            pods.pop(f"{meta.get('namespace')}/{meta.get('name')}", None)
        cache = (meta.get("labels") or {}).get(names.LABEL_CACHE)
        if cache and not deleted:
            self._pods.setdefault((meta["namespace"], cache), {})[f"{meta['namespace']}/{meta['name']}"] = {
                "metadata": {"labels": meta.get("labels") or {}, "annotations": meta.get("annotations") or {}}
            }

    def is_own_write(self, cache: Key, kind: str, child: str, resource_version: str | None) -> bool:
        """Whether this child version is the one the operator itself just wrote (no need to look again)."""
        return resource_version is not None and self._written.get(cache, {}).get((kind, child)) == resource_version

    def _lock(self, key: Key) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    async def reconcile_now(self, namespace: str, name: str) -> str | None:
        """Reconcile and return the phase (None: the cache is gone). API faults propagate."""
        async with self._lock((namespace, name)):
            return await self._timed(namespace, name)

    def schedule(self, namespace: str, name: str, delay: float = 0.0) -> None:
        """Reconcile soon (after ``delay``); triggers that arrive before the run starts are folded into it."""
        key = (namespace, name)
        if key in self._pending:
            return
        self._pending.add(key)
        task = asyncio.create_task(self._scheduled(key, delay))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def recount(self, namespace: str, name: str) -> None:
        """Soon, update only the cache's pod counts (a pod event changes nothing else)."""
        key = (namespace, name)
        if key in self._pending:  # a full reconcile is coming: it counts too
            return
        task = asyncio.create_task(self._recount(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _recount(self, key: Key) -> None:
        async with self._lock(key):
            body = self._caches.get(key)
            if body is None:
                return
            previous = body.get("status") or {}
            if not previous.get("phase"):  # not reconciled yet: the first reconcile counts
                return
            pods = list(self._pods.get(key, {}).values())
            injected, uninjected, outdated = count_pods(pods, key[1], previous.get("configHash"))
            counts = {"injectedPods": injected, "uninjectedPods": uninjected, "outdatedPods": outdated}
            if any(previous.get(field) != value for field, value in counts.items()):
                try:
                    await self.client.patch_status(*key, counts)
                except ApiError as error:
                    logger.warning("recount of %s/%s failed: %s", *key, error)

    def forget(self, namespace: str, name: str) -> None:
        self.phases.forget((namespace, name))
        self._locks.pop((namespace, name), None)
        self._written.pop((namespace, name), None)
        self._caches.pop((namespace, name), None)
        self._grown.pop((namespace, name), None)

    async def _scheduled(self, key: Key, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        async with self._lock(key):
            self._pending.discard(key)
            try:
                await self._timed(*key)
            except Exception as error:  # one cache must not stop the others: retry it, backing off
                retry = min(max(delay * 2, RETRY_FIRST_SECONDS), RETRY_MAX_SECONDS)
                logger.warning("reconcile of %s/%s failed (retrying in %.0f s): %s", *key, retry, error)
                self.schedule(*key, delay=retry)

    async def _timed(self, namespace: str, name: str) -> str | None:
        started = time.perf_counter()
        try:
            phase = await self._reconcile(namespace, name)
        except Exception:
            RECONCILES.labels("error").inc()
            raise
        finally:
            RECONCILE_DURATION.observe(time.perf_counter() - started)
        if phase is not None:
            RECONCILES.labels("failed" if phase == "Failed" else "ok").inc()
            self.phases.set((namespace, name), phase)
        return phase

    async def _reconcile(self, namespace: str, name: str) -> str | None:
        body = self._caches.get((namespace, name)) or await self.client.get(names.KIND, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        cache = Cache.from_body(body)
        previous = body.get("status") or {}
        observed = Observed()
        try:
            children = await self._desired(cache, body)
            self.adopt(children, body)
            applied = await self._apply(cache, children)
            if previous.get("observedGeneration") not in (None, cache.generation):
                await self._prune(cache, children)
            observed.statefulsets = [o for o in applied if o["kind"] == "StatefulSet"]
            observed.bootstrap_job = next((o for o in applied if o["kind"] == "Job"), None)
            observed.config_hash = sidecar_config_hash(cache, applied)
            assessment = assess(cache, observed, previous.get("phase"))
        except SecretNotUsable as error:
            assessment = failed(names.REASON_SECRET_NOT_USABLE, str(error))
        except PrefixConflict as error:
            assessment = failed(names.REASON_PREFIX_CONFLICT, str(error))
        except SpecError as error:
            assessment = failed(names.REASON_INVALID_SPEC, str(error))
        except ApiError as error:
            if error.status not in (400, 403, 422):
                raise
            assessment = failed("ChildRejected", f"the API server rejected a child object: {error.message}")
        current_hash = observed.config_hash or previous.get("configHash")
        observed.injected_pods, observed.uninjected_pods, observed.outdated_pods = await self._count_pods(
            cache, current_hash
        )
        new_status = status(cache, assessment, observed, previous)
        if changed(previous, new_status):
            await self.client.patch_status(namespace, name, new_status)
        if assessment.phase != previous.get("phase"):
            await self._event(body, assessment)
        return assessment.phase

    def _older_caches(self, body: dict[str, Any]) -> list[Cache]:
        """The caches created before ``body``'s (ties broken by namespace and name): they keep their prefix."""

        def age(meta: dict[str, Any]) -> tuple:
            return meta.get("creationTimestamp") or "", meta.get("namespace") or "", meta["name"]

        mine = age(body["metadata"])
        return [
            Cache.from_body(other)
            for other in self._caches.values()
            if _external_valkey(other)
            and not other["metadata"].get("deletionTimestamp")
            and age(other["metadata"]) < mine
        ]

    async def _desired(self, cache: Cache, body: dict[str, Any]) -> list[dict[str, Any]]:
        if _external_valkey(body):  # only caches sharing an external Valkey can collide
            conflict = prefix_conflict(cache, self._older_caches(body))
            if conflict:
                raise PrefixConflict(conflict)
        password = None
        if cache.managed_valkey:
            password = await self._managed_password(cache)
        elif cache.spec["backend"] == "valkey":
            await self._check_external_secret(cache)
        return render_children(cache, password)

    async def _managed_password(self, cache: Cache) -> str:
        """The existing Secret's password, or a new one (the Secret is created once, never rotated)."""
        secret_name = names.valkey_password_secret(cache.name)
        secret = await self.client.get("Secret", cache.namespace, secret_name)  # not watched: read each time
        self.observe_child(
            "Secret",
            secret or {"metadata": {"namespace": cache.namespace, "name": secret_name}},
            deleted=secret is None,
        )
        if secret is None:
            return secrets.token_urlsafe(PASSWORD_BYTES)
        try:
            return base64.b64decode((secret.get("data") or {})[PASSWORD_KEY], validate=True).decode()
        except (KeyError, binascii.Error, UnicodeDecodeError):
            raise SecretNotUsable(
                f"Secret {cache.namespace}/{secret_name} exists but holds no valid key {PASSWORD_KEY!r}: "
                "delete it and the operator generates a new password"
            ) from None

    async def _check_external_secret(self, cache: Cache) -> None:
        ref = cache.valkey["passwordSecretRef"]
        if not ref.get("name"):
            return
        secret = await self.client.get("Secret", cache.namespace, ref["name"])
        create = (
            f"kubectl create secret generic {ref['name']} -n {cache.namespace} --from-literal={ref['key']}=<password>"
        )
        if secret is None:
            raise SecretNotUsable(
                f"spec.valkey.passwordSecretRef names Secret {cache.namespace}/{ref['name']}, which does not exist: "
                f"create it ({create}) or correct the name"
            )
        if ref["key"] not in (secret.get("data") or {}):
            raise SecretNotUsable(
                f"Secret {cache.namespace}/{ref['name']} has no key {ref['key']!r} "
                f"(spec.valkey.passwordSecretRef.key): add it or correct the key"
            )

    async def _apply(self, cache: Cache, children: list[dict[str, Any]]) -> list[dict[str, Any]]:
        first = [c for c in children if c["kind"] in ("Secret", "ConfigMap")]
        rest = [c for c in children if c["kind"] not in ("Secret", "ConfigMap")]
        applied = list(await asyncio.gather(*(self._apply_one(cache, c) for c in first)))
        applied += await asyncio.gather(*(self._apply_one(cache, c) for c in rest))
        return applied

    async def _apply_one(self, cache: Cache, obj: dict[str, Any]) -> dict[str, Any]:
        result = await self._write_one(cache, obj)
        versions = self._written.setdefault((cache.namespace, cache.name), {})
        versions[obj["kind"], obj["metadata"]["name"]] = result["metadata"].get("resourceVersion", "")
        return result

    async def _existing(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The child as last seen by a watch or a write, else as the API server has it now."""
        key = (namespace, kind, name)
        if key not in self._children:
            found = await self.client.get(kind, namespace, name)
            self.observe_child(kind, found or {"metadata": {"namespace": namespace, "name": name}}, found is None)
        return self._children.get(key)

    async def _write_one(self, cache: Cache, obj: dict[str, Any]) -> dict[str, Any]:
        kind, name = obj["kind"], obj["metadata"]["name"]
        existing = await self._existing(kind, cache.namespace, name)
        if kind in CREATE_ONLY_KINDS and existing is not None:
            return existing
        if kind == "StatefulSet" and "volumeClaimTemplates" in obj["spec"] and existing is not None:
            if self._grown.get((cache.namespace, cache.name)) != cache.generation:
                await self._grow_volumes(cache, obj, existing)
                self._grown[cache.namespace, cache.name] = cache.generation
            obj["spec"]["volumeClaimTemplates"] = existing["spec"].get("volumeClaimTemplates", [])
        stamp(obj)
        if up_to_date(existing, obj):
            return existing  # type: ignore[return-value]
        if (
            kind == "Secret"
            and existing is not None
            and existing.get("immutable")
            and set(obj.get("data", {})) - set(existing.get("data") or {})
        ):
            # an immutable Secret gains a key (an older operator's lacks sidecar-password) only by being made anew;
            # the password in it stays, so nothing else changes
            await self.client.delete(kind, cache.namespace, name)
            self.observe_child(kind, existing, deleted=True)
        written = await (self.client.create(obj) if kind in CREATE_ONLY_KINDS else self.client.apply(obj))
        self.observe_child(kind, written, deleted=False)
        return written

    async def _grow_volumes(self, cache: Cache, desired: dict[str, Any], existing: dict[str, Any]) -> None:
        """Expand each pod's claim to a larger ``persistence.size`` (templates themselves are immutable)."""
        size = cache.valkey["persistence"]["size"]
        wanted = quantity_bytes(size, "spec.valkey.persistence.size")
        for i in range(int(existing["spec"].get("replicas") or 0)):
            claim_name = f"data-{desired['metadata']['name']}-{i}"
            claim = await self.client.get("PersistentVolumeClaim", cache.namespace, claim_name)
            if claim is None:
                continue
            current = claim["spec"]["resources"]["requests"]["storage"]
            if quantity_bytes(current, "storage") < wanted:
                await self.client.request(
                    "PATCH",
                    path("PersistentVolumeClaim", cache.namespace, claim_name),
                    {"spec": {"resources": {"requests": {"storage": str(size)}}}},
                    content_type="application/merge-patch+json",
                )

    async def _prune(self, cache: Cache, children: list[dict[str, Any]]) -> None:
        """Delete children this cache owns but no longer needs (e.g. Valkey after a backend change)."""
        wanted = {(c["kind"], c["metadata"]["name"]) for c in children}
        selector = f"{names.LABEL_INSTANCE}={cache.name},{names.LABEL_MANAGED_BY}={names.MANAGED_BY}"
        for kind in CHILD_KINDS:
            if kind == "Secret":  # never listed (the operator may only get Secrets by name)
                secret = await self.client.get(kind, cache.namespace, names.valkey_password_secret(cache.name))
                found = [secret] if secret is not None else []
            else:
                found = await self.client.list(kind, cache.namespace, selector)
            for item in found:
                owned = any(ref.get("uid") == cache.uid for ref in item["metadata"].get("ownerReferences") or [])
                if owned and (kind, item["metadata"]["name"]) not in wanted:
                    logger.info("pruning %s %s/%s", kind, cache.namespace, item["metadata"]["name"])
                    await self.client.delete(kind, cache.namespace, item["metadata"]["name"])
                    self.observe_child(kind, item, deleted=True)

    async def _count_pods(self, cache: Cache, config_hash: str | None) -> tuple[int, int, int]:
        """(injected, uninjected, outdated) pods labelled with this cache, as the pod watch saw them."""
        pods = list(self._pods.get((cache.namespace, cache.name), {}).values())
        return count_pods(pods, cache.name, config_hash)

    async def _event(self, body: dict[str, Any], assessment: Assessment) -> None:
        meta = body["metadata"]
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": names.API_VERSION,
                "kind": names.KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "type": EVENT_TYPES[assessment.phase],
            "reason": assessment.phase,
            "message": assessment.message[:1024],
            "source": {"component": names.MANAGED_BY},
            "reportingComponent": names.MANAGED_BY,
            "reportingInstance": socket.gethostname(),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self.client.request("POST", f"/api/v1/namespaces/{meta['namespace']}/events", event)
        except ApiError as error:  # events are best effort, like kubectl's
            logger.warning("could not post event for %s/%s: %s", meta["namespace"], meta["name"], error)


def _external_valkey(body: dict[str, Any]) -> bool:
    spec = body.get("spec") or {}
    return spec.get("backend") == "valkey" and (spec.get("valkey") or {}).get("mode") == "external"


def _slim(body: dict[str, Any]) -> dict[str, Any]:
    """The object without its managedFields (most of its size, never compared)."""
    meta = {k: v for k, v in (body.get("metadata") or {}).items() if k != "managedFields"}
    return {**body, "metadata": meta}
