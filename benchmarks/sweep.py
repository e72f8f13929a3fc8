"""Benchmark of jaxreg.cv's vmapped training: K members as one program vs the same K members one by one.

The members are a sweep over (L2 coefficient, dropout rate) of a small MLP (64-128-10, dropout, L2) on
digits-sized random data (1000 x 64, 10 classes; 200 validation examples), a few epochs with validation and
history, for K = 1, 5, 20. Ours: ``jr.sweep_fit`` with K settings (one vmapped, jit-compiled epoch program).
Reference: the same K members trained one after the other, each by ``jr.sweep_fit`` with one setting, i.e.
the same single-member program compiled once and called K times with the setting as an argument, so that
neither side pays compilation inside the timing (both are warmed up; compile-inclusive first calls are in
the notes). An extra informational row checks that this one-member baseline is not handicapped: it compares
``jr.sweep_fit`` with K=1 against ``jr.fit`` of that member.

Ratio = sequential / vmapped seconds (a speedup; higher is better). Run ``python -m benchmarks.sweep``
(``--quick`` for a short run). Absolute times are context only (noisy shared machines).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxreg as jr
from benchmarks._timing import Result, time_interleaved

BENCH = "sweep"
N, N_VAL, D, H, C, BATCH = 1000, 200, 64, 128, 10, 100
MEMBERS = (1, 5, 20)
TARGET_K, TARGET = 20, 1.5
LOSS = optax.softmax_cross_entropy_with_integer_labels
TX = optax.adam(1e-3)


def _make_apply(rate: Any) -> Callable:
    def apply_fn(params, model_state, x, *, key, training):
        h = jax.nn.relu(x @ params["dense0"]["kernel"] + params["dense0"]["bias"])
        h = jr.dropout(key, h, rate, deterministic=not training)
        return h @ params["dense1"]["kernel"] + params["dense1"]["bias"], model_state

    return apply_fn


def _make_step(h: dict[str, jax.Array]) -> Callable:
    return jr.make_train_step(_make_apply(h["rate"]), LOSS, TX, penalties=[(jr.l2, h["l2"], jr.kernel_mask)],
                              jit=False)


EVAL = jr.make_eval_step(_make_apply(0.0), LOSS)


def _data() -> tuple[tuple[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
    kx, kw, kv = jax.random.split(jax.random.key(0), 3)
    w = jax.random.normal(kw, (D, C))
    x, xv = jax.random.normal(kx, (N, D)), jax.random.normal(kv, (N_VAL, D))
    noisy = lambda a, k: jnp.argmax(a @ w + 2.0 * jax.random.normal(k, (a.shape[0], C)), axis=-1)  # noqa: E731
    return (x, noisy(x, jax.random.key(1))), (xv, noisy(xv, jax.random.key(2)))


def _state() -> Any:
    k0, k1 = jax.random.split(jax.random.key(3))
    params = {
        "dense0": {"kernel": jax.random.normal(k0, (D, H)) / np.sqrt(D), "bias": jnp.zeros(H)},
        "dense1": {"kernel": jax.random.normal(k1, (H, C)) / np.sqrt(H), "bias": jnp.zeros(C)},
    }
    return jr.create_train_state(params, TX, jax.random.key(4))


def _hparams(k: int) -> dict[str, jax.Array]:
    return {"l2": jnp.logspace(-5, -2, k, dtype=jnp.float32), "rate": jnp.linspace(0.0, 0.5, k, dtype=jnp.float32)}


def run(quick: bool) -> list[Result]:
    """K = 1, 5, 20 members, vmapped vs sequential; ``quick`` uses fewer epochs and repetitions."""
    epochs = 2 if quick else 4
    repeats, warmup = (3, 1) if quick else (10, 2)
    train, val = _data()
    state = _state()  # sweep_fit copies it, so one state serves every call
    common = dict(epochs=epochs, batch_size=BATCH, val_data=val, eval_step=EVAL)
    case_model = f"MLP {D}-{H}-{C}, {N}x{D}, {epochs} epochs"

    def vmapped(h):
        return lambda: jr.sweep_fit(state, _make_step, train, hparams=h, **common)[0].params

    def sequential(h, k):
        singles = [jax.tree.map(lambda a, i=i: a[i:i + 1], h) for i in range(k)]
        return lambda: [jr.sweep_fit(state, _make_step, train, hparams=s, **common)[0].params for s in singles]

    results: list[Result] = []
    for k in MEMBERS:
        h = _hparams(k)
        fns = {"vmapped": vmapped(h), "sequential": sequential(h, k)}
        # First call of the vmapped program: compilation + one run (the one-member program of the sequential
        # side is the K=1 program, compiled once for every K).
        t0 = time.perf_counter()
        jax.block_until_ready(fns["vmapped"]())
        first = time.perf_counter() - t0
        t = time_interleaved(fns, repeats=repeats, warmup=warmup)
        results.append(
            Result(
                BENCH, f"K={k}: {case_model}", f"jr.sweep_fit, {k} member{'s' * (k > 1)} vmapped",
                f"{k} x jr.sweep_fit of 1 member", t["vmapped"], t["sequential"], t["sequential"] / t["vmapped"],
                target=TARGET if k == TARGET_K else None, higher_is_better=True,
                note=f"speedup = sequential / vmapped; compile + 1st run of the {k}-member program: {first:.1f} s",
            )
        )

    # Is the one-member baseline fair? jr.fit of the same member (its own jitted step, Python constants).
    # A nonzero rate: with a Python 0.0, jr.dropout would skip the mask that the traced rate must compute.
    one = {"l2": 1e-4, "rate": 0.25}
    step = jr.make_train_step(_make_apply(one["rate"]), LOSS, TX, penalties=[(jr.l2, one["l2"], jr.kernel_mask)])
    h1 = {name: jnp.full((1,), value, jnp.float32) for name, value in one.items()}
    t = time_interleaved(
        {
            "members": lambda: jr.sweep_fit(state, _make_step, train, hparams=h1, **common)[0].params,
            "fit": lambda: jr.fit(jr.create_train_state(state.params, TX, state.key), step, train, progress=False,
                                  **common)[0].params,
        },
        repeats=repeats,
        warmup=warmup,
    )
    results.append(
        Result(BENCH, f"K=1: {case_model}", "jr.sweep_fit, 1 member", "jr.fit", t["members"], t["fit"],
               t["members"] / t["fit"], note="overhead of the members machinery for one model (informational)")
    )
    return results


def _print_table(results: list[Result]) -> None:
    print(f"{'case':<40} {'ours':<34} {'reference':<32} {'ours ms':>9} {'ref ms':>9} {'ratio':>6} target")
    for r in results:
        target = "" if r.target is None else f"{'>=' if r.higher_is_better else '<='} {r.target:g} "
        target += {True: "met", False: "MISSED", None: ""}[r.met]
        print(f"{r.case:<40} {r.ours:<34} {r.ref:<32} {r.ours_s * 1e3:9.1f} {r.ref_s * 1e3:9.1f} "
              f"{r.ratio:6.2f} {target}")
        if r.note:
            print(f"{'':<40} note: {r.note}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs and repetitions")
    _print_table(run(parser.parse_args().quick))
