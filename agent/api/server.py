"""The API's HTTP server: a Starlette app served by uvicorn on the daemon's own event loop.

Started only when `api.enabled` (the daemon's `api` service); it binds `api.host` (127.0.0.1
unless the person names another) and refuses every request without the bearer token.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request

from agent.api import ollama, openai
from agent.api.auth import BearerAuth, ensure_token, token_path
from agent.api.body_limit import BodyLimit
from agent.api.chat import ChatBackend
from agent.api.errors import ApiRequestError, error_response
from agent.api.models import ModelCard

log = logging.getLogger(__name__)


@dataclass
class ApiContext:
    """What the routes share: the backend, the model card and the readiness check."""

    backend: ChatBackend
    model: ModelCard
    ready: Callable[[], bool]

    def check_ready(self) -> None:
        """503 while the model warms up: clients retry, rather than hang on a cold model."""
        if not self.ready():
            raise ApiRequestError("agentd's model is warming up; try again in a few seconds", 503, "model_warming_up")


def build_asgi(context: ApiContext, token: str, max_request_bytes: int) -> Any:
    """The ASGI app: both route families behind the bearer-token check and the body limit."""

    async def request_error(request: Request, exc: Exception) -> Any:
        assert isinstance(exc, ApiRequestError)
        return error_response(request.url.path, exc.status, str(exc), exc.kind)

    async def http_error(request: Request, exc: Exception) -> Any:
        assert isinstance(exc, HTTPException)
        return error_response(request.url.path, exc.status_code, f"{exc.detail}: {request.method} {request.url.path}", "not_found")

    app = Starlette(routes=[*openai.routes(context), *ollama.routes(context)],
                    exception_handlers={ApiRequestError: request_error, HTTPException: http_error})
    return BearerAuth(BodyLimit(app, max_request_bytes), token)


class ApiServer:
    """The `api` service: `serve()` listens until cancelled."""

    def __init__(self, daemon: Any, api_settings: Any, home: Path, *, model_path: Path | None = None,
                 ready: Callable[[], bool] = lambda: True):
        self.settings = api_settings
        self.token_file = token_path(home, api_settings.token_file)
        context = ApiContext(ChatBackend(daemon, allow=api_settings.allow), ModelCard(api_settings.model_name, model_path), ready)
        self.app = build_asgi(context, ensure_token(self.token_file), api_settings.max_request_bytes)
        self.port: int | None = None  # the bound port (api.port, or the one the OS picked for 0)

    @property
    def url(self) -> str:
        host = self.settings.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port or self.settings.port}"

    def status(self) -> dict:
        """The API's line in `agentd status`: where clients point."""
        return {"api": {"url": self.url, "token_file": str(self.token_file)}}

    async def serve(self) -> None:
        """Bind, serve on this loop, and on cancel close the listener and let replies end."""
        listener = bind(self.settings.host, self.settings.port)
        self.port = listener.getsockname()[1]
        config = uvicorn.Config(self.app, log_config=None, access_log=False, lifespan="off",
                                timeout_graceful_shutdown=3, server_header=False)
        server = _InLoopServer(config)
        log.info("API listening on %s (token in %s)", self.url, self.token_file)
        if not _loopback(self.settings.host):
            log.warning("the API is reachable from other machines (api.host %s); anyone with the token can use the agent",
                        self.settings.host)
        task = asyncio.create_task(server.serve(sockets=[listener]), name="api-http")
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            server.should_exit = True
            await task
            raise
        finally:
            listener.close()


class _InLoopServer(uvicorn.Server):
    """uvicorn's Server without its signal handlers: the daemon owns SIGTERM/SIGINT/SIGHUP
    (uvicorn's would replace the daemon's, and re-raise the signal when it stops)."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
        yield


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class ApiBindError(OSError):
    """The API's address cannot be bound (in use, or not this machine's)."""


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port; ApiBindError naming the address otherwise."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        listener = socket.socket(family, kind, proto)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
    except OSError as exc:
        raise ApiBindError(f"the API cannot listen on {host}:{port} ({exc.strerror or exc}); "
                           "set api.host / api.port to a free address of this machine") from exc
    listener.listen(128)
    listener.setblocking(False)
    return listener
