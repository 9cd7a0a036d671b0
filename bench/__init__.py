"""Reproducible benchmarks: `python -m bench <name> [--smoke] [--record]`."""
