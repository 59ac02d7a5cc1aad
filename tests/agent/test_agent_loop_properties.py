"""Property (hypothesis): no sequence of engine pages, good, hostile or missing, at any pace,
makes the real InstanceLoop (core policy and governor, simulated GPU) change a clock faster
than the minimum hold allows. A release is the safe direction and may come at once; a lock
after a release waits for the back-off; a lock after a lock waits for the hold unless it
raises the clock (the governor's SLO emergency)."""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from joulescale.control.governor import DEFAULT_MIN_HOLD_S
from joulescale.control.policy import Slo
from joulescale.profiles import load_profile
from joulescale_agent.clock import ManualClock
from joulescale_agent.control.corebrain import CoreBrainFactory
from joulescale_agent.control.instance import EngineInstance, InstancePolicy, LoopSettings
from joulescale_agent.control.loop import InstanceLoop
from joulescale_agent.exporter import AgentMetrics
from joulescale_agent.gpu.simstate import SimGpuDir, specs_from_profile
from joulescale_agent.gpu.simulated import SimulatedBackend
from joulescale_agent.safety.actuator import ClockActuator
from joulescale_agent.safety.statefile import StateFile
from tests.agent.fakes import PAGE
from tests.unit.agent.hostile_pages import corpus

PROFILE = "h100-sxm-llama-8b-tp1"
SETTINGS = LoopSettings(scrape_hz=20.0, stale_after_s=0.3, readback_after_s=0.03, relock_backoff_s=0.5)
BAD = [
    h.page
    for h in corpus()
    if h.engine == "vllm"
    and h.name in ("bucket le not a number", "HTML error page", "nan running", "empty page", "binary garbage")
]


class Recording(SimulatedBackend):
    """Records (time, MHz or None for a reset) of every change of the first GPU."""

    def __init__(self, root: Path, clock: ManualClock) -> None:
        super().__init__(root, clock)
        self.now = clock
        self.events: list[tuple[float, int | None]] = []

    def lock_sm_clock(self, uuid: str, min_mhz: int, max_mhz: int) -> None:
        if uuid == "GPU-0":
            self.events.append((self.now(), max_mhz))
        super().lock_sm_clock(uuid, min_mhz, max_mhz)

    def reset_sm_clock(self, uuid: str) -> None:
        if uuid == "GPU-0" and self.locked_mhz(uuid) is not None:
            self.events.append((self.now(), None))
        super().reset_sm_clock(uuid)


good_pages = st.builds(
    lambda running, waiting, tokens: PAGE.format(running=running, waiting=waiting, tokens=tokens),
    st.integers(0, 300),
    st.integers(0, 300),
    st.integers(0, 10**7),
)
scripts = st.lists(
    st.tuples(good_pages | st.sampled_from(BAD), st.floats(0.005, 0.6)), min_size=5, max_size=60
)


async def _drive(
    loop: InstanceLoop, clock: ManualClock, script: list[tuple[str | bytes, float]], page: list[str | bytes]
) -> None:
    for body, dt_s in script:
        page[0] = body
        await loop.step()
        clock.advance(dt_s)
    loop.release()


@settings(max_examples=40, deadline=None)
@given(script=scripts)
def test_no_page_sequence_changes_a_clock_faster_than_the_hold_allows(
    script: list[tuple[str | bytes, float]],
) -> None:
    clock = ManualClock()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        SimGpuDir.create(root / "gpus", specs_from_profile(load_profile(PROFILE), ["GPU-0", "GPU-1"]))
        backend = Recording(root / "gpus", clock)
        page: list[str | bytes] = [""]

        async def fetch(_: str) -> str | bytes:
            return page[0]

        loop = InstanceLoop(
            EngineInstance("ns", "decode-0", "decode", "vllm", "http://engine/metrics", ("GPU-0", "GPU-1")),
            InstancePolicy("joulescale", Slo(ttft_ms=500, tpot_ms=50), PROFILE),
            fetch=fetch,
            actuator=ClockActuator(backend, StateFile(root / "state.json")),
            brains=CoreBrainFactory(),
            metrics=AgentMetrics(),
            settings=SETTINGS,
            clock=clock,
        )
        asyncio.run(_drive(loop, clock, script, page))
    changes = [
        e
        for e, before in zip(backend.events, [(None, None), *backend.events], strict=False)
        if e[1] != before[1]
    ]
    for (before_s, before_mhz), (at_s, mhz) in itertools.pairwise(changes):
        if mhz is None:
            continue  # a release is the safe direction: allowed at once
        if before_mhz is None:
            assert at_s - before_s >= SETTINGS.relock_backoff_s, changes
        else:
            assert at_s - before_s >= DEFAULT_MIN_HOLD_S or mhz > before_mhz, changes
