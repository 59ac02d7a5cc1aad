"""The Helm chart ships the same CRD as crds/ (both are written by `make crds`)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_chart_crd_is_identical_to_the_generated_one() -> None:
    generated = sorted((ROOT / "crds").glob("joulescale.io_*.yaml"))
    assert generated, "crds/ holds no generated CRD"
    for crd in generated:
        chart_copy = ROOT / "helm" / "joulescale" / "crds" / crd.name
        assert chart_copy.read_text() == crd.read_text(), f"{chart_copy} is stale: run `make crds`"
