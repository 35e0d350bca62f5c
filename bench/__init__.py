"""Benchmarks, not tests: `make bench` or `python -m bench.run`.

Figures are ratios against floors measured in the same run."""
