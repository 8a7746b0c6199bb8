"""The AgentUp cache page (the seed) and the code blocks in it.

The page lives in ``shared/seed/`` beside the repository (both for developers
and in CI, where shared/ is copied next to the clone).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

SEED_NAME = "agentup-cache-management.md"
_FENCE = re.compile(r"```(\w+)\n(.*?)```", re.S)


def seed_path() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "shared" / "seed" / SEED_NAME
        if candidate.exists():
            return candidate
    pytest.fail(f"{SEED_NAME} not found in a shared/seed/ folder above {here}; the seed page must be beside the repo")


def code_blocks(language: str) -> list[tuple[int, str]]:
    """(line number, text) of every fenced block of ``language`` in the seed page."""
    text = seed_path().read_text(encoding="utf-8")
    blocks = []
    for match in _FENCE.finditer(text):
        if match.group(1) == language:
            blocks.append((text.count("\n", 0, match.start()) + 1, match.group(2)))
    return blocks
