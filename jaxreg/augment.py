"""Keyed, batched image augmentations (floor 2): flips, crops, affine resampling, mixup and cutmix.

Every function takes a batch of images ``x`` in NHWC layout ``(batch, height, width, channels)``, returns
an array of the same dtype, and is pure and ``jax.jit``-able. The random ones take a ``jax.random`` key as
their first argument and one key drives the whole batch: flips, crops, rotations, zooms and translations
split it once per example inside, so every example gets its own transform; mixup and cutmix draw a batch
permutation and Beta weights from it. The same key always gives the same bits. Hyperparameters such as
``prob``, ``max_degrees`` or ``alpha`` may be traced (swept under ``jax.vmap``); shapes (``size``,
``padding``) and ``fill_value``/``order`` are static Python values.

Conventions, stated once for all functions:

* **Rows and columns.** Height is axis 1 (row 0 at the top), width is axis 2. A *horizontal* flip reverses
  the width axis (left-right mirror); a *vertical* flip reverses the height axis.
* **Rotation.** Positive degrees rotate the content counter-clockwise as the image is displayed (row 0 at
  the top), about the pixel-grid center ``((H - 1) / 2, (W - 1) / 2)``. So ``rotate(x, 90)`` equals
  ``jnp.rot90(x, k=1, axes=(1, 2))`` on square images; this is Keras' ``RandomRotation`` convention (a
  positive factor rotates counter-clockwise) and ``scipy.ndimage.rotate``'s (the tests compare with it).
* **Zoom.** A factor ``s > 1`` magnifies the content (zooms in: the output shows the central ``1/s`` of the
  input), ``s < 1`` shrinks it (zooms out, borders filled with ``fill_value``), always isotropic about the
  center. This is torchvision ``RandomAffine(scale=...)``'s convention; Keras' ``RandomZoom(f)`` with a
  fixed factor ``f`` corresponds to ``s = 1 / (1 + f)`` (a positive Keras factor zooms out). A float
  ``zoom_range=z`` means ``(1 - z, 1 + z)`` as in Keras' ``ImageDataGenerator``.
* **Translation.** A shift ``(dy, dx)`` in pixels moves the content down and right (Keras'
  ``RandomTranslation`` sign convention). Fractions are of the image height and width.
* **Resampling.** Rotation, zoom and translation build the inverse affine map of every output pixel about
  the image center and sample the input with ``jax.scipy.ndimage.map_coordinates`` (``order=0`` nearest,
  ``order=1`` bilinear), per channel and per example under ``jax.vmap``. Samples that fall outside the
  image blend towards ``fill_value`` (JAX's ``'constant'`` mode, which is SciPy's ``'grid-constant'``).
  Low-precision floats and integer images are resampled in float32 and cast back (integers are rounded
  and clipped to their dtype's range).

Label smoothing is optax's: ``smooth_labels`` here *is* ``optax.smooth_labels``, re-exported.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.ndimage import map_coordinates
from jax.typing import ArrayLike

from jaxreg._typing import KeyArray
from jaxreg._validate import (
    check_choice,
    check_in_range,
    check_key,
    check_number,
    check_positive_int,
    is_concrete,
)

__all__ = [
    "flip",
    "rotate",
    "zoom",
    "translate",
    "random_flip",
    "random_crop",
    "random_rotation",
    "random_zoom",
    "random_translation",
    "mixup",
    "cutmix",
    "smooth_labels",
]

smooth_labels = optax.smooth_labels
"""``optax.smooth_labels(labels, alpha)``: ``(1 - alpha) * labels + alpha / num_classes``, re-exported."""

_PAD_MODES = ("constant", "edge", "reflect", "symmetric", "wrap")
_ORDERS = (0, 1)


# ----------------------------------------------------------------------------------------------- checks


def _check_images(x: ArrayLike, fn_name: str) -> jax.Array:
    x = jnp.asarray(x)
    if x.ndim != 4:
        raise ValueError(
            f"{fn_name}: x must be a batch of images in NHWC layout (batch, height, width, channels), "
            f"got x.shape = {x.shape}."
        )
    return x


def _check_labels(y: ArrayLike, x: jax.Array, fn_name: str) -> jax.Array:
    y = jnp.asarray(y)
    if y.ndim != 2 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"{fn_name}: y_onehot must have shape (batch, classes) with batch = x.shape[0] = {x.shape[0]}, "
            f"got y_onehot.shape = {y.shape}."
        )
    if not jnp.issubdtype(y.dtype, jnp.floating):
        raise TypeError(
            f"{fn_name}: y_onehot must be a floating (one-hot or soft) label array, got dtype {y.dtype}; "
            "use jax.nn.one_hot(labels, num_classes)."
        )
    return y


def _check_all_positive(name: str, value: Any) -> None:
    """Scalar or concrete array of values that must all be > 0 (tracers pass unchecked)."""
    if isinstance(value, jax.core.Tracer):
        return
    if np.ndim(value) == 0:
        check_in_range(name, value, 0.0, None, low_inclusive=False)
    elif not np.all(np.asarray(value) > 0):
        raise ValueError(f"{name} must be > 0 everywhere, got {name} = {np.asarray(value)}.")


def _as_pair(name: str, value: Any) -> tuple[Any, Any] | None:
    """``(a, b)`` when ``value`` is a length-2 tuple/list/1-d array, ``None`` when it is a scalar."""
    if isinstance(value, (tuple, list)) or np.ndim(value) == 1:
        if len(value) != 2:
            raise ValueError(f"{name} must be a number or a pair of numbers, got {name} = {value!r}.")
        return value[0], value[1]
    if np.ndim(value) != 0:
        raise ValueError(
            f"{name} must be a number or a pair of numbers, got {name} with shape {np.shape(value)}."
        )
    return None


def _check_ordered(name: str, low: Any, high: Any) -> None:
    if is_concrete(low) and is_concrete(high) and float(low) > float(high):
        raise ValueError(
            f"{name} must be ordered as (min, max) with min <= max, got {name} = ({low}, {high})."
        )


# ------------------------------------------------------------------------------------------- resampling


def _compute_dtype(dtype: Any) -> Any:
    # float64 stays (x64 runs); everything narrower is computed in float32 and cast back.
    return jnp.float64 if dtype == jnp.float64 else jnp.float32


def _cast_back(y: jax.Array, dtype: Any) -> jax.Array:
    if jnp.issubdtype(dtype, jnp.integer):
        info = jnp.iinfo(dtype)
        y = jnp.clip(jnp.round(y), info.min, info.max)
    return y.astype(dtype)


def _per_example(value: ArrayLike, batch: int, trailing: tuple[int, ...], dtype: Any, name: str) -> jax.Array:
    """Broadcast a shared or per-example parameter to ``(batch, *trailing)``."""
    value = jnp.asarray(value, dtype)
    if value.shape not in ((), trailing, (batch, *trailing)):
        raise ValueError(
            f"{name} must have shape {trailing or '()'} (shared) or {(batch, *trailing)} (per example), "
            f"got {name}.shape = {value.shape}."
        )
    return jnp.broadcast_to(value, (batch, *trailing))


def _affine_resample(
    x: jax.Array, matrix: jax.Array, offset: jax.Array, *, fill_value: float, order: int
) -> jax.Array:
    """Sample ``x[b]`` at ``matrix[b] @ (p - center) + center + offset[b]`` for every output pixel ``p``.

    ``matrix`` has shape ``(batch, 2, 2)`` and ``offset`` ``(batch, 2)``, both in (row, column) order.
    """
    _, h, w, _ = x.shape
    cdt = _compute_dtype(x.dtype)
    rows, cols = jnp.meshgrid(jnp.arange(h, dtype=cdt), jnp.arange(w, dtype=cdt), indexing="ij")
    center_r, center_c = (h - 1) / 2, (w - 1) / 2
    d_r, d_c = rows - center_r, cols - center_c

    def one(img: jax.Array, m: jax.Array, off: jax.Array) -> jax.Array:
        # Elementwise multiply-adds, not a matmul: accelerators may run matmuls at reduced precision.
        src_r = m[0, 0] * d_r + m[0, 1] * d_c + (center_r + off[0])
        src_c = m[1, 0] * d_r + m[1, 1] * d_c + (center_c + off[1])

        def channel(plane: jax.Array) -> jax.Array:
            return map_coordinates(plane, [src_r, src_c], order=order, mode="constant", cval=fill_value)

        return jax.vmap(channel, in_axes=-1, out_axes=-1)(img)

    out = jax.vmap(one)(x.astype(cdt), matrix.astype(cdt), offset.astype(cdt))
    return _cast_back(out, x.dtype)


def _exact_quarter_turns(degrees: jax.Array, value: jax.Array) -> jax.Array:
    # cos(pi/2) is -4.4e-8 in float32; snapping at multiples of 90 degrees makes quarter turns exact.
    quarter = degrees / 90
    return jnp.where(quarter == jnp.round(quarter), jnp.round(value), value)


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
      ValueError: if ``x`` is not 4-d (NHWC).

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> x = jnp.arange(4.0).reshape(1, 2, 2, 1)
      >>> jr.flip(x)[0, :, :, 0]
      Array([[1., 0.],
             [3., 2.]], dtype=float32)
    """
    x = _check_images(x, "flip")
    axes = tuple(axis for axis, on in ((1, vertical), (2, horizontal)) if on)
    return jnp.flip(x, axis=axes) if axes else x


