"""The engine's /metrics in the vLLM V1 format (names, labels, buckets of vLLM v0.11-0.12)."""

from __future__ import annotations

import prometheus_client

TTFT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
    2560.0,
)
ITL_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
)
QUEUE_BUCKETS = (
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
    240.0,
    480.0,
    960.0,
    1920.0,
    7680.0,
)
ITERATION_TOKEN_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)


class EngineMetrics:
    def __init__(self, model_name: str, kv_capacity_tokens: int, block_size: int = 16) -> None:
        self.registry = prometheus_client.CollectorRegistry(auto_describe=True)
        labels = {"model_name": model_name, "engine": "0"}
        names = list(labels)
        r = self.registry

        def gauge(name: str, doc: str) -> prometheus_client.Gauge:
            return prometheus_client.Gauge(name, doc, names, registry=r)

        self._running = gauge("vllm:num_requests_running", "Number of requests in model execution batches.")
        self._waiting = gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.")
        self._kv = gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.")
        counters = {
            "prompt": ("vllm:prompt_tokens", "Number of prefill tokens processed."),
            "generation": ("vllm:generation_tokens", "Number of generation tokens processed."),
            "preemptions": ("vllm:num_preemptions", "Cumulative number of preemption from the engine."),
        }
        made = {k: prometheus_client.Counter(n, d, names, registry=r) for k, (n, d) in counters.items()}

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> prometheus_client.Histogram:
            return prometheus_client.Histogram(name, doc, names, buckets=buckets, registry=r)

        iteration = histogram(
            "vllm:iteration_tokens_total",
            "Histogram of number of tokens per engine_step.",
            tuple(float(b) for b in ITERATION_TOKEN_BUCKETS),
        )
        ttft = histogram(
            "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", TTFT_BUCKETS
        )
        itl = histogram(
            "vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", ITL_BUCKETS
        )
        queue = histogram(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            QUEUE_BUCKETS,
        )
        info = prometheus_client.Gauge(
            "vllm:cache_config_info",
            "Information of the LLMEngine CacheConfig",
            ["block_size", "engine", "num_gpu_blocks"],
            registry=r,
        )
        info.labels(str(block_size), "0", str(kv_capacity_tokens // block_size)).set(1)
        self._gauges = [g.labels(**labels) for g in (self._running, self._waiting, self._kv)]
        self.prompt_tokens = made["prompt"].labels(**labels)
        self.generation_tokens = made["generation"].labels(**labels)
        self.preemptions = made["preemptions"].labels(**labels)
        self.iteration_tokens = iteration.labels(**labels)
        self.ttft = ttft.labels(**labels)
        self.itl = itl.labels(**labels)
        self.queue_time = queue.labels(**labels)

    def set_queue(self, running: int, waiting: int, kv_usage: float) -> None:
        running_g, waiting_g, kv_g = self._gauges
        running_g.set(running)
        waiting_g.set(waiting)
        kv_g.set(kv_usage)

    def render(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)
