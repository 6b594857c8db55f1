"""Benchmarks of the pipeline and its peers; run each as ``python3 -m benchmarks.<name>`` from
the repository root. Shared support code is in ``benchmarks.lib``."""