def rotate(x: ArrayLike, degrees: ArrayLike, *, fill_value: float = 0.0, order: int = 1) -> jax.Array:
    """Rotate every image about its center; positive degrees turn the content counter-clockwise.

    The output keeps the input's height and width (corners are cut, uncovered areas take ``fill_value``).
    ``rotate(x, 90)`` equals ``jnp.rot90(x, k=1, axes=(1, 2))`` exactly on square images, and
    ``rotate(x, 0)`` is the identity.

    Args:
      x: images, shape ``(batch, height, width, channels)`` (NHWC).
      degrees: rotation angle, a scalar shared by the batch or one per example, shape ``(batch,)``; may be
        traced.
      fill_value: value of pixels that sample outside the input (a concrete number).
      order: 0 for nearest-neighbour, 1 for bilinear interpolation.

    Returns:
      Rotated images, same shape and dtype as ``x``.

    Raises:
      ValueError: if ``x`` is not NHWC, ``degrees`` has a wrong shape or ``order`` is not 0 or 1.
      TypeError: if ``fill_value`` is not a concrete number.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> x = jnp.arange(9.0).reshape(1, 3, 3, 1)
      >>> bool((jr.rotate(x, 90.0) == jnp.rot90(x, k=1, axes=(1, 2))).all())
      True
    """
    x = _check_images(x, "rotate")
    fill = check_number("fill_value", fill_value)
    check_choice("order", order, _ORDERS)
    # Broadcast before the jitted core, so shared and per-example angles share one compilation.
    degrees = _per_example(degrees, x.shape[0], (), _compute_dtype(x.dtype), "degrees")
    return _rotate(x, degrees, fill, order)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _rotate(x: jax.Array, deg: jax.Array, fill: float, order: int) -> jax.Array:
    rad = jnp.deg2rad(deg)
    cos = _exact_quarter_turns(deg, jnp.cos(rad))
    sin = _exact_quarter_turns(deg, jnp.sin(rad))
    # Inverse map (output -> input) in (row, col) coordinates of a counter-clockwise turn of the content.
    matrix = jnp.stack([jnp.stack([cos, sin], -1), jnp.stack([-sin, cos], -1)], -2)
    no_offset = jnp.zeros_like(deg, shape=(x.shape[0], 2))
    return _affine_resample(x, matrix, no_offset, fill_value=fill, order=order)


