"""Benchmark harness: latency distributions (pytest-benchmark), agreement, profile, reports."""
