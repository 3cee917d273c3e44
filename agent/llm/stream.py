"""Split streamed model text into reply text, thinking and tool calls as it arrives.

The user must never see raw `<tool_call>` markup, and text is shown as soon as it cannot be
the beginning of a tag. A tag split across two token segments is held back until it is
complete (or proven not to be a tag).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PieceKind = Literal["text", "thinking", "tool_call", "unclosed_tool_call"]


@dataclass(frozen=True)
class Piece:
    kind: PieceKind
    text: str


@dataclass(frozen=True)
class Tags:
    """The markup a model family uses; Qwen3.5 and Hermes-style models share these."""

    tool_start: str = "<tool_call>"
    tool_end: str = "</tool_call>"
    think_start: str = "<think>"
    think_end: str = "</think>"


class StreamSplitter:
    """Feed text segments in; get typed pieces out."""

    def __init__(self, tags: Tags = Tags(), *, thinking: bool = False):
        self.tags = tags
        self.mode: str = "thinking" if thinking else "text"
        self._buffer = ""
        self._call = ""  # body of the tool call being written
        self._at_text_start = True

    def feed(self, segment: str) -> list[Piece]:
        """Take the next decoded segment; return what can be shown or run now."""
        self._buffer += segment
        pieces: list[Piece] = []
        while self._buffer:
            closing = self._closing_tag()
            index = self._buffer.find(closing) if closing else -1
            opening = self._opening_tags()
            open_at, open_tag = self._first_of(opening)
            if index >= 0 and (open_at < 0 or index <= open_at):
                self._emit(self._buffer[:index], pieces)
                self._buffer = self._buffer[index + len(closing):]
                self._close(pieces)
                continue
            if open_at >= 0:
                self._emit(self._buffer[:open_at], pieces)
                self._buffer = self._buffer[open_at + len(open_tag):]
                self._open(open_tag)
                continue
            keep = self._partial_tag_length(opening + ([closing] if closing else []))
            self._emit(self._buffer[: len(self._buffer) - keep], pieces)
            self._buffer = self._buffer[len(self._buffer) - keep:]
            break
        return pieces

    def finish(self) -> list[Piece]:
        """End of generation: flush what is held back; report a tool call left open."""
        pieces: list[Piece] = []
        self._emit(self._buffer, pieces)
        self._buffer = ""
        if self.mode == "tool_call":
            pieces.append(Piece("unclosed_tool_call", self._call))
            self._call = ""
            self.mode = "text"
        return pieces

    def _closing_tag(self) -> str | None:
        return {"thinking": self.tags.think_end, "tool_call": self.tags.tool_end}.get(self.mode)

    def _opening_tags(self) -> list[str]:
        # Inside thinking or a tool call nothing opens: a nested <tool_call> is just text.
        return [self.tags.tool_start, self.tags.think_start] if self.mode == "text" else []

    def _first_of(self, tags: list[str]) -> tuple[int, str]:
        found = [(self._buffer.find(t), t) for t in tags if t in self._buffer]
        return min(found) if found else (-1, "")

    def _partial_tag_length(self, tags: list[str]) -> int:
        """Length of the longest buffer suffix that could still grow into one of the tags."""
        best = 0
        for tag in tags:
            for n in range(min(len(tag) - 1, len(self._buffer)), best, -1):
                if self._buffer.endswith(tag[:n]):
                    best = n
                    break
        return best

    def _emit(self, text: str, pieces: list[Piece]) -> None:
        if not text:
            return
        if self.mode == "tool_call":
            self._call += text
            return
        if self.mode == "text" and self._at_text_start:
            # The template's empty think block leaves newlines before the answer.
            text = text.lstrip()
            if not text:
                return
            self._at_text_start = False
        if pieces and pieces[-1].kind == self.mode:
            pieces[-1] = Piece(self.mode, pieces[-1].text + text)
        else:
            pieces.append(Piece(self.mode, text))  # type: ignore[arg-type]

    def _open(self, tag: str) -> None:
        self.mode = "tool_call" if tag == self.tags.tool_start else "thinking"

    def _close(self, pieces: list[Piece]) -> None:
        if self.mode == "tool_call":
            pieces.append(Piece("tool_call", self._call))
            self._call = ""
        self.mode = "text"
        self._at_text_start = True
