"""A fetched /metrics page -> an EngineSample, off the event loop and within a time budget.

This is the one boundary where a page's failures are mapped: whatever decoding, parsing or
adapting raises (a parser bug included) leaves as MetricsFormatError, so the control loop takes
its fail-safe path with its counters instead of a traceback per tick. The work runs in a worker
thread; the parser checks the deadline between chunks of at most ``ParseLimits.chunk_chars``,
so the event loop (and every other instance's loop) keeps running while a hostile page is read.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from joulescale.engines.sample import EngineSample
from joulescale_agent import errors
from joulescale_agent.clock import Clock, monotonic
from joulescale_agent.engines.adapters import EngineAdapter
from joulescale_agent.engines.promtext import DEFAULT_LIMITS, ParseLimits, parse_page


@dataclass(frozen=True, slots=True)
class PageRead:
    """What one page gave: the sample, the lines skipped for a limit, the seconds it took."""

    sample: EngineSample
    skipped_lines: int
    parse_s: float


class PageReader:
    """Reads one engine's pages with that engine's adapter, under limits and a time budget."""

    def __init__(
        self,
        adapter: EngineAdapter,
        *,
        budget_s: float,
        limits: ParseLimits = DEFAULT_LIMITS,
        clock: Clock = monotonic,
    ) -> None:
        self._adapter = adapter
        self._budget_s = budget_s
        self._limits = limits
        self._clock = clock

    def read(self, page: str | bytes) -> PageRead:
        """Blocking: decode, parse and adapt one page; raise only MetricsFormatError."""
        started_s = self._clock()
        deadline_s = started_s + self._budget_s

        def deadline() -> None:
            if self._clock() > deadline_s:
                raise errors.MetricsLimitError(
                    f"reading the metrics page took longer than its {self._budget_s * 1000:.0f} ms budget"
                )

        try:
            if isinstance(page, bytes):
                if len(page) > self._limits.max_page_chars:
                    raise errors.MetricsLimitError(
                        f"the metrics page holds more than {self._limits.max_page_chars} bytes"
                    )
                page = page.decode("utf-8")
            parsed = parse_page(page, self._limits, deadline)
            sample = self._adapter.sample(parsed)
            deadline()
        except errors.MetricsError:
            raise
        except UnicodeDecodeError as error:
            raise errors.MetricsFormatError(
                f"the metrics page is not UTF-8 text (byte {error.start}: {error.reason})"
            ) from None
        except Exception as error:  # a parser bug must not crash the loop nor skip the fail-safe
            raise errors.MetricsFormatError(
                f"unreadable metrics page ({error.__class__.__name__}: {str(error)[:120]})"
            ) from error
        return PageRead(sample, parsed.skipped, self._clock() - started_s)

    async def read_off_loop(self, page: str | bytes) -> PageRead:
        """``read`` in a worker thread: the event loop stays free while a page is parsed.
        (``run_in_executor`` rather than ``to_thread``: reading needs no context variables,
        and copying them on every scrape costs more than the parse of a small page.)"""
        return await asyncio.get_running_loop().run_in_executor(None, self.read, page)
