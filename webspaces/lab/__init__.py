"""The local lab (``webspaces up``/``down``, DESIGN.md): everything a deployment runs, on one machine,
with network namespaces standing in for pods. :mod:`.netns` holds the namespace helpers the lab,
the real-peer tests and the benchmarks share."""
