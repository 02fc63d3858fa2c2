"""`python -m bench.chaos`: the worker-kill soak; with `--infra`, the soak of server and network faults."""

import sys

if "--infra" in sys.argv[1:]:
    from bench.chaos.infra import main

    sys.exit(main([arg for arg in sys.argv[1:] if arg != "--infra"]))
else:
    from bench.chaos.kills import main

    sys.exit(main())
