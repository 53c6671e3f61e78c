"""Benchmark plots: `python -m plots` draws plots/<device>/ from the newest results file per device."""
