"""docs/dev/EXTENDING.md, "A new engine", done the way the recipe says.

The recipe's three code blocks run as they would sit in their files (each in its module's own
names), for the page's imaginary engine ``tgi-like``. With nothing else edited, the recorder
keeps its page by its dialect, its page writer writes it, the agent's adapter reads it back to
the same sample, the core builder makes the observations of it, ``joulescale twin compare
--engine tgi-like`` runs, and once unregistered the name is unknown everywhere again.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, get_args

import aiohttp
import pytest
from aiohttp import web

import e2e.simengine.metrics as simengine_metrics
import joulescale.engines.dialects as dialects
import joulescale_agent.engines.adapters as adapters
from e2e.simengine.core import SimEngine
from e2e.simengine.server import make_app
from joulescale.api.engine import EngineName
from joulescale.cli import main
from joulescale.engines.dialects import ENGINE_NAMES, EngineDialect, dialect_for, registered_dialect
from joulescale.engines.observe import ObservationBuilder
from joulescale.engines.recorder import MetricsRecorder
from joulescale.engines.sample import EngineSample
from joulescale.profiles import load_profile
from joulescale.twin.settings import CompareSettings, SettingError
from joulescale_agent.engines import ADAPTERS, adapter_for, parse_page
from joulescale_agent.engines.adapters import ChainAdapter, registered_adapter
from joulescale_agent.gpu.simstate import SimGpuDir, specs_from_profile
from tests.agent.fakes import site_port

REPO = Path(__file__).resolve().parents[2]
NAME = "tgi-like"
KV_CAPACITY = 200_000


def section() -> str:
    text = (REPO / "docs" / "dev" / "EXTENDING.md").read_text(encoding="utf-8")
    match = re.search(r"^## A new engine\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match is not None, "EXTENDING.md has no section 'A new engine'"
    return match.group(1)


def code_blocks() -> dict[str, str]:
    """The recipe's Python blocks by the file their first line says they go in (dedented)."""
    blocks: dict[str, str] = {}
    for block in re.findall(r"^( *)```python\n(.*?)^\1```$", section(), re.MULTILINE | re.DOTALL):
        indent, code = block
        lines = [line.removeprefix(indent) for line in code.splitlines()]
        header = re.match(r"# (\S+), ", lines[0])
        assert header is not None, f"a block names its file on its first line: {lines[0]!r}"
        blocks[header.group(1)] = "\n".join(lines) + "\n"
    return blocks


def run_in(module: ModuleType, code: str, **names: object) -> dict[str, Any]:
    """``code`` executed with the module's own names, some replaced (to catch a registration)."""
    namespace = {**vars(module), **names}
    exec(compile(code, f"<EXTENDING.md into {module.__name__}>", "exec"), namespace)
    return namespace


@dataclass(frozen=True, slots=True)
class Recipe:
    dialect: EngineDialect
    adapter: Callable[[], ChainAdapter]
    render: Callable[[EngineSample, str], str]


def follow_recipe() -> Recipe:
    """Each block run where the recipe puts it; what it registers is caught, not kept."""
    blocks = code_blocks()
    caught: dict[str, Any] = {}

    def catch_adapter(name: str, factory: Callable[[], ChainAdapter]) -> None:
        caught[name] = factory

    dialect_ns = run_in(dialects, blocks["joulescale/engines/dialects.py"], register_dialect=lambda d: d)
    run_in(adapters, blocks["node_agent/joulescale_agent/engines/adapters.py"], register_adapter=catch_adapter)
    writer_ns = run_in(simengine_metrics, blocks["e2e/simengine/metrics.py"], RENDERERS={})
    entry = re.search(rf'`"{NAME}": (render_\w+)` in `RENDERERS`', section())
    assert entry is not None, "the recipe names the page writer's RENDERERS entry"
    return Recipe(dialect_ns["TGI_LIKE"], caught[NAME], writer_ns[entry.group(1)])


@contextmanager
def registered(recipe: Recipe) -> Iterator[Recipe]:
    """The engine registered as the recipe's edits would register it, for the block only."""
    with ExitStack() as stack:
        stack.enter_context(registered_dialect(recipe.dialect))
        stack.enter_context(registered_adapter(recipe.dialect.name, recipe.adapter))
        simengine_metrics.RENDERERS[recipe.dialect.name] = recipe.render
        stack.callback(simengine_metrics.RENDERERS.pop, recipe.dialect.name)
        yield recipe


@pytest.fixture
def recipe() -> Iterator[Recipe]:
    with registered(follow_recipe()) as followed:
        yield followed


def scrape(recorder: MetricsRecorder) -> EngineSample:
    """What the agent makes of the page the simulated engine writes now."""
    text = simengine_metrics.RENDERERS[NAME](recorder.sample(), "meta-llama/Llama-3.1-70B-Instruct")
    return adapter_for(NAME).sample(parse_page(text))


