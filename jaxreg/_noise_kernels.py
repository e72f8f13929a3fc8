"""The kernels behind :mod:`jaxreg.noise`: fused random bits, keep masks and masked scaling (private).

Everything here runs inside the jitted kernels that the public noise functions call after validating their
arguments; nothing here validates. Why it is written the way it is, with the measurements
(``benchmarks/noise.py``: shared 2-core CPU, float32, interleaved medians, three runs):

* **Threefry, unrolled.** For threefry keys, :func:`_threefry2x32` writes the 20-round hash out as
  elementwise uint32 ops, bit-identical to ``threefry2x32_p``. JAX lowers the primitive on CPU as a rolled
  5-step loop that round-trips two uint32 arrays through memory per step; written out, XLA fuses the hash,
  the mask and the multiply into one loop. The same bits as ``jax.random.bits`` (hence flax's dropout
  masks) then cost 0.19-0.27x flax's time on (256, 4096) and 0.22-0.25x on (64, 32, 32, 128). Other key
  implementations (rbg, unsafe_rbg) go through ``jax.random.bits``.
* **Keep decision in integer space.** ``(bits >> 9) < ceil(keep_prob * 2**23)`` is exactly
  ``jax.random.uniform(bits) < keep_prob``, so the mask is ``jax.random.bernoulli``'s without a float
  conversion.
* **Hash masks.** One 32-bit seed from the key, expanded elementwise with the lowbias32 finalizer of
  ``seed ^ (index * 0x9E3779B9)``: 0.95-1.14x the time of ``x * c`` alone (the memory floor), against
  3.7-6x for the PRNG path on (256, 4096).
* **Lean residuals.** Plain autodiff of ``jnp.where(keep, x * scale, 0)`` keeps the full-size bool mask and
  a full-size float zeros array (5 bytes per element, and a broadcast mask at full size). The custom VJPs
  below keep only the bool mask at its broadcast shape (:func:`_masked_scale_store`, the PRNG default:
  recomputing Threefry in the backward pass took 1.11-1.19x the time on (256, 4096) and 1.03-1.12x on
  (64, 32, 32, 128)) or only the 32-bit seed (:func:`_masked_scale_recompute`, the hash default: 0.75-0.93x
  and 0.86-0.98x the time of storing the mask, so it wins on time and memory). These residuals are what
  crosses between a forward and a backward *program*; inside one compiled program that holds both passes (a
  training step) XLA:CPU fuses the PRNG mask's producer into the forward and the backward consumer alike, so
  the mask is drawn twice and never stored (about 4% of the MLP step of ``benchmarks/train_step.py``; the
  ways tried to make XLA keep it are in ``benchmarks/NOTES.md``, section 2).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxreg._typing import KeyArray
from jaxreg._validate import is_concrete

__all__ = [
    "MASK_IMPLS",
    "RECOMPUTE_DEFAULT",
    "bernoulli_kernel",
    "keep_threshold_of_rate",
    "gaussian_noise_kernel",
    "gaussian_dropout_kernel",
]

MASK_IMPLS = ("prng", "hash")

_GOLDEN = 0x9E3779B9  # 2**32 / golden ratio: consecutive indices land far apart
_MANTISSA_BITS = 23  # float32 uniforms carry 23 random bits: (bits >> 9) is the mantissa


# ----------------------------------------------------------------------------------------------------------
# Random bits


def _rotl(v: jax.Array, r: int) -> jax.Array:
    return lax.shift_left(v, jnp.uint32(r)) | lax.shift_right_logical(v, jnp.uint32(32 - r))


def _threefry2x32(k1: jax.Array, k2: jax.Array, x0: jax.Array, x1: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Threefry-2x32 (20 rounds), unrolled in elementwise ops: bit-identical to ``threefry2x32_p``.

    JAX lowers the primitive on CPU as a 5-step while loop whose every step writes two full uint32 arrays
    to memory; written out like this, XLA fuses the whole hash, and the mask, into one loop.
    """
    ks = (k1, k2, k1 ^ k2 ^ jnp.uint32(0x1BD11BDA))
    rotations = ((13, 15, 26, 6), (17, 29, 16, 24))
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):
        for r in rotations[i % 2]:
            x0 = x0 + x1
            x1 = x0 ^ _rotl(x1, r)
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + jnp.uint32(i + 1)
    return x0, x1


