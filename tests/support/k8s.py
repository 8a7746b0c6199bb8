"""Pytest fixtures for a real Kubernetes API: the cluster $KUBECONFIG names, else a local control plane.

``kube`` (session) yields a :class:`Kube`: ``.kubeconfig`` (path), ``.kubectl(*args)``
(the real kubectl binary), ``.api`` (:class:`KubeApi`, HTTP with the kubeconfig's
credentials), ``.env`` (the environment for child processes: KUBECONFIG, KUBECACHEDIR),
and ``.is_local``. Without $KUBECONFIG it uses the control plane of scripts/cluster.sh
(etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok's two nodes),
building it with scripts/install-k8s.sh and starting it when none is running.
``kube_namespace`` gives each test a fresh namespace, deleted afterwards; tests that
share the session's API must create namespaced objects there (cluster-scoped objects
need unique names).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.support.tools import ROOT, require_tool

__all__ = ["ApiFailure", "Kube", "KubeApi", "kube", "kube_namespace"]

Obj = dict[str, Any]


class ApiFailure(AssertionError):
    """A request the API answered with an error status."""

    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        self.status, self.body = status, body
        message = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"{method} {path} -> {status}: {message}")


class KubeApi:
    """Plain HTTP to the API server, with the kubeconfig's address and credentials."""

    def __init__(self, kubeconfig: Path) -> None:
        import kubernetes.client
        import kubernetes.config

        self._config = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=self._config)
        self.base_url = self._config.host.rstrip("/")
        self._session = requests.Session()
        self._session.trust_env = False  # else $REQUESTS_CA_BUNDLE overrides the kubeconfig's CA
        self._session.verify = (self._config.ssl_ca_cert or True) if self._config.verify_ssl else False
        if self._config.cert_file:
            self._session.cert = (self._config.cert_file, self._config.key_file)

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        token = self._config.get_api_key_with_prefix("authorization")
        if token:
            headers["Authorization"] = token
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str | None = None,
        params: dict[str, str] | None = None,
        check: bool = True,
    ) -> tuple[int, Any]:
        """Send one request; answer (status, decoded JSON body); raise ApiFailure on >= 400 if check."""
        data = None if body is None else body if isinstance(body, (str, bytes)) else json.dumps(body)
        if data is not None and content_type is None:
            content_type = "application/json"
        response = self._session.request(
            method, self.base_url + path, data=data, params=params, headers=self._headers(content_type), timeout=30
        )
        try:
            decoded = response.json()
        except ValueError:
            decoded = response.text
        if check and response.status_code >= 400:
            raise ApiFailure(method, path, response.status_code, decoded)
        return response.status_code, decoded

    def get(self, path: str, **params: str) -> Obj:
        return self.request("GET", path, params=params or None)[1]

    def exists(self, path: str) -> bool:
        return self.request("GET", path, check=False)[0] == 200

    def create(self, path: str, body: Obj) -> Obj:
        return self.request("POST", path, body)[1]

    def replace(self, path: str, body: Obj) -> Obj:
        return self.request("PUT", path, body)[1]

    def patch(self, path: str, body: Any, *, kind: str = "merge") -> Obj:
        """``kind``: merge, strategic-merge, json (a JSON patch) or apply (server-side apply)."""
        content_type = {
            "merge": "application/merge-patch+json",
            "strategic-merge": "application/strategic-merge-patch+json",
            "json": "application/json-patch+json",
            "apply": "application/apply-patch+yaml",
        }[kind]
        params = {"fieldManager": "tests"} if kind == "apply" else None
        return self.request("PATCH", path, body, content_type=content_type, params=params)[1]

    def delete(self, path: str, **options: Any) -> Obj:
        return self.request("DELETE", path, options or None)[1]

    def watch(self, path: str, *, timeout: float, **params: str) -> Iterator[Obj]:
        """Yield watch events until the server ends the stream (``timeoutSeconds=timeout``)."""
        query = {"watch": "true", "timeoutSeconds": str(int(timeout)), **params}
        with self._session.get(
            self.base_url + path, params=query, headers=self._headers(None), stream=True, timeout=timeout + 10
        ) as response:
            if response.status_code >= 400:
                raise ApiFailure("WATCH", path, response.status_code, response.text)
            for line in response.iter_lines():
                if line:
                    yield json.loads(line)

    def request_counts(self, resources: set[str]) -> dict[str, float]:
        """The API server's own ``apiserver_request_total`` for ``resources``, summed by verb."""
        from prometheus_client.parser import text_string_to_metric_families

        counts: dict[str, float] = {}
        for family in text_string_to_metric_families(self.request("GET", "/metrics")[1]):
            for sample in family.samples:
                if sample.name == "apiserver_request_total" and sample.labels.get("resource") in resources:
                    counts[sample.labels["verb"]] = counts.get(sample.labels["verb"], 0) + sample.value
        return counts

    def wait_for(
        self, path: str, predicate: Callable[[Obj | None], bool], *, timeout: float = 15.0, what: str = "the condition"
    ) -> Obj | None:
        """Poll ``path`` until ``predicate(object or None if absent)`` holds; answer the object."""
        deadline = time.monotonic() + timeout
        while True:
            status, body = self.request("GET", path, check=False)
            obj = body if status == 200 else None
            if status not in (200, 404):
                raise ApiFailure("GET", path, status, body)
            if predicate(obj):
                return obj
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what} on {path}; last: {obj}")
            time.sleep(0.1)


