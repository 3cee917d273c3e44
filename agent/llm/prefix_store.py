"""The prefilled prefix on disk, so a restarted daemon is warm in seconds, not minutes.

mlx-lm's `save_prompt_cache` / `load_prompt_cache` write the cache as one safetensors file.
It is keyed by what it depends on: the model (its folder and the size and time of each weight
and config file), the chat template, the prefix's tokens, and the mlx / mlx-lm versions. A file
whose key or tokens do not match, or that cannot be read, is deleted and rebuilt; it is
written to a temp file and renamed into place, so a crash never leaves half of one. The file
name carries the key, so the daemon's prefix and another one (`agentd eval` shows the model
every tool) do not replace each other; the few most recently used per model are kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SUFFIX = ".safetensors"
KEEP = 3  # saved prefixes per model (the daemon's, the eval's, one before a reload)


class PrefixStore:
    """Saved prefixes of one model, in `folder` (the home's cache folder)."""

    def __init__(self, folder: Path, model_path: Path):
        self.folder = Path(folder)
        self.model_path = Path(model_path)
        self.stem = f"prefix-{self.model_path.name}-"
        self.path: Path | None = None  # the file last loaded or saved

    def path_for(self, key: str) -> Path:
        return self.folder / f"{self.stem}{key[:16]}{SUFFIX}"

    def key(self, tokens: list[int], template: str) -> str:
        """What a saved prefix must have been made from to be used again."""
        import mlx.core as mx
        import mlx_lm

        digest = hashlib.sha256()
        for part in (str(self.model_path.resolve()), _files_fingerprint(self.model_path), template,
                     json.dumps(tokens), mx.__version__, mlx_lm.__version__):
            digest.update(part.encode())
            digest.update(b"\0")
        return digest.hexdigest()

    def load(self, tokens: list[int], template: str) -> list | None:
        """The saved cache for exactly these tokens, or None (a stale or broken file is deleted)."""
        from mlx_lm.models.cache import load_prompt_cache

        key = self.key(tokens, template)
        path = self.path_for(key)
        if not path.is_file():
            return None
        try:
            cache, meta = load_prompt_cache(str(path), return_metadata=True)
            if meta.get("agentd_key") != key or json.loads(meta.get("agentd_tokens", "null")) != tokens:
                raise ValueError("it was made for another model, template or prompt")
            if any(c.offset != len(tokens) for c in cache if hasattr(c, "offset")):
                raise ValueError("its length does not match its tokens")
        except Exception as exc:  # any unreadable file is rebuilt, whatever the reader raised
            log.warning("saved prefix %s cannot be used (%s); rebuilding it", path, exc)
            _unlink(path)
            return None
        os.utime(path)  # recently used: kept when older ones are pruned
        self.path = path
        return cache

    def save(self, cache: list, tokens: list[int], template: str) -> None:
        """Write the cache atomically: a temp file in the same folder, then a rename."""
        from mlx_lm.models.cache import save_prompt_cache

        key = self.key(tokens, template)
        self.path = self.path_for(key)
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{self.stem}", suffix=SUFFIX, dir=self.folder)
        os.close(fd)
        try:
            save_prompt_cache(temp, cache, {"agentd_key": key, "agentd_tokens": json.dumps(tokens)})
            os.replace(temp, self.path)
        except Exception as exc:  # a full disk must not stop the daemon: it just starts cold next time
            log.warning("could not save the prefix to %s: %s", self.path, exc)
        finally:
            _unlink(Path(temp))
        self.prune()

    def saved(self) -> list[Path]:
        """This model's saved prefixes, most recently used first."""
        found = [p for p in self.folder.glob(f"{self.stem}*{SUFFIX}") if p.is_file()]
        return sorted(found, key=lambda p: p.stat().st_mtime_ns, reverse=True)

    def prune(self, keep: int = KEEP) -> None:
        """Delete all but this model's `keep` most recently used prefixes."""
        for path in self.saved()[keep:]:
            _unlink(path)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _files_fingerprint(folder: Path) -> str:
    """Name, size and modification time of the model's files: a changed model is a new key."""
    entries: list[Any] = []
    for path in sorted(folder.iterdir()):
        if path.is_file():
            stat = path.stat()
            entries.append([path.name, stat.st_size, stat.st_mtime_ns])
    return json.dumps(entries)
