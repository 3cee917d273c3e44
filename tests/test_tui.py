"""The chat client: rendering to a string console, slash commands, and one real session."""

import signal
import sys
from io import StringIO
from pathlib import Path

import pexpect
import pytest
from rich.console import Console

from agent.events import Note, ReplyDone, TextDelta, ThinkingDelta, ToolFinished, ToolStarted, TurnStats
from agent.tui.commands import SlashCommand, CommandError, message_text, parse_command
from agent.tui.render import (
    ReplyView,
    confirm_panel,
    history_view,
    item_list,
    status_line,
    tool_panel,
)
from fakes import home, spawn  # noqa: F401  (home is a fixture)

TESTS = Path(__file__).resolve().parent
STARTED = ToolStarted(call_id="c1", name="set_light", arguments={"room": "kitchen", "on": True}, risk="write")
FINISHED = ToolFinished(call_id="c1", name="set_light", result="kitchen light on", ok=True, duration_s=0.25)


def render(renderable, width=80) -> str:
    console = Console(file=StringIO(), width=width, color_system=None)
    console.print(renderable)
    return console.file.getvalue()


def view_of(*events, known=None) -> ReplyView:
    view = ReplyView(known)
    for event in events:
        view.add(event)
    return view


def test_reply_streams_in_as_markdown():
    view = view_of(TextDelta(text="# Lights\n\nThe kitchen is **on** and"), TextDelta(text="\n\n- one\n- two"))
    out = render(view)
    assert "Lights" in out and "The kitchen is on and" in out
    assert "**" not in out and "# " not in out
    assert "• one" in out


def test_a_waiting_reply_shows_an_ellipsis_until_something_arrives():
    assert render(ReplyView()).strip() == "…"
    assert "…" not in render(view_of(TextDelta(text="hi")))


def test_tool_panel_shows_tool_tier_arguments_result_and_time():
    out = render(tool_panel(STARTED, FINISHED))
    for expected in ("set_light", '"room": "kitchen"', '"on": true', "kitchen light on", "write · 0.25 s"):
        assert expected in out


def test_tool_panel_while_running_and_after_a_failure():
    assert "running…" in render(tool_panel(STARTED))
    failed = ToolFinished(call_id="c1", name="set_light", result="no such room", ok=False, duration_s=0.0)
    out = render(tool_panel(STARTED, failed))
    assert "no such room" in out and "failed" in out


def test_tool_panel_keeps_long_arguments_short():
    long = ToolStarted(call_id="c", name="note", arguments={"text": "word " * 500}, risk="read")
    assert len(render(tool_panel(long), width=200)) < 1200


def test_tool_calls_and_text_render_in_order():
    out = render(view_of(TextDelta(text="Turning it on."), STARTED, FINISHED, TextDelta(text="Done.")))
    assert out.index("Turning it on.") < out.index("set_light") < out.index("Done.")


def test_a_tool_finished_after_a_confirmation_pause_gets_its_panel():
    out = render(view_of(FINISHED, known={"c1": STARTED}))
    assert "set_light" in out and "kitchen light on" in out


def test_thinking_is_dimmed_and_folded():
    thinking = "The user wants the lights. Kitchen is the room they mean, so I will call set_light."
    streaming = render(view_of(ThinkingDelta(text=thinking)))
    assert "💭" in streaming and "set_light." in streaming
    done = render(view_of(ThinkingDelta(text=thinking), TextDelta(text="On."), ReplyDone(text="On.")))
    assert "thought for 16 words" in done
    assert "The user wants" not in done and "On." in done


def test_thinking_is_dim_in_color():
    console = Console(file=StringIO(), width=80, force_terminal=True, color_system="standard")
    console.print(view_of(ThinkingDelta(text="hmm"), ReplyDone(text="")))
    assert "\x1b[2;3m" in console.file.getvalue()  # dim italic


def test_notes_and_a_reply_that_did_not_stream():
    out = render(view_of(Note(text="the model called an unknown tool"), ReplyDone(text="Sorry.", stopped_by="guard")))
    assert "! the model called an unknown tool" in out and "Sorry." in out


