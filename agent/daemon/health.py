"""What agentd found wrong and is living with: a damaged file it set aside, a service that
gave up, a config it refused, a disk that is full.

Each problem has a key ("config", "agentd.db", "service:schedule", "disk"). Reporting one
logs it and tells the open chat windows once; reporting the same text again does nothing, so
a fault that recurs every turn is one line, not a flood. `status()` joins `agentd status`
(and the chat window shows it when it connects); `clear(key)` is called when it is over.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable

log = logging.getLogger("agentd.health")


@dataclass(frozen=True)
class Problem:
    """One thing that is wrong, in words for the person: what happened and what to do."""

    key: str
    text: str
    kind: str = "problem"  # the notice kind chat windows show it as


class Health:
    """The problems of one agentd process; thread-safe (the store reports from tool threads)."""

    def __init__(self, notify: Callable[[Problem], Any] | None = None):
        self.notify = notify  # tells the open chat windows (the daemon wires it to its clients)
        self._problems: dict[str, Problem] = {}
        self._lock = threading.Lock()

    def report(self, key: str, text: str, *, kind: str = "problem") -> bool:
        """Record a problem; True if it is news (logged and told), False if already known."""
        problem = Problem(key, text, kind)
        with self._lock:
            if self._problems.get(key) == problem:
                return False
            self._problems[key] = problem
        log.error("%s", text)
        if self.notify is not None:
            try:
                self.notify(problem)
            except Exception:  # telling people must never be what breaks agentd
                log.exception("could not pass the problem on to the chat windows")
        return True

    def clear(self, key: str, resolved: str | None = None) -> None:
        """The problem is over (space was freed, a good config loaded)."""
        with self._lock:
            gone = self._problems.pop(key, None)
        if gone is not None:
            log.warning("%s", resolved or f"resolved: {gone.text}")

    def get(self, key: str) -> str | None:
        """The text of the problem under `key`, or None."""
        with self._lock:
            problem = self._problems.get(key)
        return problem.text if problem else None

    def problems(self) -> list[str]:
        """Every current problem, oldest first."""
        with self._lock:
            return [p.text for p in self._problems.values()]

    def status(self) -> dict:
        """The part of `agentd status` that says what is wrong (nothing: an empty list)."""
        return {"problems": self.problems()}
