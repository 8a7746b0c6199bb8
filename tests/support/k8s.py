"""Pytest fixtures for a Kubernetes API: the cluster $KUBECONFIG names, else the emulator.

``kube`` (session) yields a :class:`Kube`: ``.kubeconfig`` (path), ``.kubectl(*args)``
(the real kubectl binary), ``.api`` (:class:`KubeApi`, HTTP with the kubeconfig's
credentials), ``.env`` (the environment for child processes: KUBECONFIG, KUBECACHEDIR),
``.is_emulator`` and ``.run_operator(target)`` (a real ``kopf run`` subprocess).
Without $KUBECONFIG it starts ``python -m tests.support.k8s_emulator`` on a free port.
``kube_namespace`` gives each test a fresh namespace, deleted afterwards; tests that
share the session's API must create namespaced objects there (cluster-scoped objects
need unique names).

Operators run here must log in with ``@kopf.on.login()`` returning
``kopf.login_with_kubeconfig(**kwargs)``: it reads $KUBECONFIG when called, whereas
the ``kubernetes`` client library reads it when imported.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import select
import signal
import socket
import subprocess
import sys
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

__all__ = ["ApiFailure", "Kube", "KubeApi", "OperatorProcess", "kube", "kube_namespace"]

EMULATOR_START_TIMEOUT = 10.0
EMULATOR_BOOKMARK_INTERVAL = 1.0
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

    def request(self, method: str, path: str, body: Any = None, *, content_type: str | None = None,
                params: dict[str, str] | None = None, check: bool = True) -> tuple[int, Any]:
        """Send one request; answer (status, decoded JSON body); raise ApiFailure on >= 400 if check."""
        data = None if body is None else body if isinstance(body, (str, bytes)) else json.dumps(body)
        if data is not None and content_type is None:
            content_type = "application/json"
        response = self._session.request(method, self.base_url + path, data=data, params=params,
                                         headers=self._headers(content_type), timeout=30)
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
        content_type = {"merge": "application/merge-patch+json",
                        "strategic-merge": "application/strategic-merge-patch+json",
                        "json": "application/json-patch+json",
                        "apply": "application/apply-patch+yaml"}[kind]
        params = {"fieldManager": "tests"} if kind == "apply" else None
        return self.request("PATCH", path, body, content_type=content_type, params=params)[1]

    def delete(self, path: str, **options: Any) -> Obj:
        return self.request("DELETE", path, options or None)[1]

    def watch(self, path: str, *, timeout: float, **params: str) -> Iterator[Obj]:
        """Yield watch events until the server ends the stream (``timeoutSeconds=timeout``)."""
        query = {"watch": "true", "timeoutSeconds": str(int(timeout)), **params}
        with self._session.get(self.base_url + path, params=query, headers=self._headers(None),
                               stream=True, timeout=timeout + 10) as response:
            if response.status_code >= 400:
                raise ApiFailure("WATCH", path, response.status_code, response.text)
            for line in response.iter_lines():
                if line:
                    yield json.loads(line)

    def wait_for(self, path: str, predicate: Callable[[Obj | None], bool], *, timeout: float = 15.0,
                 what: str = "the condition") -> Obj | None:
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
class OperatorProcess:
    """A ``kopf run`` subprocess with its log file."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGINT (kopf's graceful stop), then SIGKILL if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclasses.dataclass
