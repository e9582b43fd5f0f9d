"""Benchmarks, one module per ``kgmm bench`` subject (measured on this machine, never by timed tests).

The layer above the tasks and the use cases: a benchmark may import any of them, and only the CLI imports it.
"""
