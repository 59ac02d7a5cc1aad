"""HTTP face of the simulated engine: OpenAI /v1/completions, the engine's /metrics, /health."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from aiohttp import web

from e2e.simengine.core import SimEngine, SimRequest
from e2e.simengine.metrics import RENDERERS


def _prompt_tokens(prompt: Any) -> int:
    """Token ids count one each; text counts one token per whitespace-separated word."""
    if isinstance(prompt, list):
        if prompt and isinstance(prompt[0], list):
            prompt = prompt[0]
        return (
            max(len(prompt), 1)
            if all(isinstance(t, int) for t in prompt)
            else max(len(" ".join(prompt).split()), 1)
        )
    if isinstance(prompt, str):
        return max(len(prompt.split()), 1)
    raise web.HTTPBadRequest(text='"prompt" must be a string or a list of token ids')


def _timing(request: SimRequest) -> dict[str, float | None]:
    """Engine-side timing of a request (an extension field; lets a load generator skip streaming);
    ``arrival_s`` is the engine's monotonic clock when the request reached it."""
    first = request.first_token_s
    return {
        "queue_s": (request.started_s - request.arrival_s) if request.started_s is not None else None,
        "ttft_s": (first - request.arrival_s) if first is not None else None,
        "tpot_s": request.tpot_s,
        "arrival_s": request.arrival_s,
    }


def make_app(engine: SimEngine, model_name: str) -> web.Application:
    async def completions(http: web.Request) -> web.StreamResponse:
        try:
            body = await http.json()
        except json.JSONDecodeError:
            raise web.HTTPBadRequest(text="body is not JSON") from None
        max_tokens = int(body.get("max_tokens", 16))
        if max_tokens < 1:
            raise web.HTTPBadRequest(text="max_tokens must be >= 1")
        request = engine.new_request(_prompt_tokens(body.get("prompt")), max_tokens)
        engine.submit(request)
        completion_id = f"cmpl-{uuid.uuid4().hex[:16]}"
        base = {
            "id": completion_id,
            "object": "text_completion",
            "created": int(time.time()),
            "model": model_name,
        }
        if not body.get("stream", False):
            await request.done.wait()
            return web.json_response(
                {
                    **base,
                    "choices": [
                        {
                            "index": 0,
                            "text": " tok" * request.generated,
                            "logprobs": None,
                            "finish_reason": "length",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": request.prompt_tokens,
                        "completion_tokens": request.generated,
                        "total_tokens": request.prompt_tokens + request.generated,
                    },
                    "sim_timing": _timing(request),
                }
            )
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(http)
        sent = 0
        while not (request.done.is_set() and sent >= request.generated):
            await request.tokens.get()
            sent += 1
            finished = request.done.is_set() and sent >= request.generated
            chunk = {
                **base,
                "choices": [
                    {
                        "index": 0,
                        "text": " tok",
                        "logprobs": None,
                        "finish_reason": "length" if finished else None,
                    }
                ],
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    render = RENDERERS[engine.dialect.name]

    async def metrics(_: web.Request) -> web.Response:
        read_s = engine.clock()
        engine.scrapes.append(read_s)
        page = render(await engine.page_sample(read_s), model_name)
        return web.Response(text=page, content_type="text/plain", charset="utf-8")

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="")

    async def state(_: web.Request) -> web.Response:
        now_s = engine.clock()
        return web.json_response(
            {
                "role": engine.role,
                "sm_clock_mhz": engine.clock_mhz(now_s),
                "running": engine.running,
                "waiting": engine.waiting,
                "iterations": engine.iterations,
            }
        )

    app = web.Application()
    app.router.add_post("/v1/completions", completions)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health", health)

    async def scrapes(_: web.Request) -> web.Response:
        return web.json_response({"scrapes_s": list(engine.scrapes)})

    app.router.add_get("/sim/state", state)
    app.router.add_get("/sim/scrapes", scrapes)
    return app
