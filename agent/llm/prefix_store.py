"""The prefilled prefix on disk, so a restarted daemon is warm in seconds, not minutes.

mlx-lm's `save_prompt_cache` / `load_prompt_cache` write the cache as one safetensors file.
It is keyed by what it depends on: the model (its folder and the size and time of each weight
and config file), the chat template, the prefix's tokens, and the mlx / mlx-lm versions. A file
whose key or tokens do not match, or that cannot be read, is deleted and rebuilt; it is
written to a temp file and renamed into place, so a crash never leaves half of one.
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


class PrefixStore:
    """One saved prefix per model, in `folder` (the home's cache folder)."""

    def __init__(self, folder: Path, model_path: Path):
        self.folder = Path(folder)
        self.model_path = Path(model_path)
        self.path = self.folder / f"prefix-{self.model_path.name}{SUFFIX}"

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

        if not self.path.is_file():
            return None
        try:
            cache, meta = load_prompt_cache(str(self.path), return_metadata=True)
            if meta.get("agentd_key") != self.key(tokens, template) or json.loads(meta.get("agentd_tokens", "null")) != tokens:
                log.info("saved prefix %s is for another model, template or prompt; rebuilding it", self.path)
                self.discard()
                return None
            if any(c.offset != len(tokens) for c in cache if hasattr(c, "offset")):
                raise ValueError("its length does not match its tokens")
        except Exception as exc:  # any unreadable file is rebuilt, whatever the reader raised
            log.warning("saved prefix %s cannot be used (%s); rebuilding it", self.path, exc)
            self.discard()
            return None
        return cache

    def save(self, cache: list, tokens: list[int], template: str) -> None:
        """Write the cache atomically: a temp file in the same folder, then a rename."""
        from mlx_lm.models.cache import save_prompt_cache

        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=SUFFIX, dir=self.folder)
        os.close(fd)
        try:
            meta = {"agentd_key": self.key(tokens, template), "agentd_tokens": json.dumps(tokens)}
            save_prompt_cache(temp, cache, meta)
            os.replace(temp, self.path)
        except Exception as exc:  # a full disk must not stop the daemon: it just starts cold next time
            log.warning("could not save the prefix to %s: %s", self.path, exc)
        finally:
            if os.path.exists(temp):
                os.unlink(temp)

    def discard(self) -> None:
        try:
            self.path.unlink()
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
