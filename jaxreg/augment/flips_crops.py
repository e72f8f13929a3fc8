"""Flips and crops of NHWC image batches: :func:`flip`, :func:`random_flip`, :func:`random_crop`.

Exact pixel moves, no resampling: every dtype passes through unchanged. The conventions (axes, keys) are
those of :mod:`jaxreg.augment`.

Layout: ``x`` must be NHWC. A batch that is obviously NCHW, with 1, 3 or 4 (a channel count) on axis 1, a
last axis that is not, and axis 1 smaller than axes 2 and 3 (e.g. ``(8, 3, 32, 32)``), is refused with a
``ValueError`` naming ``x`` and suggesting ``jnp.moveaxis(x, 1, -1)``, rather than flipped or cropped along
the wrong axes. The affine ops and ``cutmix`` share the check; ``mixup`` blends whole examples and takes any
layout.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxreg._typing import KeyArray
from jaxreg._validate import check_bool, check_choice, check_in_range, check_key, check_positive_int, check_scalar
from jaxreg.augment._common import _as_pair, _check_images, _example_keys

__all__ = ["flip", "random_flip", "random_crop"]

_PAD_MODES = ("constant", "edge", "reflect", "symmetric", "wrap")


# -------------------------------------------------------------------------------------- deterministic


def flip(x: ArrayLike, *, horizontal: bool = True, vertical: bool = False) -> jax.Array:
    """Mirror every image of a batch left-right and/or upside-down.

    Args:
      x: images, shape ``(batch, height, width, channels)`` (NHWC), any dtype.
      horizontal: reverse the width axis (left-right mirror).
      vertical: reverse the height axis (upside-down).

    Returns:
      The flipped images, same shape and dtype as ``x``. ``flip(flip(x)) == x``.

    Raises:
      ValueError: if ``x`` is not 4-d, or is obviously NCHW (see the module docstring).
      TypeError: if ``horizontal`` or ``vertical`` is not a bool.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> x = jnp.arange(4.0).reshape(1, 2, 2, 1)
      >>> jr.flip(x)[0, :, :, 0]
      Array([[1., 0.],
             [3., 2.]], dtype=float32)
    """
    x = _check_images(x, "flip")
    check_bool("horizontal", horizontal, "flip")
    check_bool("vertical", vertical, "flip")
    axes = tuple(axis for axis, on in ((1, vertical), (2, horizontal)) if on)
    return jnp.flip(x, axis=axes) if axes else x


# ----------------------------------------------------------------------------------------------- random


def random_flip(
    key: KeyArray, x: ArrayLike, *, horizontal: bool = True, vertical: bool = False, prob: float = 0.5
) -> jax.Array:
    """Flip each image independently with probability ``prob`` (per enabled axis, independently).

    With both ``horizontal`` and ``vertical`` on, each example draws a left-right flip and an upside-down
    flip independently, like Keras' ``RandomFlip("horizontal_and_vertical")``.

    Args:
      key: a ``jax.random`` key; split once per example.
      x: images, shape ``(batch, height, width, channels)`` (NHWC), any dtype.
      horizontal: allow left-right flips (width axis).
      vertical: allow upside-down flips (height axis).
      prob: probability of each enabled flip, in [0, 1]; may be traced.

    Returns:
      Images of the same shape and dtype; example ``i`` is ``x[i]`` or its mirror image.

    Raises:
      ValueError: if ``x`` is not NHWC, ``prob`` is outside [0, 1] or not a scalar, or both axes are disabled.
      TypeError: if ``horizontal`` or ``vertical`` is not a bool.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxreg as jr
      >>> x = jnp.arange(8.0).reshape(2, 2, 2, 1)
      >>> bool((jr.random_flip(jax.random.key(0), x, prob=1.0) == jr.flip(x)).all())
      True
    """
    check_key(key, "random_flip")
    x = _check_images(x, "random_flip")
    check_in_range("prob", prob, 0.0, 1.0)
    check_scalar("prob", prob, "random_flip")
    check_bool("horizontal", horizontal, "random_flip")
    check_bool("vertical", vertical, "random_flip")
    if not (horizontal or vertical):
        raise ValueError("random_flip: at least one of horizontal or vertical must be True, got both False.")
    return _random_flip(_example_keys(key, x.shape[0]), x, prob, horizontal, vertical)


@functools.partial(jax.jit, static_argnums=(3, 4))
def _random_flip(
    keys: jax.Array, x: jax.Array, prob: ArrayLike, horizontal: bool, vertical: bool
) -> jax.Array:
    def one(k: jax.Array, img: jax.Array) -> jax.Array:
        k_h, k_v = jax.random.split(k)
        if horizontal:
            img = jnp.where(jax.random.bernoulli(k_h, prob), img[:, ::-1], img)
        if vertical:
            img = jnp.where(jax.random.bernoulli(k_v, prob), img[::-1], img)
        return img

    return jax.vmap(one)(keys, x)


def random_crop(
    key: KeyArray,
    x: ArrayLike,
    *,
    size: int | Sequence[int] | None = None,
    padding: int = 0,
    pad_mode: str = "constant",
) -> jax.Array:
    """Pad every image by ``padding`` pixels per side, then crop a window at a random offset per example.

    With the defaults for ``size`` this is the CIFAR recipe (``padding=4``: zero-pad 32x32 to 40x40, crop
    back to 32x32). Each example draws its top-left corner uniformly among all positions where the window
    fits in the padded image; the crop is ``jax.lax.dynamic_slice`` under ``jax.vmap``.

    Args:
      key: a ``jax.random`` key; split once per example.
      x: images, shape ``(batch, height, width, channels)`` (NHWC), any dtype.
      size: crop size ``(h, w)`` or an int for a square; ``None`` keeps the input's height and width.
        Static (shapes depend on it).
      padding: pixels added on each side of height and width, an int >= 0 (static).
      pad_mode: ``jnp.pad`` mode: ``'constant'`` (zeros), ``'edge'``, ``'reflect'``, ``'symmetric'`` or
        ``'wrap'``.

    Returns:
      Crops of shape ``(batch, h, w, channels)``, same dtype as ``x``.

    Raises:
      ValueError: if ``x`` is not NHWC, ``padding`` < 0, ``pad_mode`` is unknown, or ``size`` is not
        positive or larger than the padded image.
      TypeError: if ``padding`` or ``size`` is not an integer.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxreg as jr
      >>> x = jnp.ones((2, 32, 32, 3), jnp.uint8)
      >>> y = jr.random_crop(jax.random.key(0), x, padding=4)
      >>> y.shape, y.dtype
      ((2, 32, 32, 3), dtype('uint8'))
    """
    check_key(key, "random_crop")
    x = _check_images(x, "random_crop")
    padding = check_positive_int("padding", padding, minimum=0)
    check_choice("pad_mode", pad_mode, _PAD_MODES)
    batch, h, w, channels = x.shape
    if size is None:
        crop_h, crop_w = h, w
    else:
        pair = _as_pair("size", size)
        crop_h, crop_w = (size, size) if pair is None else pair
        crop_h = check_positive_int("size", crop_h)
        crop_w = check_positive_int("size", crop_w)
    padded_h, padded_w = h + 2 * padding, w + 2 * padding
    if crop_h > padded_h or crop_w > padded_w:
        raise ValueError(
            f"size must fit in the padded image ({padded_h}, {padded_w}), got size = ({crop_h}, {crop_w})."
        )
    return _random_crop(_example_keys(key, batch), x, crop_h, crop_w, padding, pad_mode)


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5))
def _random_crop(
    keys: jax.Array, x: jax.Array, crop_h: int, crop_w: int, padding: int, pad_mode: str
) -> jax.Array:
    _, h, w, channels = x.shape
    padded_h, padded_w = h + 2 * padding, w + 2 * padding
    if padding:
        x = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)), mode=pad_mode)
    span = jnp.array([padded_h - crop_h + 1, padded_w - crop_w + 1], jnp.int32)

    def one(k: jax.Array, img: jax.Array) -> jax.Array:
        top, left = jax.random.randint(k, (2,), 0, span)
        return jax.lax.dynamic_slice(img, (top, left, jnp.int32(0)), (crop_h, crop_w, channels))

    return jax.vmap(one)(keys, x)
