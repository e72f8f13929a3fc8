"""Random erasing (Zhong et al. 2020) of NHWC image batches, with torchvision's ``RandomErasing`` semantics."""

from __future__ import annotations

import functools
import numbers
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxreg._typing import KeyArray
from jaxreg._validate import check_in_range, check_key, check_scalar
from jaxreg.augment._common import (
    _as_pair,
    _cast_back,
    _check_images,
    _check_ordered,
    _check_pixel_dtype,
    _compute_dtype,
)

__all__ = ["random_erasing"]

# torchvision's RandomErasing.get_params: at most 10 draws of (area, aspect ratio), then no erasing.
_TRIES = 10


def _check_value(value: Any, x: jax.Array) -> tuple[float, ...] | str:
    """``value`` as ``"random"`` or a tuple of one float per channel (a number is repeated)."""
    if isinstance(value, str):
        if value != "random":
            raise ValueError(f"random_erasing: value must be a number, one number per channel or 'random', "
                             f"got value = {value!r}.")
        return value
    channels = x.shape[-1]
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        values = (value,) * channels
    elif isinstance(value, (Sequence, np.ndarray, jax.Array)) and not isinstance(value, jax.core.Tracer):
        values = tuple(np.asarray(value, dtype=np.float64).ravel()) if np.ndim(value) == 1 else None
        if values is None or len(values) != channels:
            raise ValueError(
                f"random_erasing: value must be a number, one number per channel ({channels}) or 'random', got "
                f"value with shape {np.shape(value)}."
            )
    else:
        raise TypeError(f"random_erasing: value must be a number, a sequence of numbers or 'random', got "
                        f"value = {value!r}.")
    low, high = (0.0, 255.0) if x.dtype == jnp.uint8 else (None, None)
    for v in values:
        check_in_range("value", v, low, high)
    return tuple(float(v) for v in values)


def random_erasing(
    key: KeyArray,
    x: ArrayLike,
    *,
    probability: float = 0.5,
    scale: tuple[float, float] = (0.02, 0.33),
    ratio: tuple[float, float] = (0.3, 3.3),
    value: float | Sequence[float] | str = 0.0,
) -> jax.Array:
    """Erase one random rectangle in each image with probability ``probability`` (torchvision semantics).

    Per image, as ``torchvision.transforms.RandomErasing``: with probability ``probability`` it draws up to 10
    candidates, each an area ``s * H * W`` with ``s ~ U(scale)`` and an aspect ratio ``r = exp(U(log
    ratio))``, giving ``h = round(sqrt(s * H * W * r))`` rows and ``w = round(sqrt(s * H * W / r))`` columns;
    the first candidate with ``h < H`` and ``w < W`` is placed with its top-left corner uniform over the
    positions where it fits and filled with ``value``; if none fits, the image is left as it is. Every image
    draws its own rectangle from one key, under ``jax.jit`` and ``jax.vmap``.

    Args:
      key: a ``jax.random`` key.
      x: images, shape ``(batch, height, width, channels)`` (NHWC), ``uint8`` or floating.
      probability: chance that an image is erased, in [0, 1]; may be traced.
      scale: ``(min, max)`` fraction of the image area, ``0 <= min <= max <= 1``; may be traced.
      ratio: ``(min, max)`` aspect ratio (height / width) of the rectangle, ``0 < min <= max``; may be traced.
      value: the fill: a number, one number per channel, or ``"random"``: per-pixel standard normal noise
        for floating images (torchvision's ``value='random'``, meant for normalized inputs) and uniform
        levels 0..255 for ``uint8``. Numbers for ``uint8`` images must lie in [0, 255].

    Returns:
      Images of the same shape and dtype.

    Raises:
      ValueError: if ``x`` is not NHWC, ``probability`` is outside [0, 1], ``scale`` or ``ratio`` is not an
        ordered pair in its range, or ``value`` has the wrong length or range.
      TypeError: if ``x`` is an integer type other than ``uint8``, or ``value`` is not a number, a sequence
        or ``'random'``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxreg as jr
      >>> x = jnp.ones((8, 16, 16, 3))
      >>> y = jr.random_erasing(jax.random.key(0), x, probability=1.0)
      >>> erased = (y == 0).all(axis=-1).mean(axis=(1, 2))  # fraction of each image erased
      >>> bool(((erased > 0.0) & (erased < 0.5)).all())
      True
    """
    check_key(key, "random_erasing")
    x = _check_images(x, "random_erasing")
    _check_pixel_dtype(x, "random_erasing")
    check_in_range("probability", probability, 0.0, 1.0)
    check_scalar("probability", probability, "random_erasing")
    pairs = {}
    for name, pair, low, high, low_inclusive in (("scale", scale, 0.0, 1.0, True), ("ratio", ratio, 0.0, None, False)):
        parts = _as_pair(name, pair)
        if parts is None:
            raise ValueError(f"random_erasing: {name} must be a (min, max) pair, got {name} = {pair!r}.")
        for part in parts:
            check_in_range(name, part, low, high, low_inclusive=low_inclusive)
        _check_ordered(name, *parts)
        pairs[name] = parts
    fill = _check_value(value, x)
    return _random_erasing(key, x, probability, pairs["scale"], pairs["ratio"], fill)


