"""A real Prometheus server on loopback for the tests: it scrapes the targets a test names.

Targets are file-based service discovery (one JSON file per job), so a test can add, move or
remove engines and agents while Prometheus runs; their labels stand in for what the chart's
PodMonitor and ServiceMonitor relabel in a cluster (``namespace``, ``service``, ``role``).
The server can be stopped and started again on the same port and data directory, as a
Prometheus outage looks to its clients.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from e2e.harness import provision
from e2e.harness.processes import HarnessError, ManagedProcess, free_port


@dataclass(frozen=True, slots=True)
class ScrapeTarget:
    """One endpoint to scrape: ``address`` is host:port; ``labels`` go on every series it yields."""

    address: str
    labels: Mapping[str, str] = field(default_factory=dict)
    metrics_path: str = "/metrics"


def scrape_config(targets_dir: Path, interval_s: float, rule_files: Sequence[Path]) -> str:
    """The configuration file: every ``*.json`` under ``targets_dir`` is scraped (JSON is YAML)."""
    config = {
        "global": {"scrape_interval": f"{interval_s:g}s", "evaluation_interval": f"{interval_s:g}s"},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {
                "job_name": "joulescale-tests",
                # As the chart's monitors: a series' own namespace/service/role labels (the
                # agent's) win over the target's, which only name what a page lacks (engines).
                "honor_labels": True,
                "scrape_timeout": f"{min(interval_s, 1.0):g}s",
                "file_sd_configs": [{"files": [str(targets_dir / "*.json")], "refresh_interval": "1s"}],
            }
        ],
    }
    return json.dumps(config, indent=2)


class PrometheusServer:
    """``with PrometheusServer(workdir) as prom: prom.set_targets("engines", [...])``."""

    def __init__(
        self,
        workdir: Path,
        scrape_interval_s: float = 1.0,
        rule_files: Sequence[Path] = (),
        port: int | None = None,
        binary: Path | None = None,
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.scrape_interval_s = scrape_interval_s
        self.targets_dir = workdir / "targets"
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(scrape_config(self.targets_dir, scrape_interval_s, rule_files))
        self._binary = binary or provision.ensure_binaries(["prometheus"])["prometheus"]
        self._process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> None:
        """Start (or start again after ``stop``) and wait until the server is ready."""
        if self.running():
            return
        self._process = ManagedProcess(
            "prometheus",
            [
                str(self._binary),
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1d",
                "--log.level=warn",
            ],
            self.workdir,
        )
        self._process.start()
        self._process.wait_until(lambda: self._get("/-/ready")[0] == 200, timeout_s)

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()

    def running(self) -> bool:
        return self._process is not None and self._process.running()

    def __enter__(self) -> PrometheusServer:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def set_targets(self, job: str, targets: Sequence[ScrapeTarget]) -> None:
        """Replace the targets of ``job`` (a file name); Prometheus picks the change up by itself."""
        groups = [
            {
                "targets": [t.address],
                "labels": {**t.labels, "__metrics_path__": t.metrics_path, "scrape_job": job},
            }
            for t in targets
        ]
        path = self.targets_dir / f"{job}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(groups))
        os.replace(tmp, path)  # a half-written file would drop every target of the job

    def targets(self) -> list[dict[str, Any]]:
        """The active targets as /api/v1/targets reports them."""
        data = self._api("/api/v1/targets", {"state": "active"})
        return list(data["activeTargets"])

    def wait_scraped(self, address: str, timeout_s: float = 30.0, scrapes: int = 1) -> None:
        """Wait until ``address`` has been scraped successfully ``scrapes`` times from now on
        (scrapes before the call, e.g. before a restart, do not count)."""
        deadline = time.monotonic() + timeout_s
        before = self._last_scrape(address)
        seen: set[str] = set()
        last = "not discovered yet"
        while time.monotonic() < deadline:
            for target in self.targets():
                if target["labels"].get("instance") != address:
                    continue
                last = f"health {target['health']}, last error {target.get('lastError')!r}"
                stamp = str(target.get("lastScrape", ""))
                if target["health"] == "up" and stamp != before:
                    seen.add(stamp)
            if len(seen) >= scrapes:
                return
            time.sleep(0.1)
        raise HarnessError(f"Prometheus did not scrape {address} {scrapes} times in {timeout_s:.0f} s: {last}")

    def _last_scrape(self, address: str) -> str:
        for target in self.targets():
            if target["labels"].get("instance") == address:
                return str(target.get("lastScrape", ""))
        return ""

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query's vector (``[{"metric": {...}, "value": [t, "v"]}, ...]``)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._api("/api/v1/query", params)
        result = data["result"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": result}]
        return list(result)

    def rules(self) -> list[dict[str, Any]]:
        """Every rule group loaded from ``rule_files``, with each rule's health and last error."""
        return list(self._api("/api/v1/rules", {})["groups"])

    def log_tail(self) -> str:
        return self._process.log_tail() if self._process else ""

    def _api(self, path: str, params: Mapping[str, str]) -> dict[str, Any]:
        status, body = self._get(f"{path}?{urllib.parse.urlencode(params)}")
        payload = json.loads(body)
        if status != 200 or payload.get("status") != "success":
            raise HarnessError(
                f"Prometheus {path} {dict(params)}: {status} {payload.get('error', body[:300])}"
            )
        data: dict[str, Any] = payload["data"]
        return data

    def _get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5.0) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as error:
            return int(error.code), error.read().decode()
