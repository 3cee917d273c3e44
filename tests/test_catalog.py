"""Model catalog: presets, which model find_model picks, listing, and pulling (loopback only)."""

import hashlib
import io
import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from rich.console import Console

from agent.llm import catalog
from agent.llm.catalog import (
    DEFAULT_PRESET,
    PRESETS,
    ModelNotFoundError,
    PullError,
    UnknownModelError,
    find_model,
    folder_name,
    list_models,
    pull,
    resolve_repo,
    set_offline_mode,
)
from agent.llm.demo_model import BFLOAT16, DEMO_FOLDER, QUANTIZED, demo_dtype, demo_folder, ensure_demo_model, on_cpu


def make_model(folder, model_type="qwen3_5", weights=b"\0" * 1000, **config):
    """A model folder as list_models sees one: config.json plus a weights file."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": model_type, **config}))
    (folder / "model.safetensors").write_bytes(weights)
    return folder


@pytest.fixture
def online(monkeypatch):
    """No offline switch from the surrounding environment."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)


def test_presets_name_mlx_community_4bit_repos():
    assert DEFAULT_PRESET == "qwen3.5-4b"
    assert set(PRESETS) == {"qwen3.5-0.8b", "qwen3.5-2b", "qwen3.5-4b", "qwen3.5-9b"}
    assert resolve_repo("qwen3.5-4b") == "mlx-community/Qwen3.5-4B-4bit"
    assert resolve_repo("someone/Other-Model") == "someone/Other-Model"
    assert folder_name("qwen3.5-9b") == "mlx-community--Qwen3.5-9B-4bit"
    for bad in ("qwen9", "a/b/c", "/x", ""):
        with pytest.raises(UnknownModelError, match="qwen3.5-4b"):
            resolve_repo(bad)


def test_configured_path_wins(tmp_path):
    mine = make_model(tmp_path / "mine", model_type="llama")
    make_model(tmp_path / "models" / folder_name("qwen3.5-4b"))
    choice = find_model(str(mine), tmp_path / "models", "qwen3.5-4b")
    assert (choice.path, choice.is_demo) == (mine, False)
    assert "model.path" in choice.reason


@pytest.mark.parametrize("make, problem", [(False, "does not exist"), (True, "has no config.json")])
def test_configured_path_must_be_a_model(tmp_path, make, problem):
    path = tmp_path / "nothing"
    if make:
        path.mkdir()
    with pytest.raises(ModelNotFoundError, match="agentd model pull qwen3.5-4b") as caught:
        find_model(str(path), tmp_path, "qwen3.5-4b")
    assert f"model.path '{path}' {problem}" in str(caught.value)
    assert isinstance(caught.value, FileNotFoundError)


def test_installed_preset_beats_other_qwen(tmp_path):
    make_model(tmp_path / folder_name("qwen3.5-2b"))
    wanted = make_model(tmp_path / folder_name("qwen3.5-9b"))
    choice = find_model(None, tmp_path, "qwen3.5-9b")
    assert (choice.path, choice.is_demo) == (wanted, False)


def test_any_installed_qwen3_5_beats_the_demo(tmp_path):
    make_model(tmp_path / "a-llama", model_type="llama")
    make_model(tmp_path / ".partial-mlx-community--Qwen3.5-4B-4bit")  # a pull in progress
    make_model(tmp_path / folder_name("qwen3.5-0.8b"), weights=b"\0" * 100)
    larger = make_model(tmp_path / folder_name("qwen3.5-2b"), weights=b"\0" * 200)
    choice = find_model(None, tmp_path, "qwen3.5-4b")
    assert (choice.path, choice.is_demo) == (larger, False)
    assert "qwen3.5-4b is not installed" in choice.reason


def test_demo_model_when_nothing_is_installed(tmp_path):
    make_model(tmp_path / "a-llama", model_type="llama")
    choice = find_model(None, tmp_path, "qwen3.5-4b")
    assert choice.is_demo
    assert choice.path == tmp_path / demo_folder(demo_dtype())
    assert (choice.path / "config.json").is_file()
    assert choice.reason == (
        "no Qwen3.5 model installed; using the bundled demo model SmolLM2-135M "
        "(run `agentd model pull qwen3.5-4b`)"
    )


