"""Benchmarks and soaks: commands that print figures (python -m bench.<name>)."""

import os

# Benchmarks and soaks run the production settings (DEBUG off), which need a key; this one signs nothing that leaves
# the machine.
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-not-a-secret")
