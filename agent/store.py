"""SQLite store (WAL, one file `agentd.db` in the home folder): conversations, memory, audit log.

API (every write is one transaction; times are aware UTC datetimes):

    store = Store(path, *, clock=None)        # or Store.open_in(home); also a context manager
    store.close()

    # conversations: messages are chat-template dicts, stored and returned exactly as given
    new_conversation(title=None, source="chat") -> str
    add_message(conversation_id, message: dict) -> None
    add_messages(conversation_id, messages: Iterable[dict]) -> None     # all or nothing
    messages(conversation_id, limit=None) -> list[dict]                # oldest first; limit = last N
    has_conversation(conversation_id) -> bool
    conversations(limit=20) -> list[ConversationSummary]               # most recently updated first
    latest_conversation(source=None) -> str | None                     # None = any source

    # memory: long-term facts, searched with FTS5 (bm25)
    remember(text, source="user") -> int                               # id; a repeat keeps its id
    recall(query, limit=5) -> list[Fact]                               # facts with ANY of the words, best first
    all_facts() -> list[Fact]                                          # oldest first
    forget(fact_id) -> bool
    forget_matching(query) -> list[Fact]                               # facts with ALL of the words

    # audit log of tool calls (outcome: "ok", "error", "denied", "invalid", ...)
    audit(tool, arguments, risk, outcome, duration_s, who, conversation_id=None, detail="") -> None
    audit_entries(limit=50, tool=None) -> list[AuditEntry]             # newest first

    # run receipts of scheduled jobs (outcome: "ok", "error", "denied", "missed", "skipped")
    add_receipt(job_id, kind, scheduled, started, outcome, output="", detail="",
                duration_s=0.0, reported=True) -> int
    receipts(limit=50, job_id=None) -> list[Receipt]                   # newest first
    unreported_receipts() -> list[Receipt]                             # oldest first
    add_utterance(heard, command, ignored, reply, tools, times) -> id  # agent.voice
    utterances(limit=50) -> list[HeardUtterance]                      # newest first
    mark_reported(receipt_ids) -> None

Faults: `open_in` sets a damaged file aside and salvages it (agent.salvage), as does a read
or write that meets damage while agentd runs. A write that fails because the disk is full or the file damaged is
reported once to `health`; records (messages, audit rows, receipts, utterances) are then
dropped rather than failing the turn that writes them, and the next write that succeeds
clears the report. A transaction is all or nothing, so nothing is left half-written.

A query is never handed to FTS5 as syntax: it is cut into words and each word is quoted, so
`AND`, quotes, `*`, `-` or `:` in what the user said cannot raise an FTS error.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

from agent import salvage
from agent.tools import Clock, SystemClock

log = logging.getLogger(__name__)

DB_NAME = "agentd.db"
SALVAGED_TABLES = ("conversations", "messages", "facts", "audit", "receipts", "utterances")
_WRITE_PROBLEM = f"{DB_NAME}:write"  # the health key of failing writes (the file's own key: damage)
_CANNOT_WRITE = frozenset({"SQLITE_FULL", "SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_READONLY"})
ROLES = frozenset({"system", "user", "assistant", "tool"})
_TITLE_LENGTH = 60

# Each entry moves the schema up one `PRAGMA user_version`; append, never edit a shipped one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE conversations (
        id      TEXT PRIMARY KEY,
        title   TEXT,
        source  TEXT NOT NULL,
        started TEXT NOT NULL,
        updated TEXT NOT NULL
    );
    CREATE INDEX conversations_by_update ON conversations (source, updated);

    -- the whole message dict as JSON, so it comes back exactly as it went in
    CREATE TABLE messages (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        role            TEXT NOT NULL,
        body            TEXT NOT NULL,
        created         TEXT NOT NULL
    );
    CREATE INDEX messages_by_conversation ON messages (conversation_id, id);

    CREATE TABLE facts (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        text    TEXT NOT NULL,
        source  TEXT NOT NULL,
        created TEXT NOT NULL
    );
    -- porter stemming so "birthdays" finds "birthday"
    CREATE VIRTUAL TABLE facts_fts USING fts5 (
        text, content = 'facts', content_rowid = 'id',
        tokenize = 'porter unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER facts_added AFTER INSERT ON facts BEGIN
        INSERT INTO facts_fts (rowid, text) VALUES (new.id, new.text);
    END;
    CREATE TRIGGER facts_removed AFTER DELETE ON facts BEGIN
        INSERT INTO facts_fts (facts_fts, rowid, text) VALUES ('delete', old.id, old.text);
    END;
    CREATE TRIGGER facts_changed AFTER UPDATE ON facts BEGIN
        INSERT INTO facts_fts (facts_fts, rowid, text) VALUES ('delete', old.id, old.text);
        INSERT INTO facts_fts (rowid, text) VALUES (new.id, new.text);
    END;

    CREATE TABLE audit (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        at              TEXT NOT NULL,
        tool            TEXT NOT NULL,
        arguments       TEXT NOT NULL,
        risk            TEXT NOT NULL,
        outcome         TEXT NOT NULL,
        duration_s      REAL NOT NULL,
        who             TEXT NOT NULL,
        conversation_id TEXT,
        detail          TEXT NOT NULL
    );
    CREATE INDEX audit_by_tool ON audit (tool, id);
    """,
    """
    -- one row per scheduled run, missed runs included (agent.schedule writes them)
    CREATE TABLE receipts (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id     TEXT NOT NULL,
        kind       TEXT NOT NULL,
        scheduled  TEXT NOT NULL,
        started    TEXT,
        late_s     REAL,
        outcome    TEXT NOT NULL,
        output     TEXT NOT NULL,
        detail     TEXT NOT NULL,
        duration_s REAL NOT NULL,
        reported   INTEGER NOT NULL
    );
    CREATE INDEX receipts_by_job ON receipts (job_id, id);
    CREATE INDEX receipts_unreported ON receipts (reported) WHERE reported = 0;
    """,
    """
    -- one row per utterance the microphone heard, with its stage times (agent.voice writes them)
    CREATE TABLE utterances (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        at      TEXT NOT NULL,
        heard   TEXT NOT NULL,
        command TEXT,
        ignored TEXT,
        reply   TEXT NOT NULL,
        tools   TEXT NOT NULL,
        times   TEXT NOT NULL
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

# Words that say nothing about which fact is meant; dropped from queries unless nothing else is left.
_STOPWORDS = frozenset(
    """a about all am an and any are as at be been but by can could did do does for from had has
    have he her hers him his how i if in is it its me mine my no not of on or our ours please
    she so tell that the their them there these they this those to us was we were what when
    where which who whom why will with would you your yours know remember recall forget fact
    facts something anything""".split()
)


class StoreError(RuntimeError):
    """The database cannot be used (written by a newer agentd, say)."""


class StoreWriteError(OSError):
    """A write the disk would not take (full, failing, read-only); the message says which file."""


@dataclass(frozen=True)
class Fact:
    """One remembered fact."""

    id: int
    text: str
    source: str
    created: datetime


@dataclass(frozen=True)
class AuditEntry:
    """One tool call, as the audit log recorded it."""

    id: int
    at: datetime
    tool: str
    arguments: dict
    risk: str
    outcome: str
    duration_s: float
    who: str
    conversation_id: str | None
    detail: str


@dataclass(frozen=True)
class Receipt:
    """One run of a scheduled job: when it was due, when it ran, and how it went."""

    id: int
    job_id: str
    kind: str
    scheduled: datetime
    started: datetime | None  # None: it never ran (missed)
    late_s: float | None
    outcome: str
    output: str
    detail: str
    duration_s: float
    reported: bool  # False: someone still has to be told (a missed run, an unheard reminder)


@dataclass(frozen=True)
class HeardUtterance:
    """One utterance: what was heard, the command run (or why it was ignored), stage times."""

    id: int
    at: datetime
    heard: str
    command: str | None
    ignored: str | None
    reply: str
    tools: list[str]
    times: dict[str, float]  # stage -> ms after the end of speech


@dataclass(frozen=True)
class ConversationSummary:
    """A conversation as a list shows it."""

    id: str
    title: str | None
    source: str
    started: datetime
    updated: datetime
    message_count: int


class Store:
    """The agent's SQLite database. Safe to share between the event loop and worker threads."""

    def __init__(self, path: Path, *, clock: Clock | None = None, health: Any = None):
        self.path = Path(path)
        self._clock = clock or SystemClock()
        self.health = health  # an agent.health.Health; None: faults are only logged
        self._unsaved: set[str] = set()  # conversations begun while writes failed
        # One connection behind a lock rather than one per thread: tools run on
        # asyncio.to_thread's pool, whose threads come and go, so per-thread connections would
        # leak and could not all be closed by close(). The traffic is a home's worth of small
        # queries, so serialising them costs nothing; SQLite serialises writers anyway.
        self._lock = threading.RLock()
        # isolation_level=None: the sqlite3 module opens no transactions of its own; _write()
        # says exactly where each one begins and ends.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            self._configure()
            self._migrate()
        except BaseException:
            self._db.close()
            raise

    @classmethod
    def open_in(cls, home: Path, **kwargs: Any) -> Store:
        """Open (or create) the store in an agentd home folder."""
        home = Path(home)
        home.mkdir(parents=True, exist_ok=True)
        store_salvage(home / DB_NAME, kwargs.get("health"))
        return cls(home / DB_NAME, **kwargs)

    def close(self) -> None:
        """Close the database; safe to call twice."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------

    def _configure(self) -> None:
        # First: another process (`agentd jobs`, a second client) may hold the lock briefly.
        self._db.execute("PRAGMA busy_timeout = 5000")
        self._enable_wal()
        # NORMAL is crash-safe in WAL mode (a commit is atomic); a power cut may only lose
        # the last few commits, which is a fair price for not fsyncing every audit row.
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.execute("PRAGMA foreign_keys = ON")

    def _enable_wal(self, attempts: int = 50) -> None:
        # Switching a new file to WAL needs a moment alone with it, and SQLite answers
        # "database is locked" at once (no busy handler) while another opener has it.
        for attempt in range(attempts):
            try:
                self._db.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == attempts - 1:
                    raise
                time.sleep(0.02 * (attempt + 1))

    def _migrate(self) -> None:
        # The version is read inside the write transaction: a second process opening the
        # same new file waits here and then finds the schema already made.
        with self._write() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {version}, newer than this agentd "
                    f"understands ({SCHEMA_VERSION}); upgrade agentd"
                )
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                # Statement by statement: executescript would commit our transaction first.
                for statement in _statements(script):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction: committed if the block ends normally, rolled back otherwise."""
        with self._lock:
            try:
                # IMMEDIATE takes the write lock up front, so a read-then-write cannot be
                # overtaken by another process between the two.
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:  # a failed COMMIT can leave it open
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.DatabaseError as exc:
                self._write_failed(exc)
                if _cannot_write(exc):  # a fault of the disk, not a bug: one clear line for whoever asked
                    raise StoreWriteError(f"{DB_NAME} cannot be written: {exc}") from None
                raise
        self._wrote()

    @contextmanager
    def _record(self) -> Iterator[sqlite3.Connection]:
        """A write of a record (a message, an audit row): if the disk is full or the file
        damaged, it is reported and dropped, so the turn that writes it still answers."""
        try:
            with self._write() as db:
                yield db
        except StoreWriteError:
            pass
        except sqlite3.DatabaseError as exc:
            if not salvage.is_damage(exc):
                raise

    def _write_failed(self, exc: sqlite3.DatabaseError) -> None:
        if salvage.is_damage(exc):
            self._salvage_now()
        elif _cannot_write(exc):
            # One fixed text, whatever SQLite said this time ("disk is full", "disk I/O error"):
            # the person hears about it once, not once per turn.
            log.debug("a write to %s failed: %s", self.path, exc)
            problem = (f"{DB_NAME} cannot be written (the disk is full or failing): conversations, memory and "
                       f"the audit log are not being saved until there is space in {self.path.parent}")
            if self.health is None:
                log.error("%s", problem)
            else:
                self.health.report(_WRITE_PROBLEM, problem)

    def _wrote(self) -> None:
        if self.health is not None and self.health.get(_WRITE_PROBLEM):
            self.health.clear(_WRITE_PROBLEM, f"{DB_NAME} is being written again")

    def _salvage_now(self) -> None:
        """A read or write met damage: set the file aside, salvage it, carry on with the fresh one."""
        self._db.close()
        try:
            store_salvage(self.path, self.health)
        except salvage.SalvageError as exc:  # it stays damaged for now; the records say so
            if self.health is not None:
                self.health.report(DB_NAME, str(exc), kind="damaged")
            else:
                log.error("%s", exc)
        finally:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._configure()

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._db.execute(sql, tuple(params)).fetchall()
            except sqlite3.DatabaseError as exc:
                if not salvage.is_damage(exc):
                    raise
                self._salvage_now()  # then the same question of the fresh file
                return self._db.execute(sql, tuple(params)).fetchall()

    def _now(self) -> str:
        return _stamp(self._clock.now())

    # -- conversations ----------------------------------------------------------------------

    def new_conversation(self, title: str | None = None, source: str = "chat") -> str:
        """Start a conversation and return its id."""
        conversation_id = uuid.uuid4().hex
        now = self._now()
        self._unsaved.add(conversation_id)  # until the row is written: a full disk must not lose the turn
        with self._record() as db:
            db.execute(
                "INSERT INTO conversations (id, title, source, started, updated) VALUES (?, ?, ?, ?, ?)",
                (conversation_id, title, source, now, now),
            )
        # asked of the file, not assumed: on a full disk the COMMIT itself is what fails
        if self._read("SELECT 1 FROM conversations WHERE id = ?", (conversation_id,)):
            self._unsaved.discard(conversation_id)
        return conversation_id

    def add_message(self, conversation_id: str, message: dict) -> None:
        """Append one chat-template message to a conversation."""
        self.add_messages(conversation_id, [message])

    def add_messages(self, conversation_id: str, messages: Iterable[dict]) -> None:
        """Append several messages in one transaction: all are stored or none is."""
        now = self._now()
        with self._record() as db:
            if conversation_id in self._unsaved:  # begun while the disk was full: written now
                db.execute("INSERT OR IGNORE INTO conversations (id, source, started, updated) VALUES (?, 'chat', ?, ?)",
                           (conversation_id, now, now))
            touched = db.execute(
                "UPDATE conversations SET updated = ? WHERE id = ?", (now, conversation_id)
            )
            if touched.rowcount == 0:
                raise KeyError(f"no conversation {conversation_id!r}")
            for message in messages:
                db.execute(
                    "INSERT INTO messages (conversation_id, role, body, created) VALUES (?, ?, ?, ?)",
                    (conversation_id, _check_message(message), _message_json(message), now),
                )
                if message["role"] == "user" and message.get("content"):
                    # An untitled conversation is named after its first question.
                    db.execute(
                        "UPDATE conversations SET title = ? WHERE id = ? AND title IS NULL",
                        (_shorten(message["content"], _TITLE_LENGTH), conversation_id),
                    )

    def messages(self, conversation_id: str, limit: int | None = None) -> list[dict]:
        """A conversation's messages, oldest first; with `limit`, only the last `limit` of them.

        An unknown conversation has no messages; `has_conversation` tells the two apart.
        """
        rows = self._read(
            "SELECT body FROM (SELECT id, body FROM messages WHERE conversation_id = ?"
            " ORDER BY id DESC LIMIT ?) ORDER BY id",
            (conversation_id, -1 if limit is None else max(limit, 0)),
        )
        return [json.loads(body) for (body,) in rows]

    def has_conversation(self, conversation_id: str) -> bool:
        """Whether a conversation with this id exists."""
        return conversation_id in self._unsaved or bool(self._read("SELECT 1 FROM conversations WHERE id = ?", (conversation_id,)))

    def conversations(self, limit: int = 20) -> list[ConversationSummary]:
        """The most recently updated conversations, newest first."""
        rows = self._read(
            "SELECT c.id, c.title, c.source, c.started, c.updated,"
            " (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id)"
            " FROM conversations c ORDER BY c.updated DESC, c.rowid DESC LIMIT ?",
            (limit,),
        )
        return [
            ConversationSummary(
                id=cid, title=title, source=source, started=_parse(started),
                updated=_parse(updated), message_count=count,
            )
            for cid, title, source, started, updated, count in rows
        ]

    def latest_conversation(self, source: str | None = None) -> str | None:
        """The id of the most recently updated conversation (from `source`, if given)."""
        rows = self._read(
            "SELECT id FROM conversations WHERE ? IS NULL OR source = ?"
            " ORDER BY updated DESC, rowid DESC LIMIT 1",
            (source, source),
        )
        return rows[0][0] if rows else None

    # -- memory -----------------------------------------------------------------------------

    def remember(self, text: str, source: str = "user") -> int:
        """Save a fact and return its id; a fact already known (ignoring case) keeps its id."""
        text = " ".join(text.split())
        if not text:
            raise ValueError("a fact cannot be empty")
        with self._write() as db:
            known = db.execute(
                "SELECT id FROM facts WHERE text = ? COLLATE NOCASE ORDER BY id LIMIT 1", (text,)
            ).fetchone()
            if known:
                return known[0]
            cursor = db.execute(
                "INSERT INTO facts (text, source, created) VALUES (?, ?, ?)",
                (text, source, self._now()),
            )
            return cursor.lastrowid

    def recall(self, query: str, limit: int = 5) -> list[Fact]:
        """Facts containing any of the query's words, best match (bm25) first."""
        match = fts_query(query, join="OR")
        if match is None:
            return []
        rows = self._read(
            "SELECT f.id, f.text, f.source, f.created FROM facts_fts"
            " JOIN facts f ON f.id = facts_fts.rowid WHERE facts_fts MATCH ?"
            " ORDER BY bm25(facts_fts), f.id DESC LIMIT ?",
            (match, limit),
        )
        return [_fact(row) for row in rows]

    def all_facts(self) -> list[Fact]:
        """Every fact, oldest first."""
        return [_fact(r) for r in self._read("SELECT id, text, source, created FROM facts ORDER BY id")]

    def forget(self, fact_id: int) -> bool:
        """Delete one fact; False if there was none with that id."""
        with self._write() as db:
            return db.execute("DELETE FROM facts WHERE id = ?", (fact_id,)).rowcount > 0

    def forget_matching(self, query: str) -> list[Fact]:
        """Delete the facts that contain all of the query's words and return them."""
        # ALL words, not any: forgetting is not undoable, so "wife's birthday" must not
        # also wipe every other fact that mentions a birthday.
        match = fts_query(query, join="AND")
        if match is None:
            return []
        with self._write() as db:
            rows = db.execute(
                "SELECT f.id, f.text, f.source, f.created FROM facts_fts"
                " JOIN facts f ON f.id = facts_fts.rowid WHERE facts_fts MATCH ? ORDER BY f.id",
                (match,),
            ).fetchall()
            db.executemany("DELETE FROM facts WHERE id = ?", [(row[0],) for row in rows])
        return [_fact(row) for row in rows]

    # -- audit ------------------------------------------------------------------------------

    def audit(
        self,
        tool: str,
        arguments: dict,
        risk: str,
        outcome: str,
        duration_s: float,
        who: str,
        conversation_id: str | None = None,
        detail: str = "",
    ) -> None:
        """Record one tool call."""
        # default=str: the log must take whatever the arguments hold rather than lose the row.
        args_json = json.dumps(arguments, ensure_ascii=False, sort_keys=True, default=str)
        with self._record() as db:
            db.execute(
                "INSERT INTO audit (at, tool, arguments, risk, outcome, duration_s, who,"
                " conversation_id, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (self._now(), tool, args_json, risk, outcome, float(duration_s), who,
                 conversation_id, detail),
            )

    def audit_entries(self, limit: int = 50, tool: str | None = None) -> list[AuditEntry]:
        """The latest tool calls (of one tool, if given), newest first."""
        rows = self._read(
            "SELECT id, at, tool, arguments, risk, outcome, duration_s, who, conversation_id,"
            " detail FROM audit WHERE ? IS NULL OR tool = ? ORDER BY id DESC LIMIT ?",
            (tool, tool, limit),
        )
        return [
            AuditEntry(
                id=rid, at=_parse(at), tool=name, arguments=json.loads(args), risk=risk,
                outcome=outcome, duration_s=duration, who=who, conversation_id=cid, detail=detail,
            )
            for rid, at, name, args, risk, outcome, duration, who, cid, detail in rows
        ]

    # -- run receipts -----------------------------------------------------------------------

    def add_receipt(
        self,
        job_id: str,
        kind: str,
        scheduled: datetime,
        started: datetime | None,
        outcome: str,
        output: str = "",
        detail: str = "",
        duration_s: float = 0.0,
        reported: bool = True,
    ) -> int:
        """Record one run (or missed run) of a scheduled job; its id."""
        late = None if started is None else (started - scheduled).total_seconds()
        cursor = None
        with self._record() as db:
            cursor = db.execute(
                "INSERT INTO receipts (job_id, kind, scheduled, started, late_s, outcome, output,"
                " detail, duration_s, reported) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (job_id, kind, _stamp(scheduled), None if started is None else _stamp(started),
                 late, outcome, output, detail, float(duration_s), int(reported)),
            )
        return cursor.lastrowid if cursor else 0  # 0: not recorded (reported to health)

    def receipts(self, limit: int = 50, job_id: str | None = None) -> list[Receipt]:
        """The latest runs (of one job, if given), newest first."""
        rows = self._read(
            f"SELECT {_RECEIPT_COLUMNS} FROM receipts WHERE ? IS NULL OR job_id = ?"
            " ORDER BY id DESC LIMIT ?",
            (job_id, job_id, limit),
        )
        return [_receipt(row) for row in rows]

    def unreported_receipts(self) -> list[Receipt]:
        """Runs that someone still has to be told about, oldest first."""
        rows = self._read(f"SELECT {_RECEIPT_COLUMNS} FROM receipts WHERE reported = 0 ORDER BY id")
        return [_receipt(row) for row in rows]

    def mark_reported(self, receipt_ids: Iterable[int]) -> None:
        """Note that these runs have been told to someone."""
        with self._record() as db:
            db.executemany("UPDATE receipts SET reported = 1 WHERE id = ?", [(i,) for i in receipt_ids])


    # -- utterances ---------------------------------------------------------------------------

    def add_utterance(self, heard: str, command: str | None, ignored: str | None, reply: str,
                      tools: list[str], times: dict[str, float]) -> int:
        """Record one utterance the microphone heard; its id (0: not recorded, see health)."""
        cursor = None
        with self._record() as db:
            cursor = db.execute(
                "INSERT INTO utterances (at, heard, command, ignored, reply, tools, times)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (self._now(), heard, command, ignored, reply, json.dumps(tools), json.dumps(times)),
            )
        return cursor.lastrowid if cursor else 0

    def utterances(self, limit: int = 50) -> list[HeardUtterance]:
        """The latest utterances, newest first."""
        rows = self._read(
            "SELECT id, at, heard, command, ignored, reply, tools, times FROM utterances ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [HeardUtterance(id=rid, at=_parse(at), heard=heard, command=command, ignored=ignored, reply=reply,
                               tools=json.loads(tools), times=json.loads(times))
                for rid, at, heard, command, ignored, reply, tools, times in rows]


