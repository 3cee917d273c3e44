"""Error replies in the shape each family of clients reads: OpenAI's under /v1, Ollama's under /api."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.responses import JSONResponse


class ApiRequestError(ValueError):
    """A request the API cannot serve; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.kind = status, kind


def error_response(path: str, status: int, message: str, kind: str, headers: dict | None = None) -> JSONResponse:
    """A JSON error: `{"error": "..."}` for Ollama clients, `{"error": {"message", "type"}}` for OpenAI's."""
    if path.startswith("/api/"):
        body: dict = {"error": message}
    else:
        body = {"error": {"message": message, "type": kind, "code": status}}
    return JSONResponse(body, status_code=status, headers=headers)


async def read_body(request: Any, model: type[BaseModel]) -> Any:
    """The request's JSON body validated by `model`; ApiRequestError naming what is wrong."""
    body = await request.body()  # outside the try: a body over the limit is a 413 (body_limit.py), not bad JSON
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ApiRequestError(f"the request body is not JSON: {exc}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        raise ApiRequestError(f"bad request: {problems}") from None
