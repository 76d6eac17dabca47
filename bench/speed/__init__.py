"""Speed benchmarks: ``python -m bench.speed.<name>`` from the repository root."""