_RECEIPT_COLUMNS = "id, job_id, kind, scheduled, started, late_s, outcome, output, detail, duration_s, reported"


def _receipt(row: tuple) -> Receipt:
    rid, job_id, kind, scheduled, started, late, outcome, output, detail, duration, reported = row
    return Receipt(
        id=rid, job_id=job_id, kind=kind, scheduled=_parse(scheduled),
        started=None if started is None else _parse(started), late_s=late, outcome=outcome,
        output=output, detail=detail, duration_s=duration, reported=bool(reported),
    )


def store_salvage(path: Path, health: Any = None) -> None:
    """Set a damaged agentd.db aside and salvage it into a fresh one; tell the person once.
    SalvageError (one clear line) when that cannot be done now."""
    report = salvage.salvage_if_damaged(path, SALVAGED_TABLES, lambda fresh: Store(fresh).close())
    if report is None:
        return
    if health is not None:
        health.report(path.name, report.text(), kind="damaged")
    else:
        log.error("%s", report.text())


def _cannot_write(exc: BaseException) -> bool:
    """A disk that is full, failing or read-only (SQLITE_IOERR_WRITE and its kin included)."""
    name = getattr(exc, "sqlite_errorname", "")
    return any(name.startswith(kind) for kind in _CANNOT_WRITE)


