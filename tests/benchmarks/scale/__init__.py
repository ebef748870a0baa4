"""The scale benchmark: a real aggregator process and many simulated homes (scripts/bench scale).

See ``docs/performance.md`` for what it measures and how to read the figures.
"""
