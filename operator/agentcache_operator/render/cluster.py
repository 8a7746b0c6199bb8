"""Forming a managed Valkey cluster: an idempotent script and the Job that runs it.

The script is the whole bootstrap logic; tests run this very text against real
valkey-server processes.
"""

from __future__ import annotations

from .common import script

BOOTSTRAP_SCRIPT = script("bootstrap.sh")
