"""The command line as a user meets it: help, errors without tracebacks, doctor, service files."""

import json
import subprocess
import sys
import time
from pathlib import Path

import agent.daemon.install as service

REPO = Path(__file__).resolve().parents[1]


def agentd(*args, home=None, timeout=120):
    command = [sys.executable, str(REPO / "agentd.py"), *args] + (["--home", str(home)] if home else [])
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def test_help_is_quick_and_lists_the_commands():
    started = time.monotonic()
    done = agentd("--help")
    assert done.returncode == 0
    for command in ("run", "start", "stop", "status", "chat", "ask", "listen", "devices", "eval", "bench",
                    "skills", "jobs", "model", "doctor", "service"):
        assert command in done.stdout
    assert time.monotonic() - started < 10  # no MLX, whisper or hub import for --help


def test_a_broken_config_is_one_clear_line(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("model:\n  max_tokens: lots\n")
    done = agentd("doctor", "--config", str(config), home=tmp_path / "home")
    assert "model.max_tokens: expected an integer, got 'lots'" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert done.returncode == 1


def test_a_missing_model_folder_says_what_to_do(tmp_path):
    done = agentd("ask", "--local", "hi", "--model", str(tmp_path / "nowhere"), home=tmp_path / "home")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "nowhere" in done.stderr and "agentd model pull" in done.stderr


def test_doctor_reports_each_check(tmp_path):
    done = agentd("doctor", home=tmp_path / "home")
    lines = done.stdout.splitlines()
    for name in ("python", "home", "config", "mlx", "model", "daemon", "audio"):
        assert any(f"] {name}:" in line for line in lines), name
    assert "[ok  ] home:" in done.stdout and "[ok  ] config:" in done.stdout


def test_doctor_says_whether_the_model_sees_pictures(tmp_path, tiny_qwen_vl, tiny_qwen_bpe):
    seeing = agentd("doctor", "--model", str(tiny_qwen_vl), home=tmp_path / "a")
    assert f"] model: {tiny_qwen_vl}; sees pictures" in seeing.stdout, seeing.stdout
    blind = agentd("doctor", "--model", str(tiny_qwen_bpe), home=tmp_path / "b")
    assert "sees no pictures (no vision weights)" in blind.stdout, blind.stdout


def test_service_files_start_agentd_and_restart_it(tmp_path, monkeypatch):
    monkeypatch.setattr(service.Path, "home", staticmethod(lambda: tmp_path))
    command = [sys.executable, str(REPO / "agentd.py"), "run", "--home", str(tmp_path / "h")]
    message = service.install(command, tmp_path / "h", load=False)
    path = service.unit_path()
    assert path.is_relative_to(tmp_path) and str(path) in message
    text = path.read_text()
    if sys.platform == "darwin":
        assert "<key>KeepAlive</key>" in text and "agentd.py</string>" in text
    else:
        assert "Restart=on-failure" in text and f"ExecStart={sys.executable}" in text
    assert service.uninstall(load=False) == f"removed {path}" and not path.exists()
    assert service.uninstall(load=False) == "no agentd service was installed"


def test_listen_runs_a_recording_through_the_pipeline_and_prints_each_stage(tmp_path, tiny_qwen_bpe):
    from agent.testkit.speech import need, silence, speech, whisper_model, write

    need("espeak-ng", "sox")
    whisper_model()  # skips, saying what to install, when there is no speech model
    wav = write(tmp_path / "cmd.wav", silence(0.4), speech("hey agent, convert two hundred celsius to fahrenheit",
                                                            tmp_path / "s.wav"), silence(0.4))
    config = tmp_path / "config.yaml"
    config.write_text("voice:\n  tts: none\n")
    done = agentd("listen", "--local", "--wav", str(wav), "--model", str(tiny_qwen_bpe), "--config", str(config),
                  home=tmp_path / "home", timeout=300)
    assert done.returncode == 0, done.stderr
    assert "heard: 'hey agent" in done.stdout.lower()
    assert "command: 'convert 200 celsius to fahrenheit" in done.stdout.lower()
    assert "tools: convert_units" in done.stdout and "392" in done.stdout
    for stage in ("transcript", "first_tool_done", "done"):
        assert f"    {stage}" in done.stdout

    missing = agentd("listen", "--local", "--wav", str(tmp_path / "nothing.wav"), "--model", str(tiny_qwen_bpe),
                     home=tmp_path / "home", timeout=300)
    assert missing.returncode == 1 and "nothing.wav" in missing.stderr and "Traceback" not in missing.stderr


def test_devices_lists_inputs_and_outputs_or_says_what_is_missing():
    done = agentd("devices")
    if done.returncode == 0:
        assert "inputs:" in done.stdout and "outputs:" in done.stdout
    else:  # no PortAudio on this machine: one line naming the package
        assert "libportaudio2" in done.stderr and "Traceback" not in done.stderr


def test_bench_runs_the_chosen_benchmarks_into_one_table_and_json(tmp_path):
    report = tmp_path / "bench.json"
    done = agentd("bench", "--only", "intents", "--json", str(report), timeout=300)
    assert done.returncode == 0, done.stderr
    figures = json.loads(report.read_text())
    assert list(figures) == ["intents"] and figures["intents"]["templates"] == 1000
    row = next(line for line in done.stdout.splitlines() if "phrase match" in line)
    assert "p99 <= 1 ms" in row and ("met" in row or "missed" in row)


def test_a_failing_benchmark_is_a_row_not_a_crash():
    from rich.console import Console

    from bench.suite import table

    console = Console(width=200, record=True)
    console.print(table({"intents": {"error": "SystemExit: needs espeak-ng"}, "schedule": {"late_p50_ms": 1.0}}))
    text = console.export_text()
    assert "failed: SystemExit: needs espeak-ng" in text
    assert "no figure" in text  # a result missing a figure says so instead of raising


def test_doctor_fails_speech_when_voice_is_on_and_its_model_is_not_installed(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("voice:\n  enabled: true\n  stt_model: whisper-small.en\n")
    done = agentd("doctor", "--config", str(config), home=tmp_path / "home")
    assert done.returncode == 1
    assert "[FAIL] speech: voice.stt_model 'whisper-small.en' is not installed: run `agentd model pull whisper-small.en`" in done.stdout


def test_start_says_in_one_line_why_the_daemon_died(tmp_path):
    done = agentd("start", "--model", str(tmp_path / "nowhere"), home=tmp_path / "home")
    assert done.returncode == 2
    assert "Traceback" not in done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("agentd: agentd exited while starting: ")
    assert str(tmp_path / "nowhere") in lines[0]  # the daemon's own reason, naming the folder
