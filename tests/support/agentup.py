"""AgentUp's cache page and the configuration shapes we wrote from it.

The page (``agentup-cache-management.md``) is not part of the repository: when
someone has it, it sits in ``shared/seed/`` beside the repository. Tests that
read it carry the ``agentup_page`` marker, and ``tests/conftest.py`` deselects
them, saying why, when it is absent. The shapes in ``tests/fixtures/agentup/``
are ours and always present; together they use every key the page uses.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PAGE_NAME = "agentup-cache-management.md"
PAGE_RELATIVE = Path("shared") / "seed" / PAGE_NAME
FIXTURES = ROOT / "tests" / "fixtures" / "agentup"
_HEADING_OR_FENCE = re.compile(r"^#+ ([^\n]+)$|^```(\w*)\n(.*?)^```", re.M | re.S)


def page_path() -> Path | None:
    """The page in ``shared/seed/`` of the repository's parent folders, nearest first; None when absent."""
    for directory in ROOT.parents:
        candidate = directory / PAGE_RELATIVE
        if candidate.is_file():
            return candidate
    return None


def page_yaml_blocks() -> list[tuple[str, str]]:
    """Every yaml block of the page as ``(heading-n, text)``; empty when the page is absent."""
    path = page_path()
    if path is None:
        return []
    blocks, heading = [], "top"
    counts: dict[str, int] = {}
    for match in _HEADING_OR_FENCE.finditer(path.read_text(encoding="utf-8")):
        if match.group(1):
            heading = re.sub(r"\W+", "-", match.group(1).strip().lower()).strip("-")
        elif match.group(2) == "yaml":
            counts[heading] = counts.get(heading, 0) + 1
            blocks.append((f"{heading}-{counts[heading]}", match.group(3)))
    return blocks


def fixture_files() -> dict[str, Path]:
    """Our configuration shapes by name (file stem)."""
    return {path.stem: path for path in sorted(FIXTURES.glob("*.yaml"))}


def key_paths(node: Any, prefix: str = "") -> set[str]:
    """Every dotted key path of a YAML document (``services.valkey.config.url``...)."""
    if not isinstance(node, dict):
        return set()
    paths = set()
    for key, value in node.items():
        path = f"{prefix}{key}"
        paths.add(path)
        paths |= key_paths(value, path + ".")
    return paths