class Kube:
    kubeconfig: Path
    is_emulator: bool
    env: dict[str, str]
    api: KubeApi
    workdir: Path

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this API; with check, a failure raises with its stderr."""
        command = [require_tool("kubectl"), "--kubeconfig", str(self.kubeconfig), *args]
        result = subprocess.run(command, input=input, capture_output=True, text=True, env=self.env,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stderr}{result.stdout}")
        return result

    def apply(self, manifests: str | Obj | list[Obj], *extra: str) -> subprocess.CompletedProcess[str]:
        """``kubectl apply --validate=false -f -`` of YAML text or objects."""
        if not isinstance(manifests, str):
            documents = manifests if isinstance(manifests, list) else [manifests]
            manifests = yaml.safe_dump_all(documents)
        return self.kubectl("apply", "--validate=false", "-f", "-", *extra, input=manifests)

    @contextlib.contextmanager
    def run_operator(self, target: str | Path, *extra: str, namespace: str | None = None,
                     ready_timeout: float = 20.0) -> Iterator[OperatorProcess]:
        """Run ``kopf run --standalone`` on a file (``*.py``) or a module, stop it on exit.

        Ready means kopf's liveness endpoint answers; the log is shown if it never does.
        """
        port = _free_port()
        scope = ["--namespace", namespace] if namespace else ["--all-namespaces"]
        source = [str(target)] if str(target).endswith(".py") else ["-m", str(target)]
        log_path = self.workdir / f"kopf-{uuid.uuid4().hex[:8]}.log"
        command = [sys.executable, "-m", "kopf", "run", "--standalone", *scope, "--verbose",
                   "--liveness", f"http://127.0.0.1:{port}/healthz", *extra, *source]
        with log_path.open("wb") as log:
            process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        operator = OperatorProcess(process, log_path)
        try:
            _wait_for_http(f"http://127.0.0.1:{port}/healthz", process, ready_timeout,
                           lambda: f"kopf did not become live:\n{operator.logs()}")
            yield operator
        finally:
            operator.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_http(url: str, process: subprocess.Popen[bytes], timeout: float,
                   explain: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError(explain())


@contextlib.contextmanager
def start_emulator(workdir: Path) -> Iterator[str]:
    """Run the emulator as a subprocess on a free port; yield its URL."""
    log_path = workdir / "k8s-emulator.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.k8s_emulator", "--port", "0",
             "--bookmark-interval", str(EMULATOR_BOOKMARK_INTERVAL)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=log)
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], EMULATOR_START_TIMEOUT)
        line = process.stdout.readline().decode() if ready else ""
        if not line.startswith("listening on "):
            raise AssertionError(f"the Kubernetes emulator did not start: {line!r}\n"
                                 f"{log_path.read_text(errors='replace')}")
        yield line.removeprefix("listening on ").strip()
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def write_kubeconfig(path: Path, server: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": server}}],
        "users": [{"name": "emulator", "user": {}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "emulator"}}],
    }))
    return path


def real_cluster_kubeconfig() -> str:
    """The kubeconfig of a real cluster the suite was pointed at, or "" for the emulator."""
    return os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "emulator_only(reason): needs the emulator (e.g. hand-made pods, loopback "
                                       "webhooks); deselected, not skipped, when KUBECONFIG names a real cluster")


def pytest_collection_modifyitems(config, items) -> None:
    if not real_cluster_kubeconfig():
        return
    kept, dropped = [], []
    for item in items:
        (dropped if item.get_closest_marker("emulator_only") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session")
def kube() -> Iterator[Kube]:
    """The Kubernetes API of the session: $KUBECONFIG's cluster, else a fresh emulator."""
    with tempfile.TemporaryDirectory(prefix="kube-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        given = real_cluster_kubeconfig()
        if given:
            kubeconfig, is_emulator = Path(given).expanduser(), False
        else:
            server = stack.enter_context(start_emulator(workdir))
            kubeconfig, is_emulator = write_kubeconfig(workdir / "kubeconfig", server), True
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KUBECACHEDIR": str(workdir / "kube-cache")}
        yield Kube(kubeconfig, is_emulator, env, KubeApi(kubeconfig), workdir)


@pytest.fixture
def kube_namespace(kube: Kube) -> Iterator[str]:
    """A fresh namespace for one test, deleted (without waiting) afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    kube.api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    kube.api.request("DELETE", f"/api/v1/namespaces/{name}", check=False)
