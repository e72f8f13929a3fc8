"""Affine resampling of NHWC image batches: rotate, zoom and translate, deterministic and random.

Every transform builds the inverse affine map of each output pixel about the image center and samples the
input with ``jax.scipy.ndimage.map_coordinates``; the sign conventions and fill rules are stated in
:mod:`jaxreg.augment`.

Dtypes: floating images are resampled in float32 (float64 stays float64) and cast back. Integer images of at
most 16 bits (``uint8``, the usual image type, and ``int8``, ``uint16``, ``int16``) are resampled in float32,
where all their values are exact, then rounded to the nearest integer and clipped to the dtype's range, so
``uint8`` in gives ``uint8`` out with no wrap-around; their ``fill_value`` must be finite (``ValueError``;
floating images may use NaN to mark samples from outside). Wider integers (``int32``, ``int64``...) and ``bool`` are
refused with a ``TypeError`` naming ``x``: float32 cannot hold them exactly; convert them to a float first.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates
from jax.typing import ArrayLike

from jaxreg._typing import KeyArray
from jaxreg._validate import check_choice, check_in_range, check_key
from jaxreg.augment._common import (
    _as_pair,
    _cast_back,
    _check_all_positive,
    _check_fill,
    _check_images,
    _check_ordered,
    _check_resampled_dtype,
    _compute_dtype,
    _example_keys,
)

__all__ = [
    "rotate",
    "zoom",
    "translate",
    "shear_x",
    "shear_y",
    "random_rotation",
    "random_zoom",
    "random_translation",
]

_ORDERS = (0, 1)


# ------------------------------------------------------------------------------------------- resampling


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
    x: jax.Array, matrix: jax.Array, offset: jax.Array, *, fill_value: float, order: int, half_up: bool = False
) -> jax.Array:
    """Sample ``x[b]`` at ``matrix[b] @ (p - center) + center + offset[b]`` for every output pixel ``p``.

    ``matrix`` has shape ``(batch, 2, 2)`` and ``offset`` ``(batch, 2)``, both in (row, column) order.
    ``half_up`` (``order=0`` only) rounds source coordinates half up, ``floor(s + 1/2)``, as PIL's nearest
    transform does, instead of ``map_coordinates``' round-half-to-even.
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
        if half_up and order == 0:
            src_r, src_c = jnp.floor(src_r + 0.5), jnp.floor(src_c + 0.5)

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

