"""The shipped examples (manifests/examples/*.yaml), loaded for tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = ROOT / "manifests" / "examples"
CHART_CRD = ROOT / "charts" / "agentcache" / "crds" / "agentcaches.agentcache.io.yaml"
MANIFEST_CRDS = ROOT / "manifests" / "crds.yaml"  # generated from CHART_CRD (tests/chart/test_manifests.py)
EXAMPLE_FILES = sorted(EXAMPLES_DIR.glob("*.yaml"))


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def agent_cache(path: Path, namespace: str = "agents") -> dict[str, Any]:
    """The AgentCache of an example file, placed in ``namespace`` as kubectl -n would."""
    (body,) = [doc for doc in documents(path) if doc["kind"] == "AgentCache"]
    body["metadata"] = {**body["metadata"], "namespace": namespace, "uid": "uid-1", "generation": 1}
    return body
