"""What regularization costs inside a training step: penalties and optax transforms on the MLP step.

The MLP step of ``benchmarks/train_step.py`` (784-512-512-10, dropout 0.5, Adam, batch 128, float32,
jaxreg engine) timed with and without regularizers, interleaved in one process:

* ``none``: ``optax.adam(1e-3)``, no penalty (dropout only);
* ``all``: ``penalties=[(jr.l2, 1e-4, jr.kernel_mask)]`` and ``optax.chain(optax.scale_by_adam(),
  jr.weight_decay(1e-4), optax.scale_by_learning_rate(1e-3), jr.max_norm(3.0, mask=jr.kernel_mask))``,
  the row with the target: it may add at most 3% to the step;
* ``l2``, ``weight_decay``, ``max_norm``, ``proximal_l1``: one at a time (informational).

Plus the penalty on its own: ``jax.grad`` of ``jr.l2(params, mask=jr.kernel_mask)`` against the
hand-written ``sum(jnp.sum(k ** 2) for k in kernels)`` (the mask is resolved at trace time, so it must
cost nothing).

Run: ``python -m benchmarks.penalties [--quick]``.
"""

from __future__ import annotations

import argparse
import functools
import statistics
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

import jaxreg as jr
from benchmarks._timing import Result, time_interleaved
from benchmarks.train_step import L2, LR, SIZES, Stepper, jaxreg_mlp_step, jaxreg_state, mlp_data, mlp_params

BENCH = "penalties"
BATCH = 128
MAX_NORM = 3.0
DECAY = 1e-4
ALL_TARGET = 1.03


def variants(sizes: tuple[int, ...] = SIZES) -> dict[str, tuple[optax.GradientTransformation, tuple]]:
    """``name -> (optimizer, penalties)`` for every configuration timed here."""
    l2 = ((jr.l2, L2, jr.kernel_mask),)

    def adam_chain(*after_adam: optax.GradientTransformation, last: tuple = ()) -> optax.GradientTransformation:
        return optax.chain(optax.scale_by_adam(), *after_adam, optax.scale_by_learning_rate(LR), *last)

    return {
        "none": (optax.adam(LR), ()),
        "all": (adam_chain(jr.weight_decay(DECAY), last=(jr.max_norm(MAX_NORM, mask=jr.kernel_mask),)), l2),
        "l2": (optax.adam(LR), l2),
        "weight_decay": (adam_chain(jr.weight_decay(DECAY)), ()),
        "max_norm": (adam_chain(last=(jr.max_norm(MAX_NORM, mask=jr.kernel_mask),)), ()),
        "proximal_l1": (adam_chain(last=(jr.proximal_l1(1e-5, learning_rate=LR, mask=jr.kernel_mask),)), ()),
    }


DESCRIPTIONS = {
    "all": "L2 penalty + weight_decay + max_norm",
    "l2": "L2 penalty (jr.l2, kernels)",
    "weight_decay": "jr.weight_decay (decoupled)",
    "max_norm": "jr.max_norm(3.0) on kernels",
    "proximal_l1": "jr.proximal_l1 on kernels",
}


def steps(
    sizes: tuple[int, ...] = SIZES, names: tuple[str, ...] | None = None
) -> dict[str, tuple[Callable, optax.GradientTransformation]]:
    """``name -> (jitted engine step, optimizer)`` for the selected variants (all by default)."""
    out = {}
    for name, (tx, penalties) in variants(sizes).items():
        if names is None or name in names:
            out[name] = jaxreg_mlp_step(sizes, optimizer=tx, penalties=penalties)
    return out


def _kernels_l2(params: dict) -> jax.Array:
    return sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(params) if leaf.ndim >= 2)


