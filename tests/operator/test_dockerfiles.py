"""The two images, checked from their Dockerfiles (no Docker here): what runs, as whom, on which ports.

operator/Dockerfile serves both ``agentcache-operator`` and ``agentcache-injector`` (the chart
runs both from one image); sidecar/Dockerfile serves ``agentcache-sidecar`` as
``names.SIDECAR_UID``. Both install the whole distribution from a wheel built out of the
files they COPY, so the CRD (package data reached through a symlink) must be among them.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import tomllib
from pathlib import Path

import pytest

from agentcache_operator import names
from agentcache_operator.crd import CRD_FILE
from agentcache_operator.injector.main import parse_args as parse_injector_args
from agentcache_operator.main import parse_args as parse_operator_args

from .dockerfile import Stage, exec_form, parse
from .examples import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SCRIPTS = PYPROJECT["project"]["scripts"]
OPERATOR = ROOT / "operator" / "Dockerfile"
SIDECAR = ROOT / "sidecar" / "Dockerfile"
DOCKERFILES = {"operator": OPERATOR, "sidecar": SIDECAR}


def final(path: Path) -> Stage:
    return parse(path)[-1]


def user_id(stage: Stage) -> int:
    user = stage.last("USER")
    assert user, "the image must name its USER"
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and (not gid or gid.isdigit()), f"USER {user} must be numeric (runAsNonRoot checks it)"
    return int(uid)


def exposed(stage: Stage) -> set[int]:
    return {int(port.split("/")[0]) for args in stage.all("EXPOSE") for port in args.split()}


@pytest.mark.parametrize("image", DOCKERFILES)
def test_image_runs_as_a_numeric_non_root_user(image):
    assert user_id(final(DOCKERFILES[image])) > 0


def test_sidecar_runs_as_the_uid_the_injector_sets():
    assert user_id(final(SIDECAR)) == names.SIDECAR_UID


@pytest.mark.parametrize("image, script", [("operator", "agentcache-operator"), ("sidecar", "agentcache-sidecar")])
def test_entrypoint_is_a_console_script_of_the_distribution(image, script):
    stage = final(DOCKERFILES[image])
    entrypoint = exec_form(stage.last("ENTRYPOINT"))
    assert entrypoint[0] == script and script in SCRIPTS
    if stage.last("CMD"):
        exec_form(stage.last("CMD"))


def test_operator_image_serves_the_operator_and_the_injector_on_their_default_ports():
    stage = final(OPERATOR)
    checked = " ".join(stage.all("RUN"))
    for script in ("agentcache-operator", "agentcache-injector"):
        assert script in SCRIPTS and script in checked, f"the build must check that {script} is installed"
    operator = parse_operator_args(exec_form(stage.last("CMD")))
    injector = parse_injector_args(["--tls-dir", "/tls"])
    assert {operator.metrics_port, operator.liveness_port, injector.port} <= exposed(stage)
    assert injector.port == 10250


def test_sidecar_image_exposes_the_metrics_and_probe_port():
    assert names.METRICS_PORT in exposed(final(SIDECAR))


@pytest.mark.parametrize("image", DOCKERFILES)
def test_build_context_holds_the_whole_distribution_and_the_crd(image, tmp_path):
    """Replays the build stage's COPYs into a directory: the packages and the CRD symlink's target are there."""
    build = parse(DOCKERFILES[image])[0]
    assert build.name == "build" and re.search(r"pip wheel .* \.$", build.last("RUN") or "")
    for args in build.all("COPY"):
        *sources, dest = shlex.split(args)
        for source in sources:
            origin, target = ROOT / source, tmp_path / dest
            if origin.is_dir():
                shutil.copytree(
                    origin, target, symlinks=True, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
                )
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target / origin.name)
    for where in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["where"]:
        assert (tmp_path / where).is_dir()
    copied_crd = tmp_path / CRD_FILE.relative_to(ROOT)
    assert copied_crd.is_symlink() and os.path.realpath(copied_crd).startswith(str(tmp_path))
    assert copied_crd.read_text() == CRD_FILE.read_text()


@pytest.mark.parametrize("image", DOCKERFILES)
def test_every_stage_runs_a_python_the_distribution_supports(image):
    minimum = tuple(map(int, PYPROJECT["project"]["requires-python"].removeprefix(">=").split(".")))
    for stage in parse(DOCKERFILES[image]):
        version = re.match(r"python:(\d+)\.(\d+)", stage.base)
        assert version and tuple(map(int, version.groups())) >= minimum, stage.base


@pytest.mark.parametrize("image", DOCKERFILES)
def test_build_context_ignores_everything_but_what_the_build_copies(image):
    ignore = DOCKERFILES[image].with_name("Dockerfile.dockerignore").read_text().splitlines()
    assert "**" in ignore, "the repository root (with .venv and tools) must not be sent as the context"
    for args in parse(DOCKERFILES[image])[0].all("COPY"):
        for source in shlex.split(args)[:-1]:
            assert f"!{source}" in ignore, f"COPY {source} is excluded from the build context"