def decode_steps(recorder: MetricsRecorder, steps: int, step_s: float, batch: int, waiting: int) -> None:
    for _ in range(steps):
        recorder.step_ended(scheduled_tokens=batch, prompt_tokens=0, generated_tokens=batch, itl_tokens=batch,
                            step_s=step_s, running=batch, waiting=waiting, kv_tokens=12_345, decode=True)


def test_the_recipes_engine_is_kept_by_its_dialect_and_read_back_by_its_adapter(recipe: Recipe) -> None:
    dialect = dialect_for(NAME)
    assert dialect is recipe.dialect
    assert NAME in ENGINE_NAMES
    assert NAME in ADAPTERS
    recorder = MetricsRecorder(dialect, KV_CAPACITY)
    twin, agent = ObservationBuilder("decode"), ObservationBuilder("decode")
    first = scrape(recorder)
    assert first == recorder.sample(), "the page writer and the adapter lose nothing"
    twin.build(recorder.sample(), 0.0, 1980)
    agent.build(first, 0.0, 1980)

    # Four requests queued 20 ms, then 10 decode steps of 30 ms; one request finishes.
    for _ in range(4):
        recorder.request_scheduled(0.02)
    recorder.batch_formed(running=0, waiting=1, kv_tokens=0)
    decode_steps(recorder, 10, 0.03, batch=4, waiting=1)
    recorder.request_finished(prompt_tokens=1000, generated_tokens=11, queue_s=0.02, prefill_s=0.2)
    sample = scrape(recorder)
    assert sample == recorder.sample()
    seen = agent.build(sample, 0.5, 1980)
    assert seen == twin.build(recorder.sample(), 0.5, 1980), "the agent sees what the twin's policy sees"

    # The dialect's own buckets, on the page and back.
    assert sample.queue_time is not None
    assert sample.inter_token_latency is not None
    assert tuple(sample.queue_time.buckets)[:-1] == dialect.queue_edges_s
    assert tuple(sample.inter_token_latency.buckets)[:-1] == dialect.itl_edges_s
    # Gauges at step ends, usage rounded to 0.001 of the page's stated capacity.
    assert (seen.running_requests, seen.waiting_requests) == (4, 1)
    assert sample.kv_capacity_tokens == KV_CAPACITY
    assert seen.kv_cache_usage == round(12_345 / KV_CAPACITY, 3)
    assert seen.context_tokens == int(round(12_345 / KV_CAPACITY, 3) * KV_CAPACITY)
    # Counters grow when a request finishes: the finished request's tokens, not the steps'.
    assert seen.generation_tokens_delta == 11
    assert seen.prompt_tokens_delta == 1000
    # No step counter: the builder's substitute counts the steps from the inter-token latency.
    assert seen.iterations_delta == 10
    assert seen.mean_iteration_s == pytest.approx(0.03)
    # Queue time booked when the requests first ran, before any of them finished.
    assert seen.recorded_wait_s == pytest.approx(0.02)
    assert seen.oldest_wait_s == pytest.approx(0.02)  # someone waits now

    # An unchanged page: no new steps, no new tokens.
    again = agent.build(scrape(recorder), 0.55, 1980)
    assert (again.iterations_delta, again.generation_tokens_delta) == (0, 0)


def test_a_prefill_instance_of_the_recipes_engine_gets_its_step_time_from_ttft_minus_queue(recipe: Recipe) -> None:
    recorder = MetricsRecorder(dialect_for(NAME), KV_CAPACITY)
    builder = ObservationBuilder("prefill")
    builder.build(scrape(recorder), 0.0, 1980)
    for _ in range(2):
        recorder.request_scheduled(0.05)
    recorder.batch_formed(running=0, waiting=0, kv_tokens=0)
    recorder.step_ended(scheduled_tokens=4000, prompt_tokens=4000, generated_tokens=2, itl_tokens=0, step_s=0.2,
                        running=0, waiting=0, kv_tokens=4000, decode=False)
    for _ in range(2):
        recorder.first_token(0.25)
        recorder.request_finished(prompt_tokens=2000, generated_tokens=1, queue_s=0.05, prefill_s=0.2)
    seen = builder.build(scrape(recorder), 0.3, 1980)
    # No prefill-time histogram on this engine: TTFT mean minus queue-time mean.
    assert seen.mean_iteration_s == pytest.approx(0.2)
    assert seen.prompt_tokens_delta == 4000