def _materialize(a: jax.Array) -> jax.Array:
    """Identity that makes XLA compute ``a`` once, as its own buffer, before it is broadcast.

    XLA fuses cheap integer producers into their consumers even through a broadcast, so a per-row key or a
    (batch, 1, 1, channels) mask would be recomputed for every element of x (measured: spatial dropout as
    slow as full dropout, 5x the memory floor). A reduce is never fused into a consumer, and
    ``max(a, 0)`` is ``a`` for unsigned data. (``lax.optimization_barrier`` did not survive XLA:CPU's
    pipeline: the compiled program still had one fused loop.)
    """
    if a.dtype == jnp.bool_:
        return _materialize(a.astype(jnp.uint8)).astype(jnp.bool_)
    return jnp.max(jnp.stack([a, jnp.zeros_like(a)], axis=-1), axis=-1)


def _flat_counter(shape: tuple[int, ...], multiplier: int = 1) -> jax.Array:
    """``multiplier *`` row-major element index, mod 2**32, from per-axis iotas (SPMD-friendly, as in
    ``jax.random``); the multiplier is folded into the per-axis strides."""
    if not shape:
        return jnp.zeros((), jnp.uint32)
    strides = [int(s) * multiplier % 2**32 for s in np.cumprod((1, *shape[:0:-1]))[::-1]]
    terms = [lax.broadcasted_iota(jnp.uint32, shape, d) * jnp.uint32(s) for d, s in enumerate(strides)]
    return functools.reduce(lax.add, terms)


def _fused_threefry_applies(key: KeyArray, size: int) -> bool:
    return (
        jax.random.key_impl(key) == "threefry2x32"
        and size < 2**32
        and bool(jax.config.jax_threefry_partitionable)
    )


def _random_bits(key: KeyArray, shape: tuple[int, ...]) -> jax.Array:
    """Exactly ``jax.random.bits(key, shape, uint32)``; fused for threefry keys."""
    if not _fused_threefry_applies(key, math.prod(shape)):
        return jax.random.bits(key, shape, jnp.uint32)
    k1, k2 = jax.random.key_data(key)
    w0, w1 = _threefry2x32(k1, k2, jnp.zeros((), jnp.uint32), _flat_counter(shape))
    return w0 ^ w1  # partitionable jax.random.bits: counter (hi, lo) = (0, index), words XOR-ed


def _random_bits_per_row(key: KeyArray, example_ids: jax.Array, row_shape: tuple[int, ...]) -> jax.Array:
    """``vmap(lambda i: jax.random.bits(fold_in(key, i), row_shape, uint32))(example_ids)``; fused."""
    batch = example_ids.shape[0]
    if not _fused_threefry_applies(key, math.prod(row_shape)) or example_ids.dtype.itemsize > 4:
        row_keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, example_ids)
        return jax.vmap(lambda k: jax.random.bits(k, row_shape, jnp.uint32))(row_keys)
    k1, k2 = jax.random.key_data(key)
    # fold_in(key, i) = threefry(key, (0, uint32(i))) for 32-bit ids.
    r1, r2 = _threefry2x32(k1, k2, jnp.zeros((), jnp.uint32), example_ids.astype(jnp.uint32))
    col = (batch,) + (1,) * len(row_shape)
    w0, w1 = _threefry2x32(
        _materialize(r1).reshape(col),
        _materialize(r2).reshape(col),
        jnp.zeros((), jnp.uint32),
        _flat_counter((1, *row_shape)),
    )
    return w0 ^ w1


def _uniform_bits_to_normal(bits: jax.Array) -> jax.Array:
    """float32 standard normals from uint32 bits, the exact arithmetic of ``jax.random.normal``."""
    lo = np.nextafter(np.float32(-1.0), np.float32(0.0), dtype=np.float32)
    hi = np.float32(1.0)
    mantissa = lax.shift_right_logical(bits, jnp.uint32(32 - _MANTISSA_BITS)) | jnp.uint32(0x3F800000)
    floats = lax.bitcast_convert_type(mantissa, jnp.float32) - jnp.float32(1.0)
    u = lax.max(jnp.float32(lo), floats * jnp.float32(hi - lo) + jnp.float32(lo))
    return jnp.float32(np.sqrt(2)) * lax.erf_inv(u)


def _normal(key: KeyArray, shape: tuple[int, ...], example_ids: jax.Array | None) -> jax.Array:
    """``jax.random.normal(key, shape)`` in float32; per example (``fold_in(key, id)``) with ids."""
    if example_ids is None:
        return _uniform_bits_to_normal(_random_bits(key, shape))
    return _uniform_bits_to_normal(_random_bits_per_row(key, example_ids, shape[1:]))


