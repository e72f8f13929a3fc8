"""A whole epoch as one ``lax.scan`` against a Python loop of jitted steps; compile time; buffer sizes.

Workload: the MLP step of ``benchmarks/train_step.py`` (784-512-512-10, dropout 0.5, L2, Adam, batch 128,
float32) on ``EXAMPLES`` synthetic examples held on the device.

* **epoch**: :func:`jaxreg.make_train_epoch` (shuffle by ``jax.random.permutation``, gather, scan over
  the batches, mean metrics; state donated) against the loop a user writes around the same jitted step:
  the same permutation (fetched to the host once), ``x[idx]`` per batch, one ``step`` call per batch, the
  per-step metrics kept and fetched at the end. Both run the same batches in the same order
  (``tests/test_benchmarks.py`` checks that they end with the same parameters).
* **compile**: seconds to lower and compile a fresh MLP step (``_timing.compile_seconds``, the median of a
  few fresh builds, since jit caches per function object) against the 1.5 s budget, and against the plain
  flax step, with the process CPU time beside the wall time (on a loaded machine the wall time mostly
  measures waiting); the scanned epoch's compile time for context.
* **memory**: XLA's buffer assignment for each compiled program (``compiled.memory_analysis()``: the
  temporary buffers the program allocates besides its arguments and outputs, and how many argument bytes
  are donated/aliased). On the CPU backend ``jax.Device.memory_stats()`` is None, and a process's peak
  RSS mixes in the compiler's own memory, so these static figures are the honest ones; they are reported
  in the notes.

Run: ``python -m benchmarks.epoch [--quick]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxreg as jr
from jaxreg.epoch import shuffle_key
from benchmarks._timing import Result, compile_seconds, time_interleaved
from benchmarks.train_step import (
    BATCH,
    SIZES,
    default_optimizer,
    flax_mlp_step,
    flax_state,
    jaxreg_mlp_step,
    jaxreg_state,
    mlp_data,
    mlp_params,
)

BENCH = "epoch"
EXAMPLES = 40 * BATCH
COMPILE_BUDGET_S = 1.5


def loop_epoch(step: Callable, batch_size: int) -> Callable:
    """The hand-written epoch: ``epoch(state, x, y, epoch) -> (state, stacked step metrics)``.

    Same order as :func:`jaxreg.make_train_epoch`: ``jax.random.permutation(shuffle_key(state.key,
    epoch), n)``, the last partial batch dropped.
    """

    def epoch_fn(state: Any, x: jax.Array, y: jax.Array, epoch: jax.Array):
        n = x.shape[0]
        order = np.asarray(jax.random.permutation(shuffle_key(state.key, epoch), n))
        history = []
        for i in range(n // batch_size):
            idx = order[i * batch_size:(i + 1) * batch_size]
            state, metrics = step(state, x[idx], y[idx])
            history.append(metrics)
        return state, jax.tree.map(lambda *m: np.stack(m), *jax.device_get(history))

    return epoch_fn


def epoch_setup(sizes: tuple[int, ...] = SIZES, batch: int = BATCH, num_batches: int = EXAMPLES // BATCH,
                step: Callable | None = None):
    """``dict(scan=epoch_fn, loop=epoch_fn, params, optimizer, x, y)`` over one shared jitted step.

    ``step`` defaults to a fresh ``jaxreg_mlp_step(sizes)`` (with its Adam optimizer); pass one to reuse it.
    """
    if step is None:
        step, tx = jaxreg_mlp_step(sizes)
    else:
        tx = default_optimizer()
    x, y = mlp_data(batch, sizes, num_batches=num_batches, seed=3)
    return {"scan": jr.make_train_epoch(step, batch_size=batch), "loop": loop_epoch(step, batch),
            "params": mlp_params(sizes), "optimizer": tx, "x": x, "y": y}


class EpochRunner:
    """Runs successive epochs, threading the donated state: ``EpochRunner(epoch_fn, state, x, y)()``."""

    def __init__(self, epoch_fn: Callable, state: Any, x: jax.Array, y: jax.Array):
        self.epoch_fn, self.state, self.x, self.y, self.epoch = epoch_fn, state, x, y, 0

    def __call__(self) -> Any:
        self.state, metrics = self.epoch_fn(self.state, self.x, self.y, jnp.int32(self.epoch))
        self.epoch += 1
        return metrics


def _mib(nbytes: float) -> str:
    return f"{nbytes / 2**20:.1f} MiB"


def _buffers(compiled: Any) -> str:
    stats = compiled.memory_analysis()
    return (f"temp {_mib(stats.temp_size_in_bytes)}, args {_mib(stats.argument_size_in_bytes)} "
            f"(aliased {_mib(stats.alias_size_in_bytes)}), out {_mib(stats.output_size_in_bytes)}")


def _epoch_rows(quick: bool) -> list[Result]:
    num_batches = 10 if quick else EXAMPLES // BATCH
    setup = epoch_setup(num_batches=num_batches)
    params, tx, x, y = setup["params"], setup["optimizer"], setup["x"], setup["y"]
    fns = {"scan": EpochRunner(setup["scan"], jaxreg_state(params, tx), x, y),
           "loop": EpochRunner(setup["loop"], jaxreg_state(params, tx), x, y)}
    times = time_interleaved(fns, repeats=4 if quick else 15, warmup=2)
    n = num_batches * BATCH
    return [Result(BENCH, f"MLP epoch {n} examples b{BATCH} f32", "make_train_epoch (lax.scan)",
                   "Python loop of jitted steps", times["scan"], times["loop"], times["scan"] / times["loop"],
                   note=f"{num_batches} steps; scan {n / times['scan']:,.0f} examples/s, "
                        f"loop {n / times['loop']:,.0f} examples/s; data on device, same batches")]


def _compile_rows(quick: bool) -> list[Result]:
    builds = 1 if quick else 3
    x, y = mlp_data(BATCH)
    params, tx = mlp_params(), default_optimizer()
    state, fstate, key = jaxreg_state(params, tx), flax_state(params, tx), jax.random.key(1)
    ours_s, ref_s, epoch_s, ours_cpu, ref_cpu = [], [], [], [], []
    xs, ys = mlp_data(BATCH, num_batches=10, seed=3)
    for _ in range(builds):
        # Fresh functions each time: jit caches compilations per function object.
        step, _ = jaxreg_mlp_step(jit=False)
        ours_jit = jax.jit(step, donate_argnums=0)
        cpu = time.process_time()
        ours_s.append(compile_seconds(ours_jit, state, x, y, None, None))
        ours_cpu.append(time.process_time() - cpu)
        ref_jit = flax_mlp_step()
        cpu = time.process_time()
        ref_s.append(compile_seconds(ref_jit, fstate, x, y, key))
        ref_cpu.append(time.process_time() - cpu)
        epoch_jit = jax.jit(jr.make_train_epoch(step, batch_size=BATCH, jit=False), donate_argnums=0)
        epoch_s.append(compile_seconds(epoch_jit, state, xs, ys, jnp.int32(0)))
    ours, ref, epoch = statistics.median(ours_s), statistics.median(ref_s), statistics.median(epoch_s)
    ours_buffers = _buffers(ours_jit.lower(state, x, y, None, None).compile())
    ref_buffers = _buffers(ref_jit.lower(fstate, x, y, key).compile())
    epoch_buffers = _buffers(epoch_jit.lower(state, xs, ys, jnp.int32(0)).compile())
    case = f"MLP step compile (lower+compile, median of {builds})"
    return [
        Result(BENCH, case, "jaxreg make_train_step", f"budget {COMPILE_BUDGET_S} s", ours, COMPILE_BUDGET_S,
               ours / COMPILE_BUDGET_S, target=1.0,
               note=f"process CPU time {statistics.median(ours_cpu):.2f} s; XLA buffers: {ours_buffers}"),
        Result(BENCH, case, "jaxreg make_train_step", "flax+optax step", ours, ref, ours / ref,
               note=f"flax CPU time {statistics.median(ref_cpu):.2f} s; flax XLA buffers: {ref_buffers}"),
        Result(BENCH, "MLP epoch compile (10 steps, lower+compile)", "make_train_epoch (lax.scan)",
               "jaxreg step compile", epoch, ours, epoch / ours, note=f"XLA buffers: {epoch_buffers}"),
    ]


def run(quick: bool) -> list[Result]:
    """The epoch comparison and the compile-time/buffer rows."""
    return _epoch_rows(quick) + _compile_rows(quick)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 10-step epoch, fewer repetitions")
    from benchmarks.__main__ import format_table

    print(format_table(run(parser.parse_args().quick)))