def zoom(x: ArrayLike, factor: ArrayLike, *, fill_value: float = 0.0, order: int = 1) -> jax.Array:
    """Scale every image about its center by ``factor`` (> 1 zooms in, < 1 zooms out), keeping its size.

    Output pixel ``p`` samples the input at ``center + (p - center) / factor``. ``zoom(x, 1.0)`` is the
    identity.

    Args:
      x: images, shape ``(batch, height, width, channels)`` (NHWC).
      factor: isotropic scale factor(s) > 0, a scalar or one per example, shape ``(batch,)``; may be traced.
      fill_value: value of pixels that sample outside the input (a concrete number).
      order: 0 for nearest-neighbour, 1 for bilinear interpolation.

    Returns:
      Zoomed images, same shape and dtype as ``x``.

    Raises:
      ValueError: if ``x`` is not NHWC, a concrete ``factor`` is <= 0 or ``order`` is not 0 or 1.
      TypeError: if ``fill_value`` is not a concrete number.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> x = jnp.ones((1, 4, 4, 1))
      >>> jr.zoom(x, 0.5, order=0)[0, :, :, 0]  # zoom out: content shrinks to the central 2x2
      Array([[0., 0., 0., 0.],
             [0., 1., 1., 0.],
             [0., 1., 1., 0.],
             [0., 0., 0., 0.]], dtype=float32)
    """
    x = _check_images(x, "zoom")
    fill = check_number("fill_value", fill_value)
    check_choice("order", order, _ORDERS)
    _check_all_positive("factor", factor)
    factor = _per_example(factor, x.shape[0], (), _compute_dtype(x.dtype), "factor")
    return _zoom(x, factor, fill, order)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _zoom(x: jax.Array, factor: jax.Array, fill: float, order: int) -> jax.Array:
    inv = 1 / factor
    matrix = inv[:, None, None] * jnp.eye(2, dtype=inv.dtype)
    no_offset = jnp.zeros_like(inv, shape=(x.shape[0], 2))
    return _affine_resample(x, matrix, no_offset, fill_value=fill, order=order)