# ----------------------------------------------------------------------------------------------------------
# Keep masks


def _keep_threshold(keep_prob: Any) -> jax.Array | np.ndarray:
    """``ceil(float32(keep_prob) * 2**23)`` as uint32: ``mantissa < t`` iff ``uniform < keep_prob``."""
    if is_concrete(keep_prob):
        return np.uint32(math.ceil(float(np.float32(keep_prob)) * 2.0**_MANTISSA_BITS))
    kp = jnp.asarray(keep_prob, jnp.float32)
    return jnp.ceil(kp * jnp.float32(2.0**_MANTISSA_BITS)).astype(jnp.uint32)


def _keep_from_bits(bits: jax.Array, threshold: Any) -> jax.Array:
    mantissa = lax.shift_right_logical(bits, jnp.uint32(32 - _MANTISSA_BITS))
    return mantissa < threshold


def _lowbias32(h: jax.Array) -> jax.Array:
    """Chris Wellons' lowbias32 finalizer: a bijection on uint32 with near-ideal avalanche."""
    h = h ^ lax.shift_right_logical(h, jnp.uint32(16))
    h = h * jnp.uint32(0x7FEB352D)
    h = h ^ lax.shift_right_logical(h, jnp.uint32(15))
    h = h * jnp.uint32(0x846CA68B)
    return h ^ lax.shift_right_logical(h, jnp.uint32(16))


def _hash_bits(seed: jax.Array, golden_counter: jax.Array) -> jax.Array:
    """lowbias32(seed ^ index * golden ratio); the caller gives ``index * 0x9E3779B9`` (mod 2**32)."""
    return _lowbias32(seed ^ golden_counter)


def _hash_seeds(key: KeyArray, example_ids: jax.Array | None) -> jax.Array:
    """One uint32 seed from the key, or one per example (the id hashed into it)."""
    seed = _random_bits(key, ())
    if example_ids is None:
        return _materialize(seed)
    golden_ids = example_ids.astype(jnp.uint32) * jnp.uint32(_GOLDEN)
    return _materialize(_lowbias32(_hash_bits(seed, golden_ids)))


def _hash_keep(seeds: jax.Array, threshold: Any, mask_shape: tuple[int, ...]) -> jax.Array:
    """Keep mask of ``mask_shape`` from a scalar seed, or from per-row seeds of shape ``(batch,)``."""
    if seeds.ndim == 0:
        counter = _flat_counter(mask_shape, _GOLDEN)
    else:
        counter = _flat_counter((1, *mask_shape[1:]), _GOLDEN)
        seeds = seeds.reshape((-1,) + (1,) * (len(mask_shape) - 1))
    return _keep_from_bits(_hash_bits(seeds, counter), threshold)


def _prng_keep(
    key: KeyArray, threshold: Any, example_ids: jax.Array | None, mask_shape: tuple[int, ...]
) -> jax.Array:
    """``jax.random.bernoulli(key, keep_prob, mask_shape)``, bit for bit, from integer comparisons."""
    if example_ids is None:
        return _keep_from_bits(_random_bits(key, mask_shape), threshold)
    return _keep_from_bits(_random_bits_per_row(key, example_ids, mask_shape[1:]), threshold)


def _keep_mask(
    keep_fn: Callable[..., jax.Array], *args: Any, mask_shape: tuple[int, ...], materialize: bool
) -> jax.Array:
    keep = keep_fn(*args, mask_shape=mask_shape)
    return _materialize(keep) if materialize else keep


# ----------------------------------------------------------------------------------------------------------
# Masked scaling with lean residuals, and the jitted kernels


@jax.custom_vjp
def _masked_scale_store(x: jax.Array, keep: jax.Array, scale: jax.Array) -> jax.Array:
    """``where(keep, x * scale, 0)``; the backward pass keeps only ``keep`` (bool, broadcast shape)."""
    return jnp.where(keep, x * scale, jnp.zeros((), x.dtype))


def _masked_scale_store_fwd(x, keep, scale):
    return _masked_scale_store(x, keep, scale), (keep, scale)


def _masked_scale_store_bwd(res, g):
    keep, scale = res
    return jnp.where(keep, g * scale, jnp.zeros((), g.dtype)), None, None


