"""Damaged SQLite files: check, set aside (never delete), salvage what is readable.

A disk fault that scribbles over part of `agentd.db` or `jobs.db` must not take agentd down
or lose what can still be read. `salvage_if_damaged(path, tables, make_fresh)`:

1. checks the file (`PRAGMA quick_check`; a file SQLite will not open at all is damaged too);
2. copies it (with its WAL) to a scratch file and reads it there, so the damaged copy stays
   exactly as found. A scribbled 100-byte header ("file is not a database") is rebuilt
   from what the rest of the file says; a table's rows are read in rowid order, stepping
   over the stretches whose pages cannot be read;
3. builds a fresh file beside it (`make_fresh` makes the schema) holding every row read;
4. moves the damaged file to `NAME.damaged-STAMP` and the fresh one into its place, and
   writes what was saved and lost to `NAME.damaged-STAMP.txt` (`agentd doctor` lists them).

A crash at any step leaves either the damaged file in place (salvaged again next start) or
the damaged copy and its report complete.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import struct
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

HEADER_SIZE = 100
MAGIC = b"SQLite format 3\x00"
_DAMAGE = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB"})
_PAGE_SIZES = (4096, 1024, 2048, 8192, 16384, 32768, 65536, 512)
_SIDE_FILES = ("-wal", "-shm")


class SalvageError(RuntimeError):
    """A damaged file that cannot be salvaged now; the message says what to do."""


@dataclass(frozen=True)
class Salvage:
    """What happened to one damaged file."""

    path: Path
    damaged_copy: Path
    reason: str
    saved: dict[str, int] = field(default_factory=dict)  # table -> rows carried over
    lost: dict[str, int | None] = field(default_factory=dict)  # table -> rows unread (at most); None: all

    def text(self) -> str:
        """One message for the person: what was damaged, what was kept, what was lost, where the copy is."""
        saved = ", ".join(f"{n} {t}" for t, n in self.saved.items()) or "nothing"
        lost = ", ".join(f"all {t}" if n is None else f"up to {n} {t}" for t, n in self.lost.items())
        return (f"{self.path.name} was damaged ({self.reason}); a fresh one holds what could be read ({saved})"
                + (f"; unreadable: {lost}" if lost else "; nothing readable was lost")
                + f"; the damaged file is kept as {self.damaged_copy}")


def is_damage(exc: BaseException) -> bool:
    """Whether an sqlite3 error means the file itself is damaged (not busy, not full)."""
    return isinstance(exc, sqlite3.DatabaseError) and getattr(exc, "sqlite_errorname", "") in _DAMAGE


def damage(path: Path) -> str | None:
    """What is wrong with the SQLite file at `path`, or None if it is sound (or absent)."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return None
    try:
        with closing(sqlite3.connect(path, timeout=5)) as db:
            rows = db.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):
            raise  # locked, unreadable folder, ...: not this module's business
        return str(exc)
    return None if rows == [("ok",)] else "; ".join(str(r[0]) for r in rows[:2])


def salvage_if_damaged(path: Path, tables: Iterable[str], make_fresh: Callable[[Path], None],
                       now: datetime | None = None) -> Salvage | None:
    """Salvage `path` into a fresh file if it is damaged; what was done, or None if it was sound.

    SalvageError when it cannot be done now: another process's daemon holds the home (moving
    the file would leave that daemon writing to the moved copy), or there is no room."""
    from agent.daemon.process import running_pid  # the daemon's lock on its home folder

    path = Path(path)
    reason = damage(path)
    if reason is None:
        return None
    holder = running_pid(path.parent)
    if holder is not None and holder != os.getpid():
        raise SalvageError(f"{path} is damaged ({reason}); restart agentd (`agentd stop`, `agentd start`) "
                           "to set it aside and salvage what it holds")
    try:
        return _salvage(path, reason, tables, make_fresh, now)
    except OSError as exc:
        raise SalvageError(f"{path} is damaged ({reason}) and could not be salvaged ({exc}); "
                           f"free some space in {path.parent}, then start agentd again") from None


def _salvage(path: Path, reason: str, tables: Iterable[str], make_fresh: Callable[[Path], None],
             now: datetime | None) -> Salvage:
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    scratch, fresh = path.with_name(f".{path.name}.reading"), path.with_name(f".{path.name}.fresh")
    damaged_copy = path.with_name(f"{path.name}.damaged-{stamp}")
    _copy_with_side_files(path, scratch)
    try:
        _remove_with_side_files(fresh)
        make_fresh(fresh)
        saved, lost = _carry_rows(scratch, fresh, list(tables))
    finally:
        _remove_with_side_files(scratch)
    _move_with_side_files(path, damaged_copy)  # the WAL goes with it: it is part of what was damaged
    _move_with_side_files(fresh, path)
    report = Salvage(path, damaged_copy, reason, saved, lost)
    Path(f"{damaged_copy}.txt").write_text(report.text() + "\n")
    return report


def damaged_copies(folder: Path) -> list[Path]:
    """The salvage reports left in a home folder, oldest first."""
    return sorted(Path(folder).glob("*.damaged-*.txt"))


# -- reading what can be read ---------------------------------------------------------------


