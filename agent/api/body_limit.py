"""The largest request body the API reads (`api.max_request_bytes`).

Pictures arrive as base64 in the JSON body (a third larger than the file), so without a limit
one request could make the daemon hold gigabytes. A body whose Content-Length is over the limit
is refused before a byte of it is read; one sent without a length (chunked) is counted as it
arrives and refused as soon as it passes the limit. Either way the client gets a 413 in its
API's error shape.

The connection is not closed: once a reply is complete uvicorn (h11 and httptools alike)
drops the rest of the request's body as it arrives, holding none of it, and the client reads
the 413 instead of a reset connection and can send its next request.
"""

from __future__ import annotations

from typing import Any

from agent.api.errors import ApiRequestError, error_response


class RequestTooLarge(ApiRequestError):
    """A request body over api.max_request_bytes (HTTP 413)."""

    def __init__(self, limit: int, size: int | None = None):
        said = f" ({size} bytes)" if size is not None else ""
        super().__init__(f"the request body{said} is larger than the API takes (api.max_request_bytes: {limit} bytes); "
                         "send fewer or smaller pictures, or raise api.max_request_bytes", 413, "request_too_large")


class BodyLimit:
    """ASGI middleware: request bodies over `limit` bytes are answered with a 413.

    Pure ASGI, like BearerAuth: it sits below the token check, so a request without the token
    is refused before its body is read at all."""

    def __init__(self, app: Any, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await self._refuse(scope, receive, send, RequestTooLarge(self.limit, declared))
            return
        received, started = 0, False

        async def counted_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:  # raised inside the route's body read: its 413 handler answers
                    raise RequestTooLarge(self.limit)
            return message

        async def watched_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except RequestTooLarge as exc:  # read outside a route (no handler): answered here
            if started:
                raise
            await self._refuse(scope, receive, send, exc)

    @staticmethod
    async def _refuse(scope: dict, receive: Any, send: Any, exc: RequestTooLarge) -> None:
        response = error_response(scope["path"], exc.status, str(exc), exc.kind, headers={"Connection": "close"})
        await response(scope, receive, send)


def _content_length(scope: dict) -> int | None:
    """The request's Content-Length; None when it sent none (a chunked body)."""
    for name, value in scope.get("headers") or []:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the HTTP server refuses a malformed one before it gets here
    return None