def translate(x: ArrayLike, shift: ArrayLike, *, fill_value: float = 0.0, order: int = 1) -> jax.Array:
    """Shift every image by ``(dy, dx)`` pixels; positive values move the content down and right.

    Fractional shifts are interpolated (``order=1``) or rounded (``order=0``); uncovered pixels take
    ``fill_value``.

    Args:
      x: images, shape ``(batch, height, width, channels)`` (NHWC).
      shift: ``(dy, dx)`` in pixels, shape ``(2,)`` shared or ``(batch, 2)`` per example; may be traced.
      fill_value: value of uncovered pixels (a concrete number).
      order: 0 for nearest-neighbour, 1 for bilinear interpolation.

    Returns:
      Shifted images, same shape and dtype as ``x``.

    Raises:
      ValueError: if ``x`` is not NHWC, ``shift`` has a wrong shape or ``order`` is not 0 or 1.
      TypeError: if ``fill_value`` is not a concrete number.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> x = jnp.arange(1.0, 5.0).reshape(1, 1, 4, 1)
      >>> jr.translate(x, (0, 1))[0, 0, :, 0]
      Array([0., 1., 2., 3.], dtype=float32)
    """
    x = _check_images(x, "translate")
    fill = check_number("fill_value", fill_value)
    check_choice("order", order, _ORDERS)
    shift = _per_example(shift, x.shape[0], (2,), _compute_dtype(x.dtype), "shift")
    return _translate(x, shift, fill, order)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _translate(x: jax.Array, shift: jax.Array, fill: float, order: int) -> jax.Array:
    offset = -shift
    matrix = jnp.broadcast_to(jnp.eye(2, dtype=offset.dtype), (x.shape[0], 2, 2))
    return _affine_resample(x, matrix, offset, fill_value=fill, order=order)


# ----------------------------------------------------------------------------------------------- random


def _example_keys(key: KeyArray, batch: int) -> jax.Array:
    return jax.random.split(key, batch)


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
      ValueError: if ``x`` is not NHWC, ``prob`` is outside [0, 1], or both axes are disabled.

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


