"""The Prometheus source's failures are MetricsUnavailable, quickly: a pass must not hang."""

from __future__ import annotations

import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

import pytest

from joulescale_operator.planloop.prometheus import PrometheusSource
from joulescale_operator.planloop.source import MetricsUnavailable
from joulescale_operator.testing import free_port


class Answer(BaseHTTPRequestHandler):
    """Prometheus's HTTP API shapes: a vector for `up`, HTTP 400 bad_data for anything else."""

    def do_GET(self) -> None:
        good = "query=up" in self.path
        body = (b'{"status":"success","data":{"resultType":"vector","result":['
                b'{"metric":{"role":"decode"},"value":[1,"2.5"]},{"metric":{"role":"prefill"},"value":[1,"NaN"]}]}}'
                if good else b'{"status":"error","errorType":"bad_data","error":"parse error"}')
        self.send_response(200 if good else 400)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_vector_is_read_with_its_labels(server: str) -> None:
    samples = PrometheusSource(server).vector("up", 1.0)
    assert samples[0] == ({"role": "decode"}, 2.5)
    assert len(samples) == 2  # NaN is kept here; the observation drops it per role


def test_an_error_answer_and_a_closed_port_are_unavailable_within_seconds(server: str) -> None:
    with pytest.raises(MetricsUnavailable):
        PrometheusSource(server).vector("rate(", 1.0)
    started = time.monotonic()
    with pytest.raises(MetricsUnavailable, match="did not answer"):
        PrometheusSource(f"http://127.0.0.1:{free_port()}").vector("up", 1.0)
    assert time.monotonic() - started < 3.0
