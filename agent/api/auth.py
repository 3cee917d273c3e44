"""The API's bearer token: made once into the home folder (0600), required on every request."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path
from typing import Any

from agent.api.errors import error_response


def token_path(home: Path, configured: Path) -> Path:
    """Where the token lives: `api.token_file`, relative to the home folder."""
    return configured if configured.is_absolute() else Path(home) / configured


def ensure_token(path: Path) -> str:
    """The token in `path`, made (random, mode 0600) if the file does not exist yet."""
    try:
        # O_EXCL: two starts racing cannot both write; the loser reads the winner's token.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
    token = path.read_text().strip()
    if not token:
        raise ValueError(f"the API token file {path} is empty: delete it and agentd makes a new one")
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)  # a token others can read is no token
    return token


class BearerAuth:
    """ASGI middleware: a request without `Authorization: Bearer <token>` gets a 401.

    Pure ASGI rather than Starlette's BaseHTTPMiddleware, which buffers streamed replies."""

    def __init__(self, app: Any, token: str):
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not self._authorized(scope):
            why = "missing or wrong bearer token: send 'Authorization: Bearer <token>' (the token is in agentd's home folder, api-token)"
            response = error_response(scope["path"], 401, why, "unauthorized", headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _authorized(self, scope: dict) -> bool:
        sent = dict(scope.get("headers") or []).get(b"authorization", b"")
        return hmac.compare_digest(sent, self.expected)
