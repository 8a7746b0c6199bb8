"""Run the real ``helm`` on the chart and parse what it renders.

Helm keeps its cache and config under a temporary HELM_*_HOME, so ``~`` stays clean.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "agentcache"
VALUES_DIR = Path(__file__).resolve().parent / "values"
VALUE_FILES = sorted(path.name for path in VALUES_DIR.glob("*.yaml"))
RELEASE = "agentcache"
NAMESPACE = "agentcache-system"


@dataclass
class Helm:
    binary: str
    home: Path

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([self.binary, *args], capture_output=True, text=True, env=self.env(), timeout=60)

    def template_args(
        self, values: tuple[str, ...] = (), sets: dict[str, str] | None = None, namespace: str = NAMESPACE
    ) -> list[str]:
        args = ["template", RELEASE, str(CHART), "--namespace", namespace]
        for name in values:
            args += ["--values", str(VALUES_DIR / name)]
        for key, value in (sets or {}).items():
            args += ["--set", f"{key}={value}"]
        return args

    def render(
        self, values: tuple[str, ...] = (), sets: dict[str, str] | None = None, namespace: str = NAMESPACE
    ) -> list[dict]:
        """Every object ``helm template`` renders (CRDs excluded), in order."""
        result = self.run(*self.template_args(values, sets, namespace))
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    def refuse(self, sets: dict[str, str]) -> str:
        """The error of a render that must fail; asserts that it failed."""
        result = self.run(*self.template_args(sets=sets))
        assert result.returncode != 0, f"helm accepted {sets}"
        return result.stderr


def find(objects: list[dict], kind: str, name_contains: str = "") -> list[dict]:
    return [o for o in objects if o["kind"] == kind and name_contains in o["metadata"]["name"]]


def one(objects: list[dict], kind: str, name_contains: str = "") -> dict:
    found = find(objects, kind, name_contains)
    assert len(found) == 1, (
        f"expected one {kind} named *{name_contains}*, found {[o['metadata']['name'] for o in found]}"
    )
    return found[0]
