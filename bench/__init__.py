"""The benchmark of shared/BENCHMARK.md: ``python -m bench`` (see bench/README.md)."""
