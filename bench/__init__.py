"""Benchmarks and soaks: commands that print figures (python -m bench.<name>)."""
