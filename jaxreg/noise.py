"""Keyed noise: the dropout family, Gaussian noise, stochastic depth and DropConnect (floor 2).

Every function has the shape ``fn(key, x, rate_or_stddev, *, deterministic=False, ...)``: the
``jax.random`` key comes first, as in ``jax.random.*``; the same key gives the same bits; with
``deterministic=True`` the input is returned unchanged and the key may be ``None``. Output dtype equals
the input's (float32, bfloat16, float16). Hyperparameters that are concrete numbers are checked before
tracing (``ValueError`` naming the argument); traced ones (``jax.vmap`` over a rate sweep) pass through.
Rates are treated as constants under differentiation (a mask is a step function of its rate).

Mask bits (``mask_impl``), for the Bernoulli functions (``dropout``, ``spatial_dropout``,
``alpha_dropout``, ``drop_path``, ``drop_connect``):

* ``"prng"`` (default): the bits of ``jax.random.bits(key, mask_shape, uint32)``, from the key's own PRNG
  (threefry, rbg, unsafe_rbg; typed ``jax.random.key`` or legacy ``PRNGKey``), with the keep decision made
  in integer space, ``(bits >> 9) < ceil(keep_prob * 2**23)``, which is exactly ``uniform(bits) <
  keep_prob``. So the mask *is* ``jax.random.bernoulli(key, 1 - rate, shape)``, i.e. the mask of
  ``flax.linen.Dropout(rate)(x, rng=key)``, bit for bit, and the Gaussian functions draw exactly
  ``jax.random.normal(key, x.shape)``. Matching flax costs no speed here: for threefry keys the hash is
  written out as elementwise ops that XLA fuses with the mask and the multiply, while JAX lowers the
  Threefry primitive on CPU as a rolled loop that round-trips two uint32 arrays through memory per step,
  so the same bits cost 0.19-0.27x flax's time on (256, 4096) and 0.22-0.25x on (64, 32, 32, 128)
  float32 (CPU, ``benchmarks/noise.py``, three runs). Other implementations go through
  ``jax.random.bits``.
* ``"hash"``: one 32-bit seed is drawn from the key and expanded with the lowbias32 integer finalizer of
  ``seed ^ (index * 0x9E3779B9)``, computed elementwise so XLA fuses it into the multiply: 0.95-1.14x the
  time of ``x * c`` alone (the memory floor), against 3.7-6x for ``"prng"`` on (256, 4096). Statistically
  adequate for dropout masks (keep fraction, independence of neighbouring elements and of keys are
  tested), not a general-purpose PRNG: two keys' streams can overlap when their 32-bit seeds collide.

``example_ids`` (integer, shape ``(batch,)``) makes row ``i``'s noise a function of ``(key,
example_ids[i])`` only (``fold_in`` per row, or the id hashed into the seed), so masks do not change when a
batch is permuted, split into microbatches or accumulated.

Gradient memory. Plain autodiff of ``jnp.where(keep, x * scale, 0)`` keeps the full-size bool mask *and*
a full-size float zeros array alive until the backward pass (and a broadcast mask, e.g. spatial dropout,
at full size). A ``jax.custom_vjp`` keeps only what is needed, and the choice per ``mask_impl`` was
measured (``benchmarks/noise.py``: shared 2-core CPU, float32, forward and backward compiled as two
programs so that residuals really live in between, interleaved medians; plain autodiff keeps 5 bytes per
element):

* ``"prng"``: store the bool mask at its broadcast shape (1 byte per mask element). Recomputing the
  Threefry bits from the key in the backward pass (residual: the key) took 1.11-1.19x the time on
  (256, 4096) and 1.03-1.12x on (64, 32, 32, 128), three runs.
* ``"hash"``: recompute from the saved 32-bit seed (residual: 12 bytes per call). It took 0.75-0.93x and
  0.86-0.98x the time of storing the bool mask, so it wins on both time and memory.

``gaussian_dropout`` keeps its float multiplier (it is noise, not a mask); ``gaussian_noise`` keeps nothing.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxreg._typing import KeyArray
from jaxreg._validate import check_choice, check_in_range, check_key, is_concrete

__all__ = [
    "dropout",
    "spatial_dropout",
    "gaussian_dropout",
    "alpha_dropout",
    "gaussian_noise",
    "drop_path",
    "drop_connect",
]

MASK_IMPLS = ("prng", "hash")

# SELU's negative saturation value, -scale * alpha (Klambauer et al. 2017; Keras AlphaDropout).
_ALPHA_PRIME = -1.7580993408473766
_GOLDEN = 0x9E3779B9  # 2**32 / golden ratio: consecutive indices land far apart
_MANTISSA_BITS = 23  # float32 uniforms carry 23 random bits: (bits >> 9) is the mantissa


# ----------------------------------------------------------------------------------------------------------
# Argument handling


def _as_float_array(x: Any, fn_name: str) -> jax.Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{fn_name}: x must have a floating dtype, got x.dtype = {x.dtype}.")
    return x


def _normalize_axes(axes: Sequence[int], ndim: int, name: str) -> tuple[int, ...]:
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"{name} must be axes of an array of rank {ndim}, got {name} = {tuple(axes)}.")
        out.append(a % ndim)
    return tuple(sorted(set(out)))


def _check_example_ids(example_ids: Any, x: jax.Array, mask_shape: tuple[int, ...]) -> jax.Array:
    ids = jnp.asarray(example_ids)
    if not jnp.issubdtype(ids.dtype, jnp.integer):
        raise TypeError(f"example_ids must be an integer array, got example_ids.dtype = {ids.dtype}.")
    if x.ndim == 0 or ids.shape != (x.shape[0],):
        raise ValueError(
            f"example_ids must have shape (batch,) = ({x.shape[0] if x.ndim else '?'},), "
            f"got example_ids.shape = {ids.shape}."
        )
    if mask_shape[0] == 1 and x.shape[0] != 1:
        raise ValueError("example_ids needs a per-example mask, but axis 0 is in broadcast_dims.")
    return ids


def _is_zero(value: Any) -> bool:
    return is_concrete(value) and float(value) == 0.0


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

# Measured in benchmarks/noise.py (see the module docstring): store the mask for the PRNG paths, recompute
# it for the hash.
_RECOMPUTE_DEFAULT = {"prng": False, "hash": True}


@functools.partial(jax.jit, static_argnames=("mask_shape", "mask_impl", "recompute"))
def _bernoulli_kernel(
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


def _keep_threshold_of_rate(rate: Any) -> jax.Array:
    """uint32 ``ceil(float32(1 - rate) * 2**23)``: ``(bits >> 9) < t`` iff ``uniform(bits) < 1 - rate``.

    A concrete rate is subtracted in double precision and rounded once to float32, as
    ``jax.random.bernoulli(key, 1.0 - rate)`` (hence flax) does.
    """
    if is_concrete(rate):
        return jnp.asarray(_keep_threshold(1.0 - float(rate)), jnp.uint32)
    return _keep_threshold(jnp.float32(1) - jnp.asarray(rate, jnp.float32))


def _inverse_keep(rate: Any, dtype: Any) -> jax.Array:
    """``1 / (1 - rate)`` in ``dtype``; a constant under differentiation."""
    if is_concrete(rate):
        return jnp.asarray(1.0 / (1.0 - float(rate)), dtype)
    rate = lax.stop_gradient(jnp.asarray(rate, jnp.float32))
    return (jnp.float32(1) / (jnp.float32(1) - rate)).astype(dtype)


def _prepare(
    fn_name: str, key: Any, x: Any, rate: Any, deterministic: bool, mask_impl: str | None = None
) -> tuple[jax.Array, bool]:
    """Validate; return ``(x, identity)`` where ``identity`` means: return ``x`` unchanged."""
    check_in_range("rate", rate, 0.0, 1.0, high_inclusive=False)
    if mask_impl is not None:
        check_choice("mask_impl", mask_impl, MASK_IMPLS)
    x = _as_float_array(x, fn_name)
    if deterministic:
        return x, True
    check_key(key, fn_name)
    return x, _is_zero(rate)


def _bernoulli_dropout(
    fn_name: str,
    key: Any,
    x: Any,
    rate: Any,
    deterministic: bool,
    broadcast_dims: Sequence[int],
    mask_impl: str,
    example_ids: Any,
    recompute: bool | None = None,
    alpha: bool = False,
) -> jax.Array:
    """Shared body of the Bernoulli functions: inverted dropout, or alpha dropout with ``alpha``."""
    x, identity = _prepare(fn_name, key, x, rate, deterministic, mask_impl)
    dims = _normalize_axes(broadcast_dims, x.ndim, "broadcast_dims")
    mask_shape = tuple(1 if d in dims else n for d, n in enumerate(x.shape))
    if example_ids is not None:
        example_ids = _check_example_ids(example_ids, x, mask_shape)
    if identity:
        return x
    if alpha:
        scale, shift_fill = _alpha_affine(rate, x.dtype)
    else:
        scale, shift_fill = _inverse_keep(rate, x.dtype), None
    return _bernoulli_kernel(
        key, x, _keep_threshold_of_rate(rate), scale, shift_fill, example_ids, mask_shape=mask_shape,
        mask_impl=mask_impl, recompute=_RECOMPUTE_DEFAULT[mask_impl] if recompute is None else recompute,
    )


def _alpha_affine(rate: Any, dtype: Any) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """Keras AlphaDropout's ``a``, and ``(b, a * alpha' + b)`` for kept and dropped units."""
    if is_concrete(rate):
        r = float(rate)
        a = ((1.0 - r) * (1.0 + r * _ALPHA_PRIME**2)) ** -0.5
        b = -a * _ALPHA_PRIME * r
        return jnp.asarray(a, dtype), (jnp.asarray(b, dtype), jnp.asarray(a * _ALPHA_PRIME + b, dtype))
    r = lax.stop_gradient(jnp.asarray(rate, jnp.float32))
    alpha = jnp.float32(_ALPHA_PRIME)
    a = lax.rsqrt((jnp.float32(1) - r) * (jnp.float32(1) + r * alpha * alpha))
    b = -a * alpha * r
    return a.astype(dtype), (b.astype(dtype), (a * alpha + b).astype(dtype))


@jax.jit
def _gaussian_noise_kernel(
    key: KeyArray, x: jax.Array, stddev: jax.Array, example_ids: jax.Array | None
) -> jax.Array:
    return x + (stddev * _normal(key, x.shape, example_ids)).astype(x.dtype)


@jax.jit
def _gaussian_dropout_kernel(
    key: KeyArray, x: jax.Array, stddev: jax.Array, example_ids: jax.Array | None
) -> jax.Array:
    return x * (jnp.float32(1) + stddev * _normal(key, x.shape, example_ids)).astype(x.dtype)


# ----------------------------------------------------------------------------------------------------------
# Public functions


def dropout(
    key: KeyArray | None,
    x: jax.typing.ArrayLike,
    rate: float | jax.Array,
    *,
    deterministic: bool = False,
    broadcast_dims: Sequence[int] = (),
    mask_impl: str = "prng",
    example_ids: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    """Inverted dropout: zero each element with probability ``rate``, scale survivors by 1/(1-rate).

    Same semantics as ``flax.linen.Dropout`` (``broadcast_dims`` included), and with the default
    ``mask_impl="prng"`` the same mask for the same key, bit for bit, computed faster (see the module
    docstring). The gradient is ``mask / (1 - rate)``; for the backward pass only the bool mask at its
    broadcast shape is kept (``"prng"``), or nothing but a 32-bit seed
    (``"hash"``, which recomputes the mask), as measured in ``benchmarks/noise.py``: see the module
    docstring for the figures.

    Args:
      key: a ``jax.random`` key (typed or legacy; threefry, rbg or unsafe_rbg); may be ``None`` when
        ``deterministic``.
      x: a floating array of any shape.
      rate: drop probability in ``[0, 1)``; may be traced (a ``jax.vmap`` sweep). ``0`` returns ``x``.
      deterministic: return ``x`` unchanged (inference).
      broadcast_dims: axes along which the mask is shared (locked / variational dropout over time).
      mask_impl: ``"prng"`` (default: ``jax.random.bernoulli``'s mask, as flax) or ``"hash"`` (fastest, a
        seeded integer hash); see the module docstring.
      example_ids: optional integer array of shape ``(x.shape[0],)``; row ``i``'s mask then depends only
        on ``(key, example_ids[i])``, so it survives batch permutation and microbatching.

    Returns:
      An array with the shape and dtype of ``x``.

    Raises:
      ValueError: ``rate`` outside ``[0, 1)``, missing key, unknown ``mask_impl``, bad ``broadcast_dims``
        or ``example_ids`` shape.
      TypeError: ``x`` not floating, ``example_ids`` not integer.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxreg as jr
      >>> y = jr.dropout(jax.random.key(0), jnp.ones((2, 1000)), 0.25)
      >>> sorted(set(y.ravel().tolist()))  # survivors scaled by 1 / (1 - 0.25)
      [0.0, 1.333...]
      >>> bool(abs(float((y == 0).mean()) - 0.25) < 0.04)
      True
      >>> jr.dropout(None, jnp.ones(3), 0.5, deterministic=True)
      Array([1., 1., 1.], dtype=float32)
    """
    return _bernoulli_dropout(
        "dropout", key, x, rate, deterministic, broadcast_dims, mask_impl, example_ids
    )


def spatial_dropout(
    key: KeyArray | None,
    x: jax.typing.ArrayLike,
    rate: float | jax.Array,
    *,
    channel_axis: int = -1,
    deterministic: bool = False,
    mask_impl: str = "prng",
    example_ids: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    """Drop whole feature maps: one keep decision per (example, channel), shared over spatial axes.

    Keras ``SpatialDropout1D/2D/3D`` and PyTorch ``Dropout1d/2d/3d``: for inputs ``(batch, *spatial,
    channels)`` (or channels-first with ``channel_axis=1``), survivors are scaled by ``1 / (1 - rate)``.
    Equivalent to :func:`dropout` with ``broadcast_dims`` = every axis except 0 and ``channel_axis``.

    Args:
      key: a ``jax.random`` key; may be ``None`` when ``deterministic``.
      x: floating array of rank >= 3; axis 0 is the batch.
      rate: drop probability in ``[0, 1)``; may be traced.
      channel_axis: the channel axis (not 0).
      deterministic: return ``x`` unchanged.
      mask_impl: ``"prng"`` or ``"hash"``, as in :func:`dropout`.
      example_ids: optional ``(batch,)`` integer ids, as in :func:`dropout`.

    Returns:
      An array with the shape and dtype of ``x``.

    Raises:
      ValueError: bad ``rate``, rank < 3, ``channel_axis`` out of range or 0, missing key.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxreg as jr
      >>> y = jr.spatial_dropout(jax.random.key(0), jnp.ones((8, 5, 5, 16)), 0.5)
      >>> bool(jnp.all((y == y[:, :1, :1, :]) ))  # constant over the spatial axes
      True
    """
    x = _as_float_array(x, "spatial_dropout")
    if x.ndim < 3:
        raise ValueError(
            f"spatial_dropout expects x of rank >= 3 (batch, *spatial, channels), got x.shape = {x.shape}."
        )
    (axis,) = _normalize_axes((channel_axis,), x.ndim, "channel_axis")
    if axis == 0:
        raise ValueError("channel_axis must not be 0 (axis 0 is the batch), got channel_axis = 0.")
    dims = tuple(d for d in range(1, x.ndim) if d != axis)
    return _bernoulli_dropout(
        "spatial_dropout", key, x, rate, deterministic, dims, mask_impl, example_ids
    )


def gaussian_dropout(
    key: KeyArray | None,
    x: jax.typing.ArrayLike,
    rate: float | jax.Array,
    *,
    deterministic: bool = False,
    example_ids: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    """Multiplicative Gaussian noise ``x * N(1, rate / (1 - rate))`` (Keras ``GaussianDropout``).

    The multiplier has mean 1 and variance ``rate / (1 - rate)``, the variance of the inverted-dropout
    multiplier of the same rate. Noise is drawn in float32 and cast to ``x.dtype``.

    Args:
      key: a ``jax.random`` key; may be ``None`` when ``deterministic``.
      x: a floating array.
      rate: in ``[0, 1)``; may be traced. ``0`` returns ``x``.
      deterministic: return ``x`` unchanged.
      example_ids: optional ``(batch,)`` integer ids: row ``i``'s noise depends on ``(key, id)`` only.

    Returns:
      An array with the shape and dtype of ``x``.

    Raises:
      ValueError: ``rate`` outside ``[0, 1)`` or missing key.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxreg as jr
      >>> y = jr.gaussian_dropout(jax.random.key(0), jnp.ones(100_000), 0.5)
      >>> print(f"{float(y.mean()):.1f} {float(y.var()):.1f}")  # mean 1, variance 0.5 / 0.5
      1.0 1.0
    """
    x, identity = _prepare("gaussian_dropout", key, x, rate, deterministic)
    ids = None if example_ids is None else _check_example_ids(example_ids, x, x.shape)
    if identity:
        return x
    if is_concrete(rate):
        stddev = jnp.asarray(math.sqrt(float(rate) / (1.0 - float(rate))), jnp.float32)
    else:
        r = lax.stop_gradient(jnp.asarray(rate, jnp.float32))
        stddev = jnp.sqrt(r / (jnp.float32(1) - r))
    return _gaussian_dropout_kernel(key, x, stddev, ids)


def alpha_dropout(
    key: KeyArray | None,
    x: jax.typing.ArrayLike,
    rate: float | jax.Array,
    *,
    deterministic: bool = False,
    broadcast_dims: Sequence[int] = (),
    mask_impl: str = "prng",
    example_ids: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    """SELU-preserving dropout (Klambauer et al. 2017; Keras ``AlphaDropout``).

    Dropped units are set to ``alpha' = -1.7580993408473766`` (SELU's saturation value), then ``a * x + b``
    with ``a = ((1 - rate) * (1 + rate * alpha'**2)) ** -0.5`` and ``b = -a * alpha' * rate`` restores
    zero mean and unit variance for standardized inputs.

    Args:
      key: a ``jax.random`` key; may be ``None`` when ``deterministic``.
      x: a floating array.
      rate: drop probability in ``[0, 1)``; may be traced. ``0`` returns ``x``.
      deterministic: return ``x`` unchanged.
      broadcast_dims: axes sharing the mask (Keras ``noise_shape`` with ones there).
      mask_impl: ``"prng"`` or ``"hash"``, as in :func:`dropout`.
      example_ids: optional ``(batch,)`` integer ids, as in :func:`dropout`.

    Returns:
      An array with the shape and dtype of ``x``.

    Raises:
      ValueError: ``rate`` outside ``[0, 1)``, missing key, unknown ``mask_impl``.

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np
      >>> import jaxreg as jr
      >>> x = jnp.asarray(np.random.default_rng(1).standard_normal(200_000), jnp.float32)
      >>> y = jr.alpha_dropout(jax.random.key(0), x, 0.2)  # keeps mean 0, variance 1
      >>> print(f"{float(y.mean()):.1f} {float(y.std()):.1f}")
      0.0 1.0
    """
    return _bernoulli_dropout(
        "alpha_dropout", key, x, rate, deterministic, broadcast_dims, mask_impl, example_ids, alpha=True
    )


def gaussian_noise(
    key: KeyArray | None,
    x: jax.typing.ArrayLike,
    stddev: float | jax.Array,
    *,
    deterministic: bool = False,
    example_ids: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    """Additive zero-mean Gaussian noise ``x + stddev * N(0, 1)`` (Keras ``GaussianNoise``).

    Noise is drawn in float32 and cast to ``x.dtype``. ``stddev`` is differentiable (pathwise).

    Args:
      key: a ``jax.random`` key; may be ``None`` when ``deterministic``.
      x: a floating array.
      stddev: noise standard deviation, ``>= 0``; may be traced. ``0`` returns ``x``.
      deterministic: return ``x`` unchanged.
      example_ids: optional ``(batch,)`` integer ids: row ``i``'s noise depends on ``(key, id)`` only.

    Returns:
      An array with the shape and dtype of ``x``.

    Raises:
      ValueError: ``stddev < 0`` or missing key.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxreg as jr
      >>> y = jr.gaussian_noise(jax.random.key(0), jnp.zeros(100_000), 0.5)
      >>> print(f"{float(y.mean()):.2f} {float(y.std()):.2f}")
      0.00 0.50
    """
    check_in_range("stddev", stddev, 0.0, None)
    x = _as_float_array(x, "gaussian_noise")
    ids = None if example_ids is None else _check_example_ids(example_ids, x, x.shape)
    if deterministic:
        return x
    check_key(key, "gaussian_noise")
    if _is_zero(stddev):
        return x
    return _gaussian_noise_kernel(key, x, jnp.asarray(stddev, jnp.float32), ids)


def drop_path(
    key: KeyArray | None,
    x: jax.typing.ArrayLike,
    rate: float | jax.Array,
    *,
    deterministic: bool = False,
    mask_impl: str = "prng",
    example_ids: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    """Stochastic depth: drop the whole example (axis 0) with probability ``rate``, scale by 1/(1-rate).

    timm's ``DropPath`` / ``drop_path(x, drop_prob, training=True, scale_by_keep=True)``, applied to a
    residual branch: ``x + drop_path(key, branch(x), rate)``.

    Args:
      key: a ``jax.random`` key; may be ``None`` when ``deterministic``.
      x: floating array of rank >= 1; axis 0 is the batch.
      rate: drop probability in ``[0, 1)``; may be traced.
      deterministic: return ``x`` unchanged.
      mask_impl: ``"prng"`` or ``"hash"``, as in :func:`dropout`.
      example_ids: optional ``(batch,)`` integer ids, as in :func:`dropout`.

    Returns:
      An array with the shape and dtype of ``x``.

    Raises:
      ValueError: bad ``rate``, rank 0, missing key.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxreg as jr
      >>> y = jr.drop_path(jax.random.key(0), jnp.ones((6, 3)), 0.5)
      >>> bool(jnp.all(y == y[:, :1])), sorted(set(y.ravel().tolist())) == [0.0, 2.0]
      (True, True)
    """
    x = _as_float_array(x, "drop_path")
    if x.ndim == 0:
        raise ValueError("drop_path expects x of rank >= 1 with the batch on axis 0, got a scalar.")
    return _bernoulli_dropout(
        "drop_path", key, x, rate, deterministic, tuple(range(1, x.ndim)), mask_impl, example_ids
    )


def drop_connect(
    key: KeyArray | None,
    w: jax.typing.ArrayLike,
    rate: float | jax.Array,
    *,
    deterministic: bool = False,
    mask_impl: str = "prng",
) -> jax.Array:
    """DropConnect (Wan et al. 2013): inverted dropout on a weight array, ``w * mask / (1 - rate)``.

    Use it on a kernel before the matmul, ``x @ drop_connect(key, w, 0.5)``; one mask per call, shared by
    the batch.

    Args:
      key: a ``jax.random`` key; may be ``None`` when ``deterministic``.
      w: a floating weight array.
      rate: drop probability in ``[0, 1)``; may be traced.
      deterministic: return ``w`` unchanged.
      mask_impl: ``"prng"`` or ``"hash"``, as in :func:`dropout`.

    Returns:
      An array with the shape and dtype of ``w``.

    Raises:
      ValueError: bad ``rate``, missing key, unknown ``mask_impl``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxreg as jr
      >>> w = jr.drop_connect(jax.random.key(0), jnp.ones((64, 64)), 0.5)
      >>> print(sorted(set(w.ravel().tolist())), w.dtype)
      [0.0, 2.0] float32
    """
    return _bernoulli_dropout("drop_connect", key, w, rate, deterministic, (), mask_impl, None)

