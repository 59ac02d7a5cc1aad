"""The /metrics page of one simulated engine instance, kept as the real engine keeps it.

An engine model reports what happens (a prefill batch forms, a step ends, a request gets its
first token, a request finishes, a request is preempted); the recorder grows the cumulative
counters and histograms with the dialect's bucket edges and holds the scheduler gauges as last
*published* under the dialect's rules (``dialects``):

- vLLM V1: the gauges are those of the last step end (a scrape in the middle of a step shows the
  previous step); token counters grow per step; iteration tokens, queue and prefill times exist.
- SGLang: the gauges change when a prefill batch forms (running: the running decode batch, not
  the new prefill one; KV usage before the new batch's allocation) and every
  ``decode_log_interval`` decode steps, KV usage rounded to 0.01; token counters grow when a
  request finishes; no iteration, queue or prefill histograms.

Both engines observe one inter-token latency per generated token (a step's duration, once per
token of the step), so ``observe`` takes a multiplicity and a step costs O(1). ``sample()`` is the
page a scrape reads now.
"""

from __future__ import annotations

from joulescale.engines.dialects import EngineDialect
from joulescale.engines.histogram import HistogramRecorder
from joulescale.engines.sample import EngineSample


def _recorder(edges: tuple[float, ...] | None) -> HistogramRecorder | None:
    return HistogramRecorder(edges) if edges is not None else None


class MetricsRecorder:
    """The counters, histograms and published gauges of one engine instance."""

    __slots__ = (
        "_decode_steps",
        "_per_step_counters",
        "_publish_at_batch",
        "_sample",
        "dialect",
        "generation_tokens",
        "iteration_tokens",
        "itl",
        "kv_capacity_tokens",
        "kv_tokens",
        "preemptions",
        "prefill_time",
        "prompt_tokens",
        "queue_time",
        "running",
        "ttft",
        "waiting",
    )

    def __init__(self, dialect: EngineDialect, kv_capacity_tokens: int) -> None:
        if kv_capacity_tokens <= 0:
            raise ValueError("kv_capacity_tokens must be positive")
        self.dialect = dialect
        self.kv_capacity_tokens = kv_capacity_tokens
        self._per_step_counters = dialect.counters == "step-end"
        self._publish_at_batch = dialect.gauges == "batch-and-interval"
        self._decode_steps = 0
        self._sample: EngineSample | None = None
        """The page as last sampled; None once anything changed since."""
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.preemptions = 0
        self.running = 0
        """Published gauges: what the page shows, not what the scheduler holds now."""
        self.waiting = 0
        self.kv_tokens = 0
        self.ttft = HistogramRecorder(dialect.ttft_edges_s)
        self.itl = HistogramRecorder(dialect.itl_edges_s)
        self.queue_time = _recorder(dialect.queue_edges_s)
        self.prefill_time = _recorder(dialect.prefill_edges_s)
        self.iteration_tokens = _recorder(dialect.iteration_token_edges)

    def _publish(self, running: int, waiting: int, kv_tokens: int) -> None:
        self.running = running
        self.waiting = waiting
        self.kv_tokens = kv_tokens

    # --- what the model reports --------------------------------------------------------------
    def batch_formed(self, running: int, waiting: int, kv_tokens: int) -> None:
        """A prefill batch was scheduled: ``running`` counts the running decode batch (not the new
        prefill requests), ``waiting`` what is left queued, ``kv_tokens`` the cache in use before
        the new batch's allocation (what SGLang's ``log_prefill_stats`` publishes)."""
        self._sample = None
        if self._publish_at_batch:
            self._publish(running, waiting, kv_tokens)

    def step_ended(self, *, scheduled_tokens: int, prompt_tokens: int, generated_tokens: int,
                   itl_tokens: int, step_s: float, running: int, waiting: int, kv_tokens: int,
                   decode: bool) -> None:
        """A step ended. ``scheduled_tokens``: tokens the step computed (chunks, recomputes and
        decode tokens); ``prompt_tokens``: prompts whose prefill completed in it (vLLM counts a
        prompt with its first token); ``generated_tokens``: tokens it produced, of which
        ``itl_tokens`` followed a token of the previous step (``step_s`` after it); the gauges
        are the scheduler's state after the step."""
        self._sample = None
        if self.iteration_tokens is not None:
            self.iteration_tokens.observe(scheduled_tokens)
        if self._per_step_counters:
            self.prompt_tokens += prompt_tokens
            self.generation_tokens += generated_tokens
        if itl_tokens > 0:
            self.itl.observe(step_s, itl_tokens)
        if not self._publish_at_batch:
            self._publish(running, waiting, kv_tokens)
        elif decode:
            self._decode_steps += 1
            if self._decode_steps % self.dialect.decode_log_interval == 0:
                self._publish(running, waiting, kv_tokens)

    def token_after_gap(self, gap_s: float) -> None:
        """One token that followed its request's previous token by ``gap_s`` (a request resumed
        after a preemption): one inter-token latency longer than the step."""
        self._sample = None
        self.itl.observe(gap_s)

    def first_token(self, ttft_s: float) -> None:
        self._sample = None
        self.ttft.observe(ttft_s)

    def request_finished(self, *, prompt_tokens: int, generated_tokens: int, queue_s: float,
                         prefill_s: float) -> None:
        """A request left the instance: ``queue_s`` from its arrival to its first schedule,
        ``prefill_s`` from then to its first token here (vLLM books both at finish)."""
        self._sample = None
        if not self._per_step_counters:
            self.prompt_tokens += prompt_tokens
            self.generation_tokens += generated_tokens
        if self.queue_time is not None:
            self.queue_time.observe(queue_s)
        if self.prefill_time is not None:
            self.prefill_time.observe(prefill_s)

    def preempted(self, count: int = 1) -> None:
        self._sample = None
        self.preemptions += count

    # --- what a scrape reads -----------------------------------------------------------------
    def sample(self) -> EngineSample:
        """The page as a scrape reads it now (the same object while nothing changed)."""
        if self._sample is not None:
            return self._sample
        usage = min(1.0, self.kv_tokens / self.kv_capacity_tokens)
        if self.dialect.kv_usage_decimals is not None:
            usage = round(usage, self.dialect.kv_usage_decimals)
        self._sample = EngineSample(
            running_requests=self.running,
            waiting_requests=self.waiting,
            kv_cache_usage=usage,
            kv_capacity_tokens=self.kv_capacity_tokens,
            prompt_tokens_total=float(self.prompt_tokens),
            generation_tokens_total=float(self.generation_tokens),
            preemptions_total=float(self.preemptions),
            iteration_tokens=self.iteration_tokens.snapshot() if self.iteration_tokens is not None else None,
            ttft=self.ttft.snapshot(),
            inter_token_latency=self.itl.snapshot(),
            queue_time=self.queue_time.snapshot() if self.queue_time is not None else None,
            prefill_time=self.prefill_time.snapshot() if self.prefill_time is not None else None,
        )
        return self._sample
