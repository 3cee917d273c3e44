"""Run by test_fault_disk inside `unshare -m`, with HOME on a tiny tmpfs: turns while the disk
fills up and after it is freed, in one process (no restart). Prints one JSON object.

`python disk_full_probe.py HOME`
"""

import asyncio
import json
import sqlite3
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
sys.path[:0] = [str(TESTS.parent), str(TESTS)]

import tools.memory  # noqa: E402
from agent.events import ReplyDone, ToolFinished  # noqa: E402
from agent.daemon.health import Health  # noqa: E402
from agent.daemon.process import setup_logging  # noqa: E402
from agent.store import Store  # noqa: E402
from agent.tools import ToolRegistry  # noqa: E402
from agent.turn import Agent  # noqa: E402
from agent.testkit.scripted_llm import ScriptedLLM, xml_call  # noqa: E402


def fill_up(path: Path) -> int:
    """Write a file until the filesystem is full; its size."""
    chunk, size = b"\0" * 4096, 0
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                size += f.write(chunk)
            except OSError:
                return size


def main() -> None:
    home = Path(sys.argv[1])
    log = setup_logging(home, console=True)  # the log file is on the full disk too
    health = Health()
    store = Store.open_in(home, health=health)
    registry = ToolRegistry()
    registry.add_module(tools.memory)
    script = ["Reply 1.", "Reply 2.", "Reply 3.", xml_call("remember", fact="the spare key is under the pot"),
              "Reply 4.", "Reply 5."]  # turn 4 asks the memory tool to save a fact on the full disk
    agent = Agent(llm=ScriptedLLM(script), registry=registry, system_prompt="You are a home agent.", store=store)
    tool_results = []
    conversation = store.new_conversation()

    def turn(n: int) -> str:
        async def run():
            return [e async for e in agent.respond(f"Question {n}", conversation_id=conversation)]

        events = asyncio.run(run())
        tool_results.extend(e.result for e in events if isinstance(e, ToolFinished))
        done = events[-1]
        assert isinstance(done, ReplyDone)
        return f"{done.stopped_by}: {done.text}"

    replies = [turn(1)]
    filler = home / "filler"
    filled = fill_up(filler)
    replies += [turn(n) for n in (2, 3, 4)]
    problems_while_full = health.problems()
    filler.unlink()
    replies.append(turn(5))
    with sqlite3.connect(home / "agentd.db") as db:
        check = db.execute("PRAGMA integrity_check").fetchone()[0]
    print(json.dumps({"filled": filled, "replies": replies, "problems_while_full": problems_while_full,
                      "problems_after": health.problems(), "integrity": check, "tool_results": tool_results,
                      "saved": [m["content"] for m in store.messages(conversation)],
                      "log": log.read_text()}))
    store.close()


if __name__ == "__main__":
    main()
