"""Benchmarks: each ``bench_*.py`` module has a ``main()`` and writes its section of RESULTS.md."""
