"""``python -m bench``: the throughput benchmark (bench/throughput.py); the others run as bench.<name>."""

from bench.throughput import main

raise SystemExit(main())