@functools.partial(jax.jit, static_argnums=(5,))
def _random_erasing(
    key: KeyArray, x: jax.Array, probability: Any, scale: Any, ratio: Any, fill: tuple[float, ...] | str
) -> jax.Array:
    n, h, w, c = x.shape
    f32 = jnp.float32
    scale = jnp.asarray(scale, f32)
    log_ratio = jnp.log(jnp.asarray(ratio, f32))
    k_draws, k_fill = jax.random.split(key)
    # Every uniform number of every example in one draw (one PRNG kernel to compile): per example, 10 areas,
    # 10 log aspect ratios, the row, the column and the coin.
    u = jax.random.uniform(k_draws, (n, 2 * _TRIES + 3), f32)
    area = (h * w) * (scale[0] + (scale[1] - scale[0]) * u[:, :_TRIES])
    aspect = jnp.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * u[:, _TRIES : 2 * _TRIES])
    heights = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
    widths = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
    fits = (heights < h) & (widths < w)
    first = jnp.argmax(fits, axis=1)[:, None]  # the first candidate that fits (0 when none does)
    eh = jnp.take_along_axis(heights, first, axis=1)
    ew = jnp.take_along_axis(widths, first, axis=1)
    # torch.randint(0, H - h + 1): uniform over the positions where the rectangle fits.
    top = jnp.minimum(jnp.floor(u[:, -3:-2] * (h - eh + 1).astype(f32)).astype(jnp.int32), h - eh)
    left = jnp.minimum(jnp.floor(u[:, -2:-1] * (w - ew + 1).astype(f32)).astype(jnp.int32), w - ew)
    erase = (u[:, -1:] < probability) & fits.any(axis=1, keepdims=True)
    rows = jnp.arange(h)[None, :]
    cols = jnp.arange(w)[None, :]
    in_rows = (rows >= top) & (rows < top + eh) & erase  # (n, h)
    in_cols = (cols >= left) & (cols < left + ew)  # (n, w)
    inside = (in_rows[:, :, None] & in_cols[:, None, :])[..., None]
    if isinstance(fill, str):
        if x.dtype == jnp.uint8:
            patch = jax.random.randint(k_fill, x.shape, 0, 256, jnp.int32).astype(jnp.uint8)
        else:
            patch = jax.random.normal(k_fill, x.shape, _compute_dtype(x.dtype)).astype(x.dtype)
    else:
        patch = _cast_back(jnp.asarray(fill, _compute_dtype(x.dtype)), x.dtype)
    return jnp.where(inside, patch, x)
