"""One ASGI middleware in front of the app: metrics, API key, and a hard cap on body size.

Written at the ASGI level (not ``@app.middleware``) so that the body cap holds for chunked uploads with no
Content-Length: the body is read here, counted chunk by chunk, and replayed to the app only when it fits.
Requests that are refused here never reach FastAPI, so they are cheap and cannot touch the Scorer.
"""
from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from hetmoe.online.prometheus import Metrics


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

API_KEY_HEADER = "x-api-key"
OPEN_PATHS = frozenset({"/healthz"})  # liveness probes carry no key


class _BodyTooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


async def _json_error(send: Send, status: int, field: str, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"error": message, "field": field}).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(headers or [])],
    })
    await send({"type": "http.response.body", "body": body})


class GuardMiddleware:
    """Times every HTTP request into :class:`Metrics`, checks the API key, and caps the body at ``max_body_bytes``."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, known_paths: frozenset[str], max_body_bytes: int, api_key: str | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.known_paths = known_paths
        self.max_body_bytes = max_body_bytes
        self._api_key = api_key.encode() if api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        path = scope.get("path", "")
        # A bounded label set: client-chosen paths must not create new time series.
        endpoint = path if path in self.known_paths else "other"

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self._guarded(scope, receive, timed_send, path)
        except _Disconnected:
            status = 499  # client went away mid-body; nothing to answer
        finally:
            self.metrics.observe_request(endpoint, scope.get("method", ""), status, time.perf_counter() - start)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        if self._api_key is not None and path not in OPEN_PATHS:
            given = headers.get(API_KEY_HEADER.encode(), b"")
            if not hmac.compare_digest(given, self._api_key):
                await _json_error(send, 401, "x-api-key", "x-api-key: missing or wrong API key; send it in the X-API-Key header",
                                  [(b"www-authenticate", b"X-API-Key")])
                return
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _json_error(send, 400, "content-length", "content-length: not a non-negative integer")
                return
            if int(declared) > self.max_body_bytes:
                await _json_error(send, 413, "body", f"body: {int(declared)} bytes is over the limit of {self.max_body_bytes} bytes")
                return
        try:
            body = await self._read_body(receive)
        except _BodyTooLarge:
            await _json_error(send, 413, "body", f"body: over the limit of {self.max_body_bytes} bytes")
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for disconnect, as the server would

        await self.app(scope, replay, send)

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