_masked_scale_store.defvjp(_masked_scale_store_fwd, _masked_scale_store_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _masked_scale_recompute(
    keep_fn: Callable[..., jax.Array], keep_args: Any, x: jax.Array, scale: jax.Array
) -> jax.Array:
    """``where(keep_fn(*keep_args), x * scale, 0)``; the backward pass recomputes the mask."""
    return jnp.where(keep_fn(*keep_args), x * scale, jnp.zeros((), x.dtype))


def _masked_scale_recompute_fwd(keep_fn, keep_args, x, scale):
    return _masked_scale_recompute(keep_fn, keep_args, x, scale), (keep_args, scale)


def _masked_scale_recompute_bwd(keep_fn, res, g):
    keep_args, scale = res
    # As jax.checkpoint(prevent_cse=True) does: ask XLA not to merge this recomputation with the forward
    # one, which would keep the forward mask alive until here after all.
    keep_args, g = lax.optimization_barrier((keep_args, g))
    zero_args = jax.tree.map(lambda _: None, keep_args)
    return zero_args, jnp.where(keep_fn(*keep_args), g * scale, jnp.zeros((), g.dtype)), None


_masked_scale_recompute.defvjp(_masked_scale_recompute_fwd, _masked_scale_recompute_bwd)

# Measured (see the module docstring): store the mask for the PRNG paths, recompute it for the hash.
RECOMPUTE_DEFAULT = {"prng": False, "hash": True}


@functools.partial(jax.jit, static_argnames=("mask_shape", "mask_impl", "recompute"))
def bernoulli_kernel(
    key: KeyArray,
    x: jax.Array,
    threshold: jax.Array,
    scale: jax.Array,
    shift_fill: tuple[jax.Array, jax.Array] | None,
    example_ids: jax.Array | None,
    *,
    mask_shape: tuple[int, ...],
    mask_impl: str,
    recompute: bool,
) -> jax.Array:
    """``where(keep, x * scale + shift, fill)`` (shift = fill = 0 without ``shift_fill``).

    Jitted so that eager calls compile one fused program per shape instead of dispatching the hash op by op;
    the rate only enters through ``threshold`` and ``scale``, so a new rate does not recompile.
    """
    # A mask smaller than x (broadcast_dims, spatial dropout, drop path) is computed once, not per element.
    materialize = math.prod(mask_shape) < x.size
    if mask_impl == "hash":
        keep_fn = functools.partial(_keep_mask, _hash_keep, mask_shape=mask_shape, materialize=materialize)
        keep_args: tuple[Any, ...] = (_hash_seeds(key, example_ids), threshold)
    else:
        keep_fn = functools.partial(_keep_mask, _prng_keep, mask_shape=mask_shape, materialize=materialize)
        keep_args = (key, threshold, example_ids)
    if recompute:
        y = _masked_scale_recompute(keep_fn, keep_args, x, scale)
    else:
        y = _masked_scale_store(x, keep_fn(*keep_args), scale)
    if shift_fill is not None:
        # x-independent part: no residual; XLA merges this mask with the forward one.
        y = y + jnp.where(keep_fn(*keep_args), *shift_fill)
    return y


def keep_threshold_of_rate(rate: Any) -> jax.Array:
    """uint32 ``ceil(float32(1 - rate) * 2**23)``: ``(bits >> 9) < t`` iff ``uniform(bits) < 1 - rate``.

    A concrete rate is subtracted in double precision and rounded once to float32, as
    ``jax.random.bernoulli(key, 1.0 - rate)`` (hence flax) does.
    """
    if is_concrete(rate):
        return jnp.asarray(_keep_threshold(1.0 - float(rate)), jnp.uint32)
    return _keep_threshold(jnp.float32(1) - jnp.asarray(rate, jnp.float32))


@jax.jit
def gaussian_noise_kernel(
    key: KeyArray, x: jax.Array, stddev: jax.Array, example_ids: jax.Array | None
) -> jax.Array:
    """``x + stddev * jax.random.normal(key, x.shape)`` (per row ``fold_in(key, id)`` with ids)."""
    return x + (stddev * _normal(key, x.shape, example_ids)).astype(x.dtype)


@jax.jit
def gaussian_dropout_kernel(
    key: KeyArray, x: jax.Array, stddev: jax.Array, example_ids: jax.Array | None
) -> jax.Array:
    """``x * (1 + stddev * jax.random.normal(key, x.shape))``, the noise in float32."""
    return x * (jnp.float32(1) + stddev * _normal(key, x.shape, example_ids)).astype(x.dtype)
