"""`twin compare --report` writes one self-contained HTML page that a real browser renders whole.

The page is opened in headless Chromium: the results table, the verdict and every plot must be
on screen (images decoded at a non-zero size, their screenshot not blank), and the browser must
have requested nothing but the file itself and its embedded data.
"""

from __future__ import annotations

import io
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlparse

import pytest

from joulescale.cli import main
from tests.unit.twin.headless_chromium import HeadlessChromium

POLICIES = ("static-max", "static-best", "joulescale", "oracle")
PLOTS = ("energy_vs_slo", "energy_by_phase", "clock_over_time", "time_at_clock", "ttft_ccdf", "tpot_ccdf")

_IMAGES = """Promise.all([...document.images].map(async (img) => {
  const decoded = await img.decode().then(() => true, () => false);
  const box = img.getBoundingClientRect();
  return {figure: img.closest('figure') ? img.closest('figure').id : null, decoded,
          width: img.naturalWidth, height: img.naturalHeight,
          clip: {x: box.left + window.scrollX, y: box.top + window.scrollY, width: box.width, height: box.height}};
}))"""
_TABLE = """(() => { const t = document.querySelector('table.results'); const box = t.getBoundingClientRect();
  return {rows: [...t.querySelectorAll('tbody tr')].map(r => [...r.cells].map(c => c.textContent)),
          clip: {x: box.left + window.scrollX, y: box.top + window.scrollY, width: box.width, height: box.height}};
})()"""


class _Links(HTMLParser):
    """Every URL-valued attribute of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href", "srcset", "action", "poster") and value]


def _ink(png: bytes) -> tuple[float, int]:
    """(fraction of pixels that are not near-white, number of distinct colours) of a PNG."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    colours = image.getcolors(maxcolors=image.width * image.height) or []
    inked = sum(count for count, (r, g, b) in colours if min(r, g, b) < 235)
    return inked / (image.width * image.height), len(colours)


@pytest.fixture(scope="module")
def report_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    out, err = io.StringIO(), io.StringIO()
    code = main(["twin", "compare", "--trace", "azure-code", "--duration", "20", "--prefill-instances", "3",
                 "--policies", ",".join(POLICIES), "--no-cache", "--report", str(folder)], out=out, err=err)
    assert code == 0, err.getvalue()
    assert f"report: {folder / 'report.html'}" in out.getvalue()
    return folder / "report.html"


def test_the_page_refers_to_nothing_outside_itself(report_page: Path) -> None:
    text = report_page.read_text(encoding="utf-8")
    links = _Links()
    links.feed(text)
    assert len(links.urls) == len(PLOTS)
    assert all(url.startswith("data:image/png;base64,") for url in links.urls)
    assert "default-src 'none'" in text  # the browser itself refuses any fetch the page might attempt
    assert "<script" not in text.lower()


def test_chromium_renders_the_table_the_verdict_and_every_plot_without_a_request(
        report_page: Path, tmp_path: Path) -> None:
    with HeadlessChromium(tmp_path / "profile") as browser:
        browser.open(report_page)
        images = browser.evaluate(_IMAGES)
        table = browser.evaluate(_TABLE)
        verdict = browser.evaluate("document.querySelector('p.verdict').textContent")
        page = browser.screenshot()
        plot_shots = {image["figure"]: browser.screenshot(image["clip"]) for image in images}
        table_shot = browser.screenshot(table["clip"])
        requested = browser.requested_urls()
    (tmp_path / "page.png").write_bytes(page)  # kept for a person debugging a failure

    assert [row[0] for row in table["rows"]] == [*POLICIES[:-1], "oracle (bound)"]
    assert all(len(row) == 10 for row in table["rows"])
    assert "the least energy is" in verdict or "no adaptive policy holds" in verdict
    assert [image["figure"] for image in images] == list(PLOTS)
    for image in images:
        assert image["decoded"], image["figure"]
        assert image["width"] > 300, image["figure"]
        assert image["height"] > 200, image["figure"]
        assert image["clip"]["width"] > 300, image["figure"]  # laid out on the page, not collapsed
        assert image["clip"]["height"] > 200, image["figure"]
        inked, colours = _ink(plot_shots[image["figure"]])
        assert inked > 0.02, (image["figure"], inked)
        assert colours > 16, (image["figure"], colours)
    inked, _ = _ink(table_shot)
    assert inked > 0.02
    assert _ink(page)[0] > 0.02
    assert {urlparse(url).scheme for url in requested} <= {"file", "data"}, requested
    assert report_page.resolve().as_uri() in requested


def test_the_checks_see_a_network_request_and_a_broken_image(tmp_path: Path) -> None:
    """The browser checks above can fail: a page that fetches is caught, and so is its image."""
    page = tmp_path / "fetching.html"
    page.write_text('<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/plot.png"></body></html>',
                    encoding="utf-8")
    with HeadlessChromium(tmp_path / "profile") as browser:
        browser.open(page)
        images = browser.evaluate(_IMAGES)
        requested = browser.requested_urls()
    assert "http://127.0.0.1:9/plot.png" in requested
    assert images[0]["decoded"] is False
    assert images[0]["width"] == 0
