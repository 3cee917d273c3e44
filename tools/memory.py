"""Memory tools: long-term facts about the user and their home, kept in the store."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.store import StoreWriteError
from agent.tools import ToolContext, ToolError, tool

if TYPE_CHECKING:
    from agent.store import Fact, Store

MAX_FACT_LENGTH = 500
# What an empty recall lists: enough to answer "what do you know about me?", short enough to read.
LIST_LIMIT = 20


@tool(risk="write")
def remember(fact: str, ctx: ToolContext) -> str:
    """Save a fact to long-term memory, to recall in later conversations.

    Args:
        fact: One short, self-contained sentence, e.g. "The wifi password is hunter2".
    """
    fact = " ".join(fact.split())
    if not fact:
        raise ToolError("the fact is empty; say what to remember")
    if len(fact) > MAX_FACT_LENGTH:
        raise ToolError(f"the fact is too long ({len(fact)} characters); save one short sentence")
    try:
        _store(ctx).remember(fact, source=ctx.who)
    except StoreWriteError as exc:  # a full disk: the model tells the person it was not saved
        raise ToolError(f"not saved: {exc}") from None
    return f"Remembered: {fact}"


@tool
def recall(ctx: ToolContext, query: str = "") -> str:
    """Look up saved facts in long-term memory.

    Args:
        query: Words to look for, e.g. "wifi password". Leave empty to list everything saved.
    """
    store = _store(ctx)
    if not query.strip():
        facts = store.all_facts()[-LIST_LIMIT:]
        return _listing("Saved facts", facts) if facts else "Memory is empty."
    facts = store.recall(query)
    if not facts:
        return f"Nothing in memory matches {query.strip()!r}."
    return _listing(f"Facts matching {query.strip()!r}, best first", facts)


@tool(risk="write")
def forget(query: str, ctx: ToolContext) -> str:
    """Delete saved facts that contain all the given words.

    Args:
        query: Words from the fact to delete, e.g. "wifi password".
    """
    if not query.strip():
        raise ToolError("say which fact to forget")
    try:
        gone = _store(ctx).forget_matching(query)
    except StoreWriteError as exc:
        raise ToolError(f"nothing was forgotten: {exc}") from None
    if not gone:
        return f"No saved fact matches {query.strip()!r}; nothing was forgotten."
    return _listing(f"Forgot {len(gone)} fact{'s' if len(gone) != 1 else ''}", gone)


def _store(ctx: ToolContext) -> Store:
    if ctx.store is None:
        raise ToolError("long-term memory is not available right now")
    return ctx.store


def _listing(title: str, facts: list[Fact]) -> str:
    return "\n".join([f"{title}:", *(f"- {fact.text}" for fact in facts)])