def test_status_line_shows_model_speed_and_prefix_cache():
    stats = TurnStats(generated_tokens=30, tokens_per_s=41.26, prefix_hit=True, prefix_tokens_reused=812, duration_s=1.5)
    out = render(status_line("qwen3.5-4b", stats))
    assert out.strip() == "qwen3.5-4b · 41.3 tok/s · 30 tokens · prefix cache hit (812 reused) · 1.50 s"
    per_call = TurnStats(generated_tokens=12, per_call=((98, 812), (21, 910)), prefix_hit=True, duration_s=0.5)
    out = render(status_line("qwen3.5-4b", per_call))  # tokens prefilled and reused by each model call
    assert out.strip() == "qwen3.5-4b · 12 tokens · prefilled 98+21 tokens, reused 812+910 · 0.50 s"
    out = render(status_line(None, TurnStats(), "cancelled"))
    assert "model ?" in out and "prefix cache miss" in out and "stopped: cancelled" in out


def test_confirm_panel_shows_the_exact_tool_and_arguments():
    out = render(confirm_panel("unlock_door", {"door": "front", "minutes": 5}, "confirm", 30.0))
    assert "unlock_door" in out and '"door": "front"' in out and '"minutes": 5' in out
    assert "y/N" in out and "30 s" in out


def test_history_and_lists():
    out = render(history_view("abc", [
        {"role": "user", "content": "lights on"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "set_light"}}]},
        {"role": "tool", "content": "ok"},
    ]))
    assert "conversation abc" in out and "lights on" in out and "calls set_light" in out
    assert "no messages yet" in render(history_view(None, []))
    assert "jobs: not available yet" in render(item_list("jobs", None))
    assert "skills: none" in render(item_list("skills", []))
    listed = render(item_list("jobs", [{"name": "backup", "next_run": "03:00"}, "plain"]))
    assert "backup" in listed and "next_run: 03:00" in listed and "plain" in listed


@pytest.mark.parametrize("line, command", [
    ("/new", SlashCommand("new")),
    ("  /NEW  ", SlashCommand("new")),
    ("/history", SlashCommand("history")),
    ("/history 50", SlashCommand("history", 50)),
    ("/think on", SlashCommand("think", True)),
    ("/think OFF", SlashCommand("think", False)),
    ("/skills", SlashCommand("skills")),
    ("/jobs", SlashCommand("jobs")),
    ("/stop", SlashCommand("stop")),
    ("/help", SlashCommand("help")),
    ("/?", SlashCommand("help")),
    ("/quit", SlashCommand("quit")),
    ("/exit", SlashCommand("quit")),
    ("hello /new", None),
    ("//new is a word", None),
    ("/image ~/Pictures/boiler display.jpg", SlashCommand("image", "~/Pictures/boiler display.jpg")),
])
def test_slash_commands_parse(line, command):
    assert parse_command(line) == command


@pytest.mark.parametrize("line, problem", [
    ("/dance", "unknown command /dance"),
    ("/think", "needs on or off"),
    ("/think maybe", "got 'maybe'"),
    ("/history lots", "got 'lots'"),
    ("/history 0", "from 1 to 1000"),
    ("/new now", "takes no argument"),
    ("/image", "needs the path of a picture"),
])
def test_bad_slash_commands_say_why(line, problem):
    with pytest.raises(CommandError, match=problem):
        parse_command(line)


def test_a_double_slash_sends_a_slash():
    assert message_text("//etc/hosts") == "/etc/hosts"
    assert message_text("  hi ") == "hi"


# -- one real session: a daemon subprocess and the chat client on a pseudo-terminal ----------


def test_chat_without_a_daemon_says_how_to_start_one(home):
    from agent.tui import run_chat

    console = Console(file=StringIO(), width=200, color_system=None)
    assert run_chat(home / "agentd.sock", console=console) == 1
    assert "agentd is not running; start it with `agentd start` or `agentd run`" in console.file.getvalue()


