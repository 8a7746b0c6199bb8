"""A small Dockerfile reader for tests (Docker cannot run here): stages and their instructions."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, arguments)

    def all(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]

    def last(self, instruction: str) -> str | None:
        found = self.all(instruction)
        return found[-1] if found else None


def exec_form(arguments: str) -> list[str]:
    """ENTRYPOINT/CMD arguments as a list; only the JSON exec form is accepted (no shell in between)."""
    value = json.loads(arguments)
    if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise ValueError(f"not an exec-form list: {arguments}")
    return value


def target(path: Path, name: str) -> Stage:
    """The stage ``FROM ... AS name`` (a ``docker build --target``)."""
    return next(stage for stage in parse(path) if stage.name == name)


def parse(path: Path) -> list[Stage]:
    """Every build stage in order; line continuations joined, comments and blank lines dropped."""
    logical, pending = [], ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        instruction, _, arguments = line.strip().partition(" ")
        instruction, arguments = instruction.upper(), arguments.strip()
        if instruction == "FROM":
            words = shlex.split(arguments)
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        else:
            stages[-1].instructions.append((instruction, arguments))
    return stages
