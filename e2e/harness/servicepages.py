"""Engine and agent pages of many services from one HTTP server, for a real Prometheus to scrape.

Each (namespace, service, role) page holds what a vLLM engine of that role publishes (rendered
by the simulated engine's page writer, e2e/simengine/metrics.py, with vLLM's bucket edges) and
what its node agent publishes for its GPU (the agent's own exporter, AgentMetrics: the energy
counter, the read-back clock and power), grown from a steady traffic at each read: requests at
``rate_rps`` with fixed lengths, latencies and power. A test or a bench changes ``rate_rps`` to
ramp the load. Cheaper than a simulated engine per role: the planner loop's integration test and
bench/planner_loop.py need many services' series in Prometheus, not engines that serve.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from e2e.harness.prometheus import ScrapeTarget
from e2e.simengine.metrics import render_vllm
from joulescale.engines.dialects import VLLM_ITL_EDGES_S, VLLM_TTFT_EDGES_S
from joulescale.engines.histogram import HistogramRecorder
from joulescale.engines.sample import EngineSample
from joulescale_agent.exporter import AgentMetrics

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


@dataclass(slots=True)
class RolePage:
    """One engine pod of a role: ``rate_rps`` is its share of the service's load."""

    namespace: str
    service: str
    role: str
    rate_rps: float
    index: int = 0
    prompt_tokens: int = 1000
    output_tokens: int = 200
    ttft_s: float = 0.2
    slow_ttft_s: float = 0.45
    slow_share: float = 0.01
    """This share of first tokens takes ``slow_ttft_s`` (a P99 tail), the rest ``ttft_s``."""
    itl_s: float = 0.03
    idle_watts: float = 90.0
    joules_per_request: float = 12.0
    """GPU energy above idle per request served by this role (about what the twin's tables give
    Llama-8B TP1 on H100 at the lengths above)."""
    sm_clock_mhz: int = 1410
    """What the agent reads back; a test sets it to the planned base clock, as the agent would."""
    _requests: float = 0.0
    _energy_j: float = 0.0
    _last_s: float | None = None
    _ttft: HistogramRecorder = field(default_factory=lambda: HistogramRecorder(VLLM_TTFT_EDGES_S))
    _itl: HistogramRecorder = field(default_factory=lambda: HistogramRecorder(VLLM_ITL_EDGES_S))
    _agent: AgentMetrics = field(default_factory=AgentMetrics)

    def advance(self, now_s: float) -> None:
        elapsed = 0.0 if self._last_s is None else max(0.0, now_s - self._last_s)
        self._last_s = now_s
        before = int(self._requests)
        self._requests += self.rate_rps * elapsed
        new = int(self._requests) - before
        self._energy_j += (self.idle_watts + self.joules_per_request * self.rate_rps) * elapsed
        if new > 0:
            slow = round(new * self.slow_share)
            self._ttft.observe(self.ttft_s, new - slow)
            self._ttft.observe(self.slow_ttft_s, slow)
            if self.role == "decode":
                self._itl.observe(self.itl_s, new * (self.output_tokens - 1))

    def render(self) -> str:
        served = int(self._requests)
        decode = self.role == "decode"
        sample = EngineSample(
            running_requests=0, waiting_requests=0, kv_cache_usage=0.0, kv_capacity_tokens=None,
            prompt_tokens_total=float(served * self.prompt_tokens) if not decode else 0.0,
            generation_tokens_total=float(served * (self.output_tokens if decode else 1)),
            preemptions_total=0.0, ttft=self._ttft.snapshot(),
            inter_token_latency=self._itl.snapshot() if decode else None,
        )
        labels = (f"GPU-{self.service}-{self.role}-{self.index}", self.namespace, self.service,
                  f"{self.service}-{self.role}-{self.index}", self.role)
        self._agent.set_energy(labels, self._energy_j)
        self._agent.actual_clock.labels(*labels).set(self.sm_clock_mhz)
        self._agent.power.labels(*labels).set(self.idle_watts + self.joules_per_request * self.rate_rps)
        return render_vllm(sample, MODEL) + self._agent.render().decode()


class ServicePages:
    """``with ServicePages() as pages: pages.add("ns", "svc", rate_rps=2.0)``; ``targets()`` for
    PrometheusServer.set_targets (labels namespace, service, role, pod, as the chart's monitors
    set). Each role has one page per engine pod (``set_pods``), the service's rate split evenly."""

    def __init__(self) -> None:
        self.pages: dict[tuple[str, str, str, str], RolePage] = {}
        self._rates: dict[tuple[str, str], float] = {}
        self._traits: dict[tuple[str, str], dict[str, float]] = {}
        self._lock = threading.Lock()
        pages = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = self.path.strip("/").split("/")
                key = (parts[1], parts[2], parts[3], parts[4]) if len(parts) == 5 and parts[0] == "metrics" else None
                with pages._lock:
                    page = pages.pages.get(key) if key is not None else None
                    if page is not None:
                        page.advance(time.monotonic())
                        text = page.render().encode()
                if page is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="service-pages", daemon=True)

    @property
    def address(self) -> str:
        port = self._server.server_address[1]
        return f"127.0.0.1:{port}"

    def add(self, namespace: str, service: str, rate_rps: float, **traits: float) -> None:
        """A service with one engine pod per role."""
        self._rates[(namespace, service)] = rate_rps
        self._traits[(namespace, service)] = dict(traits)
        for role in ("prefill", "decode"):
            self.set_pods(namespace, service, role, 1)

    def _role_pages(self, namespace: str, service: str, role: str) -> list[RolePage]:
        return [p for (ns, svc, r, _), p in self.pages.items() if (ns, svc, r) == (namespace, service, role)]

    def set_pods(self, namespace: str, service: str, role: str, pods: int) -> None:
        """Engine pods of a role (as its Deployment scales): pages appear or go, the load is re-split."""
        with self._lock:
            now = time.monotonic()
            for index in range(pods):
                key = (namespace, service, role, str(index))
                if key not in self.pages:
                    page = RolePage(namespace, service, role, 0.0, index, **self._traits[(namespace, service)])  # type: ignore[arg-type]
                    page.advance(now)
                    self.pages[key] = page
            for key in [k for k in self.pages if k[:3] == (namespace, service, role) and int(k[3]) >= pods]:
                del self.pages[key]
            self._split(namespace, service, now)

    def set_clock(self, namespace: str, service: str, role: str, mhz: int) -> None:
        """The SM clock the role's agents read back (the planned base clock, once they follow it)."""
        with self._lock:
            for page in self._role_pages(namespace, service, role):
                page.advance(time.monotonic())
                page.sm_clock_mhz = mhz

    def set_rate(self, namespace: str, service: str, rate_rps: float) -> None:
        with self._lock:
            self._rates[(namespace, service)] = rate_rps
            self._split(namespace, service, time.monotonic())

    def _split(self, namespace: str, service: str, now: float) -> None:
        for role in ("prefill", "decode"):
            own = self._role_pages(namespace, service, role)
            for page in own:
                page.advance(now)
                page.rate_rps = self._rates[(namespace, service)] / len(own)

    def targets(self) -> list[ScrapeTarget]:
        with self._lock:
            keys = list(self.pages)
        return [
            ScrapeTarget(self.address, {"namespace": ns, "service": svc, "role": role, "pod": f"{svc}-{role}-{i}"},
                         metrics_path=f"/metrics/{ns}/{svc}/{role}/{i}")
            for ns, svc, role, i in keys
        ]

    def __enter__(self) -> ServicePages:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
