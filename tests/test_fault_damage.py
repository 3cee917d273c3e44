"""Damaged state files (real SQLite files with real scribbled bytes): set aside, never deleted,
what is readable salvaged into a fresh file, the person told once, agentd still serving."""

from __future__ import annotations

import asyncio
import random
import shutil
import sqlite3
import sys
from datetime import datetime, timedelta, timezone

import pexpect
import pytest

from agent.events import ReplyDone
from agent.daemon.health import Health
from agent.ipc import Client
from agent.salvage import damage, damaged_copies
from agent.schedule import JOBS_DB, Scheduler
from agent.config.settings import load_settings
from agent.store import DB_NAME, Store
from daemon_proc import AGENTD, REPO, RealDaemon, agentd, child_env, greedy_config, short_home
from fakes import make, run, running, spawn, until
from agent.testkit.agent_model import trained_tool_model

UTC = timezone.utc
CONFIG = """
automations:
  - id: morning
    trigger: {cron: "0 7 * * 1-5"}
    action: {say: "Good morning"}
"""


def scribble(path, offset: int, count: int = 100, seed: int = 13) -> bytes:
    """Overwrite `count` bytes at `offset` with random ones, as a disk fault would."""
    noise = random.Random(seed).randbytes(count)
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(noise)
    return noise


def close(scheduler) -> None:
    """Shut the schedule down and close jobs.db, so its WAL is written back into the file."""
    scheduler.shutdown()
    scheduler.aps._jobstores["agent"].engine.dispose()


def fill(home, conversations: int = 3, messages: int = 4) -> list[str]:
    with Store.open_in(home) as store:
        ids = []
        for c in range(conversations):
            cid = store.new_conversation()
            ids.append(cid)
            for m in range(messages):
                store.add_message(cid, {"role": "user", "content": f"conversation {c} message {m} " + "x" * 300})
        store.remember("my wife's birthday is on 3 May")
        store.remember("the spare key is under the blue pot")
        store.audit("calculate", {"expression": "12*7"}, "read", "ok", 0.01, "chat", ids[0])
        due = datetime(2031, 6, 1, 5, 0, tzinfo=UTC)
        store.add_receipt("morning", "automation", due, due, "ok", "Sunny.")
    return ids


def test_a_scribbled_header_is_set_aside_and_everything_readable_is_salvaged(tmp_path):
    ids = fill(tmp_path)
    noise = scribble(tmp_path / DB_NAME, 0)
    assert damage(tmp_path / DB_NAME) == "file is not a database"
    health = Health()
    with Store.open_in(tmp_path, health=health) as store:
        assert [len(store.messages(cid)) for cid in ids] == [4, 4, 4]
        assert [f.text for f in store.recall("birthday")] == ["my wife's birthday is on 3 May"]  # FTS rebuilt
        assert store.audit_entries()[0].arguments == {"expression": "12*7"}
        assert store.receipts()[0].output == "Sunny."
        store.add_message(ids[0], {"role": "assistant", "content": "and it still writes"})
    [report] = damaged_copies(tmp_path)
    copy = report.with_suffix("")
    assert copy.read_bytes()[:100] == noise  # kept exactly as found
    [problem] = health.problems()
    assert problem.startswith("agentd.db was damaged (file is not a database)")
    assert "12 messages" in problem and "2 facts" in problem and "nothing readable was lost" in problem
    assert str(copy) in problem and report.read_text().strip() == problem
    with Store.open_in(tmp_path, health=health) as store:  # sound now: nothing more to do or say
        assert len(store.messages(ids[0])) == 5
    assert len(damaged_copies(tmp_path)) == 1 and len(health.problems()) == 1


def test_a_damaged_page_loses_only_the_rows_on_it(tmp_path):
    ids = fill(tmp_path, conversations=2, messages=60)  # about 20 pages of messages
    path = tmp_path / DB_NAME
    where = path.read_bytes().index(b"conversation 1 message 30 ")
    scribble(path, where - where % 4096)  # the header of the table page holding that message
    health = Health()
    with Store.open_in(tmp_path, health=health) as store:
        kept = sum(len(store.messages(cid)) for cid in ids)
        assert 100 <= kept < 120  # one leaf page holds about ten of these messages
        assert len(store.all_facts()) == 2
    [problem] = health.problems()
    assert f"{kept} messages" in problem and f"up to {120 - kept} messages" in problem


