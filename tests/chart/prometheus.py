"""A real Prometheus server (Debian's package) on 127.0.0.1 with a temporary config and TSDB."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import requests
import yaml

from tests.support.tools import require_tool
from tests.support.valkey import free_port


class PrometheusProcess:
    def __init__(self, workdir: Path, targets: list[tuple[str, dict[str, str]]], scrape_interval: str = "1s"):
        """``targets``: (host:port, static labels) pairs, each a scrape target of job ``agentcache``."""
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
                    "scrape_configs": [
                        {
                            "job_name": "agentcache",
                            "scrape_interval": scrape_interval,
                            "scrape_timeout": scrape_interval,
                            "static_configs": [{"targets": [address], "labels": labels} for address, labels in targets],
                        }
                    ],
                }
            )
        )
        self.log_path = workdir / "prometheus.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> "PrometheusProcess":
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    require_tool("prometheus"),
                    f"--config.file={self.config_path}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                    "--storage.tsdb.retention.time=1h",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        log = self.log_path.read_text(errors="replace")
        self.stop()
        raise RuntimeError(f"prometheus did not become ready:\n{log}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def query(self, expr: str) -> dict:
        """``/api/v1/query`` now; answers the JSON body (status ``error`` with errorType for a bad query)."""
        return requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10).json()

    def label_values(self, label: str, match: str) -> list[str]:
        reply = requests.get(f"{self.url}/api/v1/label/{label}/values", params={"match[]": match}, timeout=10).json()
        assert reply["status"] == "success", reply
        return reply["data"]
