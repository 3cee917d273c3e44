"""Which model to run: presets, finding an installed model, listing and pulling models.

Models live as plain MLX folders (config.json, *.safetensors, tokenizer files) in one models
folder. `pull` is the only function here that touches the network, and only when asked; every
other command runs with the Hugging Face libraries switched offline (`set_offline_mode`).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.llm.demo_model import demo_dtype, ensure_demo_model

# MLX 4-bit community conversions of Qwen3.5 (mlx-lm's qwen3_5 model type).
PRESETS: dict[str, str] = {
    "qwen3.5-0.8b": "mlx-community/Qwen3.5-0.8B-4bit",
    "qwen3.5-2b": "mlx-community/Qwen3.5-2B-4bit",
    "qwen3.5-4b": "mlx-community/Qwen3.5-4B-4bit",
    "qwen3.5-9b": "mlx-community/Qwen3.5-9B-4bit",
}
DEFAULT_PRESET = "qwen3.5-4b"

# faster-whisper speech models (CTranslate2) for voice.stt_model, by the same `model pull`.
WHISPER_PRESETS: dict[str, str] = {
    "whisper-tiny.en": "Systran/faster-whisper-tiny.en",
    "whisper-base.en": "Systran/faster-whisper-base.en",
    "whisper-small.en": "Systran/faster-whisper-small.en",
    "whisper-medium.en": "Systran/faster-whisper-medium.en",
    "whisper-large-v3": "Systran/faster-whisper-large-v3",
    # Multilingual (every language Whisper knows), for a `language` other than en.
    "whisper-base": "Systran/faster-whisper-base",
    "whisper-small": "Systran/faster-whisper-small",
    "whisper-medium": "Systran/faster-whisper-medium",
}

# The files mlx_lm.load needs (as mlx-lm's own downloader), plus the chat template file.
ALLOW_PATTERNS = [
    "*.json",
    "model*.safetensors",
    "*.py",
    "tokenizer.model",
    "*.tiktoken",
    "*.txt",
    "*.jsonl",
    "*.jinja",
    "model.bin",  # a CTranslate2 (faster-whisper) model's weights
]
PROBE_TIMEOUT_S = 5.0
_OFFLINE_VALUES = {"1", "on", "yes", "true"}


class ModelNotFoundError(FileNotFoundError):
    """The configured model folder does not exist or is not a model."""


class UnknownModelError(ValueError):
    """A model name is neither a preset nor a Hugging Face repo id."""


class PullError(RuntimeError):
    """A model could not be downloaded (offline, unreachable, unknown repo)."""


@dataclass(frozen=True)
class ModelChoice:
    """The model folder to load, and why it was chosen."""

    path: Path
    is_demo: bool
    reason: str


@dataclass(frozen=True)
class RemoteModel:
    """What the hub says a repo holds: its commit and the files pull will fetch."""

    repo_id: str
    sha: str
    files: dict[str, int]  # file name -> size in bytes

    @property
    def size_bytes(self) -> int:
        return sum(self.files.values())


@dataclass(frozen=True)
class InstalledModel:
    """A model folder found in the models folder."""

    name: str
    path: Path
    size_bytes: int
    model_type: str | None
    quantization: str | None


def resolve_repo(name_or_repo: str) -> str:
    """The Hugging Face repo id for a preset name, or the repo id itself."""
    if name_or_repo in PRESETS:
        return PRESETS[name_or_repo]
    if name_or_repo in WHISPER_PRESETS:
        return WHISPER_PRESETS[name_or_repo]
    if name_or_repo.count("/") == 1 and all(name_or_repo.split("/")):
        return name_or_repo
    raise UnknownModelError(
        f"unknown model {name_or_repo!r}: use a preset ({', '.join([*PRESETS, *WHISPER_PRESETS])}) "
        "or a Hugging Face repo id like 'mlx-community/Qwen3.5-4B-4bit'"
    )


def folder_name(name_or_repo: str) -> str:
    """The folder a preset or repo id is installed in: 'owner--name', as the hub cache does."""
    return resolve_repo(name_or_repo).replace("/", "--")


def find_model(configured_path: str | None, models_dir: Path, preset: str) -> ModelChoice:
    """Pick the model to run: the configured path, the preset, any Qwen3.5, else the demo."""
    models_dir = Path(models_dir).expanduser()
    if configured_path:
        path = Path(configured_path).expanduser()
        if not _is_model_folder(path):
            problem = "has no config.json" if path.is_dir() else "does not exist"
            raise ModelNotFoundError(
                f"model.path {str(path)!r} {problem}, so it is not a model folder: fix "
                f"model.path (or --model), or run `agentd model pull {DEFAULT_PRESET}` and "
                "remove model.path"
            )
        return ModelChoice(path, False, f"model.path is set to {path}")

    wanted = models_dir / folder_name(preset)
    if _is_model_folder(wanted):
        return ModelChoice(wanted, False, f"preset {preset} is installed at {wanted}")

    # Any other Qwen3.5 beats the demo; the largest is likely the one the user wants most.
    qwens = [m for m in list_models(models_dir) if is_qwen3_5(m.model_type)]
    if qwens:
        best = max(qwens, key=lambda m: m.size_bytes)
        reason = f"preset {preset} is not installed; using {best.name}, found in {models_dir}"
        return ModelChoice(best.path, False, reason)

    reason = (
        f"no Qwen3.5 model installed; using the bundled demo model SmolLM2-135M "
        f"(run `agentd model pull {DEFAULT_PRESET}`)"
    )
    return ModelChoice(ensure_demo_model(models_dir, demo_dtype()), True, reason)


def is_qwen3_5(model_type: str | None) -> bool:
    """True for mlx-lm's Qwen3.5 model types (dense and MoE)."""
    return bool(model_type) and model_type.startswith("qwen3_5")