def _carry_rows(source: Path, target: Path, tables: list[str]) -> tuple[dict[str, int], dict[str, int | None]]:
    saved: dict[str, int] = {}
    lost: dict[str, int | None] = {}
    with closing(_open_damaged(source)) as old, closing(sqlite3.connect(target, isolation_level=None)) as new:
        new.execute("BEGIN")
        for table in tables:
            columns = _shared_columns(old, new, table)
            if not columns:  # None: not even the schema says what it held; []: no such table
                saved[table] = 0
                if columns is None:
                    lost[table] = None
                continue
            rows, unread = _readable_rows(old, table, columns)
            marks = ", ".join("?" * len(columns))
            new.executemany(f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
            saved[table], lost[table] = len(rows), unread
        new.execute("COMMIT")
    return saved, {t: n for t, n in lost.items() if n is None or n > 0}


def _open_damaged(path: Path) -> sqlite3.Connection:
    """A connection to the scratch copy, its header rebuilt if SQLite would not open it."""
    if not _schema_readable(path):
        _rebuild_header(path)
    return sqlite3.connect(path)


def _schema_readable(path: Path) -> bool:
    try:
        with closing(sqlite3.connect(path)) as db:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return True
    except sqlite3.DatabaseError:
        return False


def _rebuild_header(path: Path) -> None:
    """Write a plausible database header over a scribbled one, trying each page size."""
    size = path.stat().st_size
    wal = Path(f"{path}-wal").exists()
    for page_size in _PAGE_SIZES:
        if size % page_size == 0:
            with open(path, "r+b") as f:
                f.write(_header(page_size, size // page_size, wal))
            if _schema_readable(path):
                return


def _header(page_size: int, pages: int, wal: bool) -> bytes:
    """An SQLite file header (see sqlite.org/fileformat.html, section 1.3) with an empty freelist."""
    version = 2 if wal else 1
    head = MAGIC + struct.pack(">HBBBBBB", page_size if page_size < 65536 else 1, version, version, 0, 64, 32, 32)
    # change counter, size in pages, freelist trunk + count, schema cookie, schema format 4,
    # cache size, vacuum root, UTF-8, user version, incremental vacuum, application id
    head += struct.pack(">IIIIIIIIIIII", 1, pages, 0, 0, 1, 4, 0, 0, 1, 0, 0, 0)
    head += bytes(20)  # reserved for expansion
    return head + struct.pack(">II", 1, sqlite3.sqlite_version_info[0] * 1_000_000
                              + sqlite3.sqlite_version_info[1] * 1_000 + sqlite3.sqlite_version_info[2])


def _shared_columns(old: sqlite3.Connection, new: sqlite3.Connection, table: str) -> list[str] | None:
    try:
        had = {row[1] for row in old.execute(f"PRAGMA table_info({table})")}
    except sqlite3.DatabaseError:
        return None
    return [row[1] for row in new.execute(f"PRAGMA table_info({table})") if row[1] in had]


def _readable_rows(db: sqlite3.Connection, table: str, columns: list[str]) -> tuple[list[tuple], int]:
    """Every row that can be read, in rowid order; and how many rowids up to the largest were not."""
    select = f"SELECT rowid, {', '.join(columns)} FROM {table} WHERE rowid > ? ORDER BY rowid"
    top = _max_rowid(db, table)
    rows: list[tuple] = []
    after, damaged = -(2**63), False
    while True:
        try:
            for row in db.execute(select, (after,)):
                rows.append(row[1:])
                after = row[0]
            break
        except sqlite3.DatabaseError:
            damaged = True
            if top is None or after >= top:
                break
            after = _next_readable(db, table, after, top)
            if after is None:
                break
    # rowids count up from 1, so the largest one bounds how many rows there were (deleted
    # ones included: hence "up to"); a table read without an error lost nothing
    unread = max(0, top - len(rows)) if damaged and top is not None and top < 2**40 else 0
    return rows, unread


def _next_readable(db: sqlite3.Connection, table: str, bad: int, top: int) -> int | None:
    """The smallest start past `bad` from which reading works again (a damaged page holds a run
    of rowids): step out doubling, then narrow back down so no readable row is skipped."""
    def reads_from(start: int) -> bool:
        try:
            db.execute(f"SELECT rowid FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT 2", (start,)).fetchall()
            return True
        except sqlite3.DatabaseError:
            return False

    low, step = max(bad, 0), 1
    while not reads_from(low + step):
        if low + step >= top:
            return None
        step *= 2
    good, failing = low + step, low + step // 2
    while good - failing > 1:
        middle = (good + failing) // 2
        good, failing = (middle, failing) if reads_from(middle) else (good, middle)
    return good


def _max_rowid(db: sqlite3.Connection, table: str) -> int | None:
    try:
        return db.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0] or 0
    except sqlite3.DatabaseError:
        return None


def _copy_with_side_files(path: Path, to: Path) -> None:
    _remove_with_side_files(to)
    for suffix in ("", "-wal"):
        if Path(f"{path}{suffix}").exists():
            shutil.copyfile(f"{path}{suffix}", f"{to}{suffix}")


def _move_with_side_files(path: Path, to: Path) -> None:
    for suffix in ("", *_SIDE_FILES):
        if Path(f"{path}{suffix}").exists():
            os.replace(f"{path}{suffix}", f"{to}{suffix}")


def _remove_with_side_files(path: Path) -> None:
    for suffix in ("", *_SIDE_FILES):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
