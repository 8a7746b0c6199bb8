"""Print, as YAML, the objects the operator creates for every example in manifests/examples/.

The operator's renderers are pure functions (agentcache_operator.render.render_children), so
this is what it applies, less the owner references it adds. `make lint` runs kube-score on it.
Usage: .venv/bin/python scripts/render-children.py [NAMESPACE]   (default: agentcache-demo)
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from agentcache_operator.render import Cache, render_children

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    namespace = sys.argv[1] if len(sys.argv) > 1 else "agentcache-demo"
    documents = []
    for path in sorted((ROOT / "manifests" / "examples").glob("*.yaml")):
        for body in yaml.safe_load_all(path.read_text()):
            if not body or body.get("kind") != "AgentCache":
                continue  # e.g. the Secret an external backend's example brings
            body["metadata"]["namespace"] = namespace
            cache = Cache.from_body(body)
            # A fixed stand-in for the password the operator generates for a managed Valkey.
            password = "rendered-for-lint" if cache.managed_valkey else None
            documents += render_children(cache, password)
    print(f"# The operator's children of manifests/examples/*.yaml, by {Path(__file__).name}.")
    print(yaml.safe_dump_all(documents, sort_keys=False), end="")


if __name__ == "__main__":
    main()
