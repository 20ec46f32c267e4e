"""Benchmark scenarios: every module here registers one or more with :func:`benchmarks.harness.register`."""
