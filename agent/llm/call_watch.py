"""Where a constrained generation is inside a tool call, and what the mask did to each call.

The guide (constrained.py) needs to know two things about the token it just accepted: is the
model inside a tool call (only there does the confidence floor apply: free text is free), and
is it still writing the tool's name (where an override by the mask would change which tool
runs, which the eval counts as "coerced"). Tags that are one token are recognised by id, for
free; tags spelled as text, and the name itself, are read from the token bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass
class CallTrace:
    """What happened to one tool call while it was written under the grammar."""

    name_overridden: bool = False  # the model's top token was masked while it wrote the name
    abandoned: bool = False  # stopped by the confidence floor instead of forced
    lowest_mass: float = 1.0  # the least probability the mask left the model at one step
    masses: list[float] = field(default_factory=list, repr=False)  # each step's allowed mass

    @property
    def coerced(self) -> bool:
        """The grammar, not the model, chose the tool this call names (and it was not stopped)."""
        return self.name_overridden and not self.abandoned


# Where the name starts and ends, per tool-call style (see grammar.py).
NAME_DELIMITERS = {"xml": (b"<function=", b">"), "json": (b'"name": "', b'"')}


class CallWatch:
    """Follows the accepted tokens: in a call or not, naming the tool or not."""

    def __init__(self, *, start: str, end: str, start_id: int | None, end_id: int | None,
                 style: str, token_bytes: Callable[[int], bytes]):
        self.start, self.end = start.encode(), end.encode()
        self.start_id, self.end_id = start_id, end_id
        self.name_open, self.name_close = NAME_DELIMITERS[style]
        self.token_bytes = token_bytes
        self.traces: list[CallTrace] = []
        self.in_call = False
        self.naming = False
        self._text = b""  # the call so far while naming; the recent text when tags are spelled

    @property
    def current(self) -> CallTrace | None:
        return self.traces[-1] if self.in_call else None

    def accept(self, token: int) -> None:
        """Move past one accepted token."""
        if not self.in_call:
            if token == self.start_id:
                self._open(b"")
            elif self.start_id is None:
                self._text = (self._text + self.token_bytes(token))[-4 * len(self.start):]
                at = self._text.find(self.start)
                if at >= 0:
                    self._open(self._text[at + len(self.start):])
            return
        if token == self.end_id:
            self.in_call = self.naming = False
            return
        if self.naming or self.end_id is None:
            self._text += self.token_bytes(token)
            self._read_name()
            if self.end_id is None and self.end in self._text:
                self.in_call = self.naming = False
                self._text = b""

    def _open(self, after: bytes) -> None:
        self.traces.append(CallTrace())
        self.in_call = self.naming = True
        self._text = after
        self._read_name()

    def _read_name(self) -> None:
        at = self._text.find(self.name_open)
        if self.naming and at >= 0 and self.name_close in self._text[at + len(self.name_open):]:
            self.naming = False
