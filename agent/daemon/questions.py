"""Questions a door inside the daemon puts to the person, which any chat window may answer.

The voice door asks "Lock the back door? Say yes or no." aloud; the same question goes to
every connected client as a `question` frame, and a `confirm` frame with its id answers it.
The first answer wins, whoever gives it; everyone is then told it is settled (`settled`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

from pydantic import BaseModel

from agent.ipc import protocol as p

log = logging.getLogger(__name__)

_ids = itertools.count(1)
KEEP_SETTLED = 32


@dataclass(frozen=True, kw_only=True)
class Answer:
    """How a question was settled: approved only on a clear yes."""

    approved: bool
    by: str  # voice | chat
    reason: str  # yes | no | unclear | silence | cancelled

    def __bool__(self) -> bool:
        # The executor reads the answer as a bool and its `reason` into the call's audit row.
        return self.approved


@dataclass(kw_only=True)
class Question:
    """One yes/no question about a confirm-tier tool call; `answer` resolves once."""

    text: str
    tool: str
    arguments: dict
    risk: str
    window_s: float
    id: str = field(default_factory=lambda: f"question-{next(_ids)}")
    answer: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def settle(self, answer: Answer) -> bool:
        """Give the answer; False (and nothing changes) if it was settled before."""
        if self.answer.done():
            return False
        self.answer.set_result(answer)
        return True


class Questions:
    """The open questions of the daemon, told to every client as they open and settle."""

    def __init__(self, tell: Callable[[BaseModel], object]):
        self.tell = tell  # sends a frame to every connected client
        self.open: dict[str, Question] = {}
        self.settled: OrderedDict[str, Answer] = OrderedDict()  # the latest few, to tell a late answer how

    def __contains__(self, question_id: str) -> bool:
        """Whether this id is a question asked here (open, or settled not long ago)."""
        return question_id in self.open or question_id in self.settled

    def put(self, question: Question) -> None:
        """Open a question to the chat windows until it is settled."""
        self.open[question.id] = question
        question.answer.add_done_callback(lambda _: self._settled(question))
        self.tell(p.OpenQuestion(v=p.VERSION, id=question.id, text=question.text, tool=question.tool,
                                 arguments=question.arguments, risk=question.risk, timeout_s=question.window_s))

    def answer(self, question_id: str, approve: bool) -> None:
        """A chat window's answer; RequestError if the question is settled or unknown."""
        question = self.open.get(question_id)
        if question is not None and question.settle(Answer(approved=approve, by="chat", reason="yes" if approve else "no")):
            return
        earlier = self.settled.get(question_id)  # (an Answer is false when it said no: test for None)
        if earlier is None and question is not None:
            earlier = question.answer.result()
        how = f" (by {earlier.by}: {earlier.reason})" if earlier is not None else " (or was never asked)"
        raise p.RequestError(f"question {question_id!r} is already settled{how}", question_id, "confirm")

    def _settled(self, question: Question) -> None:
        self.open.pop(question.id, None)
        if question.answer.cancelled():
            return
        answer: Answer = question.answer.result()
        self.settled[question.id] = answer
        while len(self.settled) > KEEP_SETTLED:
            self.settled.popitem(last=False)
        log.info("question %s (%s) settled by %s: %s", question.id, question.text, answer.by, answer.reason)
        self.tell(p.QuestionSettled(v=p.VERSION, id=question.id, approved=answer.approved, by=answer.by,
                                    reason=answer.reason))
