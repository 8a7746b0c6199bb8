"""Run a container of a patched pod as a local process, the way a kubelet would, minus the isolation.

What cannot exist here (no container runtime, no mount namespaces, no cluster
DNS) is stood in for, and only that: each pod volume is a temporary directory
(a ConfigMap volume holds the ConfigMap's keys as files), and every absolute path
under a container's mountPath, in its command, its environment and its config
file, is translated to that directory. Environment variables are resolved from
``value`` and ``valueFrom.secretKeyRef`` like the kubelet does.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml


class PodSandbox:
    def __init__(self, pod: dict, root: Path, config_maps: dict[str, dict], secrets: dict[str, dict]):
        self.pod, self.root = pod, root
        self.config_maps, self.secrets = config_maps, secrets
        self.volume_dirs: dict[str, Path] = {}
        for volume in pod["spec"].get("volumes", []):
            directory = root / "volumes" / volume["name"]
            directory.mkdir(parents=True)
            if "configMap" in volume:
                for key, text in self.config_maps[volume["configMap"]["name"]]["data"].items():
                    (directory / key).write_text(text)
            self.volume_dirs[volume["name"]] = directory

    def container(self, name: str) -> dict:
        spec = self.pod["spec"]
        (found,) = [c for c in [*spec.get("initContainers", []), *spec["containers"]] if c["name"] == name]
        return found

    def translate(self, container: dict, value: str) -> str:
        """A path as the container sees it -> the same file on this machine."""
        for mount in sorted(container.get("volumeMounts", []), key=lambda m: -len(m["mountPath"])):
            prefix = mount["mountPath"].rstrip("/")
            if value == prefix or value.startswith(prefix + "/"):
                return str(self.volume_dirs[mount["name"]]) + value[len(prefix) :]
        return value

    def environment(self, container: dict) -> dict[str, str]:
        env = {}
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = self.translate(container, item["value"])
            else:
                ref = item["valueFrom"]["secretKeyRef"]
                env[item["name"]] = base64.b64decode(self.secrets[ref["name"]]["data"][ref["key"]]).decode()
        return env

    def translate_config(self, container: dict, path: Path, overrides: dict) -> None:
        """Rewrite the mounted YAML config's paths in place, then apply ``overrides`` (section -> keys)."""

        def walk(node):
            if isinstance(node, dict):
                return {k: walk(v) for k, v in node.items()}
            if isinstance(node, list):
                return [walk(v) for v in node]
            return self.translate(container, node) if isinstance(node, str) else node

        document = walk(yaml.safe_load(path.read_text()))
        for section, keys in overrides.items():
            target = document
            for part in section.split("."):
                target = target.setdefault(part, {})
            target.update(keys)
        path.write_text(yaml.safe_dump(document))

    def start(self, name: str, log_path: Path) -> subprocess.Popen:
        container = self.container(name)
        command = [
            self.translate(container, arg) for arg in [*container.get("command", []), *container.get("args", [])]
        ]
        installed = Path(sys.executable).with_name(command[0])  # the console script of this environment
        executable = str(installed) if installed.exists() else shutil.which(command[0]) or command[0]
        env = {"PATH": os.environ["PATH"], "HOME": str(self.root), **self.environment(container)}
        with open(log_path, "ab") as log:
            return subprocess.Popen(
                [executable, *command[1:]], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.root
            )
