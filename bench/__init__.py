"""The benchmarks; run each from the repository root with the host env's python as
``python -m bench.<name>`` (``python -m bench.report`` runs them all and writes bench/REPORT.md)."""