def rotate(x: ArrayLike, degrees: ArrayLike, *, fill_value: float = 0.0, order: int = 1) -> jax.Array:
    """Rotate every image about its center; positive degrees turn the content counter-clockwise.

    The output keeps the input's height and width (corners are cut, uncovered areas take ``fill_value``).
    ``rotate(x, 90)`` equals ``jnp.rot90(x, k=1, axes=(1, 2))`` exactly on square images, and
    ``rotate(x, 0)`` is the identity.

    Args:
      x: images, shape ``(batch, height, width, channels)`` (NHWC): floats, or 8/16-bit integers such as
        ``uint8`` (rounded and clipped back; see the module docstring).
      degrees: rotation angle, a scalar shared by the batch or one per example, shape ``(batch,)``; may be
        traced.
      fill_value: value of pixels that sample outside the input (a concrete number; finite for integer
        images).
      order: 0 for nearest-neighbour, 1 for bilinear interpolation.

    Returns:
      Rotated images, same shape and dtype as ``x``.

    Raises:
      ValueError: if ``x`` is not NHWC, a concrete ``degrees`` is NaN or infinite or has a wrong shape, or
        ``order`` is not 0 or 1.
      TypeError: if ``fill_value`` is not a concrete number, or ``x`` is neither floating nor an integer
        type of at most 16 bits.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> x = jnp.arange(9.0).reshape(1, 3, 3, 1)
      >>> bool((jr.rotate(x, 90.0) == jnp.rot90(x, k=1, axes=(1, 2))).all())
      True
    """
    x = _check_images(x, "rotate")
    _check_resampled_dtype(x, "rotate")
    fill = _check_fill(fill_value, x)
    check_choice("order", order, _ORDERS)
    # Broadcast before the jitted core, so shared and per-example angles share one compilation.
    degrees = _per_example(degrees, x.shape[0], (), _compute_dtype(x.dtype), "degrees")
    check_in_range("degrees", degrees)  # no bounds: rejects NaN and inf (a traced angle passes)
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
      x: images, shape ``(batch, height, width, channels)`` (NHWC): floats, or 8/16-bit integers such as
        ``uint8`` (rounded and clipped back; see the module docstring).
      factor: isotropic scale factor(s) > 0, a scalar or one per example, shape ``(batch,)``; may be traced.
      fill_value: value of pixels that sample outside the input (a concrete number; finite for integer
        images).
      order: 0 for nearest-neighbour, 1 for bilinear interpolation.

    Returns:
      Zoomed images, same shape and dtype as ``x``.

    Raises:
      ValueError: if ``x`` is not NHWC, a concrete ``factor`` is <= 0 or ``order`` is not 0 or 1.
      TypeError: if ``fill_value`` is not a concrete number, or ``x`` is neither floating nor an integer
        type of at most 16 bits.

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
    _check_resampled_dtype(x, "zoom")
    fill = _check_fill(fill_value, x)
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
      x: images, shape ``(batch, height, width, channels)`` (NHWC): floats, or 8/16-bit integers such as
        ``uint8`` (rounded and clipped back; see the module docstring).
      shift: ``(dy, dx)`` in pixels, shape ``(2,)`` shared or ``(batch, 2)`` per example; may be traced.
      fill_value: value of uncovered pixels (a concrete number; finite for integer images).
      order: 0 for nearest-neighbour, 1 for bilinear interpolation.

    Returns:
      Shifted images, same shape and dtype as ``x``.

    Raises:
      ValueError: if ``x`` is not NHWC, a concrete ``shift`` is NaN or infinite or has a wrong shape, or
        ``order`` is not 0 or 1.
      TypeError: if ``fill_value`` is not a concrete number, or ``x`` is neither floating nor an integer
        type of at most 16 bits.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> x = jnp.arange(1.0, 5.0).reshape(1, 1, 4, 1)
      >>> jr.translate(x, (0, 1))[0, 0, :, 0]
      Array([0., 1., 2., 3.], dtype=float32)
    """
    x = _check_images(x, "translate")
    _check_resampled_dtype(x, "translate")
    fill = _check_fill(fill_value, x)
    check_choice("order", order, _ORDERS)
    shift = _per_example(shift, x.shape[0], (2,), _compute_dtype(x.dtype), "shift")
    check_in_range("shift", shift)  # no bounds: rejects NaN and inf (a traced shift passes)
    return _translate(x, shift, fill, order)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _translate(x: jax.Array, shift: jax.Array, fill: float, order: int) -> jax.Array:
    offset = -shift
    matrix = jnp.broadcast_to(jnp.eye(2, dtype=offset.dtype), (x.shape[0], 2, 2))
    return _affine_resample(x, matrix, offset, fill_value=fill, order=order)


def _shear(x: ArrayLike, factor: ArrayLike, fill_value: float, order: int, axis: str) -> jax.Array:
    fn_name = f"shear_{axis}"
    x = _check_images(x, fn_name)
    _check_resampled_dtype(x, fn_name)
    fill = _check_fill(fill_value, x)
    check_choice("order", order, _ORDERS)
    factor = _per_example(factor, x.shape[0], (), _compute_dtype(x.dtype), "factor")
    check_in_range("factor", factor)  # no bounds: rejects NaN and inf (a traced factor passes)
    return _shear_jit(x, factor, fill, order, axis)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _shear_jit(x: jax.Array, factor: jax.Array, fill: float, order: int, axis: str) -> jax.Array:
    _, h, w, _ = x.shape
    zero, one = jnp.zeros_like(factor), jnp.ones_like(factor)
    # Output (r, c) samples column c + m (r + 1/2) (shear_x) or row r + m (c + 1/2) (shear_y): PIL's affine
    # transform (1, m, 0, 0, 1, 0) / (1, 0, 0, m, 1, 0), whose pixel centers sit at half-integers.
    if axis == "x":
        matrix = jnp.stack([jnp.stack([one, zero], -1), jnp.stack([factor, one], -1)], -2)
        offset = jnp.stack([zero, factor * (h / 2)], -1)
    else:
        matrix = jnp.stack([jnp.stack([one, factor], -1), jnp.stack([zero, one], -1)], -2)
        offset = jnp.stack([factor * (w / 2), zero], -1)
    return _affine_resample(x, matrix, offset, fill_value=fill, order=order, half_up=True)


def shear_x(x: ArrayLike, factor: ArrayLike, *, fill_value: float = 0.0, order: int = 0) -> jax.Array:
    """Shear every image horizontally about its top-left corner, as AutoAugment's ``ShearX``.

    Output pixel (row ``r``, column ``c``) takes the input at column ``c + factor * (r + 1/2)``: PIL's
    ``img.transform(size, Image.AFFINE, (1, factor, 0, 0, 1, 0))`` (AutoAugment's reference code) and
    torchvision's ``ShearX`` of magnitude ``factor`` (``F.affine(shear=[degrees(atan(factor)), 0],
    center=[0, 0])``). So a positive factor moves lower rows to the left; the top row moves by
    ``factor / 2`` pixels. With ``order=0`` (the default, PIL's and torchvision's ``NEAREST``) source
    coordinates are rounded half up as PIL does; ``order=1`` interpolates bilinearly. Uncovered pixels take
    ``fill_value``.

    Args:
      x: images, shape ``(batch, height, width, channels)`` (NHWC): floats, or 8/16-bit integers such as
        ``uint8`` (rounded and clipped back; see the module docstring).
      factor: the shear ``tan(angle)``, a scalar or one per example, shape ``(batch,)``; may be traced.
      fill_value: value of uncovered pixels (a concrete number; finite for integer images).
      order: 0 for nearest-neighbour, 1 for bilinear interpolation.

    Returns:
      Sheared images, same shape and dtype as ``x``.

    Raises:
      ValueError: if ``x`` is not NHWC, a concrete ``factor`` is NaN or infinite or has a wrong shape, or
        ``order`` is not 0 or 1.
      TypeError: if ``fill_value`` is not a concrete number, or ``x`` is neither floating nor an integer
        type of at most 16 bits.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> x = jnp.tile(jnp.arange(1.0, 5.0), (3, 1)).reshape(1, 3, 4, 1)
      >>> jr.shear_x(x, 1.0)[0, :, :, 0]  # row r shifts left by r + 1/2, rounded half up
      Array([[2., 3., 4., 0.],
             [3., 4., 0., 0.],
             [4., 0., 0., 0.]], dtype=float32)
    """
    return _shear(x, factor, fill_value, order, "x")


def shear_y(x: ArrayLike, factor: ArrayLike, *, fill_value: float = 0.0, order: int = 0) -> jax.Array:
    """Shear every image vertically about its top-left corner, as AutoAugment's ``ShearY``.

    Output pixel (row ``r``, column ``c``) takes the input at row ``r + factor * (c + 1/2)``: PIL's
    ``img.transform(size, Image.AFFINE, (1, 0, 0, factor, 1, 0))`` and torchvision's ``ShearY``. Rounding,
    ``order`` and fill as in :func:`shear_x`.

    Args:
      x: images, shape ``(batch, height, width, channels)`` (NHWC): floats, or 8/16-bit integers such as
        ``uint8`` (rounded and clipped back; see the module docstring).
      factor: the shear ``tan(angle)``, a scalar or one per example, shape ``(batch,)``; may be traced.
      fill_value: value of uncovered pixels (a concrete number; finite for integer images).
      order: 0 for nearest-neighbour, 1 for bilinear interpolation.

    Returns:
      Sheared images, same shape and dtype as ``x``.

    Raises:
      ValueError: if ``x`` is not NHWC, a concrete ``factor`` is NaN or infinite or has a wrong shape, or
        ``order`` is not 0 or 1.
      TypeError: if ``fill_value`` is not a concrete number, or ``x`` is neither floating nor an integer
        type of at most 16 bits.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> x = jnp.arange(1.0, 4.0).reshape(1, 3, 1, 1)
      >>> jr.shear_y(x, -2.0)[0, :, 0, 0]  # column 0 moves down by one row
      Array([0., 1., 2.], dtype=float32)
    """
    return _shear(x, factor, fill_value, order, "y")


# ----------------------------------------------------------------------------------------------- random


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
      x: images, shape ``(batch, height, width, channels)`` (NHWC): floats, or 8/16-bit integers such as
        ``uint8`` (rounded and clipped back; see the module docstring).
      max_degrees: a float >= 0 (symmetric range) or a ``(low, high)`` pair with ``low <= high``, in
        degrees; may be traced.
      fill_value: value of pixels that sample outside the input (a concrete number; finite for integer
        images).
      order: 0 for nearest-neighbour, 1 for bilinear interpolation.

    Returns:
      Rotated images, same shape and dtype as ``x``.

    Raises:
      ValueError: if ``x`` is not NHWC, ``max_degrees`` < 0 or unordered, or ``order`` is not 0 or 1.
      TypeError: if ``fill_value`` is not a concrete number, or ``x`` is neither floating nor an integer
        type of at most 16 bits.

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
    _check_resampled_dtype(x, "random_rotation")
    pair = _as_pair("max_degrees", max_degrees)
    if pair is None:
        check_in_range("max_degrees", max_degrees, 0.0, None)
        low, high = -max_degrees, max_degrees
    else:
        low, high = pair
        check_in_range("max_degrees", low)  # no bounds: rejects NaN
        check_in_range("max_degrees", high)
        _check_ordered("max_degrees", low, high)
    fill = _check_fill(fill_value, x)
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
      x: images, shape ``(batch, height, width, channels)`` (NHWC): floats, or 8/16-bit integers such as
        ``uint8`` (rounded and clipped back; see the module docstring).
      zoom_range: a float ``z`` in [0, 1) or a ``(min, max)`` pair of factors with ``0 < min <= max``;
        may be traced.
      fill_value: value of pixels that sample outside the input (a concrete number; finite for integer
        images).
      order: 0 for nearest-neighbour, 1 for bilinear interpolation.

    Returns:
      Zoomed images, same shape and dtype as ``x``.

    Raises:
      ValueError: if ``x`` is not NHWC, a factor is <= 0, ``min > max``, or ``order`` is not 0 or 1.
      TypeError: if ``fill_value`` is not a concrete number, or ``x`` is neither floating nor an integer
        type of at most 16 bits.

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
    _check_resampled_dtype(x, "random_zoom")
    pair = _as_pair("zoom_range", zoom_range)
    if pair is None:
        check_in_range("zoom_range", zoom_range, 0.0, 1.0, high_inclusive=False)
        low, high = 1 - zoom_range, 1 + zoom_range
    else:
        low, high = pair
        check_in_range("zoom_range", low, 0.0, None, low_inclusive=False)
        check_in_range("zoom_range", high, 0.0, None, low_inclusive=False)
        _check_ordered("zoom_range", low, high)
    fill = _check_fill(fill_value, x)
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
      x: images, shape ``(batch, height, width, channels)`` (NHWC): floats, or 8/16-bit integers such as
        ``uint8`` (rounded and clipped back; see the module docstring).
      max_fraction: a float in [0, 1] for both axes, or an ``(fh, fw)`` pair; may be traced.
      fill_value: value of uncovered pixels (a concrete number; finite for integer images).
      order: 0 for nearest-neighbour, 1 for bilinear interpolation.

    Returns:
      Shifted images, same shape and dtype as ``x``.

    Raises:
      ValueError: if ``x`` is not NHWC, a fraction is outside [0, 1], or ``order`` is not 0 or 1.
      TypeError: if ``fill_value`` is not a concrete number, or ``x`` is neither floating nor an integer
        type of at most 16 bits.

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
    _check_resampled_dtype(x, "random_translation")
    pair = _as_pair("max_fraction", max_fraction)
    frac_h, frac_w = (max_fraction, max_fraction) if pair is None else pair
    check_in_range("max_fraction", frac_h, 0.0, 1.0)
    check_in_range("max_fraction", frac_w, 0.0, 1.0)
    fill = _check_fill(fill_value, x)
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
