"""The model's warm-up as something a person can watch: phase, tokens done, time left.

On a slow CPU the first start reads the prompt prefix (system prompt + tool schemas) for a
minute or more. The MLX thread reports into a `WarmUp`; `agentd status` shows `report()`, and
a turn that arrives meanwhile waits with `describe()` lines instead of silently timing out.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import AsyncIterator

PHASES = ("loading", "prefix", "ready", "stopped")
POLL_S = 0.2


class WarmUp:
    """Where the model's warm-up is; written by the MLX thread, read by the event loop."""

    def __init__(self) -> None:
        self.phase = "loading"
        self.done = 0
        self.total = 0
        self.source = ""  # "built" or "loaded from the home folder" once ready
        self._started = time.monotonic()
        self._phase_started = self._started
        self._ready = threading.Event()

    # -- the MLX thread's side ---------------------------------------------------------------

    def enter(self, phase: str, total: int = 0) -> None:
        """A new phase begins (total: tokens it has to read, if any)."""
        assert phase in PHASES, phase
        self.phase, self.done, self.total = phase, 0, total
        self._phase_started = time.monotonic()
        if phase in ("ready", "stopped"):
            self._ready.set()
        else:
            self._ready.clear()

    def advance(self, done: int) -> None:
        """Tokens of the prefix read so far."""
        self.done = done

    def finish(self, source: str) -> None:
        """The prefix is ready: built here, or loaded from the home folder (counts are kept)."""
        self.source, self.phase, self.done = source, "ready", self.total
        self._ready.set()

    # -- the readers' side ----------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def seconds_left(self) -> float | None:
        """A guess at the time left in the prefix phase, from its speed so far."""
        if self.phase != "prefix" or not self.done or not self.total:
            return None
        spent = time.monotonic() - self._phase_started
        return spent / self.done * (self.total - self.done)

    def describe(self) -> str:
        """One line for a person: what the model is doing and how far it is."""
        if self.phase == "loading":
            return "warming up the model: loading it"
        if self.phase == "prefix":
            left = self.seconds_left()
            eta = f", about {left:.0f} s left" if left is not None else ""
            return f"warming up the model: reading its instructions and tools, {self.done} of {self.total} tokens{eta}"
        if self.phase == "ready":
            return f"model ready ({self.source})" if self.source else "model ready"
        return "model warm-up stopped"

    def report(self) -> dict:
        """The warm-up for `agentd status`."""
        left = self.seconds_left()
        return {"phase": self.phase, "done_tokens": self.done, "total_tokens": self.total,
                "seconds_left": round(left, 1) if left is not None else None, "source": self.source or None,
                "elapsed_s": round(time.monotonic() - self._started, 1), "text": self.describe()}

    async def wait(self, every_s: float = 10.0, cancel: asyncio.Event | None = None) -> AsyncIterator[str]:
        """Wait until the warm-up ends (or `cancel` is set), yielding a progress line at once
        and then every `every_s`. Polls a flag: no thread is left blocked when a turn is cancelled."""
        next_line = 0.0
        while not self.ready and not (cancel is not None and cancel.is_set()):
            if time.monotonic() >= next_line:
                yield self.describe()
                next_line = time.monotonic() + every_s
            await asyncio.sleep(POLL_S)

    def show_until_ready(self, write, every_s: float = 10.0) -> None:
        """Block until the warm-up ends, writing a progress line now and then every `every_s`
        (`agentd ask --local`: the same wait a daemon's turn has, in the foreground)."""
        while not self.ready:
            write(self.describe())
            self._ready.wait(every_s)
