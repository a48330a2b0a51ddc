"""Benchmarks of Bellwether against what an analyst would otherwise use (see docs/benchmarks.md).

Run them with ``python -m bench train|score|monitor [--quick] [--format json]``. Each measured case runs in a
child process of its own (:mod:`bench.runner`), so that its peak RSS is its own and one case's threads or caches never
help another.
"""