@dataclasses.dataclass
class Kube:
    kubeconfig: Path
    is_local: bool  # the control plane of scripts/cluster.sh, not a cluster $KUBECONFIG names
    env: dict[str, str]
    api: KubeApi
    workdir: Path

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this API; with check, a failure raises with its stderr."""
        command = [require_tool("kubectl"), "--kubeconfig", str(self.kubeconfig), *args]
        result = subprocess.run(command, input=input, capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stderr}{result.stdout}")
        return result

    def apply(self, manifests: str | Obj | list[Obj], *extra: str) -> subprocess.CompletedProcess[str]:
        """``kubectl apply --validate=false -f -`` of YAML text or objects."""
        if not isinstance(manifests, str):
            documents = manifests if isinstance(manifests, list) else [manifests]
            manifests = yaml.safe_dump_all(documents)
        return self.kubectl("apply", "--validate=false", "-f", "-", *extra, input=manifests)


CLUSTER_SCRIPT = ROOT / "scripts" / "cluster.sh"
INSTALL_K8S_SCRIPT = ROOT / "scripts" / "install-k8s.sh"
CLUSTER_DIR = Path(os.environ.get("AGENTCACHE_CLUSTER_DIR", ROOT / ".tools" / "cluster"))
LOCAL_KUBECONFIG = CLUSTER_DIR.parent / "kubeconfig"  # where scripts/cluster.sh writes it


def real_cluster_kubeconfig() -> str:
    """The kubeconfig $KUBECONFIG names (a kind, k3d or cloud cluster), or "" for the local control plane."""
    return os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]


@contextlib.contextmanager
def local_control_plane() -> Iterator[Path]:
    """The control plane of scripts/cluster.sh: reuse a running one, else build, start and (after) stop it.

    ``AGENTCACHE_KEEP_CLUSTER=1`` leaves a cluster this fixture started running, for the next session.
    """
    if subprocess.run(["bash", str(CLUSTER_SCRIPT), "status"]).returncode == 0:
        yield LOCAL_KUBECONFIG
        return
    for script, args in ((INSTALL_K8S_SCRIPT, ()), (CLUSTER_SCRIPT, ("up",))):
        result = subprocess.run(["bash", str(script), *args], capture_output=True, text=True)
        if result.returncode != 0:
            raise AssertionError(f"{script.name} {' '.join(args)} failed:\n{result.stderr}{result.stdout}")
    try:
        yield LOCAL_KUBECONFIG
    finally:
        if os.environ.get("AGENTCACHE_KEEP_CLUSTER") != "1":
            subprocess.run(["bash", str(CLUSTER_SCRIPT), "down"], capture_output=True)


@pytest.fixture(scope="session")
def kube() -> Iterator[Kube]:
    """The Kubernetes API of the session: $KUBECONFIG's cluster, else the local real control plane."""
    with tempfile.TemporaryDirectory(prefix="kube-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        given = real_cluster_kubeconfig()
        kubeconfig = Path(given).expanduser() if given else stack.enter_context(local_control_plane())
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KUBECACHEDIR": str(workdir / "kube-cache")}
        yield Kube(kubeconfig, not given, env, KubeApi(kubeconfig), workdir)


@pytest.fixture
def kube_namespace(kube: Kube) -> Iterator[str]:
    """A fresh namespace for one test, deleted (without waiting) afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    kube.api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    kube.api.request("DELETE", f"/api/v1/namespaces/{name}", check=False)
