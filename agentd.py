"""agentd's command line. The commands live in agent/cli/ (one module per command group);
this file is the console script's entry and `python agentd.py ...` in a checkout."""

import sys

from agent.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