def test_a_damaged_jobs_db_keeps_the_reminders_and_resyncs_the_automations(tmp_path):
    (tmp_path / "config.yaml").write_text(CONFIG)
    settings = load_settings(tmp_path / "config.yaml")
    scheduler = Scheduler.offline(tmp_path, settings)
    scheduler.sync_automations()
    when = datetime.now(UTC) + timedelta(days=2)
    reminders = [scheduler.add_reminder(f"water the plants {i}", when).id for i in range(3)]
    close(scheduler)
    scribble(tmp_path / JOBS_DB, 0)

    health = Health()
    scheduler = Scheduler(tmp_path, settings, health=health)
    scheduler.start(edit_only=True)
    try:
        scheduler.sync_automations()
        assert sorted(j.id for j in scheduler.jobs()) == sorted(["morning", *reminders])
    finally:
        scheduler.shutdown()
    [problem] = health.problems()
    assert problem.startswith("jobs.db was damaged") and "3 agent_jobs" in problem


def test_the_cli_salvages_both_files_in_one_line_each_and_no_traceback(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    fill(home)
    with Store.open_in(home) as store:
        scheduler = Scheduler.offline(home, load_settings(), store)
        scheduler.add_reminder("call mum", datetime(2031, 6, 2, tzinfo=UTC))
        close(scheduler)
    scribble(home / DB_NAME, 0)
    scribble(home / JOBS_DB, 0)
    done = agentd("jobs", "--home", str(home))
    assert done.returncode == 0, done.stderr
    assert "call mum" in done.stdout
    assert "Traceback" not in done.stderr
    said = [line for line in done.stderr.splitlines() if "was damaged" in line]
    assert len(said) == 2, done.stderr
    doctor = agentd("doctor", "--home", str(home))
    assert doctor.stdout.count("was damaged") == 2  # doctor lists the salvage reports too
    for name in (DB_NAME, JOBS_DB):
        with sqlite3.connect(home / name) as db:
            assert db.execute("PRAGMA quick_check").fetchone() == ("ok",)


def test_a_service_that_keeps_failing_gives_up_says_why_and_the_rest_carries_on(tmp_path, caplog):
    home = short_home()
    failures = []
    window_open = asyncio.Event()

    async def schedule() -> None:
        await window_open.wait()  # fail while a chat window is open, to see it told
        failures.append(1)
        raise sqlite3.DatabaseError("file is not a database")

    async def go():
        daemon = make(home)
        daemon.restart_delay_s = 0.01
        daemon.add_service("schedule", schedule)
        async with running(daemon):
            async with await Client.connect(daemon.socket_path) as client:
                window_open.set()
                await until(lambda: daemon.status()["services"]["schedule"].startswith("restarting"))
                waiting = daemon.status()["services"]["schedule"]
                await until(lambda: daemon.status()["services"]["schedule"].startswith("failed"), timeout=10)
                await until(lambda: client.notices)
                status = daemon.status()
                reply = [event async for event in client.reply("hello")]
                return waiting, status, reply, client.notices

    try:
        waiting, status, reply, notices = run(go())
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert waiting.startswith("restarting in ") and waiting.endswith(" s after DatabaseError: file is not a database")
    assert len(failures) == 5  # then no more restarts
    assert status["services"]["schedule"] == "failed: DatabaseError: file is not a database"
    assert status["services"]["turns"] == "running"
    [problem] = status["problems"]
    assert problem.startswith("the schedule service stopped after failing repeatedly (DatabaseError")
    assert isinstance(reply[-1], ReplyDone) and reply[-1].stopped_by == "done"  # turns still answered
    assert [(n.kind, n.text) for n in notices] == [("problem", problem)]  # the open chat window was told once
    assert caplog.text.count("Traceback") == 1  # the first failure's; the repeats are one line each


def test_damage_met_while_running_is_salvaged_at_once_and_agentd_carries_on(tmp_path):
    ids = fill(tmp_path, conversations=2, messages=60)
    health = Health()
    with Store.open_in(tmp_path, health=health) as store:  # sound when opened
        path = tmp_path / DB_NAME
        where = path.read_bytes().index(b"conversation 1 message 30 ")
        scribble(path, where - where % 4096)  # the disk fault strikes while agentd runs
        store.add_message(ids[1], {"role": "user", "content": "written on a sound page"})
        kept = store.messages(ids[1])  # the read meets the damage: salvaged, then answered
        assert kept[-1]["content"] == "written on a sound page" and 50 <= len(kept) < 61
        store.add_message(ids[1], {"role": "user", "content": "saved in the fresh file"})
        assert store.messages(ids[1])[-1]["content"] == "saved in the fresh file"
        assert len(store.messages(ids[0])) == 60
    [problem] = health.problems()
    assert problem.startswith("agentd.db was damaged (database disk image is malformed)")
    assert len(damaged_copies(tmp_path)) == 1


@pytest.mark.slow
def test_a_real_daemon_starts_on_damaged_files_says_so_and_serves():
    model = trained_tool_model()
    home = short_home()
    daemon = RealDaemon(home, greedy_config(home), model)
    try:
        ids = fill(home)
        scheduler = Scheduler.offline(home, load_settings())
        reminder = scheduler.add_reminder("call mum", datetime.now(UTC) + timedelta(days=1)).id
        close(scheduler)
        scribble(home / DB_NAME, 0)
        scribble(home / JOBS_DB, 0)
        status = daemon.start()
        assert [p.split(" was damaged")[0] for p in status["problems"]] == ["agentd.db", "jobs.db"]
        ask = agentd("ask", *daemon.options, "What is 12 times 7?")
        assert ask.returncode == 0 and "12 times 7 is 84." in ask.stdout, ask.stderr
        status = agentd("status", *daemon.options).stdout
        assert '"schedule": "running"' in status and reminder in agentd("jobs", *daemon.options).stdout
        chat = pexpect.spawn(sys.executable, [str(AGENTD), "chat", "--home", str(home)], cwd=str(REPO),
                             encoding="utf-8", timeout=30, dimensions=(40, 200), env=child_env())
        try:  # a chat window opened later is told too
            chat.expect("agentd.db was damaged")
            chat.expect("jobs.db was damaged")
            chat.expect("you ›")
        finally:
            chat.close(force=True)
        with Store.open_in(home) as store:
            assert [len(store.messages(cid)) for cid in ids] == [4, 4, 4]
        log = (home / "logs" / "agentd.log").read_text()
        assert log.count("was damaged") == 2 and "Traceback" not in log
    finally:
        daemon.close()
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.slow
def test_ask_local_on_a_damaged_store_answers_and_says_so_in_one_line(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    ids = fill(home)
    scribble(home / DB_NAME, 0)  # the issue's `sqlite3.DatabaseError: file is not a database`
    done = agentd("ask", "--local", "--home", str(home), "--config", str(greedy_config(tmp_path)),
                  "--model", str(trained_tool_model()), "What is 12 times 7?")
    assert done.returncode == 0, done.stderr
    assert "12 times 7 is 84." in done.stdout
    assert "Traceback" not in done.stderr
    assert [line for line in done.stderr.splitlines() if "was damaged" in line][0].endswith(
        str(damaged_copies(home)[0].with_suffix("")))
    with Store.open_in(home) as store:
        assert [len(store.messages(cid)) for cid in ids] == [4, 4, 4]


def test_the_cli_never_moves_a_damaged_file_from_under_a_running_daemon():
    home = short_home()
    try:
        fill(home)
        scheduler = Scheduler.offline(home, load_settings())
        scheduler.add_reminder("call mum", datetime(2031, 6, 2, tzinfo=UTC))
        close(scheduler)
        scribble(home / JOBS_DB, 0)
        proc, _ = spawn(home)  # a daemon holds the home (and, were it agentd, the open jobs.db)
        try:
            done = agentd("jobs", "--home", str(home))
        finally:
            proc.terminate()
            proc.wait(10)
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert f"{home / JOBS_DB} is damaged (file is not a database); restart agentd (`agentd stop`, `agentd start`)" in done.stderr
        assert damaged_copies(home) == [] and damage(home / JOBS_DB)  # left where it was, for the daemon
    finally:
        shutil.rmtree(home, ignore_errors=True)
