"""Iteration latencies from NVIDIA AIConfigurator's offline performance database.

AIConfigurator (``pip install 'joulescale[profilegen]'``, Apache-2.0) ships kernel timings
profiled per GPU system and engine version and composes them into a model's iteration time.
Its static modes time one prefill batch (``static_ctx``) and one decode step (``static_gen``),
which is what a profile's latency coefficients describe. It needs only the model's
``config.json`` and never the network (a directory path keeps it from asking Hugging Face).
It has no power data, so only latencies come from here.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import logging
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from joulescale.profiles.architecture import config_path

ENGINES = ("vllm", "sglang")
DISTRIBUTION = "aiconfigurator"


class LatencyDatabase(Protocol):
    """What the fit needs: the database's iteration times at f_max, in ms."""

    label: str
    """The database, its version and the engine version its kernels were profiled with."""

    def prefill_ms(self, batch: int, prompt_tokens: int) -> float | None:
        """One prefill iteration of ``batch`` prompts of ``prompt_tokens`` each; None: does not fit."""

    def decode_ms(self, batch: int, context_tokens: int) -> float | None:
        """One decode step of ``batch`` sequences of ``context_tokens`` each; None: does not fit."""


def installed_version() -> str | None:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """AIConfigurator logs and warns (its deprecation notice) on every call; keep stdout clean."""
    logger = logging.getLogger("aiconfigurator")
    level, logger.disabled = logger.level, True
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.disabled, logger.level = False, level


@dataclass
class AiConfigurator:
    """AIConfigurator's SILICON (measured kernels) estimates for one system, engine and TP size."""

    model: Path
    system: str
    engine: str
    tensor_parallel_size: int
    engine_version: str = ""
    label: str = ""

    def __post_init__(self) -> None:
        version = installed_version()
        if version is None:
            raise ValueError("profile generate needs AIConfigurator: pip install 'joulescale[profilegen]'")
        if self.engine not in ENGINES:
            raise ValueError(f"engine {self.engine!r} not one of {', '.join(ENGINES)}")
        self._folder = tempfile.TemporaryDirectory(prefix="joulescale-model-")
        shutil.copyfile(config_path(self.model), Path(self._folder.name) / "config.json")
        probe = self._estimate("static_ctx", batch=1, isl=128, osl=1)
        if probe is None:
            raise ValueError(f"the database has no estimate for {self.system} / {self.engine}")
        self.engine_version = str(probe.backend_version)
        self.label = (f"NVIDIA AIConfigurator {version} performance database (SILICON mode), system "
                      f"{self.system}, {self.engine} {self.engine_version}")

    def close(self) -> None:
        self._folder.cleanup()

    def _estimate(self, mode: str, *, batch: int, isl: int, osl: int) -> Any:
        from aiconfigurator.cli.api import cli_estimate

        with _quiet():
            try:
                result = cli_estimate(self._folder.name, self.system, mode=mode, backend_name=self.engine,
                                      isl=isl, osl=osl, batch_size=batch, tp_size=self.tensor_parallel_size,
                                      database_mode="SILICON")
            except (ValueError, KeyError, RuntimeError) as error:
                raise ValueError(f"AIConfigurator: {error}") from error
        return None if result.kv_cache_warning else result

    def prefill_ms(self, batch: int, prompt_tokens: int) -> float | None:
        result = self._estimate("static_ctx", batch=batch, isl=prompt_tokens, osl=1)
        return None if result is None else float(result.ttft)

    def decode_ms(self, batch: int, context_tokens: int) -> float | None:
        # osl=2: the single step after the prompt, at context_tokens + 1 per sequence.
        result = self._estimate("static_gen", batch=batch, isl=context_tokens, osl=2)
        return None if result is None else float(result.tpot)