def list_models(models_dir: Path) -> list[InstalledModel]:
    """The model folders in models_dir, by name; unfinished pulls and temp folders are skipped."""
    models_dir = Path(models_dir).expanduser()
    if not models_dir.is_dir():
        return []
    found = []
    for path in sorted(models_dir.iterdir()):
        # Hidden folders are conversions or downloads still in progress.
        if path.name.startswith(".") or not _is_model_folder(path):
            continue
        config = _read_config(path)
        # Vision-language conversions keep the language model's type in text_config.
        model_type = config.get("model_type") or config.get("text_config", {}).get("model_type")
        found.append(
            InstalledModel(
                name=path.name,
                path=path,
                size_bytes=_folder_size(path),
                model_type=model_type,
                quantization=_describe_quantization(config),
            )
        )
    return found


def set_offline_mode() -> None:
    """Keep huggingface_hub and transformers off the network for the rest of this process."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    # huggingface_hub reads the variable once, at import; correct it if that already happened.
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True


def is_offline() -> bool:
    """True when HF_HUB_OFFLINE asks the Hugging Face libraries to stay off the network."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _OFFLINE_VALUES


def pull(name_or_repo: str, models_dir: Path, *, console: Any = None) -> Path:
    """Download a preset or repo id into models_dir/<owner--name> and return that folder."""
    repo_id = resolve_repo(name_or_repo)
    models_dir = Path(models_dir).expanduser()
    final = models_dir / folder_name(repo_id)
    console = console or _stderr_console()
    if _is_model_folder(final):
        console.print(f"{repo_id} is already installed at {final}")
        return final
    if is_offline():
        raise PullError(
            f"cannot pull {repo_id}: HF_HUB_OFFLINE is set, so downloads are off; "
            "unset HF_HUB_OFFLINE and run the pull again"
        )
    remote = _probe(repo_id)
    if "config.json" not in remote.files:
        raise PullError(f"{repo_id} has no config.json, so it is not a model agentd can load")
    # Download into a hidden folder (resumable: a second pull picks up where this one stopped)
    # and rename it into place only when complete, so no half-pulled model is ever loaded.
    models_dir.mkdir(parents=True, exist_ok=True)
    partial = models_dir / f".partial-{final.name}"
    _download_with_progress(remote, partial, console)
    _check_complete(remote, partial)
    shutil.rmtree(partial / ".cache", ignore_errors=True)  # the hub's resume bookkeeping
    partial.rename(final)
    return final


def _endpoint() -> str:
    """The Hugging Face endpoint in use (HF_ENDPOINT, as huggingface_hub reads it)."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _probe(repo_id: str) -> RemoteModel:
    """Ask the hub, within seconds, for repo_id's commit and the files pull will fetch."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    endpoint = _endpoint()
    answer: dict[str, Any] = {}

    def ask() -> None:
        try:
            api = HfApi(endpoint=endpoint)
            answer["info"] = api.model_info(repo_id, timeout=PROBE_TIMEOUT_S, files_metadata=True)
        except BaseException as error:  # handed to the caller below
            answer["error"] = error

    # The request's own timeout does not cover name resolution, which can hang for long
    # minutes on a machine without network; a thread with a deadline bounds the whole probe.
    asker = threading.Thread(target=ask, name=f"probe {repo_id}", daemon=True)
    asker.start()
    asker.join(PROBE_TIMEOUT_S + 1)
    error = answer.get("error")
    if asker.is_alive() or "Timeout" in type(error).__name__:
        raise PullError(
            f"no answer from {endpoint} within {PROBE_TIMEOUT_S:.0f} s, so {repo_id} cannot be "
            "pulled; check the network connection and try again"
        )
    if isinstance(error, GatedRepoError):
        raise PullError(f"{repo_id} is gated: accept its terms on the hub and log in") from error
    if isinstance(error, RepositoryNotFoundError):
        raise PullError(
            f"{repo_id} was not found on {endpoint}: check the name, or use a preset "
            f"({', '.join(PRESETS)})"
        ) from error
    if isinstance(error, HfHubHTTPError):
        first_line = str(error).splitlines()[0]
        raise PullError(
            f"{endpoint} refused to list {repo_id} ({first_line}); try again later"
        ) from error
    if error is not None:  # connection refused, DNS, TLS: the hub is out of reach
        raise PullError(
            f"cannot reach {endpoint} to pull {repo_id} ({type(error).__name__}: {error}); "
            "check the network connection and try again"
        ) from error
    info = answer["info"]
    files = {s.rfilename: s.size or 0 for s in info.siblings or [] if _wanted(s.rfilename)}
    return RemoteModel(repo_id=repo_id, sha=info.sha, files=files)


