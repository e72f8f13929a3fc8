"""Benchmarks for jaxreg.noise: dropout against flax (linen and nnx) and against the memory floor, every noise
function forward and forward+backward, and the gradient-residual choice (recompute the mask vs store it).

Run ``python -m benchmarks.noise`` (``--quick`` for a short run). All functions are jitted and called with
the same key; ratios are ``ours / reference`` from interleaved medians in one process (``_timing``).
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
from flax import nnx
import jax.numpy as jnp
import numpy as np

import jaxreg as jr
from benchmarks._timing import Result, time_interleaved
from jaxreg import _noise_kernels, noise
from jaxreg.flax import linen as jrl
from jaxreg.flax import nnx as jrn

BENCH = "noise"
SHAPES = ((256, 4096), (64, 32, 32, 128))
RATE = 0.5


def _case(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape)) + " f32"


def _noise_fns(shape: tuple[int, ...]) -> dict[str, Callable[[Any, jax.Array], jax.Array]]:
    fns: dict[str, Callable[[Any, jax.Array], jax.Array]] = {
        "dropout[prng]": lambda k, x: jr.dropout(k, x, RATE),
        "dropout[hash]": lambda k, x: jr.dropout(k, x, RATE, mask_impl="hash"),
        "gaussian_dropout": lambda k, x: jr.gaussian_dropout(k, x, RATE),
        "alpha_dropout": lambda k, x: jr.alpha_dropout(k, x, RATE),
        "alpha_dropout[hash]": lambda k, x: jr.alpha_dropout(k, x, RATE, mask_impl="hash"),
        "gaussian_noise": lambda k, x: jr.gaussian_noise(k, x, 0.1),
        "drop_path": lambda k, x: jr.drop_path(k, x, RATE),
        "drop_connect": lambda k, x: jr.drop_connect(k, x, RATE),
    }
    if len(shape) >= 3:
        fns["spatial_dropout"] = lambda k, x: jr.spatial_dropout(k, x, RATE)
    return fns


def _floor(x: jax.Array) -> jax.Array:
    return x * jnp.asarray(1.0 / (1.0 - RATE), x.dtype)


def _grad_of_sum(f: Callable[[jax.Array], jax.Array]) -> Callable[[jax.Array], jax.Array]:
    return jax.grad(lambda x: jnp.sum(f(x)))


def _split_vjp(f: Callable[[jax.Array], jax.Array], x: jax.Array):
    """Forward and backward as two compiled programs, so residuals really live in memory in between.

    Returns ``(fwd, bwd, residual_bytes)`` with ``fwd(x) -> (y, residuals)`` and ``bwd(residuals, g)``.
    """
    treedef: dict[str, Any] = {}

    def fwd(x):
        y, vjp_fn = jax.vjp(f, x)
        leaves, treedef["td"] = jax.tree.flatten(vjp_fn)
        return y, leaves

    fwd_j = jax.jit(fwd)
    _, leaves = fwd_j(x)
    nbytes = sum(int(np.prod(l.shape)) * l.dtype.itemsize for l in leaves if hasattr(l, "dtype"))
    bwd_j = jax.jit(lambda leaves, g: jax.tree.unflatten(treedef["td"], leaves)(g)[0])
    return fwd_j, bwd_j, nbytes


def _plain_where_dropout(key: Any, x: jax.Array) -> jax.Array:
    """Dropout by plain autodiff, no custom_vjp: what the residual choice is compared with."""
    keep = _noise_kernels._prng_keep(key, _noise_kernels._keep_threshold(1.0 - RATE), None, x.shape)
    return jnp.where(keep, x * jnp.asarray(1.0 / (1.0 - RATE), x.dtype), 0.0)


def _residual_results(shape: tuple[int, ...], key: Any, x: jax.Array, repeats: int) -> list[Result]:
    out = []
    g = jnp.ones(shape, x.dtype)
    _, _, plain_bytes = _split_vjp(functools.partial(_plain_where_dropout, key), x)
    for impl in ("prng", "hash"):
        variants = {}
        for recompute in (False, True):
            f = functools.partial(
                noise._bernoulli_dropout, "dropout", key, rate=RATE, deterministic=False, broadcast_dims=(),
                mask_impl=impl, example_ids=None, recompute=recompute,
            )
            fwd, bwd, nbytes = _split_vjp(f, x)
            variants[recompute] = (fwd, bwd, nbytes)

        def step(fwd, bwd):
            _, res = fwd(x)
            return bwd(res, g)

        t = time_interleaved(
            {str(r): functools.partial(step, v[0], v[1]) for r, v in variants.items()}, repeats=repeats
        )
        out.append(
            Result(
                BENCH, _case(shape), f"dropout[{impl}] recompute mask in bwd",
                f"dropout[{impl}] store bool mask", t["True"], t["False"], t["True"] / t["False"],
                note=(
                    f"fwd+bwd as 2 programs; residual bytes: recompute {variants[True][2]}, "
                    f"store {variants[False][2]}, plain autodiff (no custom_vjp) {plain_bytes}"
                ),
            )
        )
    return out


def flax_pairs() -> dict[str, tuple[str, str, Callable[[Any, jax.Array], jax.Array], Callable]]:
    """``name -> (ours label, reference label, ours(key, x), reference(key, x))``, jitted.

    Each pair draws its mask from the same key on both sides (linen: ``rngs={"dropout": key}``, whose
    ``make_rng`` derives the layer's key; nnx: ``nnx.Rngs(dropout=key)``) and must return the same array, bit
    for bit: the timing compares equal work. The jaxreg layers are ``jr.dropout`` inside flax's module API.
    """
    return {
        "linen": (
            "jaxreg.flax.linen.Dropout (prng)", "flax.linen.Dropout",
            jax.jit(lambda k, x: jrl.Dropout(RATE, deterministic=False).apply({}, x, rngs={"dropout": k})),
            jax.jit(lambda k, x: nn.Dropout(RATE, deterministic=False).apply({}, x, rngs={"dropout": k})),
        ),
        "nnx": (
            "jaxreg.flax.nnx.Dropout (prng)", "flax.nnx.Dropout",
            jax.jit(lambda k, x: jrn.Dropout(RATE, rngs=nnx.Rngs(dropout=k))(x)),
            jax.jit(lambda k, x: nnx.Dropout(RATE, rngs=nnx.Rngs(dropout=k))(x)),
        ),
    }


def run(quick: bool) -> list[Result]:
    """All noise benchmarks; ``quick`` uses the first shape and fewer repeats."""
    repeats = 10 if quick else 30
    shapes = SHAPES[:1] if quick else SHAPES
    key = jax.random.key(0)
    results: list[Result] = []
    for shape in shapes:
        case = _case(shape)
        x = jax.random.normal(jax.random.key(1), shape, jnp.float32)
        fns = _noise_fns(shape)
        jitted = {name: jax.jit(f) for name, f in fns.items()}
        floor = jax.jit(_floor)

        for ours_label, ref_label, ours, ref in flax_pairs().values():
            if not bool(jnp.array_equal(ours(key, x), ref(key, x))):
                raise AssertionError(f"{ours_label} and {ref_label} drew different masks from one key")
            t = time_interleaved({"ours": lambda f=ours: f(key, x), "ref": lambda f=ref: f(key, x)},
                                 repeats=repeats)
            results.append(Result(BENCH, case, ours_label, ref_label, t["ours"], t["ref"], t["ours"] / t["ref"],
                                  target=1.0, note="same key, same masks (checked before timing)"))

        t = time_interleaved(
            {"hash": lambda: jitted["dropout[hash]"](key, x), "floor": lambda: floor(x)}, repeats=repeats
        )
        results.append(
            Result(BENCH, case, "jr.dropout(mask_impl='hash')", "x * c (memory floor)", t["hash"],
                   t["floor"], t["hash"] / t["floor"], target=1.5)
        )

        # Same normals as jax.random.normal (bit for bit), from the fused Threefry (informational).
        jax_normal = jax.jit(lambda k, x: x + 0.1 * jax.random.normal(k, x.shape, x.dtype))
        t = time_interleaved(
            {"ours": lambda: jitted["gaussian_noise"](key, x), "ref": lambda: jax_normal(key, x)},
            repeats=repeats,
        )
        results.append(
            Result(BENCH, case, "jr.gaussian_noise", "x + s * jax.random.normal", t["ours"], t["ref"],
                   t["ours"] / t["ref"], note="same normals, bit for bit")
        )

        # Every function, forward and forward+backward, against the floor (informational).
        floor_bwd = jax.jit(_grad_of_sum(_floor))
        for name in fns:
            fwd_f = jitted[name]
            bwd_f = jax.jit(_grad_of_sum(functools.partial(fns[name], key)))
            t = time_interleaved(
                {
                    "fwd": lambda f=fwd_f: f(key, x),
                    "floor": lambda: floor(x),
                    "fwdbwd": lambda f=bwd_f: f(x),
                    "floor_bwd": lambda: floor_bwd(x),
                },
                repeats=repeats,
            )
            results.append(Result(BENCH, case, f"{name} fwd", "x * c fwd", t["fwd"], t["floor"],
                                  t["fwd"] / t["floor"]))
            results.append(Result(BENCH, case, f"{name} grad(sum)", "grad(sum(x * c))", t["fwdbwd"],
                                  t["floor_bwd"], t["fwdbwd"] / t["floor_bwd"]))

        results.extend(_residual_results(shape, key, x, repeats))
    return results


def _print_table(results: list[Result]) -> None:
    print(f"{'case':<20} {'ours':<42} {'reference':<34} {'ours ms':>9} {'ref ms':>9} {'ratio':>6} target")
    for r in results:
        target = "" if r.target is None else f"{'>=' if r.higher_is_better else '<='} {r.target:g} "
        target += {True: "met", False: "MISSED", None: ""}[r.met]
        print(f"{r.case:<20} {r.ours:<42} {r.ref:<34} {r.ours_s * 1e3:9.3f} {r.ref_s * 1e3:9.3f} "
              f"{r.ratio:6.2f} {target}")
        if r.note:
            print(f"{'':<20} note: {r.note}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="first shape only, fewer repeats")
    args = parser.parse_args()
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}")
    _print_table(run(args.quick))
