"""`agentd jobs ...`: list with next runs, history of receipts, run/pause/resume/remove by id."""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta, timezone

import pytest

from agent.schedule import Scheduler
from agent.cli.jobs import add_jobs_parser
from agent.config.settings import load_settings
from agent.store import Store

UTC = timezone.utc
CONFIG = """
agent:
  timezone: Europe/Berlin
automations:
  - id: morning
    trigger: {cron: "0 7 * * 1-5"}
    action: {prompt: "What is on today?"}
  - id: broken
    trigger: {cron: "0 7 * *"}
    action: {say: hi}
"""


def jobs(home, *argv: str) -> int:
    """Parse and run `agentd jobs ARGV --home HOME` as agentd's parser will."""
    parser = argparse.ArgumentParser(prog="agentd")
    common = argparse.ArgumentParser(add_help=False)
    for flag in ("--home", "--config", "--model"):
        common.add_argument(flag)
    add_jobs_parser(parser.add_subparsers(), common)
    args = parser.parse_args(["jobs", *argv, "--home", str(home)])
    return args.handler(args)


@pytest.fixture
def home(tmp_path):
    (tmp_path / "config.yaml").write_text(CONFIG)
    settings = load_settings(tmp_path / "config.yaml")
    with Store.open_in(tmp_path) as store:
        scheduler = Scheduler.offline(tmp_path, settings, store)
        scheduler.sync_automations()
        scheduler.add_reminder("call mum", datetime(2031, 6, 2, 16, 0, tzinfo=UTC))
        scheduler.shutdown()
        due = datetime(2031, 6, 1, 5, 0, tzinfo=UTC)
        store.add_receipt("morning", "automation", due, due + timedelta(seconds=0.012), "ok", "Sunny all day.")
        store.add_receipt("water", "automation", due, None, "missed", "Water the plants", "missed by 3 h 0 min", reported=False)
    return tmp_path


def test_list_shows_jobs_next_runs_problems_and_untold_runs_once(home, capsys):
    assert jobs(home) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "KIND", "NEXT", "RUN", "TRIGGER", "WHAT"]
    assert lines[1].startswith("morning ") and "07:00 CE" in lines[1] and "cron 0 7 * * 1-5" in lines[1]
    assert lines[2].startswith("reminder-") and "Mon 02 Jun 18:00 CEST" in lines[2] and lines[2].endswith("call mum")
    assert "automation 'broken': trigger.cron: expected 5 fields" in out
    assert "Not yet told:\n  Missed while agentd was off or asleep: automation water was due Sun 01 Jun 07:00: Water the plants" in out
    assert jobs(home) == 0
    assert "Not yet told" not in capsys.readouterr().out  # told once


def test_history_shows_receipts_newest_first(home, capsys):
    assert jobs(home, "history") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["DUE", "LATE", "BY", "JOB", "OUTCOME", "OUTPUT", "/", "DETAIL"]
    assert "water" in lines[1] and "missed" in lines[1] and "Water the plants | missed by 3 h 0 min" in lines[1]
    assert "0.012 s" in lines[2] and "Sunny all day." in lines[2]
    assert jobs(home, "history", "morning") == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_pause_resume_run_and_remove_by_id(home, capsys):
    assert jobs(home, "pause", "morning") == 0
    assert capsys.readouterr().out == 'pause: morning (automation "morning")\n'
    jobs(home)
    assert [line for line in capsys.readouterr().out.splitlines() if line.startswith("morning")][0].split()[2] == "paused"
    assert jobs(home, "run", "morning") == 1
    assert "'morning' is paused; resume it first" in capsys.readouterr().err
    assert jobs(home, "resume", "morning") == 0
    assert jobs(home, "run", "morning") == 0
    assert capsys.readouterr().out.endswith("agentd is not running: it runs when agentd starts\n")
    assert jobs(home, "remove", "morning") == 0
    assert jobs(home, "remove", "morning") == 1
    assert "no job 'morning'" in capsys.readouterr().err
    assert jobs(home, "pause") == 2
