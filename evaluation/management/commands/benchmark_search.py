"""`manage.py benchmark_search`; the code is in bench/bench_search.py."""

from __future__ import annotations

from bench.bench_search import Command

__all__ = ["Command"]
