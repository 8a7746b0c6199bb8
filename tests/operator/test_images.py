"""Images are exact versions, written once: the Valkey the operator runs is the Valkey the tests run."""

from __future__ import annotations

import re
import subprocess

import yaml

from agentcache_operator import names
from tests.support.tools import ROOT, require_tool

VALUES = yaml.safe_load((ROOT / "charts" / "agentcache" / "values.yaml").read_text())


def test_the_valkey_image_is_the_exact_version_the_tests_run():
    tag = names.VALKEY_IMAGE_DEFAULT.rsplit(":", 1)[1]
    assert re.fullmatch(r"\d+\.\d+\.\d+", tag), f"{names.VALKEY_IMAGE_DEFAULT} floats: pin major.minor.patch"
    version = subprocess.run([require_tool("valkey-server"), "--version"], capture_output=True, text=True).stdout
    assert f"v={tag} " in version, f"the tests run {version.split()[2]}, the operator deploys {tag}"


def test_the_chart_deploys_the_same_images_as_the_operator_and_injector_default_to():
    assert VALUES["valkey"]["image"] == names.VALKEY_IMAGE_DEFAULT
    assert VALUES["sidecar"]["image"] == names.SIDECAR_IMAGE_DEFAULT
