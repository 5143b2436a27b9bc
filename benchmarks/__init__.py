"""Speed measurements (see run.py); benchmark-only dependencies in requirements-bench.txt."""
