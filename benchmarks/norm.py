"""Batch norm: ``jr.batch_norm`` against ``flax.linen.BatchNorm``, training mode, jitted, float32.

Two cases per shape: the forward pass alone (``y`` and the updated running statistics) and forward+backward
(``jax.grad`` of ``sum(y * g)`` with respect to ``x`` and the parameters), the one with a target: ours must
take at most 0.75x flax's time. Both sides are checked to agree before anything is timed.

Run: ``python -m benchmarks.norm [--quick]``.
"""

from __future__ import annotations

import argparse
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import jaxreg as jr
from benchmarks._timing import Result, time_interleaved

SHAPES = [(256, 4096), (64, 32, 32, 128)]
FWD_BWD_TARGET = 0.75


def _inputs(shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array, dict[str, jax.Array], jr.BatchNormState]:
    kx, kg, ks, kb = jax.random.split(jax.random.key(0), 4)
    features = shape[-1]
    x = 1.0 + 2.0 * jax.random.normal(kx, shape, jnp.float32)
    g = jax.random.normal(kg, shape, jnp.float32)
    params = {
        "scale": 1.0 + 0.1 * jax.random.normal(ks, (features,), jnp.float32),
        "bias": 0.1 * jax.random.normal(kb, (features,), jnp.float32),
    }
    _, state = jr.batch_norm_init(features)
    return x, g, params, state


def _functions(state: jr.BatchNormState):
    module = nn.BatchNorm(use_running_average=False, momentum=0.99, epsilon=1e-5)
    flax_stats = jr.to_flax_batch_stats(state)

    def ours_fwd(x, params):
        return jr.batch_norm(x, params, state, training=True)

    def flax_fwd(x, params):
        return module.apply({"params": params, "batch_stats": flax_stats}, x, mutable=["batch_stats"])

    def grad_of(fwd):
        return jax.grad(lambda x, params, g: jnp.sum(fwd(x, params)[0] * g), argnums=(0, 1))

    return {
        "fwd": (jax.jit(ours_fwd), jax.jit(flax_fwd)),
        "fwd+bwd": (jax.jit(grad_of(ours_fwd)), jax.jit(grad_of(flax_fwd))),
    }


def run(quick: bool) -> list[Result]:
    """Time forward and forward+backward on both shapes; ratios are ours / flax (lower is better)."""
    repeats, warmup = (7, 2) if quick else (30, 3)
    results = []
    for shape in SHAPES:
        x, g, params, state = _inputs(shape)
        for case, (ours, ref) in _functions(state).items():
            args = (x, params) if case == "fwd" else (x, params, g)
            for a, b in zip(jax.tree.leaves(ours(*args)), jax.tree.leaves(ref(*args))):
                np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-3)
            times = time_interleaved(
                {"ours": functools.partial(ours, *args), "ref": functools.partial(ref, *args)},
                repeats=repeats,
                warmup=warmup,
            )
            results.append(
                Result(
                    benchmark="norm",
                    case=f"batch_norm {case} {'x'.join(map(str, shape))} f32",
                    ours="jr.batch_norm",
                    ref="flax.linen.BatchNorm",
                    ours_s=times["ours"],
                    ref_s=times["ref"],
                    ratio=times["ours"] / times["ref"],
                    target=FWD_BWD_TARGET if case == "fwd+bwd" else None,
                    note=f"{jax.devices()[0].platform}, training mode, jit",
                )
            )
    return results


def _print_table(results: list[Result]) -> None:
    header = f"{'case':<40} {'ours ms':>9} {'flax ms':>9} {'ratio':>7} {'target':>7}  met"
    print(header)
    print("-" * len(header))
    for r in results:
        target = "" if r.target is None else f"{r.target:.2f}"
        met = "" if r.met is None else ("yes" if r.met else "NO")
        print(f"{r.case:<40} {r.ours_s * 1e3:>9.3f} {r.ref_s * 1e3:>9.3f} {r.ratio:>7.3f} {target:>7}  {met}")


def keep_freed_memory_in_heap() -> None:
    """Make glibc serve large buffers from its heap and keep freed ones there (``mallopt``), Linux only.

    By default glibc maps every buffer of 32 MiB or more with ``mmap`` and unmaps it when freed, so each
    call's fresh gradient buffer of the 4-D case is page-faulted in again (about 8,000 faults for 32 MiB,
    several milliseconds on both sides). With ``M_MMAP_THRESHOLD`` raised to 1 GiB and ``M_TRIM_THRESHOLD``
    to 2 GiB freed buffers are reused: the figures then measure the normalization, not the kernel's page
    faults (see NOTES.md). Must run before JAX allocates anything that matters; the process is changed for
    good, so this is only offered from the command line.

    Raises:
      OSError: if glibc's ``mallopt`` is not available or refuses the settings.
    """
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    if not (libc.mallopt(m_mmap_threshold, 1 << 30) and libc.mallopt(m_trim_threshold, 1 << 31)):
        raise OSError("glibc mallopt refused M_MMAP_THRESHOLD / M_TRIM_THRESHOLD")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--reuse-freed-memory", action="store_true",
                        help="keep freed buffers in glibc's heap (no page faults on fresh outputs); Linux only")
    args = parser.parse_args()
    if args.reuse_freed_memory:
        keep_freed_memory_in_heap()
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}")
    _print_table(run(quick=args.quick))