def test_unknown_preset_is_an_error(tmp_path):
    with pytest.raises(UnknownModelError, match="qwen3.5-0.8b"):
        find_model(None, tmp_path, "qwen3.5-70b")


def test_list_models_reports_sizes_types_and_quantization(tmp_path):
    qwen = make_model(
        tmp_path / "b-qwen",
        weights=b"x" * 4096,
        quantization={"group_size": 64, "bits": 4},
    )
    (qwen / "tokenizer.json").write_text("{}")
    make_model(tmp_path / "a-vlm", model_type=None, text_config={"model_type": "qwen3_5"})
    (tmp_path / "not-a-model").mkdir()
    make_model(tmp_path / ".smollm2-135m-instruct-mlx.tmp-1-x")  # a conversion in progress
    (tmp_path / "stray.txt").write_text("hi")

    models = list_models(tmp_path)
    assert [m.name for m in models] == ["a-vlm", "b-qwen"]
    vlm, found = models
    assert found.size_bytes == sum(p.stat().st_size for p in qwen.iterdir())
    assert (found.model_type, found.quantization) == ("qwen3_5", "4-bit (group 64)")
    assert (vlm.model_type, vlm.quantization) == ("qwen3_5", None)
    assert list_models(tmp_path / "missing") == []


def test_list_models_describes_the_demo_model(tmp_path):
    ensure_demo_model(tmp_path, QUANTIZED)
    (demo,) = list_models(tmp_path)
    assert (demo.name, demo.model_type) == (DEMO_FOLDER, "llama")
    assert demo.quantization == "4-bit (group 32), mixed"
    assert 80_000_000 < demo.size_bytes < 120_000_000


def test_on_a_cpu_the_demo_model_is_bfloat16(tmp_path):
    # MLX's CPU backend has no fast quantized kernels: bfloat16 prefilled 1.6-2.2x faster here.
    assert demo_dtype() == (BFLOAT16 if on_cpu() else QUANTIZED)
    (demo,) = list_models(find_model(None, tmp_path, "qwen3.5-4b").path.parent)
    if on_cpu():
        assert (demo.name, demo.model_type, demo.quantization) == (demo_folder(BFLOAT16), "llama", None)
        assert 250_000_000 < demo.size_bytes < 300_000_000  # 135M parameters at 2 bytes


