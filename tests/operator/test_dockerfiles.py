"""The two images, checked from the one Dockerfile (no Docker here): what runs, as whom, on which ports.

Its ``operator`` target serves both ``agentcache-operator`` and ``agentcache-injector`` (the chart
runs both from one image); its ``sidecar`` target serves ``agentcache-sidecar`` as
``names.SIDECAR_UID``. One build stage makes the wheels from the files it COPYs (the CRD is
package data reached through a symlink, so it must be among them); each target installs the
distribution with its own extra only.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import tomllib

import pytest

from agentcache import protocol
from agentcache_operator import names
from agentcache_operator.crd import CRD_FILE
from agentcache_operator.injector.main import parse_args as parse_injector_args
from agentcache_operator.main import parse_args as parse_operator_args

from .dockerfile import Stage, exec_form, parse, target
from .examples import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SCRIPTS = PYPROJECT["project"]["scripts"]
EXTRAS = PYPROJECT["project"]["optional-dependencies"]
DOCKERFILE = ROOT / "Dockerfile"
IMAGES = ["operator", "sidecar"]


def final(image: str) -> Stage:
    return target(DOCKERFILE, image)


def user_id(stage: Stage) -> int:
    user = stage.last("USER")
    assert user, "the image must name its USER"
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and (not gid or gid.isdigit()), f"USER {user} must be numeric (runAsNonRoot checks it)"
    return int(uid)


def exposed(stage: Stage) -> set[int]:
    return {int(port.split("/")[0]) for args in stage.all("EXPOSE") for port in args.split()}


@pytest.mark.parametrize("image", IMAGES)
def test_image_runs_as_a_numeric_non_root_user(image):
    assert user_id(final(image)) > 0


def test_sidecar_runs_as_the_uid_the_injector_sets():
    assert user_id(final("sidecar")) == names.SIDECAR_UID


@pytest.mark.parametrize("image", IMAGES)
def test_each_image_installs_only_its_extra(image):
    """The build stage builds wheels for both extras; a target installs the distribution with its own."""
    build = parse(DOCKERFILE)[0]
    assert sorted(re.search(r'pip wheel .* "\.\[(.+)\]"$', build.last("RUN") or "").group(1).split(",")) == sorted(
        IMAGES
    )
    installs = re.findall(r'pip install .*?"agentcache\[(\w+)\]"', " ".join(final(image).all("RUN")))
    assert installs == [image] and image in EXTRAS


@pytest.mark.parametrize("image, script", [("operator", "agentcache-operator"), ("sidecar", "agentcache-sidecar")])
def test_entrypoint_is_a_console_script_of_the_distribution(image, script):
    stage = final(image)
    entrypoint = exec_form(stage.last("ENTRYPOINT"))
    assert entrypoint[0] == script and script in SCRIPTS
    if stage.last("CMD"):
        exec_form(stage.last("CMD"))


def test_operator_image_serves_the_operator_and_the_injector_on_their_default_ports():
    stage = final("operator")
    checked = " ".join(stage.all("RUN"))
    for script in ("agentcache-operator", "agentcache-injector"):
        assert script in SCRIPTS and script in checked, f"the build must check that {script} is installed"
    operator = parse_operator_args(exec_form(stage.last("CMD")))
    injector = parse_injector_args(["--tls-dir", "/tls"])
    assert {operator.metrics_port, operator.liveness_port, injector.port} <= exposed(stage)
    assert injector.port == 10250


def test_sidecar_image_exposes_the_metrics_and_probe_port():
    assert protocol.METRICS_PORT in exposed(final("sidecar"))


def test_build_context_holds_the_whole_distribution_and_the_crd(tmp_path):
    """Replays the build stage's COPYs into a directory: the packages and the CRD symlink's target are there."""
    build = parse(DOCKERFILE)[0]
    assert build.name == "build"
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


def test_every_stage_runs_a_python_the_distribution_supports():
    minimum = tuple(map(int, PYPROJECT["project"]["requires-python"].removeprefix(">=").split(".")))
    stages = parse(DOCKERFILE)
    bases = {stage.name: stage.base for stage in stages}
    for stage in stages:
        base = stage.base
        while base in bases:
            base = bases[base]
        version = re.match(r"python:(\d+)\.(\d+)", base)
        assert version and tuple(map(int, version.groups())) >= minimum, stage.base


def test_build_context_ignores_everything_but_what_the_build_copies():
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "**" in ignore, "the repository root (with .venv and tools) must not be sent as the context"
    for args in parse(DOCKERFILE)[0].all("COPY"):
        for source in shlex.split(args)[:-1]:
            assert f"!{source}" in ignore, f"COPY {source} is excluded from the build context"
