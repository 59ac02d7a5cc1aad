"""Properties every policy keeps (hypothesis): inside the allowed range, f_max whenever the
SLO is at risk, never a higher clock for more slack."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from joulescale.control import (
    ClockBounds,
    DecodeProgress,
    Observation,
    QueuedPrompt,
    Slo,
    make_policy,
    policy_names,
)
from joulescale.profiles import physics as ph

from .helpers import TP4, TP8, context

CLOCKS = TP8.supported_sm_clocks_mhz
ADAPTIVE = ["voltana", "biscale", "joulescale"]

bounds = st.tuples(st.sampled_from(CLOCKS), st.sampled_from(CLOCKS)).map(
    lambda pair: ClockBounds(min_mhz=min(pair), max_mhz=max(pair))
)


@st.composite
def decode_observations(draw: st.DrawFn, rich: bool | None = None) -> Observation:
    batch = draw(st.integers(0, 256))
    per_request = draw(st.integers(1, 2000))
    use_rich = draw(st.booleans()) if rich is None else rich
    decoding = None
    if use_rich and batch:
        decoding = tuple(
            DecodeProgress(n, n * draw(st.floats(0.005, 0.2)), per_request)
            for n in draw(st.lists(st.integers(0, 800), min_size=batch, max_size=batch))
        )
    return Observation(
        phase="decode",
        now_s=draw(st.floats(0, 1e4)),
        sm_clock_mhz=draw(st.integers(200, 2100)),
        running_requests=batch,
        waiting_requests=draw(st.integers(0, 20)),
        kv_cache_usage=draw(st.floats(0, 1)),
        context_tokens=batch * per_request,
        generation_tokens_delta=draw(st.integers(0, 5000)),
        iterations_delta=draw(st.integers(0, 20)),
        preemptions_delta=draw(st.sampled_from([0, 0, 0, 1])),
        interval_s=draw(st.floats(0, 0.2)),
        last_iteration_s=draw(st.none() | st.floats(0.001, 0.5)),
        mean_iteration_s=draw(st.none() | st.floats(0.001, 0.5)),
        decoding=decoding,
    )


@st.composite
def prefill_observations(draw: st.DrawFn) -> Observation:
    now_s = draw(st.floats(10, 1e4))
    waiting = draw(st.integers(0, 64))
    running = draw(st.integers(0, 4))
    queue = None
    if draw(st.booleans()):
        lengths = draw(
            st.lists(st.integers(1, 16_000), min_size=waiting + running, max_size=waiting + running)
        )
        waits = sorted(
            draw(st.lists(st.floats(0, 2), min_size=len(lengths), max_size=len(lengths))), reverse=True
        )
        queue = tuple(QueuedPrompt(n, now_s - w) for n, w in zip(lengths, waits, strict=True))
    return Observation(
        phase="prefill",
        now_s=now_s,
        sm_clock_mhz=draw(st.integers(200, 2100)),
        running_requests=running,
        waiting_requests=waiting,
        kv_cache_usage=draw(st.floats(0, 1)),
        context_tokens=draw(st.integers(0, 16_000)),
        prompt_tokens_delta=draw(st.integers(0, 50_000)),
        generation_tokens_delta=draw(st.integers(0, 50)),
        iterations_delta=draw(st.integers(0, 5)),
        interval_s=draw(st.floats(0, 0.2)),
        last_iteration_s=draw(st.none() | st.floats(0.001, 2)),
        mean_iteration_s=draw(st.none() | st.floats(0.001, 2)),
        oldest_wait_s=draw(st.none() | st.floats(0, 3)),
        queue=queue,
    )


observations = st.one_of(decode_observations(), prefill_observations())


@settings(max_examples=150, deadline=None)
@given(
    name=st.sampled_from(policy_names()),
    limits=bounds,
    sequence=st.lists(observations, min_size=1, max_size=6),
    static_mhz=st.integers(100, 2500),
)
def test_every_decision_stays_inside_the_allowed_clocks(
    name: str, limits: ClockBounds, sequence: list[Observation], static_mhz: int
) -> None:
    ctx = context(profile=TP4, bounds=limits, static_clock_mhz=static_mhz)
    policy = make_policy(name, ctx)
    for observation in sequence:
        assert policy.decide(observation).sm_clock_mhz in ctx.allowed_mhz


@settings(max_examples=100, deadline=None)
@given(name=st.sampled_from(ADAPTIVE), observation=decode_observations(), limits=bounds)
def test_decode_runs_the_top_clock_whenever_even_it_misses_the_tpot_budget(
    name: str, observation: Observation, limits: ClockBounds
) -> None:
    batch = observation.running_requests
    if batch == 0:
        return
    fresh = (DecodeProgress(0, 0.0, 100),) * batch if observation.decoding else None
    at_risk = Observation(
        "decode",
        observation.now_s,
        observation.sm_clock_mhz,
        batch,
        observation.waiting_requests,
        observation.kv_cache_usage,
        observation.context_tokens,
        decoding=fresh,
    )
    top = limits.max_mhz
    # Half the top clock's step time: a miss for every policy's budget, voltana's included, whose
    # budget is the SLO times (1 + its 0.35 margin).
    tpot_ms = 0.5 * 1000 * ph.decode_latency_s(TP8, batch, observation.context_tokens, top)
    decision = make_policy(name, context(bounds=limits, slo=Slo(ttft_ms=600, tpot_ms=tpot_ms))).decide(
        at_risk
    )
    assert decision.sm_clock_mhz == max(c for c in CLOCKS if c <= top)


@settings(max_examples=100, deadline=None)
@given(name=st.sampled_from(ADAPTIVE), observation=prefill_observations(), limits=bounds)
def test_prefill_runs_the_top_clock_whenever_a_request_already_waited_out_its_ttft(
    name: str, observation: Observation, limits: ClockBounds
) -> None:
    late_by_s = 0.6
    queue = None
    if observation.queue:
        queue = (QueuedPrompt(500, observation.now_s - late_by_s), *observation.queue[1:])
    at_risk = Observation(
        "prefill",
        observation.now_s,
        observation.sm_clock_mhz,
        observation.running_requests + 1,
        observation.waiting_requests,
        observation.kv_cache_usage,
        observation.context_tokens,
        oldest_wait_s=late_by_s,
        queue=queue,
    )
    decision = make_policy(name, context(bounds=limits)).decide(at_risk)
    assert decision.sm_clock_mhz == max(c for c in CLOCKS if c <= limits.max_mhz)


@settings(max_examples=100, deadline=None)
@given(
    name=st.sampled_from(ADAPTIVE),
    observation=decode_observations(),
    tpot_ms=st.floats(5, 200),
    extra_ms=st.floats(0, 100),
)
def test_decode_never_runs_a_higher_clock_for_a_looser_tpot(
    name: str, observation: Observation, tpot_ms: float, extra_ms: float
) -> None:
    def clock(tpot: float) -> int:
        return make_policy(name, context(slo=Slo(ttft_ms=600, tpot_ms=tpot))).decide(observation).sm_clock_mhz

    assert clock(tpot_ms + extra_ms) <= clock(tpot_ms)


@settings(max_examples=100, deadline=None)
@given(observation=decode_observations(rich=True), speedup=st.floats(0.0, 1.0), tpot_ms=st.floats(10, 60))
def test_joulescale_decode_never_runs_a_higher_clock_for_requests_further_ahead(
    observation: Observation, speedup: float, tpot_ms: float
) -> None:
    if not observation.decoding:
        return
    ahead = tuple(
        DecodeProgress(r.output_tokens, r.decode_seconds * speedup, r.context_tokens)
        for r in observation.decoding
    )
    ctx = context(slo=Slo(ttft_ms=600, tpot_ms=tpot_ms))
    base = make_policy("joulescale", ctx).decide(observation)
    faster = make_policy("joulescale", ctx).decide(
        Observation(
            "decode",
            observation.now_s,
            observation.sm_clock_mhz,
            observation.running_requests,
            observation.waiting_requests,
            observation.kv_cache_usage,
            observation.context_tokens,
            decoding=ahead,
        )
    )
    assert faster.sm_clock_mhz <= base.sm_clock_mhz


@settings(max_examples=100, deadline=None)
@given(
    name=st.sampled_from(["voltana", "joulescale"]),
    observation=prefill_observations(),
    ttft_ms=st.floats(100, 3000),
    extra_ms=st.floats(0, 2000),
)
def test_prefill_never_runs_a_higher_clock_for_a_looser_ttft(
    name: str, observation: Observation, ttft_ms: float, extra_ms: float
) -> None:
    def clock(ttft: float) -> int:
        return make_policy(name, context(slo=Slo(ttft_ms=ttft, tpot_ms=100))).decide(observation).sm_clock_mhz

    assert clock(ttft_ms + extra_ms) <= clock(ttft_ms)