def random_rotation(
    key: KeyArray,
    x: ArrayLike,
    max_degrees: float | tuple[float, float],
    *,
    fill_value: float = 0.0,
    order: int = 1,
) -> jax.Array:
    """Rotate each image by its own angle drawn uniformly from ``[-max_degrees, max_degrees]``.

    Positive angles turn the content counter-clockwise (see :func:`rotate`, which this calls). A pair
    ``(low, high)`` draws from ``[low, high]`` instead, so ``(90, 90)`` always turns by exactly 90 degrees.

    Args:
      key: a ``jax.random`` key; split once per example.
      x: images, shape ``(batch, height, width, channels)`` (NHWC).
      max_degrees: a float >= 0 (symmetric range) or a ``(low, high)`` pair with ``low <= high``, in
        degrees; may be traced.
      fill_value: value of pixels that sample outside the input (a concrete number).
      order: 0 for nearest-neighbour, 1 for bilinear interpolation.

    Returns:
      Rotated images, same shape and dtype as ``x``.

    Raises:
      ValueError: if ``x`` is not NHWC, ``max_degrees`` < 0 or unordered, or ``order`` is not 0 or 1.
      TypeError: if ``fill_value`` is not a concrete number.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxreg as jr
      >>> x = jnp.arange(8.0).reshape(2, 2, 2, 1)
      >>> y = jr.random_rotation(jax.random.key(0), x, (90.0, 90.0))
      >>> bool((y == jnp.rot90(x, k=1, axes=(1, 2))).all())
      True
    """
    check_key(key, "random_rotation")
    x = _check_images(x, "random_rotation")
    pair = _as_pair("max_degrees", max_degrees)
    if pair is None:
        check_in_range("max_degrees", max_degrees, 0.0, None)
        low, high = -max_degrees, max_degrees
    else:
        low, high = pair
        check_in_range("max_degrees", low)  # no bounds: rejects NaN
        check_in_range("max_degrees", high)
        _check_ordered("max_degrees", low, high)
    fill = check_number("fill_value", fill_value)
    check_choice("order", order, _ORDERS)
    return _random_rotation(_example_keys(key, x.shape[0]), x, low, high, fill, order)


@functools.partial(jax.jit, static_argnums=(4, 5))
def _random_rotation(
    keys: jax.Array, x: jax.Array, low: Any, high: Any, fill: float, order: int
) -> jax.Array:
    draw = lambda k: jax.random.uniform(k, (), _compute_dtype(x.dtype), low, high)  # noqa: E731
    return _rotate(x, jax.vmap(draw)(keys), fill, order)


def random_zoom(
    key: KeyArray,
    x: ArrayLike,
    zoom_range: float | tuple[float, float],
    *,
    fill_value: float = 0.0,
    order: int = 1,
) -> jax.Array:
    """Zoom each image by its own isotropic factor drawn uniformly from ``zoom_range``.

    Factors > 1 zoom in (magnify), < 1 zoom out (see :func:`zoom`, which this calls). A float ``z`` means
    the range ``(1 - z, 1 + z)``, as in Keras' ``ImageDataGenerator(zoom_range=z)``; the factor itself is
    torchvision's ``RandomAffine(scale=...)`` convention, the reciprocal of Keras' zoom coordinate scale.

    Args:
      key: a ``jax.random`` key; split once per example.
      x: images, shape ``(batch, height, width, channels)`` (NHWC).
      zoom_range: a float ``z`` in [0, 1) or a ``(min, max)`` pair of factors with ``0 < min <= max``;
        may be traced.
      fill_value: value of pixels that sample outside the input (a concrete number).
      order: 0 for nearest-neighbour, 1 for bilinear interpolation.

    Returns:
      Zoomed images, same shape and dtype as ``x``.

    Raises:
      ValueError: if ``x`` is not NHWC, a factor is <= 0, ``min > max``, or ``order`` is not 0 or 1.
      TypeError: if ``fill_value`` is not a concrete number.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxreg as jr
      >>> x = jnp.ones((4, 8, 8, 3))
      >>> y = jr.random_zoom(jax.random.key(0), x, (0.4, 0.5))  # zoom out: borders become fill_value
      >>> bool((y[:, 0, 0] == 0).all()), bool((y[:, 4, 4] == 1).all())
      (True, True)
    """
    check_key(key, "random_zoom")
    x = _check_images(x, "random_zoom")
    pair = _as_pair("zoom_range", zoom_range)
    if pair is None:
        check_in_range("zoom_range", zoom_range, 0.0, 1.0, high_inclusive=False)
        low, high = 1 - zoom_range, 1 + zoom_range
    else:
        low, high = pair
        check_in_range("zoom_range", low, 0.0, None, low_inclusive=False)
        check_in_range("zoom_range", high, 0.0, None, low_inclusive=False)
        _check_ordered("zoom_range", low, high)
    fill = check_number("fill_value", fill_value)
    check_choice("order", order, _ORDERS)
    return _random_zoom(_example_keys(key, x.shape[0]), x, low, high, fill, order)