def fts_query(text: str, *, join: str) -> str | None:
    """Turn free text into a safe FTS5 query: its words, each quoted, joined by OR or AND."""
    words = [w.lower() for w in re.findall(r"\w+", text)]
    # A lone letter is mostly the "s" of "wife's"; digits stay ("room 3").
    words = [w for w in words if len(w) > 1 or w.isdigit()]
    meaningful = [w for w in words if w not in _STOPWORDS] or words
    unique = list(dict.fromkeys(meaningful))
    if not unique:
        return None
    # \w+ never contains a double quote, so quoting cannot be broken out of.
    return f" {join} ".join(f'"{w}"' for w in unique)


def _statements(script: str) -> Iterator[str]:
    """Split a migration script into statements (triggers' inner semicolons included)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""
    if pending.strip():
        yield pending.strip()  # a trailing comment runs as nothing; a broken statement raises


def _check_message(message: dict) -> str:
    """The message's role, after checking it is a chat-template message."""
    if not isinstance(message, dict):
        raise TypeError(f"a message must be a dict, got {type(message).__name__}")
    role = message.get("role")
    if role not in ROLES:
        raise ValueError(f"message role {role!r} is not one of {', '.join(sorted(ROLES))}")
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        raise TypeError(f"message content must be text, got {type(content).__name__}")
    return role


def _message_json(message: dict) -> str:
    # No default=: a value JSON cannot hold would not round-trip, and that is a caller's bug.
    return json.dumps(message, ensure_ascii=False)


def _shorten(text: str, length: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= length else text[: length - 1].rstrip() + "…"


def _stamp(moment: datetime) -> str:
    # Fixed width and always UTC, so the text sorts in time order in SQL.
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def _fact(row: tuple) -> Fact:
    fact_id, text, source, created = row
    return Fact(id=fact_id, text=text, source=source, created=_parse(created))
