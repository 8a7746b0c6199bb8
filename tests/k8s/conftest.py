"""The Kubernetes fixtures, until tests/conftest.py registers tests.support.k8s as a plugin."""

from tests.support.k8s import *  # noqa: F401,F403
