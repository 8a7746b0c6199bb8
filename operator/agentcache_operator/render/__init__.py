"""Pure renderers: an AgentCache (spec + metadata) in, the Kubernetes objects it needs out."""

from __future__ import annotations

from typing import Any

from .common import Cache, SpecError
from .sentinel import render_sentinels
from .sidecar_config import endpoint, render_config_map
from .valkey import render_managed_valkey

__all__ = ["Cache", "SpecError", "endpoint", "render_children"]


def render_children(cache: Cache, password: str | None = None) -> list[dict[str, Any]]:
    """Every child object of ``cache``, without owner references.

    ``password`` is the managed Valkey's password (the existing Secret's, or a new
    one the caller generated); it is required exactly when Valkey is managed.
    Raises ``SpecError`` for a spec the operator cannot honour.
    """
    children = [render_config_map(cache)]
    if cache.managed_valkey:
        if not password:
            raise ValueError("a managed Valkey needs its password")
        children += render_managed_valkey(cache, password)
        if cache.valkey["topology"] == "replicated":
            children += render_sentinels(cache, password)
    return children
