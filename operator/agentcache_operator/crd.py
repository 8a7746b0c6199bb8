"""The AgentCache CRD as the operator sees it: loaded from the chart's one CRD file.

The package file ``crds/agentcaches.agentcache.io.yaml`` is a symlink to
``charts/agentcache/crds/agentcaches.agentcache.io.yaml``: a checkout reads the
chart file itself, and a built wheel carries a copy of it (setuptools follows the
link), so there is exactly one file to edit.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import yaml

CRD_FILE = Path(__file__).parent / "crds" / "agentcaches.agentcache.io.yaml"


@functools.cache
def crd() -> dict[str, Any]:
    """The CustomResourceDefinition object."""
    return yaml.safe_load(CRD_FILE.read_text(encoding="utf-8"))


def openapi_schema() -> dict[str, Any]:
    """The ``openAPIV3Schema`` of the served version."""
    (version,) = [v for v in crd()["spec"]["versions"] if v["storage"]]
    return version["schema"]["openAPIV3Schema"]


def spec_schema() -> dict[str, Any]:
    return openapi_schema()["properties"]["spec"]


def with_defaults(spec: dict[str, Any] | None) -> dict[str, Any]:
    """A copy of ``spec`` with every schema default filled in.

    Unlike the API server, absent nested objects count as ``{}``, so a renderer
    never has to guess a default that the CRD already states.
    """
    return _default(spec_schema(), copy.deepcopy(spec) if spec else {})


def _default(schema: dict[str, Any], value: Any) -> Any:
    if not isinstance(value, dict) or "properties" not in schema:
        return value
    for key, sub in schema["properties"].items():
        if key not in value:
            if "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            elif sub.get("type") == "object" and "properties" in sub:
                value[key] = {}
        if key in value:
            value[key] = _default(sub, value[key])
    return value


def schema_errors(obj: dict[str, Any]) -> list[str]:
    """Violations of the CRD's OpenAPI schema in a whole AgentCache object (not its CEL rules)."""
    validator = jsonschema.Draft202012Validator(openapi_schema())
    return [
        f"{'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    ]
