"""Trust for user skills: a skill runs only while its files match the hashes a person approved.

The record lives in the home folder (`trusted_skills.json`) and maps each skill name to the
SHA-256 of every file in its folder at the time of `agentd skills trust NAME`. A new file, a
missing one or a single changed byte makes the skill untrusted again until it is re-trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

TRUST_FILE = "trusted_skills.json"
# Not part of what a skill runs: caches and version-control internals change on their own.
_IGNORED_DIRS = {"__pycache__", ".git", ".hg", ".svn"}
_IGNORED_FILES = {".DS_Store"}


def file_digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under a skill folder, keyed by its relative path (sorted)."""
    digests: dict[str, str] = {}
    seen: set[str] = set()
    # Linked folders are followed: code imported through a link must be covered too.
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a link loop
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if d not in _IGNORED_DIRS)
        for name in sorted(files):
            if name in _IGNORED_FILES or name.endswith((".pyc", ".pyo")):
                continue
            path = Path(root) / name
            digests[path.relative_to(folder).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return dict(sorted(digests.items()))


def differences(approved: dict[str, str], current: dict[str, str]) -> list[str]:
    """What changed between the approved files and the current ones, in words."""
    changes = [f"{name} changed" for name in current if name in approved and approved[name] != current[name]]
    changes += [f"{name} added" for name in current if name not in approved]
    changes += [f"{name} removed" for name in approved if name not in current]
    return changes


class TrustStore:
    """The approved hashes of user skills, in the home folder."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def in_home(cls, home: Path) -> TrustStore:
        return cls(Path(home) / TRUST_FILE)

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            # An unreadable record trusts nothing: the safe side, and `trust` rewrites it.
            raise TrustError(f"{self.path}: cannot read the trusted skills ({exc}); re-trust your skills") from None
        return data.get("skills", {}) if isinstance(data, dict) else {}

    def refusal(self, name: str, digests: dict[str, str]) -> str | None:
        """Why this skill is not trusted (None when its files match what was approved)."""
        record = self._read().get(name)
        if not isinstance(record, dict) or not isinstance(record.get("files"), dict):
            return "new skill: not trusted yet"
        changes = differences(record["files"], digests)
        if changes:
            return "changed since it was trusted: " + ", ".join(changes)
        return None

    def trust(self, name: str, folder: Path, digests: dict[str, str]) -> None:
        """Approve the skill's current files."""
        skills = self._read_for_update()
        skills[name] = {
            "path": str(folder),
            "files": digests,
            "trusted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        self._write({"version": 1, "skills": skills})

    def _read_for_update(self) -> dict:
        try:
            return self._read()
        except TrustError:
            return {}  # a corrupt record is replaced by the next approval

    def _write(self, data: dict) -> None:
        """Write atomically (temp file + rename) so a crash never leaves half a record."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".trusted_skills.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(data, out, indent=2, sort_keys=True)
                out.write("\n")
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class TrustError(ValueError):
    """The trust record cannot be read."""
