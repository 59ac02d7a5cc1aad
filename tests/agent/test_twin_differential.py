"""Issue 12 item 4: the twin measures what the agent does.

One scripted request sequence (idle, a burst, steady load, idle) runs through (b) two simulated
engines on loopback (the core engine model behind its real HTTP face) controlled by the agent as
its command line assembles it (static instances file, simulated GPU backend, httpx scrapes), with
a load generator replaying the script, and (a) the twin (``simulate``: one prefill and one decode
instance, the metrics view, the same policy). The loopback side runs in one virtual-time event
loop (e2e/harness/virtualtime.py): time moves only when every component waits, so the run is the
same on an idle and on a loaded host, and a decision cannot flip on scheduling jitter. The twin
reads each page at the instants the agent read it (the scrape phase is the agent's start, which
the twin cannot know) and hands each request to prefill and decode when it reached them on
loopback. Both must request the same clocks in the same order, each within one scrape period,
and spend the same energy in every phase (within 2 %: the simulated GPU's energy counter against
the twin's busy segments and idle time).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from joulescale.control.policy import Slo
from joulescale.profiles import load_profile, physics
from joulescale.twin.traces import TraceRequest
from tests.agent.differential import PHASES, SideResult, run_loopback, run_twin

PROFILE = load_profile("h100-sxm-llama-8b-tp1")
BURST = [3000 + 100 * i for i in range(8)]
"""The burst's prompt lengths: eight long requests that build up one decode batch."""
TPOT_OVER_BURST_FLOOR = 1.075
"""The TPOT SLO over the burst batch's step time at the lowest clock: tight enough that the
decode policies' margins make them raise the clock while the burst decodes, loose enough that
the lowest clock serves the light load. Derived from the profile, so a regenerated profile keeps
the script exercising the policies."""
SLO = Slo(
    ttft_ms=1000.0,
    tpot_ms=round(
        TPOT_OVER_BURST_FLOOR
        * physics.decode_latency_s(PROFILE, len(BURST), sum(BURST), PROFILE.min_sm_clock_mhz)
        * 1000.0,
        2,
    ),
    percentile=90,
)
SCRAPE_PERIOD_S = 0.05
"""The agent's default (--scrape-hz 20) and the twin's."""
ENERGY_TOLERANCE = 0.02
PHASE_ENDS_S = (1.5, 5.0, 11.0, 13.0)
LAST_REQUEST_S = 13.3
"""A one-token request after the last phase: the twin runs until every request is done."""
"""idle until 1.5 s, a burst until 5 s, steady load until 11 s, idle until 13 s."""


def script() -> list[TraceRequest]:
    """Deterministic arrivals, spaced wider than a scrape period plus the governor's hold so each
    one is its own event: a burst of eight long requests that build up one decode batch, then one
    short request every half second, then a one-token request that ends the last idle phase (the
    twin runs until every request is done)."""
    idle_end, burst_end, steady_end, _ = PHASE_ENDS_S
    burst = [TraceRequest(idle_end + 0.3 * i, prompt, 300) for i, prompt in enumerate(BURST)]
    steady = [
        TraceRequest(burst_end + 0.5 * i, 1000 + 500 * (i % 3), 40)
        for i in range(int((steady_end - burst_end) * 2))
    ]
    return [*burst, *steady, TraceRequest(LAST_REQUEST_S, 1, 1)]


def _describe(twin: SideResult, loop: SideResult) -> str:
    gaps = [
        abs(max(lt, 0.0) - tt)
        for phase in PHASES
        for (tt, _), (lt, _) in zip(twin.requests[phase], loop.requests[phase], strict=False)
    ]
    errors = [
        abs(lj - tj) / tj
        for phase in PHASES
        for tj, lj in zip(twin.energy_j[phase], loop.energy_j[phase], strict=True)
        if tj > 0
    ]
    lines = [
        f"largest timing gap {max(gaps, default=0.0) * 1000:.1f} ms, energy error {max(errors) * 100:.2f} %"
    ]
    for phase in PHASES:
        lines.append(f"{phase} twin {[(round(t, 3), m) for t, m in twin.requests[phase]]}")
        lines.append(f"{phase} loop {[(round(t, 3), m) for t, m in loop.requests[phase]]}")
        lines.append(
            f"{phase} energy twin {[round(e) for e in twin.energy_j[phase]]} "
            f"loop {[round(e) for e in loop.energy_j[phase]]}"
        )
    return "\n".join(lines)


@pytest.mark.quiet
@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("policy", "engine"),
    [
        pytest.param("joulescale", "vllm"),
        ("biscale", "vllm"),
        ("joulescale", "sglang"),
    ],
)
def test_twin_and_agent_on_loopback_make_the_same_decisions_and_spend_the_same_energy(
    tmp_path: Path, policy: str, engine: str
) -> None:
    requests = script()
    agent_policy = {
        "policy": policy,
        "profile": PROFILE.name,
        "slo": {"ttft_ms": SLO.ttft_ms, "tpot_ms": SLO.tpot_ms, "percentile": SLO.percentile},
    }
    loop = run_loopback(tmp_path, PROFILE, agent_policy, engine, requests, [0.0, *PHASE_ENDS_S])
    twin = run_twin(
        requests, PROFILE, policy, SLO, SCRAPE_PERIOD_S, loop.windows, loop.scrapes_s, loop.handover_s, engine
    )
    report = _describe(twin, loop)
    print(report)

    assert len(loop.requests["decode"]) >= 5, report  # the script makes the policy work
    for phase in PHASES:
        for twin_j, loop_j in zip(twin.energy_j[phase], loop.energy_j[phase], strict=True):
            assert loop_j == pytest.approx(twin_j, rel=ENERGY_TOLERANCE), report
    # Locks were recorded until the replay ended; the agent (and the twin, replaying its scrapes)
    # went on deciding after that, so both sides are compared up to one decision's reach before.
    mismatch = _decision_mismatch(twin, loop, loop.watched_until_s - SCRAPE_PERIOD_S)
    assert mismatch is None, f"{mismatch}\n{report}"


def _decision_mismatch(twin: SideResult, loop: SideResult, horizon_s: float) -> str | None:
    """Why the two sides' clock requests differ (same clocks in the same order, each within one
    scrape period), or None when they agree."""
    for phase in PHASES:
        twin_requests = [(t, mhz) for t, mhz in twin.requests[phase] if t <= horizon_s]
        loop_requests = [(t, mhz) for t, mhz in loop.requests[phase] if t <= horizon_s]
        if [mhz for _, mhz in loop_requests] != [mhz for _, mhz in twin_requests]:
            return f"{phase}: different clock sequences"
        # A decision before traffic is taken when the agent starts, the twin's at its zero.
        for (twin_s, _), (loop_s, _) in zip(twin_requests, loop_requests, strict=True):
            if abs(max(loop_s, 0.0) - twin_s) > SCRAPE_PERIOD_S:
                return f"{phase}: a decision {abs(max(loop_s, 0.0) - twin_s) * 1000:.0f} ms apart"
    return None