@functools.partial(jax.jit, static_argnums=(4, 5))
def _random_zoom(keys: jax.Array, x: jax.Array, low: Any, high: Any, fill: float, order: int) -> jax.Array:
    draw = lambda k: jax.random.uniform(k, (), _compute_dtype(x.dtype), low, high)  # noqa: E731
    return _zoom(x, jax.vmap(draw)(keys), fill, order)


def random_translation(
    key: KeyArray,
    x: ArrayLike,
    max_fraction: float | tuple[float, float],
    *,
    fill_value: float = 0.0,
    order: int = 1,
) -> jax.Array:
    """Shift each image by its own offset, up to ``max_fraction`` of the height and width either way.

    Example ``i`` moves by ``dy ~ U[-fh * H, fh * H]`` rows and ``dx ~ U[-fw * W, fw * W]`` columns
    (continuous, interpolated by ``order``), as Keras' ``RandomTranslation(fh, fw)``; positive shifts move
    the content down and right. Calls :func:`translate`.

    Args:
      key: a ``jax.random`` key; split once per example.
      x: images, shape ``(batch, height, width, channels)`` (NHWC).
      max_fraction: a float in [0, 1] for both axes, or an ``(fh, fw)`` pair; may be traced.
      fill_value: value of uncovered pixels (a concrete number).
      order: 0 for nearest-neighbour, 1 for bilinear interpolation.

    Returns:
      Shifted images, same shape and dtype as ``x``.

    Raises:
      ValueError: if ``x`` is not NHWC, a fraction is outside [0, 1], or ``order`` is not 0 or 1.
      TypeError: if ``fill_value`` is not a concrete number.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxreg as jr
      >>> x = jnp.ones((4, 8, 8, 3))
      >>> y = jr.random_translation(jax.random.key(0), x, (0.0, 0.25), order=0)
      >>> bool((y[:, :, 3:5] == 1).all()), y.shape  # at most 2 columns shifted: the middle stays covered
      (True, (4, 8, 8, 3))
    """
    check_key(key, "random_translation")
    x = _check_images(x, "random_translation")
    pair = _as_pair("max_fraction", max_fraction)
    frac_h, frac_w = (max_fraction, max_fraction) if pair is None else pair
    check_in_range("max_fraction", frac_h, 0.0, 1.0)
    check_in_range("max_fraction", frac_w, 0.0, 1.0)
    fill = check_number("fill_value", fill_value)
    check_choice("order", order, _ORDERS)
    return _random_translation(_example_keys(key, x.shape[0]), x, frac_h, frac_w, fill, order)


@functools.partial(jax.jit, static_argnums=(4, 5))
def _random_translation(
    keys: jax.Array, x: jax.Array, frac_h: Any, frac_w: Any, fill: float, order: int
) -> jax.Array:
    dtype = _compute_dtype(x.dtype)
    _, h, w, _ = x.shape
    limit = jnp.stack([jnp.asarray(frac_h, dtype) * h, jnp.asarray(frac_w, dtype) * w])
    draw = lambda k: jax.random.uniform(k, (2,), dtype, -limit, limit)  # noqa: E731
    return _translate(x, jax.vmap(draw)(keys), fill, order)


# ------------------------------------------------------------------------------------------------ mixing


