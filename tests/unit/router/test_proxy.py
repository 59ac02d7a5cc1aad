"""The P/D proxy against real HTTP servers standing in for vLLM prefill and decode engines."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from joulescale_router.proxy import MAX_BODY_BYTES, Proxy, ProxySettings

KV_PARAMS = {"remote_engine_id": "prefill-0", "remote_block_ids": [1, 2, 3], "remote_host": "10.0.0.7"}


@dataclass
class Engine:
    """A fake engine recording what it was sent; decode streams ``chunks`` when asked to."""

    role: str
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[Mapping[str, str]] = field(default_factory=list)
    status: int = 200
    chunks: tuple[bytes, ...] = (b"data: one\n\n", b"data: two\n\n", b"data: [DONE]\n\n")

    def app(self) -> web.Application:
        async def complete(request: web.Request) -> web.StreamResponse:
            body = await request.json()
            self.received.append(body)
            self.headers.append(request.headers.copy())
            if self.status != 200:
                return web.json_response({"error": "prompt too long"}, status=self.status)
            if self.role == "prefill":
                return web.json_response({"choices": [{"text": "x"}], "kv_transfer_params": KV_PARAMS})
            if body.get("stream"):
                response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
                await response.prepare(request)
                for chunk in self.chunks:
                    await response.write(chunk)
                return response
            return web.json_response({"choices": [{"text": "decoded"}], "path": request.path})

        async def models(_: web.Request) -> web.Response:
            return web.json_response({"data": [{"id": f"model-from-{self.role}"}]})

        app = web.Application()
        app.router.add_post("/v1/completions", complete)
        app.router.add_post("/v1/chat/completions", complete)
        app.router.add_get("/v1/models", models)
        return app


Serve = Callable[[web.Application], Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start an application on a free local port; returns its base URL."""
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> str:
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in reversed(runners):
        await runner.cleanup()


async def _proxy(serve: Serve, prefill: list[str], decode: list[str]) -> str:
    return await serve(Proxy(ProxySettings(prefill, decode, timeout_s=10)).app())


async def test_a_completion_is_prefilled_with_one_token_then_decoded_with_the_kv_params(serve: Serve) -> None:
    prefill, decode = Engine("prefill"), Engine("decode")
    url = await _proxy(serve, [await serve(prefill.app())], [await serve(decode.app())])
    request = {"model": "m", "prompt": "hello", "max_tokens": 50, "stream": False}
    async with aiohttp.ClientSession() as client, client.post(
        f"{url}/v1/completions", json=request, headers={"Authorization": "Bearer k", "X-Request-Id": "r1"}
    ) as answer:
        assert answer.status == 200
        assert (await answer.json())["choices"][0]["text"] == "decoded"
    (sent_prefill,) = prefill.received
    assert sent_prefill["max_tokens"] == 1
    assert sent_prefill["stream"] is False
    assert sent_prefill["kv_transfer_params"]["do_remote_decode"] is True
    (sent_decode,) = decode.received
    assert sent_decode["max_tokens"] == 50
    assert sent_decode["kv_transfer_params"] == KV_PARAMS
    for engine in (prefill, decode):
        assert engine.headers[0]["Authorization"] == "Bearer k"
        assert engine.headers[0]["X-Request-Id"] == "r1"


async def test_a_streamed_chat_completion_streams_the_decode_answer_through(serve: Serve) -> None:
    prefill, decode = Engine("prefill"), Engine("decode")
    url = await _proxy(serve, [await serve(prefill.app())], [await serve(decode.app())])
    request = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "max_completion_tokens": 20,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with aiohttp.ClientSession() as client, client.post(
        f"{url}/v1/chat/completions", json=request
    ) as answer:
        assert answer.status == 200
        assert answer.content_type == "text/event-stream"
        assert await answer.read() == b"".join(decode.chunks)
    assert prefill.received[0]["max_completion_tokens"] == 1
    assert "stream_options" not in prefill.received[0]
    assert prefill.received[0]["stream"] is False
    assert decode.received[0]["stream"] is True
    assert decode.received[0]["stream_options"] == {"include_usage": True}


