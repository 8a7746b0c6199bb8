"""Leader election on a ``coordination.k8s.io`` Lease: of all operator processes, exactly one reconciles.

A second release, a stuck old pod or a rollout's surge pod waits as a standby (it answers
its liveness probe, and ``agentcache_operator_leader`` is 0) until the Lease is free: the
leader deletes it when it stops, or it expires ``lease_seconds`` after its last renewal
when the leader dies. A leader that cannot renew in time stops its process (SIGTERM), as
controller-runtime does, so that two never act at once; Kubernetes restarts it as a standby.
The election itself is the ``kubernetes`` client's (``kubernetes.leaderelection``).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

from .metrics import LEADER

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


def load_credentials() -> None:
    """$KUBECONFIG (or ~/.kube/config) when set, else the pod's service account."""
    if os.environ.get("KUBECONFIG") or not os.path.exists(SERVICE_ACCOUNT_TOKEN):
        config.load_kube_config()
    else:
        config.load_incluster_config()


class _Healthy(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def standby_liveness(host: str, port: int) -> Iterator[None]:
    """Answer the liveness probe while waiting, so that a standby is not restarted in a loop."""
    if not port:
        yield
        return
    server = ThreadingHTTPServer((host, port), _Healthy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


class Election:
    """Campaigns for the Lease ``namespace/name`` in a daemon thread."""

    def __init__(self, namespace: str, name: str, lease_seconds: int = 15):
        self.namespace, self.name = namespace, name
        self.identity = f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
        self.leading = threading.Event()
        lock = LeaseLock(name, namespace, self.identity)
        self._config = electionconfig.Config(
            lock,
            lease_duration=lease_seconds,
            renew_deadline=lease_seconds * 2 / 3,
            retry_period=max(lease_seconds / 2.5, 1.0),  # renewals: a write every 6 s at 15 s
            onstarted_leading=self._started,
            onstopped_leading=self._stopped,
        )

    def start(self) -> None:
        LEADER.set(0)
        log.info("waiting to lead: Lease %s/%s (identity %s)", self.namespace, self.name, self.identity)
        threading.Thread(target=self._campaign, daemon=True).start()

    def _campaign(self) -> None:
        try:
            leaderelection.LeaderElection(self._config).run()
        except Exception:  # an election that died must not leave a standby waiting forever, or a leader unchecked
            log.exception("the leader election failed: stopping")
            os.kill(os.getpid(), signal.SIGTERM)

    def _started(self) -> None:
        log.info("leading: Lease %s/%s", self.namespace, self.name)
        LEADER.set(1)
        self.leading.set()

    def _stopped(self) -> None:
        LEADER.set(0)
        if self.leading.is_set():
            log.error(
                "lost the Lease %s/%s: stopping, so that two operators never act at once", self.namespace, self.name
            )
            os.kill(os.getpid(), signal.SIGTERM)

    def release(self) -> None:
        """Delete the Lease if this process holds it, so that a standby takes over at once."""
        if not self.leading.is_set():
            return
        self.leading.clear()
        api = client.CoordinationV1Api()
        try:
            lease = api.read_namespaced_lease(self.name, self.namespace)
            if lease.spec and lease.metadata and lease.spec.holder_identity == self.identity:
                api.delete_namespaced_lease(
                    self.name,
                    self.namespace,
                    body=client.V1DeleteOptions(
                        preconditions=client.V1Preconditions(resource_version=lease.metadata.resource_version)
                    ),
                )
        except ApiException as error:
            log.warning("could not release the Lease %s/%s: %s", self.namespace, self.name, error.reason)
