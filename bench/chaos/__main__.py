"""`python -m bench.chaos`: the worker-kill soak."""

import sys

from bench.chaos.kills import main

sys.exit(main())
