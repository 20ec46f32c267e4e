"""Benchmarks: each scenario runs the reference and ours side by side in one run.

``python -m benchmarks list`` / ``run SCENARIO [--json PATH] [--quick]`` / ``run all --json-dir DIR``;
see :mod:`benchmarks.harness`.
"""
