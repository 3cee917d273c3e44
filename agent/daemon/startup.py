"""What a daemon does before its socket answers: loading the model, converting the demo model.

`agentd run` opens its socket only once the model is loaded, which on a first run includes
converting the demo model (seconds to minutes on a slow CPU). Until then `agentd status` and
`agentd start` read this small file in the home instead: the daemon's pid, when it started, and
what it is doing. A conversion in progress shows as its temp folder in the models folder.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from agent.config.paths import models_dir
from agent.llm.demo_model import DEMO_FOLDER, process_alive

FILE = "starting.json"


def announce(home: Path) -> None:
    """This process is starting a daemon on `home` (written whole: temp file + rename)."""
    home = Path(home)
    fd, temp = tempfile.mkstemp(prefix=f".{FILE}.", dir=home)
    with os.fdopen(fd, "w") as out:
        json.dump({"pid": os.getpid(), "since": time.time()}, out)
    os.replace(temp, home / FILE)


def done(home: Path) -> None:
    """The daemon answers on its socket now (or gave up): the file has nothing more to say."""
    try:
        (Path(home) / FILE).unlink()
    except FileNotFoundError:
        pass


def starting(home: Path) -> str | None:
    """One line on a daemon that is starting on `home`, or None if none is."""
    try:
        note = json.loads((Path(home) / FILE).read_text())
        pid, since = int(note["pid"]), float(note["since"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not process_alive(pid):
        return None  # it died while starting (`agentd start` says why)
    converting = any(models_dir(Path(home)).glob(f".{DEMO_FOLDER}*.tmp-{pid}-*"))
    doing = "converting the demo model to MLX (once)" if converting else "loading the model"
    return f"agentd is starting (pid {pid}): {doing}, {time.time() - since:.0f} s so far"

