"""Runnable experiments and benchmarks (run from the repository root with `python -m`)."""
