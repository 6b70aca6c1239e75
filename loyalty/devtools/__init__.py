"""Tools for developers: the benchmark behind ``python -m loyalty bench`` and docs/performance.md."""
