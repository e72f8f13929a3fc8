"""Point and color ops on NHWC image batches, with PIL's semantics on ``uint8``: the AutoAugment family.

``invert``, ``solarize``, ``posterize``, ``equalize`` and ``autocontrast`` are ``PIL.ImageOps``' functions;
``adjust_brightness``, ``adjust_contrast``, ``adjust_saturation`` and ``adjust_sharpness`` are
``PIL.ImageEnhance``'s ``Brightness``, ``Contrast``, ``Color`` and ``Sharpness``. All act on every image of a
batch ``(batch, height, width, channels)`` at once; magnitudes (``threshold``, ``bits``, ``factor``) are a
scalar shared by the batch or an array of shape ``(batch,)``, one per example (RandAugment draws them per
image), and may be traced.

Two kinds of images, two semantics:

* ``uint8`` (0..255): PIL's arithmetic, reproduced bit for bit (the tests compare with PIL on photographs and
  random images). The enhancers blend ``degenerate + factor * (x - degenerate)`` in float32 and truncate
  after clipping to [0, 255], as PIL's ``ImagingBlend``; the gray image is PIL's integer ITU-R 601-2 luma
  ``(19595 R + 38470 G + 7471 B + 2**15) >> 16``; ``equalize`` is PIL's integer histogram-step rule;
  ``adjust_sharpness`` blends with PIL's ``SMOOTH`` filter (3x3 kernel ``[1 1 1; 1 5 1; 1 1 1] / 13``, rounded,
  border pixels kept), computed in integers. One knowing difference: ``autocontrast`` maps ``v`` to
  ``floor((v - lo) * 255 / (hi - lo))`` exactly, where PIL evaluates the same expression in float64 and, when
  the exact value is an integer, sometimes lands just below it (0.43% of the ``(lo, hi, v)`` triples: for
  instance ``v = hi`` becomes 254 instead of 255 for ``hi - lo = 25``); there PIL's result is one less.
* floating images, meant to lie in [0, 1]: the same formulas without rounding, clipped to [0, 1] (torchvision's
  float semantics). Gray is ``0.299 R + 0.587 G + 0.114 B``, the contrast mean is its unrounded mean,
  ``solarize``'s threshold is a fraction, ``posterize`` keeps ``bits`` bits of ``floor(x * 2**bits)`` as
  torchvision v2, and ``equalize`` equalizes ``round(x * 255)`` and divides by 255. Low-precision floats are
  computed in float32 and cast back.

Other integer types (int8, uint16, int32...) are a ``TypeError`` naming ``x``; an obviously NCHW batch or a
3-d array is a ``ValueError``. ``adjust_contrast`` and ``adjust_saturation`` need 1 (gray) or 3 (RGB)
channels; the other ops act on each channel alone (an alpha channel is treated like a color).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxreg.augment._common import (
    _check_images,
    _check_pixel_dtype,
    _compute_dtype,
    _per_example_param,
    _pixel_max,
)

__all__ = [
    "invert",
    "solarize",
    "posterize",
    "equalize",
    "autocontrast",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_saturation",
    "adjust_sharpness",
]

# PIL's "L" conversion, ITU-R 601-2 luma in 16-bit fixed point (Convert.c, L24); floats use 0.299/0.587/0.114.
_LUMA_FIXED = (19595, 38470, 7471)
_LUMA_FLOAT = (0.299, 0.587, 0.114)
# ImageFilter.SMOOTH: a 3x3 kernel with scale 13 (ImageEnhance.Sharpness's degenerate image).
_SMOOTH = ((1, 1, 1), (1, 5, 1), (1, 1, 1))
_SMOOTH_SCALE = 13


def _images(x: ArrayLike, fn_name: str) -> jax.Array:
    x = _check_images(x, fn_name)
    _check_pixel_dtype(x, fn_name)
    return x


def _expand(per_example: jax.Array) -> jax.Array:
    return per_example.reshape(-1, 1, 1, 1)


def _is_u8(x: jax.Array) -> bool:
    return x.dtype == jnp.uint8


# --------------------------------------------------------------------------------------- inversion, levels


def invert(x: ArrayLike) -> jax.Array:
    """Invert every pixel: ``255 - x`` for ``uint8``, ``1 - x`` for floats (``PIL.ImageOps.invert``).

    Args:
      x: images, shape ``(batch, height, width, channels)`` (NHWC), ``uint8`` or floating in [0, 1].

    Returns:
      Inverted images, same shape and dtype.

    Raises:
      ValueError: if ``x`` is not a 4-d NHWC batch.
      TypeError: if ``x`` is an integer type other than ``uint8``.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> jr.invert(jnp.array([0, 100, 255], jnp.uint8).reshape(1, 1, 3, 1)).ravel()
      Array([255, 155,   0], dtype=uint8)
    """
    x = _images(x, "invert")
    return _invert(x)


@jax.jit
def _invert(x: jax.Array) -> jax.Array:
    if _is_u8(x):
        return jnp.uint8(255) - x
    return (1 - x.astype(_compute_dtype(x.dtype))).astype(x.dtype)


def solarize(x: ArrayLike, threshold: ArrayLike) -> jax.Array:
    """Invert the pixels at or above ``threshold`` (``PIL.ImageOps.solarize``).

    ``where(x >= threshold, max - x, x)`` with ``max`` 255 for ``uint8`` and 1 for floats.

    Args:
      x: images, shape ``(batch, height, width, channels)`` (NHWC), ``uint8`` or floating in [0, 1].
      threshold: in [0, 255] for ``uint8``, [0, 1] for floats; a scalar or one per example, shape
        ``(batch,)``; may be traced.

    Returns:
      Solarized images, same shape and dtype.

    Raises:
      ValueError: if ``x`` is not NHWC, or a concrete ``threshold`` is NaN, outside its range or of a wrong
        shape.
      TypeError: if ``x`` is an integer type other than ``uint8``.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> x = jnp.array([0, 127, 128, 200], jnp.uint8).reshape(1, 1, 4, 1)
      >>> jr.solarize(x, 128).ravel()
      Array([  0, 127, 127,  55], dtype=uint8)
    """
    x = _images(x, "solarize")
    threshold = _per_example_param("threshold", threshold, x.shape[0], "solarize", 0.0, _pixel_max(x.dtype))
    return _solarize(x, threshold)


@jax.jit
def _solarize(x: jax.Array, threshold: jax.Array) -> jax.Array:
    cdt = _compute_dtype(x.dtype)
    above = x.astype(cdt) >= _expand(threshold).astype(cdt)
    return jnp.where(above, _invert(x), x)


def _check_bits(bits: Any, batch: int) -> jax.Array:
    """``bits``: an integer in 1..8, or an integer array of shape ``(batch,)``; concrete values range-checked."""
    if isinstance(bits, (list, tuple)):
        bits = np.asarray(bits)
    dtype = getattr(bits, "dtype", None)
    integral = (isinstance(bits, (int, np.integer)) and not isinstance(bits, (bool, np.bool_))) or (
        dtype is not None and jnp.issubdtype(dtype, jnp.integer)
    )
    if not integral:
        raise TypeError(f"posterize: bits must be an integer in 1..8 (or an integer array), got bits = {bits!r}.")
    if np.shape(bits) not in ((), (batch,)):
        raise ValueError(
            f"posterize: bits must be a scalar or have shape ({batch},) (one per example), got bits with shape "
            f"{np.shape(bits)}."
        )
    if not isinstance(bits, jax.core.Tracer):
        values = np.asarray(bits)
        if values.size and not np.all((values >= 1) & (values <= 8)):
            shown = bits if values.ndim == 0 else f"an array holding {values[(values < 1) | (values > 8)][0]}"
            raise ValueError(f"posterize: bits must be in the range [1, 8], got bits = {shown}.")
    return jnp.broadcast_to(jnp.asarray(bits, jnp.int32), (batch,))


def posterize(x: ArrayLike, bits: ArrayLike) -> jax.Array:
    """Keep the ``bits`` most significant bits of every pixel (``PIL.ImageOps.posterize``).

    ``uint8``: ``x & ~(2**(8 - bits) - 1)``, PIL's. Floats: ``floor(x * 2**bits)``, clipped to
    ``[0, 2**bits - 1]``, divided by ``2**bits`` (torchvision v2's float posterize).

    Args:
      x: images, shape ``(batch, height, width, channels)`` (NHWC), ``uint8`` or floating in [0, 1].
      bits: an integer in 1..8 (8 is the identity on ``uint8``), or an integer array of shape ``(batch,)``;
        may be traced.

    Returns:
      Posterized images, same shape and dtype.

    Raises:
      ValueError: if ``x`` is not NHWC, or a concrete ``bits`` is outside 1..8 or of a wrong shape.
      TypeError: if ``bits`` is not an integer, or ``x`` is an integer type other than ``uint8``.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> jr.posterize(jnp.array([0, 100, 255], jnp.uint8).reshape(1, 1, 3, 1), 2).ravel()
      Array([  0,  64, 192], dtype=uint8)
    """
    x = _images(x, "posterize")
    return _posterize(x, _check_bits(bits, x.shape[0]))


@jax.jit
def _posterize(x: jax.Array, bits: jax.Array) -> jax.Array:
    bits = jnp.clip(bits, 1, 8)  # a traced out-of-range value cannot shift by a negative amount
    if _is_u8(x):
        mask = (jnp.int32(0xFF) << (8 - bits)) & 0xFF
        return x & _expand(mask.astype(jnp.uint8))
    cdt = _compute_dtype(x.dtype)
    levels = _expand(jnp.exp2(bits.astype(cdt)))
    y = jnp.clip(jnp.floor(x.astype(cdt) * levels), 0, levels - 1) / levels
    return y.astype(x.dtype)


# ------------------------------------------------------------------------------------- histogram ops


def _to_levels(x: jax.Array) -> jax.Array:
    """Pixel levels 0..255 as int32: ``uint8`` as is, floats as ``round(clip(x, 0, 1) * 255)``."""
    if _is_u8(x):
        return x.astype(jnp.int32)
    cdt = _compute_dtype(x.dtype)
    return jnp.round(jnp.clip(x.astype(cdt), 0, 1) * 255).astype(jnp.int32)


def equalize(x: ArrayLike) -> jax.Array:
    """Equalize each channel's histogram (``PIL.ImageOps.equalize``), per image.

    PIL's rule: with ``h`` the channel's 256-bin histogram and ``step = (sum(h) - h[last]) // 255`` (``last`` the
    largest level present), level ``v`` maps to ``min((step // 2 + sum(h[:v])) // step, 255)``; a channel with
    ``step == 0`` (one level, or too few pixels) is left as it is. Exact integer arithmetic, equal to PIL bit
    for bit on ``uint8``. Floats are equalized on their levels ``round(x * 255)`` and divided by 255.

    Args:
      x: images, shape ``(batch, height, width, channels)`` (NHWC), ``uint8`` or floating in [0, 1].

    Returns:
      Equalized images, same shape and dtype.

    Raises:
      ValueError: if ``x`` is not NHWC.
      TypeError: if ``x`` is an integer type other than ``uint8``.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> x = jnp.repeat(jnp.array([10, 20, 30], jnp.uint8), 256).reshape(1, 24, 32, 1)  # 256 pixels per level
      >>> jnp.unique(jr.equalize(x))  # step = (768 - 256) // 255 = 2: levels (1 + 0, 1 + 256, 1 + 512) // 2
      Array([  0, 128, 255], dtype=uint8)
    """
    x = _images(x, "equalize")
    return _equalize(x)


@jax.jit
def _equalize(x: jax.Array) -> jax.Array:
    n, h, w, c = x.shape
    levels = jnp.moveaxis(_to_levels(x), 3, 1).reshape(n * c, h * w)
    hist = jax.vmap(lambda v: jnp.zeros(256, jnp.int32).at[v].add(1))(levels)
    top_count = jnp.take_along_axis(hist, jnp.max(levels, axis=1, keepdims=True), axis=1)[:, 0]
    step = (h * w - top_count) // 255
    below = jnp.cumsum(hist, axis=1) - hist  # pixels strictly below each level
    lut = jnp.minimum((step[:, None] // 2 + below) // jnp.maximum(step, 1)[:, None], 255)
    mapped = jnp.where((step == 0)[:, None], levels, jnp.take_along_axis(lut, levels, axis=1))
    mapped = jnp.moveaxis(mapped.reshape(n, c, h, w), 1, 3)
    if _is_u8(x):
        return mapped.astype(jnp.uint8)
    return (mapped.astype(_compute_dtype(x.dtype)) / 255).astype(x.dtype)


def autocontrast(x: ArrayLike) -> jax.Array:
    """Stretch each channel of each image to the full range (``PIL.ImageOps.autocontrast``, ``cutoff=0``).

    With ``lo`` and ``hi`` the channel's smallest and largest values, ``uint8`` pixels map to
    ``floor((v - lo) * 255 / (hi - lo))`` in exact integer arithmetic (PIL's float64 evaluation is one less in
    0.43% of cases, see the module docstring), floats to ``(v - lo) / (hi - lo)``; a constant channel is left
    unchanged.

    Args:
      x: images, shape ``(batch, height, width, channels)`` (NHWC), ``uint8`` or floating in [0, 1].

    Returns:
      Images with every non-constant channel spanning [0, 255] (or [0, 1]), same shape and dtype.

    Raises:
      ValueError: if ``x`` is not NHWC.
      TypeError: if ``x`` is an integer type other than ``uint8``.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> jr.autocontrast(jnp.array([50, 100, 150], jnp.uint8).reshape(1, 1, 3, 1)).ravel()
      Array([  0, 127, 255], dtype=uint8)
    """
    x = _images(x, "autocontrast")
    return _autocontrast(x)


@jax.jit
def _autocontrast(x: jax.Array) -> jax.Array:
    if _is_u8(x):
        v = x.astype(jnp.int32)
        lo, hi = jnp.min(v, axis=(1, 2), keepdims=True), jnp.max(v, axis=(1, 2), keepdims=True)
        stretched = jnp.clip((v - lo) * 255 // jnp.maximum(hi - lo, 1), 0, 255)
        return jnp.where(hi > lo, stretched, v).astype(jnp.uint8)
    cdt = _compute_dtype(x.dtype)
    v = x.astype(cdt)
    lo, hi = jnp.min(v, axis=(1, 2), keepdims=True), jnp.max(v, axis=(1, 2), keepdims=True)
    span = jnp.where(hi > lo, hi - lo, 1)
    stretched = jnp.clip((v - lo) / span, 0, 1)
    return jnp.where(hi > lo, stretched, v).astype(x.dtype)


# ------------------------------------------------------------------------------------------- enhancers


def _blend(degenerate: jax.Array, x: jax.Array, factor: jax.Array) -> jax.Array:
    """PIL's ``Image.blend(degenerate, x, factor)``: ``d + factor * (x - d)`` in float32, clipped; ``uint8``
    truncated (``ImagingBlend``), floats clipped to [0, 1]."""
    cdt = _compute_dtype(x.dtype)
    d = degenerate.astype(cdt)
    factor = _expand(factor).astype(cdt)
    if _is_u8(x):
        out = d + _rounded_product(factor, x.astype(jnp.float32) - d)
        return jnp.floor(jnp.clip(out, 0, 255)).astype(jnp.uint8)
    return jnp.clip(d + factor * (x.astype(cdt) - d), 0, 1).astype(x.dtype)


def _rounded_product(factor: jax.Array, diff: jax.Array) -> jax.Array:
    """``float32(factor * diff)`` rounded once before any addition, as PIL's C code computes it.

    XLA contracts ``d + f * diff`` into a fused multiply-add (no rounding of the product), which moves a
    truncated ``uint8`` result by one level in ~1% of pixels. ``diff`` is an integer of at most 9 bits, so
    splitting ``factor`` into a 12-bit high part and the rest makes both partial products exact; their sum,
    rounded once (whether or not it is fused), is the correctly rounded product, and adding ``d`` to a sum
    cannot be contracted.
    """
    high = jax.lax.bitcast_convert_type(
        jax.lax.bitcast_convert_type(factor, jnp.uint32) & jnp.uint32(0xFFFFF000), jnp.float32
    )
    return high * diff + (factor - high) * diff


def _check_gray_or_rgb(x: jax.Array, fn_name: str) -> None:
    if x.shape[-1] not in (1, 3):
        raise ValueError(
            f"{fn_name}: x must have 1 (gray) or 3 (RGB) channels (its gray image is PIL's luma), got "
            f"x.shape = {x.shape}."
        )


def _gray(x: jax.Array) -> jax.Array:
    """The luma image, shape ``(batch, h, w, 1)``: int32 levels for ``uint8`` (PIL), float otherwise."""
    if x.shape[-1] == 1:
        return x.astype(jnp.int32) if _is_u8(x) else x.astype(_compute_dtype(x.dtype))
    if _is_u8(x):
        v = x.astype(jnp.int32)
        r, g, b = _LUMA_FIXED
        return (v[..., 0:1] * r + v[..., 1:2] * g + v[..., 2:3] * b + 0x8000) >> 16
    v = x.astype(_compute_dtype(x.dtype))
    r, g, b = _LUMA_FLOAT
    return v[..., 0:1] * r + v[..., 1:2] * g + v[..., 2:3] * b


def _factor(factor: Any, x: jax.Array, fn_name: str) -> jax.Array:
    return _per_example_param("factor", factor, x.shape[0], fn_name, 0.0, None)


def adjust_brightness(x: ArrayLike, factor: ArrayLike) -> jax.Array:
    """Scale brightness: blend with a black image (``PIL.ImageEnhance.Brightness(img).enhance(factor)``).

    ``factor`` 0 gives black, 1 the input, 2 twice as bright (clipped).

    Args:
      x: images, shape ``(batch, height, width, channels)`` (NHWC), ``uint8`` or floating in [0, 1].
      factor: ``>= 0``, a scalar or one per example, shape ``(batch,)``; may be traced.

    Returns:
      Images of the same shape and dtype.

    Raises:
      ValueError: if ``x`` is not NHWC, or a concrete ``factor`` is negative, NaN or of a wrong shape.
      TypeError: if ``x`` is an integer type other than ``uint8``.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> jr.adjust_brightness(jnp.array([10, 100, 200], jnp.uint8).reshape(1, 1, 3, 1), 1.5).ravel()
      Array([ 15, 150, 255], dtype=uint8)
    """
    x = _images(x, "adjust_brightness")
    return _adjust_brightness(x, _factor(factor, x, "adjust_brightness"))


@jax.jit
def _adjust_brightness(x: jax.Array, factor: jax.Array) -> jax.Array:
    return _blend(jnp.zeros((), jnp.float32), x, factor)


def adjust_contrast(x: ArrayLike, factor: ArrayLike) -> jax.Array:
    """Scale contrast: blend with the image's mean gray (``PIL.ImageEnhance.Contrast(img).enhance(factor)``).

    The degenerate image is uniform at the mean of the luma image: ``int(mean + 0.5)`` of PIL's integer luma
    on ``uint8`` (one mean per image over all its pixels), the unrounded mean of ``0.299 R + 0.587 G +
    0.114 B`` on floats. ``factor`` 0 gives that gray, 1 the input.

    Args:
      x: images, shape ``(batch, height, width, channels)`` (NHWC) with 1 or 3 channels, ``uint8`` (up to
        about 4 million pixels per image, where the int32 luma sum stays exact) or floating in [0, 1].
      factor: ``>= 0``, a scalar or one per example, shape ``(batch,)``; may be traced.

    Returns:
      Images of the same shape and dtype.

    Raises:
      ValueError: if ``x`` is not NHWC or has another number of channels, or a concrete ``factor`` is
        negative, NaN or of a wrong shape.
      TypeError: if ``x`` is an integer type other than ``uint8``.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> jr.adjust_contrast(jnp.array([0, 100, 200], jnp.uint8).reshape(1, 1, 3, 1), 0.5).ravel()
      Array([ 50, 100, 150], dtype=uint8)
    """
    x = _images(x, "adjust_contrast")
    _check_gray_or_rgb(x, "adjust_contrast")
    return _adjust_contrast(x, _factor(factor, x, "adjust_contrast"))


@jax.jit
def _adjust_contrast(x: jax.Array, factor: jax.Array) -> jax.Array:
    gray = _gray(x)
    if _is_u8(x):
        count = gray.shape[1] * gray.shape[2]
        total = jnp.sum(gray, axis=(1, 2, 3), keepdims=True)
        mean = ((2 * total + count) // (2 * count)).astype(jnp.float32)  # int(total / count + 0.5), exactly
    else:
        mean = jnp.mean(gray, axis=(1, 2, 3), keepdims=True)
    return _blend(mean, x, factor)


def adjust_saturation(x: ArrayLike, factor: ArrayLike) -> jax.Array:
    """Scale color saturation: blend with the gray image (``PIL.ImageEnhance.Color(img).enhance(factor)``).

    The degenerate image is the luma (PIL's integer one on ``uint8``) in every channel; ``factor`` 0 gives
    gray, 1 the input, 2 more saturated colors. Gray (1-channel) images are returned unchanged.

    Args:
      x: images, shape ``(batch, height, width, channels)`` (NHWC) with 1 or 3 channels, ``uint8`` or
        floating in [0, 1].
      factor: ``>= 0``, a scalar or one per example, shape ``(batch,)``; may be traced.

    Returns:
      Images of the same shape and dtype.

    Raises:
      ValueError: if ``x`` is not NHWC or has another number of channels, or a concrete ``factor`` is
        negative, NaN or of a wrong shape.
      TypeError: if ``x`` is an integer type other than ``uint8``.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> x = jnp.array([200, 100, 50], jnp.uint8).reshape(1, 1, 1, 3)
      >>> jr.adjust_saturation(x, 0.0).ravel()  # gray: (19595 * 200 + 38470 * 100 + 7471 * 50 + 2**15) >> 16
      Array([124, 124, 124], dtype=uint8)
    """
    x = _images(x, "adjust_saturation")
    _check_gray_or_rgb(x, "adjust_saturation")
    return _adjust_saturation(x, _factor(factor, x, "adjust_saturation"))


@jax.jit
def _adjust_saturation(x: jax.Array, factor: jax.Array) -> jax.Array:
    return _blend(_gray(x).astype(jnp.float32), x, factor)


def adjust_sharpness(x: ArrayLike, factor: ArrayLike) -> jax.Array:
    """Sharpen or blur: blend with a smoothed image (``PIL.ImageEnhance.Sharpness(img).enhance(factor)``).

    The degenerate image is PIL's ``ImageFilter.SMOOTH`` of the input: the 3x3 kernel
    ``[[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13`` on interior pixels (rounded to the nearest level on ``uint8``,
    in exact integer arithmetic), the one-pixel border kept. ``factor`` 0 gives the smoothed image, 1 the
    input, 2 a sharpened one. Images smaller than 3x3 are returned unchanged.

    Args:
      x: images, shape ``(batch, height, width, channels)`` (NHWC), ``uint8`` or floating in [0, 1].
      factor: ``>= 0``, a scalar or one per example, shape ``(batch,)``; may be traced.

    Returns:
      Images of the same shape and dtype.

    Raises:
      ValueError: if ``x`` is not NHWC, or a concrete ``factor`` is negative, NaN or of a wrong shape.
      TypeError: if ``x`` is an integer type other than ``uint8``.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> x = jnp.zeros((1, 3, 3, 1), jnp.uint8).at[0, 1, 1, 0].set(130)
      >>> jr.adjust_sharpness(x, 0.0)[0, :, :, 0]  # the center becomes 5 * 130 / 13; the border stays
      Array([[ 0,  0,  0],
             [ 0, 50,  0],
             [ 0,  0,  0]], dtype=uint8)
    """
    x = _images(x, "adjust_sharpness")
    return _adjust_sharpness(x, _factor(factor, x, "adjust_sharpness"))


def _smoothed(x: jax.Array) -> jax.Array:
    """PIL's SMOOTH filter in float32 (``uint8``: rounded integer levels), border pixels kept."""
    _, h, w, _ = x.shape
    exact = _is_u8(x)
    v = x.astype(jnp.int32) if exact else x.astype(_compute_dtype(x.dtype))
    if h < 3 or w < 3:
        return v.astype(jnp.float32) if exact else v
    acc = sum(
        v[:, dy : h - 2 + dy, dx : w - 2 + dx] * (_SMOOTH[dy][dx] if exact else _SMOOTH[dy][dx] / _SMOOTH_SCALE)
        for dy in range(3)
        for dx in range(3)
    )
    if exact:
        # round(acc / 13) exactly: acc / 13 is never a tie (13 is odd), so half-up rounding is PIL's rounding.
        acc = (2 * acc + _SMOOTH_SCALE) // (2 * _SMOOTH_SCALE)
    return v.at[:, 1:-1, 1:-1].set(acc).astype(jnp.float32 if exact else v.dtype)


@jax.jit
def _adjust_sharpness(x: jax.Array, factor: jax.Array) -> jax.Array:
    return _blend(_smoothed(x), x, factor)

