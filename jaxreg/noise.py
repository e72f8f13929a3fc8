"""Keyed noise: the dropout family, Gaussian noise, stochastic depth and DropConnect (floor 2).

Every function has the shape ``fn(key, x, rate_or_stddev, *, deterministic=False, ...)``: the
``jax.random`` key comes first, as in ``jax.random.*``; the same key gives the same bits; with
``deterministic=True`` the input is returned unchanged and the key may be ``None``. Output dtype equals
the input's (float32, bfloat16, float16). Hyperparameters that are concrete numbers are checked before
tracing (``ValueError`` naming the argument); traced ones (``jax.vmap`` over a rate sweep) pass through.
Rates are treated as constants under differentiation (a mask is a step function of its rate).

Mask bits (``mask_impl``), for the Bernoulli functions (``dropout``, ``spatial_dropout``,
``alpha_dropout``, ``drop_path``, ``drop_connect``):

* ``"prng"`` (default): the mask *is* ``jax.random.bernoulli(key, 1 - rate, shape)``, i.e. the mask of
  ``flax.linen.Dropout(rate)(x, rng=key)``, bit for bit, for every key implementation (threefry, rbg,
  unsafe_rbg; typed ``jax.random.key`` or legacy ``PRNGKey``), and the Gaussian functions draw exactly
  ``jax.random.normal(key, x.shape)``. Matching flax costs no speed: for threefry keys the hash is fused
  with the mask and the multiply, 0.19-0.27x flax's time on CPU.
* ``"hash"``: one 32-bit seed drawn from the key, expanded by an elementwise integer hash: about the time
  of ``x * c`` alone (the memory floor), where ``"prng"`` takes 3.7-6x that. Statistically adequate for
  dropout masks (keep fraction, independence of neighbouring elements and of keys are tested), not a
  general-purpose PRNG: two keys' streams can overlap when their 32-bit seeds collide.

``example_ids`` (integer, shape ``(batch,)``) makes row ``i``'s noise a function of ``(key,
example_ids[i])`` only (``fold_in`` per row, or the id hashed into the seed), so masks do not change when a
batch is permuted, split into microbatches or accumulated.

Gradient memory: the backward pass of a Bernoulli function keeps only the bool mask at its broadcast shape
(``"prng"``, 1 byte per mask element) or only the 32-bit seed (``"hash"``, which recomputes the mask),
where plain autodiff would keep 5 bytes per element. ``gaussian_dropout`` keeps its float multiplier (it is
noise, not a mask); ``gaussian_noise`` keeps nothing. How the kernels do this, and the measurements
behind each choice (``benchmarks/noise.py``), are in ``jaxreg/_noise_kernels.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxreg._noise_kernels import (
    MASK_IMPLS,
    RECOMPUTE_DEFAULT,
    bernoulli_kernel,
    gaussian_dropout_kernel,
    gaussian_noise_kernel,
    keep_threshold_of_rate,
)

from jaxreg._typing import KeyArray
from jaxreg._validate import (
    check_axes,
    check_axis,
    check_bool,
    check_choice,
    check_in_range,
    check_key,
    check_scalar,
    is_concrete,
)

__all__ = [
    "dropout",
    "spatial_dropout",
    "gaussian_dropout",
    "alpha_dropout",
    "gaussian_noise",
    "drop_path",
    "drop_connect",
]

# SELU's negative saturation value, -scale * alpha (Klambauer et al. 2017; Keras AlphaDropout).
_ALPHA_PRIME = -1.7580993408473766
# The largest float32 below 1: gaussian_dropout's cap on a traced rate (stddev sqrt(r / (1 - r)) ~ 4096).
_BELOW_ONE = 1.0 - 2.0**-24


# ----------------------------------------------------------------------------------------------------------
# Argument handling


def _as_float_array(x: Any, fn_name: str) -> jax.Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{fn_name}: x must have a floating dtype, got x.dtype = {x.dtype}.")
    return x


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


def _prepare(
    fn_name: str, key: Any, x: Any, rate: Any, deterministic: bool, mask_impl: str | None = None
) -> tuple[jax.Array, bool]:
    """Validate; return ``(x, identity)`` where ``identity`` means: return ``x`` unchanged."""
    check_in_range("rate", rate, 0.0, 1.0, high_inclusive=False)
    check_scalar("rate", rate, fn_name)
    check_bool("deterministic", deterministic, fn_name)
    if mask_impl is not None:
        check_choice("mask_impl", mask_impl, MASK_IMPLS)
    x = _as_float_array(x, fn_name)
    if deterministic:
        return x, True
    check_key(key, fn_name, has_deterministic=True)
    return x, _is_zero(rate)


# ----------------------------------------------------------------------------------------------------------
# Scales and the shared Bernoulli body


def _inverse_keep(rate: Any, dtype: Any) -> jax.Array:
    """``1 / (1 - rate)`` in ``dtype``; a constant under differentiation."""
    if is_concrete(rate):
        return jnp.asarray(1.0 / (1.0 - float(rate)), dtype)
    rate = lax.stop_gradient(jnp.asarray(rate, jnp.float32))
    return (jnp.float32(1) / (jnp.float32(1) - rate)).astype(dtype)


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
    fill = a * alpha + b
    # A traced rate of 1 drops every unit: a and b are inf there (and inf - inf = NaN for the fill), but the
    # fill's limit as rate -> 1 is alpha' * sqrt(1 - rate) / sqrt(1 + rate * alpha'**2) -> 0, and no unit is
    # kept to be scaled. Zeros make the output that limit, 0, and keep it finite.
    all_dropped = r >= 1
    a, b, fill = (jnp.where(all_dropped, jnp.float32(0), v) for v in (a, b, fill))
    return a.astype(dtype), (b.astype(dtype), fill.astype(dtype))


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
    """Shared body of the Bernoulli functions: inverted dropout, or alpha dropout with ``alpha``.

    ``recompute`` overrides the residual choice of ``RECOMPUTE_DEFAULT`` (``benchmarks/noise.py`` times both).
    """
    x, identity = _prepare(fn_name, key, x, rate, deterministic, mask_impl)
    dims = check_axes("broadcast_dims", broadcast_dims, ndim=x.ndim, allow_empty=True)
    mask_shape = tuple(1 if d in dims else n for d, n in enumerate(x.shape))
    if example_ids is not None:
        example_ids = _check_example_ids(example_ids, x, mask_shape)
    if identity:
        return x
    if alpha:
        scale, shift_fill = _alpha_affine(rate, x.dtype)
    else:
        scale, shift_fill = _inverse_keep(rate, x.dtype), None
    return bernoulli_kernel(
        key, x, keep_threshold_of_rate(rate), scale, shift_fill, example_ids, mask_shape=mask_shape,
        mask_impl=mask_impl, recompute=RECOMPUTE_DEFAULT[mask_impl] if recompute is None else recompute,
    )


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
    broadcast shape is kept (``"prng"``), or nothing but a 32-bit seed (``"hash"``, which recomputes the
    mask).

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
    axis = check_axis("channel_axis", channel_axis, x.ndim)
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
      rate: in ``[0, 1)``; may be traced. ``0`` returns ``x``. A traced rate is clamped to ``1 - 2**-24``
        (the largest float32 below 1), so a traced rate of 1, where the variance ``rate / (1 - rate)`` is
        infinite, gives finite noise of stddev about 4096 rather than inf/NaN; a concrete 1 is refused.
      deterministic: return ``x`` unchanged.
      example_ids: optional ``(batch,)`` integer ids: row ``i``'s noise depends on ``(key, id)`` only.

    Returns:
      An array with the shape and dtype of ``x``.

    Raises:
      ValueError: ``rate`` outside ``[0, 1)`` or not a scalar, or missing key.

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
        # A traced rate of 1 would make the stddev inf (and the output inf/NaN): rates are clamped to the
        # largest float32 below 1, 1 - 2**-24, where the stddev is about 4096.
        r = jnp.minimum(lax.stop_gradient(jnp.asarray(rate, jnp.float32)), jnp.float32(_BELOW_ONE))
        stddev = jnp.sqrt(r / (jnp.float32(1) - r))
    return gaussian_dropout_kernel(key, x, stddev, ids)


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
      rate: drop probability in ``[0, 1)``; may be traced. ``0`` returns ``x``. A traced rate of 1 drops
        every unit and returns zeros, the limit of the dropped units' value ``a * alpha' + b`` as the rate
        tends to 1 (where ``a`` and ``b`` themselves are infinite); a concrete 1 is refused.
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
    check_scalar("stddev", stddev, "gaussian_noise")
    check_bool("deterministic", deterministic, "gaussian_noise")
    x = _as_float_array(x, "gaussian_noise")
    ids = None if example_ids is None else _check_example_ids(example_ids, x, x.shape)
    if deterministic:
        return x
    check_key(key, "gaussian_noise", has_deterministic=True)
    if _is_zero(stddev):
        return x
    return gaussian_noise_kernel(key, x, jnp.asarray(stddev, jnp.float32), ids)


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

