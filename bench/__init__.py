"""Benchmark harness: pyrestate vs. the official restate-server, same SDK service, same load (see README)."""
