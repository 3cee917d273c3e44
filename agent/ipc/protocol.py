"""The wire format: JSON lines, one frame per line, each with `"v": 1` and a `"type"`.

Requests (client -> daemon), validated by the pydantic models below:

    {"v":1,"type":"send","id":"r1","text":"lights on","conversation_id":null,"thinking":null}
                       (optional "images": [base64, ...]: pictures for the model, agent.images)
    {"v":1,"type":"cancel","id":"r1"}                     stop r1 (queued or running)
    {"v":1,"type":"confirm","id":"r1","approve":true}     answer r1's confirm_request, or the
                                                          open question of that id (a voice one)
    {"v":1,"type":"history","id":"h1","conversation_id":null,"limit":20}   null: the latest
    {"v":1,"type":"status","id":"s1"}    {"v":1,"type":"reload","id":"x1"}

Events (daemon -> client): every step event of `agent.events` in its `to_dict` form plus
"v" and the request "id" (TextDelta ... ReplyDone, which ends a send), and `started`,
`confirm_request`, `status`, `history` and `error` (with the id and the request type it
answers, when known). Unasked, to every client: `notice`, and `question` / `settled` for a
question the voice door asks aloud, which any client may answer first. `FrameDecoder` never raises on bad input: one garbled line costs one
error event, not the connection. Request ids are the client's own, unique per connection.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from agent import events

VERSION = 1
MAX_FRAME = 1 << 20  # bytes in one line, newline excluded
# A request line may be longer: a send's pictures travel in it as base64 (the daemon then
# applies vision.max_image_bytes). About 18 MB of pictures per message.
MAX_REQUEST_FRAME = 24 << 20
MAX_IMAGES = 4  # pictures in one send

RequestId = Annotated[str, Field(min_length=1, max_length=128)]


class RequestError(ValueError):
    """A request the daemon cannot carry out; the message goes back in an error event."""

    def __init__(self, message: str, request_id: str | None = None, about: str | None = None):
        super().__init__(message)
        self.request_id = request_id
        self.about = about


class ProtocolError(RequestError):
    """A frame that cannot be understood; the message names the problem."""


class _Frame(BaseModel):
    # strict: "yes" is not a bool and "5" is not an int; extra: a typo'd field is an error
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    v: int

    @field_validator("v")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v != VERSION:
            raise ValueError(f"unsupported protocol version {v!r} (this daemon speaks {VERSION})")
        return v


class Send(_Frame):
    type: Literal["send"]
    id: RequestId
    text: Annotated[str, Field(min_length=1, max_length=MAX_FRAME)]
    conversation_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    thinking: bool | None = None
    explain: bool = False  # add a note saying which path answered (phrase or model) and why
    images: Annotated[list[Annotated[str, Field(min_length=1)]], Field(max_length=MAX_IMAGES)] = []  # base64 pictures


class Cancel(_Frame):
    type: Literal["cancel"]
    id: RequestId


class History(_Frame):
    type: Literal["history"]
    id: RequestId | None = None
    conversation_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None  # None: latest
    limit: Annotated[int, Field(ge=1, le=1000)] = 20


class Confirm(_Frame):
    type: Literal["confirm"]
    id: RequestId
    approve: bool


class Status(_Frame):
    type: Literal["status"]
    id: RequestId | None = None


class Reload(_Frame):
    type: Literal["reload"]
    id: RequestId | None = None


Request = Annotated[Union[Send, Cancel, History, Confirm, Status, Reload], Field(discriminator="type")]
_requests: TypeAdapter = TypeAdapter(Request)


class ConfirmRequest(_Frame):
    type: Literal["confirm_request"] = "confirm_request"
    id: RequestId
    tool: str
    arguments: dict
    risk: str
    timeout_s: float


class Started(_Frame):
    """A queued request has begun to run, in this conversation."""

    type: Literal["started"] = "started"
    id: RequestId
    conversation_id: str | None = None


class Error(_Frame):
    type: Literal["error"] = "error"
    id: str | None = None
    about: str | None = None  # the type of the request it answers, when known
    message: str


class Notice(_Frame):
    """Something the daemon tells every client unasked: a reminder that fired, a missed run."""

    type: Literal["notice"] = "notice"
    id: str | None = None
    kind: str
    text: str
    job_id: str | None = None


class OpenQuestion(_Frame):
    """A question a door inside the daemon put to the person (the voice door, aloud); any
    client may answer it with a `confirm` frame carrying this id, until it is settled."""

    type: Literal["question"] = "question"
    id: RequestId
    text: str
    tool: str
    arguments: dict
    risk: str
    timeout_s: float


class QuestionSettled(_Frame):
    """An open question was answered (the first answer wins) or its time ran out."""

    type: Literal["settled"] = "settled"
    id: RequestId
    approved: bool
    by: Literal["voice", "chat"]
    reason: Literal["yes", "no", "unclear", "silence", "cancelled"]


class StatusReport(_Frame):
    type: Literal["status"] = "status"
    id: str | None = None
    status: dict


class HistoryReport(_Frame):
    type: Literal["history"] = "history"
    id: str | None = None
    conversation_id: str | None = None
    messages: list[dict]


ServerEvent = Annotated[
    Union[ConfirmRequest, Started, Error, Notice, OpenQuestion, QuestionSettled, StatusReport, HistoryReport],
    Field(discriminator="type"),
]
_server_events: TypeAdapter = TypeAdapter(ServerEvent)


def encode(frame: BaseModel | dict) -> bytes:
    """One frame as a JSON line."""
    data = frame.model_dump() if isinstance(frame, BaseModel) else frame
    # default=str: a tool argument that is a date or a Path must not kill the reply
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str).encode() + b"\n"


def event_frame(request_id: str, event: Any) -> dict:
    """A step event as a frame tagged with the request it belongs to.

    The frame is encoded at once, so a shallow view of the event's fields is enough: the
    deep copy `events.to_dict` makes (dataclasses.asdict) is only needed for ReplyDone's
    nested stats, and costs on every streamed text delta otherwise.
    """
    if type(event) in _FLAT_EVENTS:
        return {"v": VERSION, "id": request_id, "type": type(event).__name__, **events.shallow_dict(event)}
    return {"v": VERSION, "id": request_id, **events.to_dict(event)}


# step events whose fields hold no nested dataclass (ReplyDone's stats is one)
_FLAT_EVENTS = frozenset(cls for cls in events.STEP_EVENTS.values() if cls is not events.ReplyDone)


def parse_request(line: bytes) -> Any:
    """Validate one line as a request model; ProtocolError names what is wrong."""
    data = _load_object(line)
    try:
        return _requests.validate_python(data)
    except ValidationError as exc:
        about = data.get("type") if isinstance(data.get("type"), str) else None
        raise ProtocolError(describe(exc), _id_of(data), about) from None


def parse_event(line: bytes) -> tuple[str | None, Any]:
    """Decode one daemon frame into (request id, step event or protocol event model)."""
    data = _load_object(line)
    request_id = _id_of(data)
    if data.get("type") in events.STEP_EVENTS:
        payload = {k: v for k, v in data.items() if k not in ("v", "id")}
        try:
            return request_id, events.from_dict(payload)
        except (KeyError, TypeError) as exc:
            raise ProtocolError(f"bad {data['type']} event: {exc}", request_id) from None
    try:
        return request_id, _server_events.validate_python(data)
    except ValidationError as exc:
        raise ProtocolError(describe(exc), request_id) from None


def _load_object(line: bytes) -> dict:
    try:
        data = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"a frame must be a JSON object, got {type(data).__name__}")
    return data


def error_for(exc: RequestError) -> Error:
    """The error event that answers a failed request."""
    return Error(v=VERSION, id=exc.request_id, about=exc.about, message=str(exc))


def _id_of(data: dict) -> str | None:
    value = data.get("id")
    return value if isinstance(value, str) and 0 < len(value) <= 128 else None


def describe(exc: ValidationError) -> str:
    """A short, human account of a validation error, naming each bad field."""
    parts = []
    for err in exc.errors():
        kind, ctx, loc = err["type"], err.get("ctx") or {}, err["loc"]
        field = ".".join(str(p) for p in loc[1:]) or "frame"
        prefix = f"{loc[0]}: " if loc else ""
        if kind == "union_tag_not_found":
            parts.append("missing field 'type'")
        elif kind == "union_tag_invalid":
            parts.append(f"unknown type {ctx.get('tag')!r} (known: {ctx.get('expected_tags')})")
        elif kind == "missing":
            parts.append(f"{prefix}missing field {field!r}")
        elif kind == "extra_forbidden":
            parts.append(f"{prefix}unknown field {field!r}")
        else:
            message = err["msg"].removeprefix("Value error, ")
            parts.append(f"{prefix}field {field!r}: {message} (got {_short(err.get('input'))})")
    return "; ".join(parts)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class FrameTooLong:
    """Marker the decoder yields in place of a line longer than the limit."""

    def __init__(self, size: int):
        self.size = size

    def __repr__(self) -> str:
        return f"FrameTooLong({self.size})"


class FrameDecoder:
    """Split a byte stream into lines; an over-long line is skipped up to its newline."""

    def __init__(self, limit: int = MAX_FRAME):
        self.limit = limit
        self._buffer = bytearray()
        self._skipped = 0  # bytes of an over-long line dropped so far; 0 when not skipping

    def feed(self, data: bytes) -> list[bytes | FrameTooLong]:
        """Take more bytes; return the complete lines (blank ones left out)."""
        out: list[bytes | FrameTooLong] = []
        self._buffer += data
        while True:
            newline = self._buffer.find(b"\n")
            if self._skipped:
                if newline < 0:
                    self._skipped += len(self._buffer)
                    self._buffer.clear()
                    return out
                out.append(FrameTooLong(self._skipped + newline))
                self._skipped = 0
                del self._buffer[: newline + 1]
                continue
            if newline < 0:
                if len(self._buffer) > self.limit:
                    # keep memory bounded: drop the head now, report when the line ends
                    self._skipped = len(self._buffer)
                    self._buffer.clear()
                return out
            line = bytes(self._buffer[:newline])
            del self._buffer[: newline + 1]
            if len(line) > self.limit:
                out.append(FrameTooLong(len(line)))
            elif line.strip():
                out.append(line)
