"""What each engine option of issue 11 costs per training step, against the plain engine step.

The MLP step of ``benchmarks/train_step.py`` (784-512-512-10, dropout 0.5 by ``jr.dropout``, L2 on the
kernels, Adam(1e-3), batch 128, float32, the jaxreg engine) timed with one option at a time, interleaved in
one process with the plain step on the same parameters and batch (ratio = option / plain):

* ``confidence``: ``output_penalties=[(confidence, 0.1)]``, the confidence penalty (Pereyra et al. 2017) on
  the training-mode logits;
* ``mixup``: ``augment=`` a mixup hook (``jr.mixup``, alpha 0.2) on one-hot labels with
  ``optax.softmax_cross_entropy``, against the plain step with the same loss on the same one-hot labels
  (``plain_soft``), so that only the hook differs;
* ``ema``: a state from ``create_train_state(..., ema_decay=0.999)`` (the step updates the average);
* ``swa``: a state with ``swa_start=0`` (every step is averaged: the most an SWA step ever costs);

each with the target <= 1.05; and, informational, with the expected ~2x (two forward/backward passes):

* ``rdrop``: ``rdrop=1.0``, two forward passes with different dropout keys and their backward passes (by
  GEMM count 1.75x, not 2x: dropout comes after the first layer, so both passes share ``x @ W1`` and XLA
  computes it once);
* ``sam``: ``optax.contrib.sam(adam, chain(normalize(), sgd(0.05)), opaque_mode=True)``: the step's gradient,
  then one more at the adversarial params through the step's ``grad_fn`` (Adam still runs once);
* ``input_gradient`` (double backpropagation) and ``jacobian`` (one random projection): the backward pass
  to the input is itself differentiated. Counting the GEMMs' multiply-adds per example (forward 669k;
  backward 669k for the kernels + 267k to the hidden layers' inputs): plain 1.60M; with the penalty
  3.61M (forward 669k, backward to x 669k, twice that again for its gradient, plus the plain backward): ~2.25x.

The ratio of each row is the median of per-block ratios over short interleaved blocks (``paired`` below, as
in ``benchmarks/penalties.py``: robust to load that changes during the run). Each row's note adds XLA's
cost analysis of the compiled step (FLOPs and bytes accessed against the plain step's), which does not
depend on the load. A step whose update was skipped (non-finite) during timing is reported in its note.

Run: ``python -m benchmarks.engine_options [--quick]``.
"""

from __future__ import annotations

import argparse
import functools
import statistics
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

import jaxreg as jr
from benchmarks._timing import Result, time_interleaved
from benchmarks.train_step import BATCH, L2, MLP, SIZES, Stepper, default_optimizer, mlp_data, mlp_params
from jaxreg.flax import linen as jrl

BENCH = "engine_options"
OVERHEAD_TARGET = 1.05
CONFIDENCE = 0.1
MIXUP_ALPHA = 0.2
EMA_DECAY = 0.999
SWA_START = 0
RDROP = 1.0
SAM_RHO = 0.05
INPUT_GRADIENT = 0.01
JACOBIAN = 0.01
STATE_SEED = 1  # the key of every state, as jaxreg_state in train_step.py


def confidence(outputs: jax.Array, y: Any) -> jax.Array:
    """The output penalty timed here: :func:`jaxreg.confidence_penalty` of the logits."""
    return jr.confidence_penalty(outputs)