def _mixing_weights(key: KeyArray, alpha: Any, batch: int, per_example_lambda: bool) -> jax.Array:
    """``lam ~ Beta(alpha, alpha)``, shape ``(batch,)`` (one shared draw unless ``per_example_lambda``).

    Drawn outside the jitted mixing cores: ``jax.random.loggamma`` is itself jit-cached by shape, so its
    rejection loop (the slow part to compile) is compiled once per batch size and shared by mixup and
    cutmix in both modes (the shared mode uses the first example's draw).

    Beta(a, a) is ``G1 / (G1 + G2)`` for independent ``Gi ~ Gamma(a)``; drawing both log-gammas in one
    ``loggamma`` call and taking ``sigmoid(log G1 - log G2)`` is what ``jax.random.beta`` computes (in log
    space, so small ``alpha`` cannot give 0/0) with one rejection loop to compile instead of two.
    """
    log_gammas = jax.random.loggamma(key, alpha, (2, batch), jnp.float32)
    lam = jax.nn.sigmoid(log_gammas[0] - log_gammas[1])
    return lam if per_example_lambda else jnp.broadcast_to(lam[0], (batch,))


def _mix(a: jax.Array, b: jax.Array, weight: jax.Array) -> jax.Array:
    """``weight * a + (1 - weight) * b`` with ``weight`` of shape ``(batch,)``, computed in >= float32."""
    cdt = _compute_dtype(a.dtype)
    wt = weight.astype(cdt).reshape((-1,) + (1,) * (a.ndim - 1))
    return _cast_back(wt * a.astype(cdt) + (1 - wt) * b.astype(cdt), a.dtype)


def mixup(
    key: KeyArray, x: ArrayLike, y_onehot: ArrayLike, alpha: float, *, per_example_lambda: bool = False
) -> tuple[jax.Array, jax.Array]:
    """Mixup (Zhang et al., 2018): blend each example with a partner from a permutation of the batch.

    ``lam ~ Beta(alpha, alpha)``, ``perm`` a random permutation of the batch, and
    ``x_mixed = lam * x + (1 - lam) * x[perm]``, ``y_mixed = lam * y + (1 - lam) * y[perm]``. One ``lam``
    for the whole batch as in the paper's reference code, or one per example with
    ``per_example_lambda=True``. Mixing is computed in float32 (float64 for float64 inputs) and cast back.

    Args:
      key: a ``jax.random`` key.
      x: images, shape ``(batch, height, width, channels)`` (NHWC).
      y_onehot: floating one-hot or soft labels, shape ``(batch, classes)``.
      alpha: Beta concentration, > 0; may be traced.
      per_example_lambda: draw one ``lam`` per example instead of one per batch.

    Returns:
      ``(x_mixed, y_mixed)`` with the shapes and dtypes of ``x`` and ``y_onehot``; label rows still sum
      to 1 when the inputs' do.

    Raises:
      ValueError: if ``x`` is not NHWC, ``y_onehot`` is not ``(batch, classes)``, or ``alpha`` <= 0.
      TypeError: if ``y_onehot`` is not floating.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxreg as jr
      >>> x, y = jnp.ones((16, 8, 8, 3)), jax.nn.one_hot(jnp.arange(16), 16)
      >>> xm, ym = jr.mixup(jax.random.key(0), x, y, 0.2)
      >>> xm.shape, ym.shape, bool(jnp.allclose(ym.sum(axis=-1), 1.0))  # label rows still sum to 1
      ((16, 8, 8, 3), (16, 16), True)
    """
    check_key(key, "mixup")
    x = _check_images(x, "mixup")
    y = _check_labels(y_onehot, x, "mixup")
    check_in_range("alpha", alpha, 0.0, None, low_inclusive=False)
    k_perm, k_lam, _ = jax.random.split(key, 3)  # the same split as cutmix's: one compilation for both
    return _mixup(k_perm, x, y, _mixing_weights(k_lam, alpha, x.shape[0], per_example_lambda))


@jax.jit
def _mixup(k_perm: KeyArray, x: jax.Array, y: jax.Array, lam: jax.Array) -> tuple[jax.Array, jax.Array]:
    perm = jax.random.permutation(k_perm, x.shape[0])
    return _mix(x, x[perm], lam), _mix(y, y[perm], lam)


