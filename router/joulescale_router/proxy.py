"""The P/D handshake of vLLM's disaggregated serving, as an HTTP proxy.

A completion request goes first to a prefill endpoint as a copy with one output token, no
streaming and ``kv_transfer_params.do_remote_decode``: the prefill engine computes the KV cache
and answers with the parameters a decode engine needs to pull it. The original request then
goes to a decode endpoint with those parameters, and the decode's answer (streamed or not) is
passed back as it comes. Endpoints are taken in turn (each is usually one Kubernetes Service,
which spreads the load over its pods).
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

log = logging.getLogger("joulescale_router")

COMPLETION_PATHS = ("/v1/completions", "/v1/chat/completions")
FORWARDED_HEADERS = ("Authorization", "X-Request-Id")
"""Client headers passed to both engines (an API key, a request id for the engines' logs)."""
MAX_BODY_BYTES = 16 << 20


@dataclass(frozen=True, slots=True)
class ProxySettings:
    prefill_urls: Sequence[str]
    decode_urls: Sequence[str]
    timeout_s: float = 600.0
    """Whole-request limit for one engine call (a long decode streams for minutes)."""


def prefill_request(body: dict[str, Any]) -> dict[str, Any]:
    """The prefill's copy of a request: one token, not streamed, asking for remote decode."""
    copy = dict(body)
    copy.update(stream=False, max_tokens=1)
    if "max_completion_tokens" in copy:
        copy["max_completion_tokens"] = 1
    copy.pop("stream_options", None)
    copy["kv_transfer_params"] = {
        "do_remote_decode": True,
        "do_remote_prefill": False,
        "remote_engine_id": None,
        "remote_block_ids": None,
        "remote_host": None,
        "remote_port": None,
    }
    return copy


def decode_request(body: dict[str, Any], prefill_answer: dict[str, Any]) -> dict[str, Any]:
    """The decode's copy: the original request with the prefill's KV transfer parameters."""
    copy = dict(body)
    params = prefill_answer.get("kv_transfer_params")
    if isinstance(params, dict) and params:
        copy["kv_transfer_params"] = params
    return copy


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": "router_error"}}, status=status)


class Proxy:
    """The aiohttp application: completions through the handshake, /v1/models from decode."""

    def __init__(self, settings: ProxySettings) -> None:
        if not settings.prefill_urls or not settings.decode_urls:
            raise ValueError("at least one prefill and one decode endpoint are needed")
        self._settings = settings
        self._prefill: Iterator[str] = itertools.cycle(settings.prefill_urls)
        self._decode: Iterator[str] = itertools.cycle(settings.decode_urls)
        self._session: aiohttp.ClientSession | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        for path in COMPLETION_PATHS:
            app.router.add_post(path, self._complete)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.on_startup.append(self._open)
        app.on_cleanup.append(self._close)
        return app

    async def _open(self, _: web.Application) -> None:
        timeout = aiohttp.ClientTimeout(total=self._settings.timeout_s)
        self._session = aiohttp.ClientSession(timeout=timeout)

    async def _close(self, _: web.Application) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "the application has not started"
        return self._session

    async def _health(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _models(self, request: web.Request) -> web.StreamResponse:
        url = next(self._decode) + "/v1/models"
        try:
            async with self.session.get(url, headers=_headers(request)) as answer:
                return web.Response(body=await answer.read(), status=answer.status,
                                    content_type=answer.content_type)
        except (aiohttp.ClientError, TimeoutError) as error:
            return _error(502, f"decode endpoint unreachable: {type(error).__name__}")

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):  # RecursionError: nesting
            return _error(400, "the request body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "the request body is not a JSON object")
        headers = _headers(request)
        prefill_url = next(self._prefill) + request.path
        try:
            async with self.session.post(prefill_url, json=prefill_request(body), headers=headers) as answer:
                if answer.status != 200:  # the engine's own refusal (a prompt too long...) goes back
                    return web.Response(body=await answer.read(), status=answer.status,
                                        content_type=answer.content_type)
                prefill_answer = await answer.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as error:
            log.warning("prefill %s failed: %s", prefill_url, error)
            return _error(502, f"prefill endpoint failed: {type(error).__name__}")
        if not isinstance(prefill_answer, dict):
            return _error(502, "the prefill endpoint answered no JSON object")
        return await self._stream_decode(request, decode_request(body, prefill_answer), headers)

    async def _stream_decode(
        self, request: web.Request, body: dict[str, Any], headers: dict[str, str]
    ) -> web.StreamResponse:
        decode_url = next(self._decode) + request.path
        response: web.StreamResponse | None = None
        try:
            async with self.session.post(decode_url, json=body, headers=headers) as answer:
                response = web.StreamResponse(status=answer.status)
                response.content_type = answer.content_type
                await response.prepare(request)
                async for chunk in answer.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
        except (aiohttp.ClientError, TimeoutError) as error:
            log.warning("decode %s failed: %s", decode_url, error)
            if response is not None and response.prepared:
                raise  # the client already has part of the answer: cut the connection
            return _error(502, f"decode endpoint failed: {type(error).__name__}")


def _headers(request: web.Request) -> dict[str, str]:
    return {name: request.headers[name] for name in FORWARDED_HEADERS if name in request.headers}