def bytes_accessed(
    sizes: tuple[int, ...] = SIZES, batch: int = BATCH, names: tuple[str, ...] | None = None
) -> dict[str, float]:
    """``name -> bytes`` XLA's cost analysis counts for the compiled step of each variant (load-independent)."""
    x, y = mlp_data(batch, sizes)
    params = mlp_params(sizes)
    out = {}
    for name, (tx, penalties) in variants(sizes).items():
        if names is None or name in names:
            step, _ = jaxreg_mlp_step(sizes, optimizer=tx, penalties=penalties, jit=False)
            compiled = jax.jit(step, donate_argnums=0).lower(jaxreg_state(params, tx), x, y, None, None).compile()
            cost = compiled.cost_analysis()
            cost = cost[0] if isinstance(cost, list) else cost
            out[name] = float(cost["bytes accessed"])
    return out


def paired_ratios(fns: dict[str, Callable], base: str, *, blocks: int, rounds: int) -> tuple[dict, dict]:
    """``(seconds, ratios)``: medians over ``blocks`` short interleaved measurements of ``rounds`` rounds.

    Each block is one ``time_interleaved`` call, so its ratios compare samples taken moments apart; the
    median of those per-block ratios resists a machine whose load changes over the run far better than
    the ratio of two overall medians (see NOTES.md).
    """
    time_interleaved(fns, repeats=1, warmup=2)
    blocks_t = [time_interleaved(fns, repeats=rounds, warmup=0) for _ in range(blocks)]
    seconds = {name: statistics.median(t[name] for t in blocks_t) for name in fns}
    ratios = {name: statistics.median(t[name] / t[base] for t in blocks_t) for name in fns}
    return seconds, ratios


def _step_rows(quick: bool) -> list[Result]:
    (blocks, rounds), count = ((2, 3), 3) if quick else ((20, 3), 3)
    names = ("none", "all") if quick else None
    x, y = mlp_data(BATCH)
    params = mlp_params()
    fns = {name: Stepper(step, jaxreg_state(params, tx), x, y, count=count)
           for name, (step, tx) in steps(names=names).items()}
    seconds, ratios = paired_ratios(fns, "none", blocks=blocks, rounds=rounds)
    traffic = bytes_accessed(names=tuple(fns))
    case = f"MLP step b{BATCH} f32, dropout 0.5, Adam"
    rows = []
    for name in fns:
        if name == "none":
            continue
        extra = (traffic[name] - traffic["none"]) / 2**20
        rows.append(Result(BENCH, case, f"+ {DESCRIPTIONS[name]}", "no penalty/transform", seconds[name] / count,
                           seconds["none"] / count, ratios[name], target=ALL_TARGET if name == "all" else None,
                           note=f"ratio: median of {blocks} per-block ratios (not ours/ref of the medians); "
                                f"XLA cost analysis: {extra:+.1f} MiB accessed ({traffic['none'] / 2**20:.1f} MiB "
                                "without)"))
    return rows


def _penalty_rows(quick: bool) -> list[Result]:
    params = mlp_params()
    ours = jax.jit(jax.grad(lambda p: jr.l2(p, mask=jr.kernel_mask)))
    ref = jax.jit(jax.grad(_kernels_l2))
    for a, b in zip(jax.tree.leaves(ours(params)), jax.tree.leaves(ref(params))):
        assert bool(jnp.allclose(a, b)), "jr.l2 gradient disagrees with the hand-written penalty"
    times = time_interleaved({"ours": functools.partial(ours, params), "ref": functools.partial(ref, params)},
                             repeats=10 if quick else 50, warmup=3)
    return [Result(BENCH, "grad of L2 on MLP params (669k)", "jax.grad(jr.l2, mask=kernel_mask)",
                   "grad of hand-written sum(k**2)", times["ours"], times["ref"], times["ours"] / times["ref"],
                   note="bias gradients are zeros on both sides")]


def run(quick: bool) -> list[Result]:
    """The step with vs without regularizers, and the L2 penalty's gradient on its own."""
    return _step_rows(quick) + _penalty_rows(quick)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions; only the 'all' variant")
    from benchmarks.__main__ import format_table

    print(format_table(run(parser.parse_args().quick)))
