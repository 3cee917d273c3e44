"""The one model the API offers, described the way OpenAI and Ollama clients list models."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from agent.api.errors import ApiRequestError


@dataclass(frozen=True)
class ModelCard:
    """agentd's model under the configured name, with figures read from its folder."""

    name: str
    path: Path | None = None

    def check(self, asked: str) -> None:
        """ApiRequestError (404) if the client asked for another model; no name is fine."""
        if asked and asked not in (self.name, f"{self.name}:latest"):
            raise ApiRequestError(f"model {asked!r} not found: this agentd serves {self.name!r}", 404, "model_not_found")

    @property
    def tag(self) -> str:
        """Ollama's name:tag form."""
        return self.name if ":" in self.name else f"{self.name}:latest"

    def created(self) -> int:
        return int(self.path.stat().st_mtime) if self.path and self.path.exists() else 0

    def openai(self) -> dict:
        return {"id": self.name, "object": "model", "created": self.created(), "owned_by": "agentd"}

    def ollama(self) -> dict:
        """An entry of /api/tags (and, with the running fields, /api/ps)."""
        config = self._config()
        quantization = config.get("quantization") or {}
        modified = dt.datetime.fromtimestamp(self.created(), dt.timezone.utc).isoformat()
        return {
            "name": self.tag, "model": self.tag, "modified_at": modified, "size": self._size(),
            "digest": hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest(),
            "details": {
                "format": "mlx", "family": config.get("model_type", ""), "families": [config.get("model_type", "")],
                "parameter_size": "", "quantization_level": f"{quantization['bits']}bit" if "bits" in quantization else "",
                "parent_model": "",
            },
        }

    def _config(self) -> dict:
        try:
            return json.loads((self.path / "config.json").read_text()) if self.path else {}
        except (OSError, ValueError):
            return {}

    def _size(self) -> int:
        if not self.path or not self.path.is_dir():
            return 0
        return sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())
