"""The version is written once, in pyproject.toml: the SDK, the chart, the operator's default sidecar image
and the Dockerfile's tags all say the same."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

import agentcache
from agentcache_operator import names

ROOT = Path(__file__).resolve().parents[1]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
CHART = ROOT / "charts" / "agentcache"


def test_the_installed_distribution_is_this_version():
    assert agentcache.__version__ == VERSION


def test_the_chart_and_its_app_are_this_version():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (chart["version"], chart["appVersion"]) == (VERSION, VERSION)


def test_images_are_tagged_with_this_version():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["image"]["tag"] == "", "an empty tag means the chart's appVersion"
    assert values["sidecar"]["image"] == names.SIDECAR_IMAGE_DEFAULT == f"agentcache/sidecar:{VERSION}"
    tags = re.findall(r"-t agentcache/(\w+):(\S+)", (ROOT / "Dockerfile").read_text())
    assert sorted(tags) == [("operator", VERSION), ("sidecar", VERSION)]
