"""The SQLite store, on real database files."""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime, timedelta, timezone

import pytest

from agent.store import DB_NAME, SCHEMA_VERSION, Store, StoreError, fts_query


class StepClock:
    """A clock that moves one second each time it is read, so ordering by time is testable."""

    def __init__(self):
        self.at = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)

    def now(self) -> datetime:
        self.at += timedelta(seconds=1)
        return self.at


@pytest.fixture
def store(tmp_path):
    with Store.open_in(tmp_path, clock=StepClock()) as opened:
        yield opened


TOOL_TURN = [
    {"role": "system", "content": "You are a home agent."},
    {"role": "user", "content": "What's 2+2, and is the kitchen light on?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "calculate", "arguments": {"expression": "2+2"}}},
            {"id": "c2", "type": "function",
             "function": {"name": "light_state", "arguments": {"room": "kitchen", "verbose": True,
                                                               "levels": [1, 2.5, None]}}},
        ],
    },
    {"role": "tool", "name": "calculate", "tool_call_id": "c1", "content": "2+2 = 4"},
    {"role": "tool", "name": "light_state", "tool_call_id": "c2", "content": "on ✓ «kitchen»"},
    {"role": "assistant", "content": "4, and yes, it is on."},
]


# -- opening ---------------------------------------------------------------------------------


def test_open_in_creates_a_wal_database_at_the_current_schema(tmp_path):
    home = tmp_path / "home"
    with Store.open_in(home) as store:
        assert store.path == home / DB_NAME
    raw = sqlite3.connect(home / DB_NAME)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    raw.close()


def test_reopening_does_not_migrate_again(tmp_path):
    Store.open_in(tmp_path).close()
    with Store.open_in(tmp_path) as store:
        store.remember("the cat is called Miso")
    with Store.open_in(tmp_path) as store:
        assert [f.text for f in store.all_facts()] == ["the cat is called Miso"]