def test_set_offline_mode(monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    set_offline_mode()
    assert os.environ["HF_HUB_OFFLINE"] == os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert constants.HF_HUB_OFFLINE is True
    assert catalog.is_offline()


def quiet_console():
    return Console(file=io.StringIO(), width=100)


def assert_fails_fast(models_dir, match, limit_s):
    started = time.perf_counter()
    with pytest.raises(PullError, match=match):
        pull("qwen3.5-0.8b", models_dir, console=quiet_console())
    assert time.perf_counter() - started < limit_s
    assert not models_dir.exists() or list(models_dir.iterdir()) == []


def test_pull_offline_fails_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert_fails_fast(tmp_path / "models", "HF_HUB_OFFLINE", limit_s=1)


def test_pull_unreachable_endpoint_fails_fast(tmp_path, monkeypatch, online):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # loopback, nothing listens
    assert_fails_fast(tmp_path / "models", "cannot reach http://127.0.0.1:9", limit_s=5)


def test_pull_silent_endpoint_fails_within_the_probe_deadline(tmp_path, monkeypatch, online):
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{silent.getsockname()[1]}")
        monkeypatch.setattr(catalog, "PROBE_TIMEOUT_S", 1.0)
        assert_fails_fast(tmp_path / "models", "no answer from", limit_s=4)


def test_pull_skips_an_installed_model_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    installed = make_model(tmp_path / folder_name("qwen3.5-2b"))
    assert pull("qwen3.5-2b", tmp_path, console=quiet_console()) == installed


def sha1(data):
    return hashlib.sha1(data).hexdigest()


class FakeHub:
    """A loopback stand-in for the Hugging Face hub serving one repo's files."""

    def __init__(self, repo_id, files, *, drop=()):
        self.repo_id, self.files, self.drop = repo_id, files, set(drop)
        self.sha = sha1(repo_id.encode())
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self.respond(body=False)

            def do_GET(self):
                self.respond(body=True)

            def respond(self, body):
                path = self.path.split("?")[0]
                api = f"/api/models/{hub.repo_id}"
                if path in (api, f"{api}/revision/main", f"{api}/revision/{hub.sha}"):
                    siblings = [{"rfilename": n, "size": len(d)} for n, d in hub.files.items()]
                    info = {"id": hub.repo_id, "sha": hub.sha, "siblings": siblings}
                    return self.send(json.dumps(info).encode(), body)
                if path.startswith(f"{api}/tree/{hub.sha}"):
                    tree = [
                        {"type": "file", "path": n, "size": len(d), "oid": sha1(d)}
                        for n, d in hub.files.items()
                    ]
                    return self.send(json.dumps(tree).encode(), body)
                prefix = f"/{hub.repo_id}/resolve/{hub.sha}/"
                name = path[len(prefix):] if path.startswith(prefix) else None
                if name in hub.files and name not in hub.drop:
                    data = hub.files[name]
                    return self.send(data, body, etag=sha1(data))
                self.send_response(404)
                # huggingface_hub turns this header into RepositoryNotFoundError.
                code = "RepoNotFound" if path.startswith("/api/") else "EntryNotFound"
                self.send_header("X-Error-Code", code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def send(self, data, body, etag=None):
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("X-Repo-Commit", hub.sha)
                if etag:
                    self.send_header("ETag", f'"{etag}"')
                self.end_headers()
                if body:
                    self.wfile.write(data)

        return Handler


TINY_REPO = {
    "config.json": b'{"model_type": "qwen3_5"}',
    "model.safetensors": os.urandom(300_000),
    "tokenizer.json": b"{}",
    "README.md": b"not pulled: mlx-lm does not need it",
}


def test_pull_downloads_into_place_with_progress(tmp_path, monkeypatch, online):
    with FakeHub("someone/Qwen3.5-Tiny-4bit", TINY_REPO) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        console = quiet_console()
        path = pull("someone/Qwen3.5-Tiny-4bit", tmp_path, console=console)
    assert path == tmp_path / "someone--Qwen3.5-Tiny-4bit"
    names = sorted(p.name for p in path.iterdir())
    assert names == ["config.json", "model.safetensors", "tokenizer.json"]  # no README, no .cache
    assert (path / "model.safetensors").read_bytes() == TINY_REPO["model.safetensors"]
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no .partial left
    assert "someone/Qwen3.5-Tiny-4bit" in console.file.getvalue()  # the progress bar
    assert find_model(None, tmp_path, "qwen3.5-4b").path == path


def test_pull_with_a_missing_file_is_not_installed(tmp_path, monkeypatch, online):
    with FakeHub("someone/Broken-4bit", TINY_REPO, drop={"tokenizer.json"}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        with pytest.raises(PullError, match="run the same pull again"):
            pull("someone/Broken-4bit", tmp_path, console=quiet_console())
    assert not (tmp_path / "someone--Broken-4bit").exists()
    assert list_models(tmp_path) == []


def test_pull_unknown_repo_says_so(tmp_path, monkeypatch, online):
    with FakeHub("someone/Other", TINY_REPO) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        with pytest.raises(PullError, match="someone/Missing was not found"):
            pull("someone/Missing", tmp_path, console=quiet_console())
    assert list(tmp_path.iterdir()) == []


def test_whisper_presets_pull_and_resolve_for_voice(tmp_path, monkeypatch, online):
    from agent.voice.stt import ModelNotFound, resolve_model

    with pytest.raises(ModelNotFound, match="agentd model pull whisper-small.en"):
        resolve_model("whisper-small.en", tmp_path)
    files = {"config.json": b"{}", "model.bin": os.urandom(50_000), "tokenizer.json": b"{}", "vocabulary.txt": b"a\n"}
    with FakeHub("Systran/faster-whisper-small.en", files) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        path = pull("whisper-small.en", tmp_path, console=quiet_console())
    assert (path / "model.bin").read_bytes() == files["model.bin"]  # CTranslate2 weights are pulled too
    assert resolve_model("whisper-small.en", tmp_path) == str(path)
    assert find_model(None, tmp_path, "qwen3.5-4b").is_demo  # a speech model is never taken for the LLM