def mixup_hook(key: jax.Array, x: jax.Array, y_onehot: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The augment hook timed here: ``jr.mixup`` with one ``lam`` per batch, alpha ``MIXUP_ALPHA``."""
    return jr.mixup(key, x, y_onehot, MIXUP_ALPHA)


def sam_optimizer() -> optax.GradientTransformation:
    """SAM in opaque mode around the default Adam: one adversarial normalized-SGD step of size ``SAM_RHO``."""
    adversary = optax.chain(optax.contrib.normalize(), optax.sgd(SAM_RHO))
    return optax.contrib.sam(default_optimizer(), adversary, opaque_mode=True)


class Option(NamedTuple):
    """One configuration of the engine step: what it adds and what it is compared with."""

    description: str
    baseline: str | None  # the configuration its ratio divides by; None for the baselines themselves
    target: float | None
    step_options: dict  # keyword arguments of jr.make_train_step
    state_options: dict  # keyword arguments of jr.create_train_state
    soft_labels: bool = False  # one-hot labels and optax.softmax_cross_entropy
    optimizer: Callable[[], optax.GradientTransformation] = default_optimizer
    expected: str = ""


_TWO_PASSES = "expected ~2x: two forward/backward passes"
_DOUBLE_BACKPROP = ("expected ~2.25x (GEMMs of one forward, the backward to x, its gradient and the plain "
                    "backward: module docstring)")

OPTIONS: dict[str, Option] = {
    "plain": Option("plain engine step", None, None, {}, {}),
    "plain_soft": Option("plain engine step, one-hot labels", None, None, {}, {}, soft_labels=True),
    "confidence": Option(f"output_penalties=[(confidence_penalty, {CONFIDENCE})]", "plain", OVERHEAD_TARGET,
                         {"output_penalties": [(confidence, CONFIDENCE)]}, {}),
    "mixup": Option(f"augment=mixup hook (alpha {MIXUP_ALPHA})", "plain_soft", OVERHEAD_TARGET,
                    {"augment": mixup_hook}, {}, soft_labels=True),
    "ema": Option(f"state with ema_decay={EMA_DECAY}", "plain", OVERHEAD_TARGET, {}, {"ema_decay": EMA_DECAY}),
    "swa": Option(f"state with swa_start={SWA_START}", "plain", OVERHEAD_TARGET, {}, {"swa_start": SWA_START}),
    "rdrop": Option(f"rdrop={RDROP}", "plain", None, {"rdrop": RDROP}, {},
                    expected=_TWO_PASSES + " (1.75x of the GEMMs: both share x @ W1)"),
    "sam": Option(f"optax.contrib.sam(opaque_mode=True), rho {SAM_RHO}", "plain", None, {}, {},
                  optimizer=sam_optimizer, expected=_TWO_PASSES),
    "input_gradient": Option(f"input_gradient={INPUT_GRADIENT}", "plain", None,
                             {"input_gradient": INPUT_GRADIENT}, {}, expected=_DOUBLE_BACKPROP),
    "jacobian": Option(f"jacobian={JACOBIAN}, 1 projection", "plain", None,
                       {"jacobian": JACOBIAN, "jacobian_projections": 1}, {}, expected=_DOUBLE_BACKPROP),
}


def model(sizes: tuple[int, ...] = SIZES) -> nn.Module:
    """The MLP of ``train_step.py`` with ``jr.dropout`` (prng masks, flax's) in the model."""
    return MLP(sizes, dropout=functools.partial(jrl.Dropout, mask_impl="prng"))


def option_step(name: str, sizes: tuple[int, ...] = SIZES, *, jit: bool = True,
                **overrides: Any) -> tuple[Callable, optax.GradientTransformation]:
    """``(step, optimizer)``: the engine step of configuration ``name`` (``plain`` is ``jaxreg_mlp_step()``).

    ``overrides`` replace keyword arguments of ``jr.make_train_step`` (the tests wrap the augment hook).
    """
    option = OPTIONS[name]
    optimizer = option.optimizer()
    loss_fn = optax.softmax_cross_entropy if option.soft_labels else optax.softmax_cross_entropy_with_integer_labels
    step = jr.make_train_step(jr.linen_apply(model(sizes)), loss_fn, optimizer,
                              penalties=[(jr.l2, L2, jr.kernel_mask)], jit=jit,
                              **{**option.step_options, **overrides})
    return step, optimizer


def option_state(name: str, params: dict, optimizer: optax.GradientTransformation) -> jr.TrainState:
    """A fresh state for configuration ``name`` (the key of ``train_step.jaxreg_state``)."""
    return jr.create_train_state(params, optimizer, jax.random.key(STATE_SEED), **OPTIONS[name].state_options)


def option_labels(name: str, y: jax.Array, classes: int) -> jax.Array:
    """``y`` as configuration ``name`` takes it: integer labels, or float32 one-hot rows."""
    return jax.nn.one_hot(y, classes, dtype=jnp.float32) if OPTIONS[name].soft_labels else y


def compiled_steps(names: tuple[str, ...], sizes: tuple[int, ...], x: jax.Array, y: jax.Array,
                   params: dict) -> dict[str, tuple[Any, jr.TrainState, jax.Array]]:
    """``name -> (compiled step, state, labels)``: each step compiled once, ahead of time.

    ``jax.jit(step, donate_argnums=0).lower(...).compile()`` is the program ``make_train_step`` jits (same
    function, same donation, the five-argument call); compiling it here gives its cost analysis for free.
    """
    out = {}
    for name in names:
        step, tx = option_step(name, sizes, jit=False)
        state = option_state(name, params, tx)
        labels = option_labels(name, y, sizes[-1])
        compiled = jax.jit(step, donate_argnums=0).lower(state, x, labels, None, None).compile()
        out[name] = (compiled, state, labels)
    return out


def _cost(compiled: Any) -> dict[str, float]:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return {"flops": float(cost.get("flops", float("nan"))), "bytes": float(cost.get("bytes accessed", float("nan")))}


def paired(fns: dict[str, Callable], bases: dict[str, str], *, blocks: int,
           rounds: int) -> tuple[dict[str, float], dict[str, float]]:
    """``(seconds, ratios)``: medians over ``blocks`` interleaved blocks of ``rounds`` rounds each.

    ``ratios[name]`` is the median over blocks of ``t[name] / t[bases[name]]`` (samples moments apart),
    as ``benchmarks.penalties.paired_ratios`` does for one base; here each option has its own baseline.
    """
    time_interleaved(fns, repeats=1, warmup=2)
    per_block = [time_interleaved(fns, repeats=rounds, warmup=0) for _ in range(blocks)]
    seconds = {name: statistics.median(t[name] for t in per_block) for name in fns}
    ratios = {name: statistics.median(t[name] / t[base] for t in per_block) for name, base in bases.items()}
    return seconds, ratios


class _Runner(Stepper):
    """A :class:`Stepper` over a compiled step that takes all five arguments (weights, value: None)."""

    def __init__(self, compiled: Any, state: jr.TrainState, x: jax.Array, y: jax.Array, *, count: int):
        super().__init__(compiled, state, x, y, None, None, count=count)


def run(quick: bool) -> list[Result]:
    """One row per option: its step time over the plain step's, same run, interleaved."""
    (blocks, rounds), count = ((2, 2), 2) if quick else ((20, 3), 3)
    x, y = mlp_data(BATCH)
    params = mlp_params()
    steps = compiled_steps(tuple(OPTIONS), SIZES, x, y, params)
    runners = {name: _Runner(compiled, state, x, labels, count=count)
               for name, (compiled, state, labels) in steps.items()}
    bases = {name: option.baseline for name, option in OPTIONS.items() if option.baseline is not None}
    seconds, ratios = paired(runners, bases, blocks=blocks, rounds=rounds)
    costs = {name: _cost(compiled) for name, (compiled, _, _) in steps.items()}
    case = f"MLP 784-512-512-10 b{BATCH} f32, dropout 0.5, L2, Adam"
    rows = []
    for name, base in bases.items():
        option = OPTIONS[name]
        flops = costs[name]["flops"] / costs[base]["flops"]
        extra_mib = (costs[name]["bytes"] - costs[base]["bytes"]) / 2**20
        note = (f"ratio: median of {blocks} per-block ratios; XLA cost analysis: {flops:.2f}x the FLOPs, "
                f"{extra_mib:+.1f} MiB accessed ({costs[base]['bytes'] / 2**20:.1f} MiB plain)")
        if option.expected:
            note = f"{option.expected}; measured {ratios[name]:.2f}x; " + note
        if name == "mixup":
            note += f"; one-hot plain step / integer-label plain step {seconds['plain_soft'] / seconds['plain']:.3f}"
        skipped = {n: int(runners[n].state.skipped) for n in (name, base)}
        if any(skipped.values()):  # a skipped update is cheaper: the ratio would not compare equal work
            note += f"; steps skipped (non-finite) while timing: {skipped}"
        rows.append(Result(BENCH, case, f"+ {option.description}", OPTIONS[base].description,
                           seconds[name] / count, seconds[base] / count, ratios[name], target=option.target,
                           note=note))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    from benchmarks.__main__ import format_table

    print(format_table(run(parser.parse_args().quick)))
