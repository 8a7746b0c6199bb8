"""Pods, AgentCaches and AdmissionReviews for the injector tests, and checks of a patched pod."""

from __future__ import annotations

import base64
import copy
import json
import os
import socket
import ssl
import subprocess
import sys
import time
import uuid
from pathlib import Path

import jsonpatch
import kubernetes_validate

from agentcache_operator import names

NAMESPACE = "agents"
INSTALL_NAMESPACE = "agentcache"
SERVICE = "agentcache-injector"
K8S_VERSION = "1.35"


def agentcache(
    name: str = "llm-cache",
    namespace: str = NAMESPACE,
    phase: str = "Ready",
    reason: str = names.REASON_INVALID_SPEC,
    **spec,
) -> dict:
    status = {"phase": phase}
    if phase == "Failed":
        message = (
            "spec.valkey.url 'valkey://:6379' names no host"
            if reason == names.REASON_INVALID_SPEC
            else "Secret agents/ext does not exist"
        )
        status["conditions"] = [{"type": "Ready", "status": "False", "reason": reason, "message": message}]
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4())},
        "spec": spec or {"backend": "memory"},
        "status": status,
    }


def pod(
    cache: str | None = "llm-cache",
    *,
    containers: list[dict] | None = None,
    init_containers: list[dict] | None = None,
    annotations: dict | None = None,
    volumes: list[dict] | None = None,
    labels: dict | None = None,
) -> dict:
    metadata: dict = {"name": "agent-0", "namespace": NAMESPACE, "labels": {"app": "agent", **(labels or {})}}
    if cache:
        metadata["labels"][names.LABEL_CACHE] = cache
    if annotations is not None:
        metadata["annotations"] = annotations
    spec: dict = {
        "containers": containers
        or [{"name": "agent", "image": "python:3.12-slim", "command": ["python", "-m", "agent"]}]
    }
    if init_containers is not None:
        spec["initContainers"] = init_containers
    if volumes is not None:
        spec["volumes"] = volumes
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def review(obj: dict, namespace: str = NAMESPACE, operation: str = "CREATE") -> dict:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": obj,
            "oldObject": None,
            "dryRun": False,
        },
    }


def patch_of(answer: dict) -> list[dict]:
    """The JSONPatch of an AdmissionReview answer ([] when there is none)."""
    response = answer["response"]
    if "patch" not in response:
        return []
    assert response["patchType"] == "JSONPatch"
    return json.loads(base64.b64decode(response["patch"]))


def apply(obj: dict, ops: list[dict]) -> dict:
    return jsonpatch.apply_patch(copy.deepcopy(obj), ops)


def validate_pod(obj: dict) -> None:
    """The real Pod schema of Kubernetes 1.35, strictly, plus the rules the API server adds on top."""
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        raise AssertionError(f"invalid Pod: {str(error).splitlines()[0]} at {list(error.path)}") from None
    spec = obj["spec"]
    containers = [*spec.get("initContainers", []), *spec["containers"]]
    container_names = [c["name"] for c in containers]
    assert len(container_names) == len(set(container_names)), f"duplicate container names {container_names}"
    volume_names = [v["name"] for v in spec.get("volumes", [])]
    assert len(volume_names) == len(set(volume_names)), f"duplicate volumes {volume_names}"
    for container in containers:
        paths = [m["mountPath"] for m in container.get("volumeMounts", [])]
        assert len(paths) == len(set(paths)), f"{container['name']} mounts a path twice: {paths}"
        for mount in container.get("volumeMounts", []):
            assert mount["name"] in volume_names, f"{container['name']} mounts unknown volume {mount['name']}"
        env_names = [e["name"] for e in container.get("env", [])]
        assert len(env_names) == len(set(env_names)), f"{container['name']} sets an env var twice: {env_names}"


def assert_wired(obj: dict) -> None:
    """Every container (init, sidecar, app) mounts the socket dir and names the socket."""
    for container in [*obj["spec"].get("initContainers", []), *obj["spec"]["containers"]]:
        mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
        assert mounts.get(names.SOCKET_VOLUME) == names.SOCKET_DIR, container["name"]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert env.get(names.ENV_SOCKET) == names.SOCKET_PATH, container["name"]


def sidecar_of(obj: dict) -> dict:
    (sidecar,) = [c for c in obj["spec"].get("initContainers", []) if c["name"] == names.SIDECAR_CONTAINER]
    return sidecar


def client_ssl_context(ca_file: str | Path) -> ssl.SSLContext:
    """What the API server does: trust only the caBundle and check the service's DNS name."""
    context = ssl.create_default_context(cafile=str(ca_file))
    context.check_hostname = True
    return context


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_UNVERIFIED = ssl.create_default_context()
_UNVERIFIED.check_hostname = False
_UNVERIFIED.verify_mode = ssl.CERT_NONE


class InjectorProcess:
    """The real ``agentcache-injector`` console script, in a subprocess."""

    def __init__(self, workdir: Path, args: list[str], namespace: str = INSTALL_NAMESPACE):
        self.workdir = workdir
        self.port = free_port()
        self.args = args
        self.namespace = namespace
        self.host = f"{SERVICE}.{namespace}.svc"  # the name the API server connects to and verifies
        self.log_path = workdir / "injector.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> InjectorProcess:
        """Start and wait until it completes TLS handshakes (the certificate is checked by the tests)."""
        binary = Path(sys.executable).with_name("agentcache-injector")
        command = [
            str(binary),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--namespace",
            self.namespace,
            "--service",
            SERVICE,
            *self.args,
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"injector exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with (
                    socket.create_connection(("127.0.0.1", self.port), timeout=1) as raw,
                    _UNVERIFIED.wrap_socket(raw, server_hostname=self.host),
                ):
                    return self
            except (OSError, ssl.SSLError):
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"injector did not start:\n{self.log()}")

    def peer_certificate(self, ca_file: str | Path) -> bytes:
        """The DER certificate served, verified against ``ca_file`` for the service's name."""
        with (
            socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw,
            client_ssl_context(ca_file).wrap_socket(raw, server_hostname=self.host) as tls,
        ):
            return tls.getpeercert(binary_form=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None
