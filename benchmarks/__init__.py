"""Side-by-side speed and memory of the two frameworks (``python -m benchmarks``; see README.md here).

Each measurement runs in its own subprocess (``benchmarks.worker``) so that its peak RSS is its own
and thread settings are fixed before either framework starts; the parent only schedules, collects
JSON rows and writes the table. Timing is never asserted in unit tests.
"""
