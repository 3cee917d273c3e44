"""Serve a real Daemon around the scripted FakeAgent: `python tests/serve_fake.py HOME`.

Tests run this as a subprocess to send it real signals. SIGHUP bumps HOME/reloads.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo, when not installed

from agent.daemon.core import Daemon  # noqa: E402
from fakes import FakeAgent  # noqa: E402  (tests/ is on sys.path when this runs as a script)


def main() -> int:
    home = Path(sys.argv[1])
    reloads = home / "reloads"

    def reload() -> None:
        count = int(reloads.read_text()) if reloads.exists() else 0
        reloads.write_text(str(count + 1))

    daemon = Daemon(agent=FakeAgent(delay=0.01), home=home, reload=reload,
                    status=lambda: {"model": "fake-model", "skills": ["lights", "timers"]},
                    confirm_timeout_s=float(sys.argv[2]) if len(sys.argv) > 2 else 30.0)
    return daemon.run_forever()


if __name__ == "__main__":
    sys.exit(main())