def chat_process(home):
    code = f"import sys; from agent.tui import run_chat; sys.exit(run_chat({str(home / 'agentd.sock')!r}))"
    return pexpect, pexpect.spawn(sys.executable, ["-c", code], cwd=str(TESTS.parent), encoding="utf-8", timeout=15,
                                  dimensions=(40, 100), env={"PYTHONPATH": str(TESTS.parent), "TERM": "xterm"})


def test_ctrl_c_at_the_prompt_leaves_the_chat_not_the_daemon(home):
    daemon, _ = spawn(home)
    pexpect, chat = chat_process(home)
    try:
        chat.expect("you ›")
        chat.sendintr()
        chat.expect(pexpect.EOF)
        chat.close()
        assert chat.exitstatus == 0
        assert daemon.poll() is None
    finally:
        chat.close(force=True)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(10) == 0


def test_a_chat_session_end_to_end(home):
    daemon, _ = spawn(home, "5")
    code = f"import sys; from agent.tui import run_chat; sys.exit(run_chat({str(home / 'agentd.sock')!r}))"
    chat = pexpect.spawn(sys.executable, ["-c", code], cwd=str(TESTS.parent), encoding="utf-8",
                         timeout=15, dimensions=(40, 100), env={"PYTHONPATH": str(TESTS.parent), "TERM": "xterm"})
    try:
        chat.expect("fake-model")
        chat.expect("you ›")
        chat.sendline("hello **world**")
        chat.expect("42.5 tok/s")
        assert "**" not in chat.before.split("hello **world**", 1)[-1]
        chat.expect("you ›")
        chat.sendline("unlock back")
        chat.expect("unlock_door")
        chat.expect("y/N ›")
        chat.sendline("y")
        chat.expect("back unlocked")
        chat.expect("you ›")
        chat.sendline("slow 400")
        chat.expect("tick3")
        chat.sendintr()
        chat.expect("stopped: cancelled")
        chat.expect("you ›")
        chat.sendline("/jobs")
        chat.expect("jobs: not available yet")
        chat.expect("you ›")
        chat.sendline("/skills")
        chat.expect("timers")
        chat.expect("you ›")
        chat.sendeof()
        chat.expect(pexpect.EOF)
        chat.close()
        assert chat.exitstatus == 0
    finally:
        chat.close(force=True)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(10) == 0


def test_an_image_goes_with_the_next_message(home, tmp_path):
    from PIL import Image

    Image.new("RGB", (1280, 960), (0, 90, 200)).save(tmp_path / "boiler.png")
    daemon, _ = spawn(home)
    code = f"import sys; from agent.tui import run_chat; sys.exit(run_chat({str(home / 'agentd.sock')!r}))"
    chat = pexpect.spawn(sys.executable, ["-c", code], cwd=str(TESTS.parent), encoding="utf-8",
                         timeout=15, dimensions=(40, 120), env={"PYTHONPATH": str(TESTS.parent), "TERM": "xterm"})
    try:
        chat.expect("you ›")
        chat.sendline(f"/image {tmp_path / 'nope.png'}")
        chat.expect("cannot read the image")
        chat.expect("you ›")
        chat.sendline(f"/image {tmp_path / 'boiler.png'}")
        chat.expect("1280x960")
        chat.expect("goes with your next message")
        chat.expect("you ›")
        chat.sendline("what does the display say?")
        chat.expect(r"I see 640x480\.")  # shrunk by the daemon to vision.max_pixels
        chat.expect("you ›")
        chat.sendline("and now?")  # the picture went with one message only
        chat.expect("you ›")
        assert "I see" not in chat.before
        chat.sendline("/quit")
        chat.expect(pexpect.EOF)
    finally:
        chat.close(force=True)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(10) == 0


def test_a_notice_is_shown_as_one_line():
    from io import StringIO

    from rich.console import Console

    from agent.ipc.protocol import Notice
    from agent.tui.render import notice_line

    console = Console(file=StringIO(), width=80, color_system=None)
    console.print(notice_line(Notice(v=1, kind="reminder", text="water the plants", job_id="j1")))
    assert console.file.getvalue().strip() == "⏰ reminder: water the plants"