def test_processes_opening_a_new_file_at_once_migrate_it_once(tmp_path):
    start, errors = threading.Barrier(4), []

    def open_and_close() -> None:
        start.wait()
        try:
            Store.open_in(tmp_path).close()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    workers = [threading.Thread(target=open_and_close) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    with Store.open_in(tmp_path) as store:
        assert store.all_facts() == []


def test_a_database_from_a_newer_agentd_is_refused(tmp_path):
    raw = sqlite3.connect(tmp_path / DB_NAME)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(StoreError, match="newer"):
        Store.open_in(tmp_path)


def test_close_twice_is_harmless(tmp_path):
    store = Store.open_in(tmp_path)
    store.close()
    store.close()


# -- conversations ---------------------------------------------------------------------------


def test_messages_round_trip_exactly_including_tool_calls(store):
    cid = store.new_conversation()
    for message in TOOL_TURN:
        store.add_message(cid, message)
    assert store.messages(cid) == TOOL_TURN
    arguments = store.messages(cid)[2]["tool_calls"][0]["function"]["arguments"]
    assert arguments == {"expression": "2+2"}  # a dict again, not JSON text


def test_messages_limit_gives_the_last_n_oldest_first(store):
    cid = store.new_conversation()
    store.add_messages(cid, [{"role": "user", "content": str(i)} for i in range(10)])
    assert [m["content"] for m in store.messages(cid, limit=3)] == ["7", "8", "9"]
    assert store.messages(cid, limit=0) == []
    assert len(store.messages(cid, limit=50)) == 10


def test_everything_survives_a_restart(tmp_path):
    with Store.open_in(tmp_path) as store:
        cid = store.new_conversation(title="Lights", source="voice")
        store.add_messages(cid, TOOL_TURN)
        fact_id = store.remember("The wifi password is hunter2")
        store.audit("calculate", {"expression": "2+2"}, "read", "ok", 0.01, "chat", cid)
    with Store.open_in(tmp_path) as store:
        assert store.messages(cid) == TOOL_TURN
        assert store.latest_conversation(source="voice") == cid
        [summary] = store.conversations()
        assert (summary.title, summary.source, summary.message_count) == ("Lights", "voice", len(TOOL_TURN))
        assert [f.id for f in store.recall("wifi")] == [fact_id]
        [entry] = store.audit_entries()
        assert entry.arguments == {"expression": "2+2"} and entry.conversation_id == cid


def test_a_failed_batch_leaves_nothing_half_written(store):
    cid = store.new_conversation()
    store.add_message(cid, {"role": "user", "content": "before"})
    batch = [
        {"role": "user", "content": "fine"},
        {"role": "assistant", "content": "x", "tool_calls": [{"arguments": object()}]},  # not JSON
    ]
    with pytest.raises(TypeError):
        store.add_messages(cid, batch)
    assert store.messages(cid) == [{"role": "user", "content": "before"}]
    # and the connection is usable again afterwards
    store.add_message(cid, {"role": "user", "content": "after"})
    assert len(store.messages(cid)) == 2


@pytest.mark.parametrize(
    "message",
    [{"role": "robot", "content": "hi"}, {"content": "hi"}, {"role": "user", "content": 3}, "hi"],
)
def test_malformed_messages_are_refused(store, message):
    cid = store.new_conversation()
    with pytest.raises((ValueError, TypeError)):
        store.add_message(cid, message)
    assert store.messages(cid) == []


def test_unknown_conversations(store):
    with pytest.raises(KeyError):
        store.add_message("nope", {"role": "user", "content": "hi"})
    assert store.messages("nope") == []
    assert not store.has_conversation("nope")
    assert store.has_conversation(store.new_conversation())


def test_conversation_list_newest_first_with_titles_and_counts(store):
    first = store.new_conversation(source="chat")
    second = store.new_conversation(title="Shopping", source="voice")
    question = "Remind me   to water the plants every Sunday morning please, thanks"
    store.add_message(first, {"role": "user", "content": question})
    summaries = store.conversations()
    assert [s.id for s in summaries] == [first, second]  # first was updated last
    # an untitled conversation is named after its first question
    assert summaries[0].title == "Remind me to water the plants every Sunday morning please,…"
    assert summaries[1].title == "Shopping"
    assert summaries[0].message_count == 1 and summaries[1].message_count == 0
    assert summaries[0].started < summaries[1].started < summaries[0].updated
    assert summaries[0].updated.tzinfo is not None
    assert store.conversations(limit=1)[0].id == first


def test_latest_conversation_by_source(store):
    assert store.latest_conversation() is None
    chat = store.new_conversation(source="chat")
    voice = store.new_conversation(source="voice")
    assert store.latest_conversation() == voice
    assert store.latest_conversation(source="chat") == chat
    assert store.latest_conversation(source="schedule") is None
    store.add_message(chat, {"role": "user", "content": "hello"})
    assert store.latest_conversation() == chat


# -- memory ----------------------------------------------------------------------------------


def test_recall_ranks_by_relevance(store):
    store.remember("The wifi password is hunter2")
    store.remember("The guest wifi is called Attic")
    store.remember("Anna's birthday is on 3 May")
    store.remember("The bins go out on Tuesday")
    found = [f.text for f in store.recall("what is the wifi password?")]
    assert found == ["The wifi password is hunter2", "The guest wifi is called Attic"]
    assert [f.text for f in store.recall("birthdays")] == ["Anna's birthday is on 3 May"]  # stemmed
    assert store.recall("volcano") == []


def test_recall_ignores_accents_and_case(store):
    store.remember("Zoë's favourite café is on Rue Stévin")
    assert len(store.recall("ZOE CAFE")) == 1


def test_recall_limit(store):
    for i in range(8):
        store.remember(f"plant number {i} needs water")
    assert len(store.recall("plant water", limit=3)) == 3


@pytest.mark.parametrize(
    "query",
    ['wifi AND', 'OR wifi NOT', '"wifi', 'wifi"', '*', 'wifi*', '-wifi', 'text:wifi', 'NEAR(wifi)',
     '^wifi', "wifi's", '()', '', '   ', '{wifi}', 'wi-fi + pass', "';DROP TABLE facts;--", '\x00'],
)
def test_hostile_queries_never_raise(store, query):
    store.remember("The wifi password is hunter2")
    assert isinstance(store.recall(query), list)
    store.forget_matching(query)  # may forget the fact, must not raise
    store.all_facts()  # and the table is still there


def test_hostile_query_words_still_match(store):
    store.remember("The wifi password is hunter2")
    assert store.recall('"wifi" AND password*')[0].text == "The wifi password is hunter2"


def test_fts_query_quotes_every_word():
    assert fts_query('the "wifi" AND pass-word', join="OR") == '"wifi" OR "pass" OR "word"'
    assert fts_query("what is it", join="OR") == '"what" OR "is" OR "it"'  # only stopwords: keep them
    assert fts_query("*** --", join="OR") is None


def test_remembering_the_same_fact_twice_keeps_one(store):
    first = store.remember("The cat is called Miso")
    assert store.remember("  the cat is   called miso ") == first
    assert len(store.all_facts()) == 1
    with pytest.raises(ValueError):
        store.remember("   ")


def test_forget_by_id(store):
    fact_id = store.remember("The cat is called Miso")
    assert store.forget(fact_id) is True
    assert store.forget(fact_id) is False
    assert store.recall("cat") == []


def test_forget_matching_needs_every_word(store):
    store.remember("Anna's birthday is on 3 May")
    store.remember("Ben's birthday is on 9 June")
    gone = store.forget_matching("Anna birthday")
    assert [f.text for f in gone] == ["Anna's birthday is on 3 May"]
    assert [f.text for f in store.all_facts()] == ["Ben's birthday is on 9 June"]
    assert store.recall("Anna") == []  # gone from the index too
    assert store.forget_matching("Carl birthday") == []
    assert store.forget_matching("") == []


# -- audit -----------------------------------------------------------------------------------


def test_audit_newest_first_and_filtered_by_tool(store):
    store.audit("calculate", {"expression": "1/0"}, "read", "error", 0.002, "chat", detail="division by zero")
    store.audit("remember", {"fact": "x"}, "write", "ok", 0.01, "voice", "c1")
    store.audit("unlock_door", {"when": datetime(2025, 1, 1)}, "confirm", "denied", 0.0, "voice")
    entries = store.audit_entries()
    assert [e.tool for e in entries] == ["unlock_door", "remember", "calculate"]
    assert entries[0].arguments == {"when": "2025-01-01 00:00:00"}  # odd values logged as text
    assert entries[0].outcome == "denied" and entries[0].risk == "confirm"
    [calc] = store.audit_entries(tool="calculate")
    assert (calc.outcome, calc.detail, calc.who) == ("error", "division by zero", "chat")
    assert calc.conversation_id is None
    assert calc.duration_s == pytest.approx(0.002)
    assert calc.at.tzinfo is not None
    assert len(store.audit_entries(limit=2)) == 2


# -- threads ---------------------------------------------------------------------------------


def test_concurrent_writes_from_threads_lose_nothing(tmp_path):
    threads_n, rounds = 6, 40
    with Store.open_in(tmp_path) as store, Store.open_in(tmp_path) as other:
        # `other` is a second connection to the same file, as another process would have.
        cid = store.new_conversation()
        errors: list[BaseException] = []
        start = threading.Barrier(threads_n)

        def work(n: int) -> None:
            target = store if n % 2 else other
            try:
                start.wait()
                for i in range(rounds):
                    target.add_message(cid, {"role": "user", "content": f"{n}-{i}"})
                    target.remember(f"fact {n} {i}")
                    target.audit("t", {"n": n, "i": i}, "read", "ok", 0.0, f"thread{n}")
                    target.recall(f"fact {n}")
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        workers = [threading.Thread(target=work, args=(n,)) for n in range(threads_n)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert errors == []
        total = threads_n * rounds
        contents = {m["content"] for m in store.messages(cid)}
        assert len(contents) == total
        assert len(store.all_facts()) == total
        assert len(store.audit_entries(limit=total * 2)) == total
        assert store.conversations()[0].message_count == total
