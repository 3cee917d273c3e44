"""`python -m bench` (make bench): every benchmark that fits this machine, as one table."""

import sys

from bench.suite import main

sys.exit(main())
