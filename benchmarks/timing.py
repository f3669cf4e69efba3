"""The one timing rule of the benchmarks: warm up once, then the best of `repeats` runs.

The best run, not the mean, because these machines are shared: other work only ever adds time.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def best_seconds(function: Callable[[], object], repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def best_ms(function: Callable[[], object], repeats: int) -> float:
    return 1000.0 * best_seconds(function, repeats)
