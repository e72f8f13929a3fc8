"""Shared measurement harness: medians of interleaved repetitions after warm-up, ratios in one process.

Every benchmark module in this folder exposes ``run(quick: bool) -> list[Result]``. Comparisons are always
ratios of two figures measured here, interleaved, in the same process: these machines are noisy, so
absolute times are context only.
"""

from __future__ import annotations

import dataclasses
import math
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax


@dataclasses.dataclass
class Result:
    """One benchmark row.

    ``ratio`` is ``ours_s / ref_s`` (lower is better) unless ``higher_is_better``; ``target`` is the bound
    the ratio must meet (``ratio <= target``, or ``>=`` when higher is better), ``None`` when informational.
    """

    benchmark: str
    case: str
    ours: str
    ref: str
    ours_s: float
    ref_s: float
    ratio: float
    target: float | None = None
    higher_is_better: bool = False
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.target is None or math.isnan(self.ratio):
            return None  # informational, or a baseline that was skipped (its note says why)
        return self.ratio >= self.target if self.higher_is_better else self.ratio <= self.target

    def asdict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["met"] = self.met
        return d


def time_interleaved(
    fns: dict[str, Callable[[], Any]], *, repeats: int = 30, warmup: int = 3, number: int = 1
) -> dict[str, float]:
    """Median seconds per call of each zero-argument function, measured interleaved.

    Each function is called ``warmup`` times first (compilation, caches), then the functions take turns,
    ``repeats`` rounds, in an order shuffled each round (fixed seed) so that none always runs after the same
    neighbour.
    Each sample times ``number`` back-to-back calls and blocks on the last result
    (``jax.block_until_ready``); the median sample divided by ``number`` is returned.
    """
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            jax.block_until_ready(fns[name]())
    samples: dict[str, list[float]] = {n: [] for n in names}
    rng = random.Random(0)
    for _ in range(repeats):
        order = names[:]
        rng.shuffle(order)
        for name in order:
            f = fns[name]
            t0 = time.perf_counter()
            out = None
            for _ in range(number):
                out = f()
            jax.block_until_ready(out)
            samples[name].append((time.perf_counter() - t0) / number)
    return {n: statistics.median(s) for n, s in samples.items()}


def compile_seconds(jitted: Any, *args: Any, **kwargs: Any) -> float:
    """Wall seconds to lower and compile ``jitted`` for these arguments.

    JAX caches compiled executables per function object: pass a freshly built ``jax.jit`` function (not one
    already compiled for these shapes), or the figure is a cache hit.
    """
    t0 = time.perf_counter()
    jitted.lower(*args, **kwargs).compile()
    return time.perf_counter() - t0
