"""Fixtures of the agent tests that run real servers on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.agent.fakes import MetricsServer


@pytest.fixture
async def server() -> AsyncIterator[MetricsServer]:
    """A real HTTP server on 127.0.0.1 serving a scripted /metrics page."""
    srv = MetricsServer()
    await srv.start()
    yield srv
    await srv.stop()