async def test_the_simulated_engine_serves_the_recipes_page_to_the_agents_adapter(recipe: Recipe,
                                                                                 tmp_path: Path) -> None:
    """e2e's simulated engine (a real HTTP server on a simulated GPU) with the engine's dialect:
    one request through it, its /metrics read by the agent's adapter."""
    profile = load_profile("h100-sxm-llama-8b-tp1")
    SimGpuDir.create(tmp_path, specs_from_profile(profile, ["GPU-0"]))
    engine = SimEngine("prefill", profile, SimGpuDir(tmp_path), ["GPU-0"], dialect_for(NAME))
    runner = web.AppRunner(make_app(engine, "m"), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    task = asyncio.create_task(engine.run())
    try:
        url = f"http://127.0.0.1:{site_port(site)}"
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/v1/completions", json={"prompt": [1] * 300, "max_tokens": 1}) as r:
                assert r.status == 200
            async with http.get(f"{url}/metrics") as r:
                text = await r.text()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await runner.cleanup()
    assert "tgilike_request_first_token_seconds_bucket" in text
    sample = adapter_for(NAME).sample(parse_page(text))
    assert (sample.prompt_tokens_total, sample.generation_tokens_total) == (300, 1)
    assert sample.kv_capacity_tokens == profile.kv_capacity_tokens
    assert sample.ttft is not None
    assert sample.ttft.count == 1
    assert sample.iteration_tokens is None
    assert sample.prefill_time is None


def test_the_twin_compares_on_the_recipes_engine_and_forgets_it_after(tmp_path: Path) -> None:
    argv = ["twin", "compare", "--engine", NAME, "--duration", "10", "--gpus", "8", "--prefill-instances", "1",
            "--policies", "static-max,joulescale", "--cache-dir", str(tmp_path / "cache"),
            "--json", str(tmp_path / "compare.json")]
    out = io.StringIO()
    with registered(follow_recipe()):
        assert main(argv, out=out, err=io.StringIO()) == 0, out.getvalue()
        CompareSettings(engine=NAME)
    assert f"{NAME} /metrics scraped every 50 ms" in out.getvalue()
    result = json.loads((tmp_path / "compare.json").read_text())
    assert set(result["policies"]) == {"static-max", "joulescale"}

    # Unregistered: every list of engines has forgotten it.
    assert NAME not in ENGINE_NAMES
    assert NAME not in ADAPTERS
    assert NAME not in simengine_metrics.RENDERERS
    err = io.StringIO()
    assert main(argv, out=io.StringIO(), err=err) == 2
    for unknown in (lambda: dialect_for(NAME), lambda: adapter_for(NAME)):
        with pytest.raises(ValueError, match=NAME):
            unknown()
    with pytest.raises(SettingError):
        CompareSettings(engine=NAME)


def test_registration_refuses_a_taken_name_bad_edges_and_an_adapter_for_an_unknown_engine() -> None:
    followed = follow_recipe()
    with pytest.raises(ValueError, match="already taken"):
        dialects.register_dialect(dialect_for("vllm"))
    with pytest.raises(ValueError, match="ascending"):
        dialects.register_dialect(EngineDialect(**{**_fields(followed.dialect), "itl_edges_s": (0.1, 0.05)}))
    with pytest.raises(ValueError, match="decode_log_interval"):
        dialects.register_dialect(EngineDialect(**{**_fields(followed.dialect), "gauges": "batch-and-interval"}))
    with pytest.raises(ValueError, match="unknown engine"):
        adapters.register_adapter(NAME, followed.adapter)
    assert NAME not in ENGINE_NAMES
    assert NAME not in ADAPTERS


def _fields(dialect: EngineDialect) -> dict[str, Any]:
    return {name: getattr(dialect, name) for name in EngineDialect.__dataclass_fields__}


def test_every_engine_the_api_accepts_has_a_dialect_an_adapter_and_a_page_writer() -> None:
    for name in get_args(EngineName):
        assert dialect_for(name).name == name
        assert adapter_for(name).name == name
        assert name in simengine_metrics.RENDERERS


def test_the_recipe_names_the_hand_edited_files_it_claims_and_they_exist() -> None:
    text = section()
    edited = re.findall(r"^\d+\. \*\*Edit\*\* `([^`]+)`", text, re.MULTILINE)
    created = re.findall(r"^\d+\. \*\*Create\*\* `([^`]+)`", text, re.MULTILINE)
    assert created == []
    assert len(edited) == 4, edited
    assert "four hand-edited files" in text
    for path in edited:
        assert (REPO / path).is_file(), path
    # Every code block goes into one of them, at a place that exists there.
    blocks = code_blocks()
    assert set(blocks) <= set(edited)
    anchors = {"joulescale/engines/dialects.py": "SGLANG = register_dialect(",
               "node_agent/joulescale_agent/engines/adapters.py": 'register_adapter("sglang", ',
               "e2e/simengine/metrics.py": "RENDERERS: dict["}
    for path, anchor in anchors.items():
        assert path in blocks
        assert anchor in (REPO / path).read_text(encoding="utf-8"), (path, anchor)
