"""Every sample under manifests/samples is a valid service the operator can render."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from joulescale.api import EnergyAwareLLMService

SAMPLES = sorted((Path(__file__).resolve().parents[3] / "manifests" / "samples").glob("*.yaml"))


def test_there_are_samples() -> None:
    assert len(SAMPLES) >= 3


@pytest.mark.parametrize("path", SAMPLES, ids=[p.name for p in SAMPLES])
def test_sample_is_a_valid_service(path: Path) -> None:
    service = EnergyAwareLLMService.model_validate(yaml.safe_load(path.read_text()))
    assert service.metadata["name"]
