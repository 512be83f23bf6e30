"""Lichen benchmarks: `python -m bench` (make bench)."""