def cutmix(
    key: KeyArray, x: ArrayLike, y_onehot: ArrayLike, alpha: float, *, per_example_lambda: bool = False
) -> tuple[jax.Array, jax.Array]:
    """CutMix (Yun et al., 2019): paste a random box from a partner image; mix labels by the pasted area.

    ``lam ~ Beta(alpha, alpha)`` sets the box to ``floor(H * sqrt(1 - lam))`` by
    ``floor(W * sqrt(1 - lam))`` pixels, centered at a uniformly drawn pixel and clipped to the image, as in
    the reference code. Inside the box, pixels come from ``x[perm]`` (``perm`` a random permutation of the
    batch), elsewhere from ``x``.
    Labels are mixed by the *actual* (clipped) area: ``y_mixed = w * y + (1 - w) * y[perm]`` with
    ``w = 1 - box_area / (H * W)``. One box for the whole batch (reference code) or one per example with
    ``per_example_lambda=True``.

    Args:
      key: a ``jax.random`` key.
      x: images, shape ``(batch, height, width, channels)`` (NHWC), any dtype (pixels are copied, not
        blended).
      y_onehot: floating one-hot or soft labels, shape ``(batch, classes)``.
      alpha: Beta concentration, > 0; may be traced.
      per_example_lambda: draw a box size and position per example instead of one per batch.

    Returns:
      ``(x_mixed, y_mixed)`` with the shapes and dtypes of ``x`` and ``y_onehot``.

    Raises:
      ValueError: if ``x`` is not NHWC, ``y_onehot`` is not ``(batch, classes)``, or ``alpha`` <= 0.
      TypeError: if ``y_onehot`` is not floating.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxreg as jr
      >>> x, y = jnp.ones((16, 8, 8, 3)), jax.nn.one_hot(jnp.arange(16), 16)
      >>> xm, ym = jr.cutmix(jax.random.key(0), x, y, 1.0)
      >>> xm.dtype, bool(jnp.allclose(ym.sum(axis=-1), 1.0))  # label rows still sum to 1
      (dtype('float32'), True)
    """
    check_key(key, "cutmix")
    x = _check_images(x, "cutmix")
    y = _check_labels(y_onehot, x, "cutmix")
    check_in_range("alpha", alpha, 0.0, None, low_inclusive=False)
    k_perm, k_lam, k_box = jax.random.split(key, 3)
    lam = _mixing_weights(k_lam, alpha, x.shape[0], per_example_lambda)
    return _cutmix(k_perm, k_box, x, y, lam, per_example_lambda)


@functools.partial(jax.jit, static_argnums=(5,))
def _cutmix(
    k_perm: KeyArray, k_box: KeyArray, x: jax.Array, y: jax.Array, lam: jax.Array, per_example_lambda: bool
) -> tuple[jax.Array, jax.Array]:
    batch, h, w, _ = x.shape
    k_row, k_col = jax.random.split(k_box)
    perm = jax.random.permutation(k_perm, batch)
    draws = (batch,) if per_example_lambda else ()
    cut_ratio = jnp.sqrt(1 - lam)
    cut_h = jnp.floor(h * cut_ratio).astype(jnp.int32)
    cut_w = jnp.floor(w * cut_ratio).astype(jnp.int32)
    center_r = jnp.broadcast_to(jax.random.randint(k_row, draws, 0, h), (batch,))
    center_c = jnp.broadcast_to(jax.random.randint(k_col, draws, 0, w), (batch,))
    top, left = center_r - cut_h // 2, center_c - cut_w // 2
    r0, r1 = jnp.clip(top, 0, h), jnp.clip(top + cut_h, 0, h)
    c0, c1 = jnp.clip(left, 0, w), jnp.clip(left + cut_w, 0, w)
    rows, cols = jnp.arange(h), jnp.arange(w)
    in_rows = (rows >= r0[:, None]) & (rows < r1[:, None])  # (batch, h)
    in_cols = (cols >= c0[:, None]) & (cols < c1[:, None])  # (batch, w)
    box = in_rows[:, :, None, None] & in_cols[:, None, :, None]
    x_mixed = jnp.where(box, x[perm], x)
    keep = 1 - ((r1 - r0) * (c1 - c0)).astype(jnp.float32) / (h * w)
    return x_mixed, _mix(y, y[perm], keep)
