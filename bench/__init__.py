"""Benchmarks and experiments of ddlvad: scripts run as modules from the repository root (bench/README.md)."""