def _wanted(filename: str) -> bool:
    """True when pull downloads this repo file (it matches ALLOW_PATTERNS)."""
    from fnmatch import fnmatch

    return any(fnmatch(filename, pattern) for pattern in ALLOW_PATTERNS)


def _check_complete(remote: RemoteModel, folder: Path) -> None:
    """Raise PullError unless every file the hub listed is in folder with its full size."""
    # snapshot_download may hand back a partial local folder when the hub drops mid-way.
    missing = [
        name
        for name, size in remote.files.items()
        if not (folder / name).is_file() or (size and (folder / name).stat().st_size != size)
    ]
    if missing:
        raise PullError(
            f"the download of {remote.repo_id} is incomplete ({len(missing)} files missing, "
            f"e.g. {missing[0]}); run the same pull again to resume"
        )


def _download_with_progress(remote: RemoteModel, folder: Path, console: Any) -> None:
    """Run snapshot_download in a thread while a rich progress bar follows the folder size."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import disable_progress_bars
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    disable_progress_bars()  # ours replaces the hub's tqdm bars
    failure: list[BaseException] = []

    def download() -> None:
        try:
            snapshot_download(
                remote.repo_id,
                revision=remote.sha,  # exactly the commit the probe listed
                local_dir=folder,
                allow_patterns=ALLOW_PATTERNS,
                endpoint=_endpoint(),
            )
        except BaseException as error:  # handed to the main thread below
            failure.append(error)

    worker = threading.Thread(target=download, name=f"pull {remote.repo_id}", daemon=True)
    total = remote.size_bytes
    columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress("[bold]{task.description}", *columns, console=console) as progress:
        task = progress.add_task(remote.repo_id, total=total or None)
        worker.start()
        while worker.is_alive():
            worker.join(0.25)
            progress.update(task, completed=_folder_size(folder))
        if not failure:
            progress.update(task, completed=total or _folder_size(folder))
    if failure:
        raise PullError(
            f"downloading {remote.repo_id} failed ({type(failure[0]).__name__}: {failure[0]}); "
            "run the same pull again to resume"
        ) from failure[0]


def _stderr_console() -> Any:
    """A rich console on stderr, for callers that pass none."""
    from rich.console import Console

    return Console(stderr=True)


def _is_model_folder(path: Path) -> bool:
    """True when path is a folder with a config.json."""
    return (path / "config.json").is_file()


def _read_config(path: Path) -> dict:
    """A model folder's config.json, or {} when it is unreadable."""
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def _describe_quantization(config: dict) -> str | None:
    """A short description such as '4-bit (group 64)', or None for unquantized weights."""
    quantization = config.get("quantization") or config.get("quantization_config")
    if not isinstance(quantization, dict) or "bits" not in quantization:
        return None
    text = f"{quantization['bits']}-bit (group {quantization.get('group_size', '?')})"
    mode = quantization.get("mode", "affine")
    if mode != "affine":
        text += f" {mode}"
    if any(isinstance(value, dict) for value in quantization.values()):
        text += ", mixed"  # some layers use other settings (e.g. 8-bit embeddings)
    return text


def _folder_size(path: Path) -> int:
    """Total bytes of the regular files under path (links not followed)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass  # a file the downloader just renamed or removed
    return total


__all__ = [
    "ALLOW_PATTERNS",
    "DEFAULT_PRESET",
    "InstalledModel",
    "ModelChoice",
    "ModelNotFoundError",
    "PRESETS",
    "WHISPER_PRESETS",
    "PullError",
    "RemoteModel",
    "UnknownModelError",
    "find_model",
    "folder_name",
    "is_offline",
    "is_qwen3_5",
    "list_models",
    "pull",
    "resolve_repo",
    "set_offline_mode",
]