async def test_endpoints_are_taken_in_turn(serve: Serve) -> None:
    prefills = [Engine("prefill"), Engine("prefill")]
    decodes = [Engine("decode"), Engine("decode")]
    url = await _proxy(
        serve, [await serve(e.app()) for e in prefills], [await serve(e.app()) for e in decodes]
    )
    async with aiohttp.ClientSession() as client:
        for _ in range(4):
            async with client.post(f"{url}/v1/completions", json={"prompt": "p", "max_tokens": 3}) as answer:
                assert answer.status == 200
    assert [len(e.received) for e in prefills + decodes] == [2, 2, 2, 2]


async def test_a_prefill_refusal_is_passed_back_and_decode_is_not_called(serve: Serve) -> None:
    prefill, decode = Engine("prefill", status=400), Engine("decode")
    url = await _proxy(serve, [await serve(prefill.app())], [await serve(decode.app())])
    async with aiohttp.ClientSession() as client, client.post(
        f"{url}/v1/completions", json={"prompt": "p" * 100, "max_tokens": 3}
    ) as answer:
        assert answer.status == 400
        assert (await answer.json())["error"] == "prompt too long"
    assert decode.received == []


async def test_an_unreachable_engine_is_a_502_naming_the_role(serve: Serve) -> None:
    decode = Engine("decode")
    url = await _proxy(serve, ["http://127.0.0.1:9"], [await serve(decode.app())])
    async with aiohttp.ClientSession() as client, client.post(
        f"{url}/v1/completions", json={"prompt": "p"}
    ) as answer:
        assert answer.status == 502
        assert "prefill" in (await answer.json())["error"]["message"]
    prefill = Engine("prefill")
    url = await _proxy(serve, [await serve(prefill.app())], ["http://127.0.0.1:9"])
    async with aiohttp.ClientSession() as client, client.post(
        f"{url}/v1/completions", json={"prompt": "p"}
    ) as answer:
        assert answer.status == 502
        assert "decode" in (await answer.json())["error"]["message"]


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", b"\xff\xfe", b'"text"', b"", b"[" * 200_000 + b"]" * 200_000, b"{\"a\": NaN"],
    ids=["text", "array", "bad-utf8", "string", "empty", "deep-nesting", "truncated"],
)
async def test_a_body_that_is_not_a_json_object_is_a_400_and_reaches_no_engine(
    serve: Serve, body: bytes
) -> None:
    prefill, decode = Engine("prefill"), Engine("decode")
    url = await _proxy(serve, [await serve(prefill.app())], [await serve(decode.app())])
    async with aiohttp.ClientSession() as client, client.post(
        f"{url}/v1/completions", data=body, headers={"Content-Type": "application/json"}
    ) as answer:
        assert answer.status == 400
        json.loads(await answer.text())
    assert prefill.received == decode.received == []


async def test_models_come_from_decode_and_health_answers(serve: Serve) -> None:
    url = await _proxy(serve, [await serve(Engine("prefill").app())], [await serve(Engine("decode").app())])
    async with aiohttp.ClientSession() as client:
        async with client.get(f"{url}/v1/models") as answer:
            assert (await answer.json())["data"][0]["id"] == "model-from-decode"
        async with client.get(f"{url}/health") as answer:
            assert answer.status == 200


async def test_a_body_over_the_limit_is_refused_before_any_engine(serve: Serve) -> None:
    prefill, decode = Engine("prefill"), Engine("decode")
    url = await _proxy(serve, [await serve(prefill.app())], [await serve(decode.app())])
    body = io.BytesIO(b'{"prompt": "' + b"x" * (MAX_BODY_BYTES + 1) + b'"}')
    async with aiohttp.ClientSession() as client, client.post(
        f"{url}/v1/completions", data=body, headers={"Content-Type": "application/json"}
    ) as answer:
        assert answer.status == 413
    assert prefill.received == decode.received == []
