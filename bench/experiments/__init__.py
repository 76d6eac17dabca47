"""Accuracy experiments on real data: ``python -m bench.experiments.<name>`` from the repository root."""
