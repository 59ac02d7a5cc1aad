"""The chart's README documents every value of values.yaml, as values.schema.json types and
describes it (`make chart-docs` writes the table; `make lint` and this test catch a stale one)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from e2e.harness import chartdoc


def test_the_chart_readme_lists_every_value_as_the_schema_and_values_give_it() -> None:
    current, wanted = chartdoc.render()
    assert current == wanted, "helm/joulescale/README.md is stale: run `make chart-docs`"
    values = yaml.safe_load((chartdoc.CHART / "values.yaml").read_text())
    assert "| `agent.scrapeHz` | number or string | `20` |" in current
    assert "| `operator.imagePullSecrets` | list of object | `[]` |" in current
    assert f"| `agent.runtimeClassName` | string | `{json.dumps(values['agent']['runtimeClassName'])}` |" in (
        current
    )


@pytest.fixture
def chart(tmp_path: Path) -> Path:
    copy = tmp_path / "joulescale"
    copy.mkdir()
    for name in ("values.yaml", "values.schema.json", "README.md"):
        shutil.copy(chartdoc.CHART / name, copy / name)
    return copy


def _edit_values(chart: Path, edit: str) -> None:
    path = chart / "values.yaml"
    path.write_text(path.read_text() + edit)


def test_a_value_the_schema_does_not_know_is_refused_by_name(chart: Path) -> None:
    _edit_values(chart, "extraKnob: 3\n")
    with pytest.raises(
        chartdoc.ChartDocError, match=r"extraKnob is in values\.yaml but not in values\.schema"
    ):
        chartdoc.render(chart)
    assert chartdoc.main(["--check", "--chart", str(chart)]) == 2


def test_a_schema_value_without_default_or_description_is_refused_by_name(chart: Path) -> None:
    schema_path = chart / "values.schema.json"
    schema = json.loads(schema_path.read_text())
    schema["properties"]["agent"]["properties"]["newKnob"] = {"type": "integer", "description": "x"}
    schema_path.write_text(json.dumps(schema))
    with pytest.raises(
        chartdoc.ChartDocError, match=r"agent\.newKnob is in values\.schema\.json but has no default"
    ):
        chartdoc.render(chart)
    del schema["properties"]["agent"]["properties"]["newKnob"]
    del schema["properties"]["agent"]["properties"]["scrapeHz"]["description"]
    schema_path.write_text(json.dumps(schema))
    with pytest.raises(chartdoc.ChartDocError, match=r"agent\.scrapeHz has no description"):
        chartdoc.render(chart)


def test_check_fails_on_a_stale_table_and_the_writer_fixes_it(chart: Path) -> None:
    values = yaml.safe_load((chart / "values.yaml").read_text())
    text = (chart / "values.yaml").read_text().replace("scrapeHz: 20", "scrapeHz: 50")
    assert values["agent"]["scrapeHz"] == 20
    (chart / "values.yaml").write_text(text)
    assert chartdoc.main(["--check", "--chart", str(chart)]) == 1
    assert chartdoc.main(["--chart", str(chart)]) == 0
    assert "| `agent.scrapeHz` | number or string | `50` |" in (chart / "README.md").read_text()
    assert chartdoc.main(["--check", "--chart", str(chart)]) == 0


def test_the_readme_without_its_markers_is_refused() -> None:
    with pytest.raises(chartdoc.ChartDocError, match="lacks the markers"):
        chartdoc.with_table("# a README\n", "| table |")
