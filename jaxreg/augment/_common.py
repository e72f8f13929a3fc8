"""Private helpers shared by the :mod:`jaxreg.augment` modules: argument checks, compute dtypes, keys."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxreg._typing import KeyArray
from jaxreg._validate import check_in_range, check_number, is_concrete


# ----------------------------------------------------------------------------------------------- checks


# Channel counts of images (gray, RGB, RGBA): what axis 1 of an NCHW batch holds.
_IMAGE_CHANNELS = (1, 3, 4)


def _check_images(x: ArrayLike, fn_name: str, *, spatial: bool = True) -> jax.Array:
    """``x`` as a 4-d NHWC array; ``spatial=False`` for layout-blind ops (mixup) that only need a batch.

    A batch that is obviously NCHW is refused: axis 1 holds 1, 3 or 4 (a channel count), the last axis does
    not, and axis 1 is smaller than both axes 2 and 3 (read as NHWC, the images would be 1 to 4 pixels high
    and wider, with more channels than rows). Tiny NHWC images such as ``(b, 4, 4, 8)`` therefore still pass.
    """
    x = jnp.asarray(x)
    if x.ndim != 4:
        hint = ""
        if x.ndim == 3:
            hint = (" (a 3-d array: one image (height, width, channels) needs a batch axis, x[None]; a batch of "
                    "single-channel images needs a channel axis, x[..., None])")
        raise ValueError(
            f"{fn_name}: x must be a 4-d batch of images in NHWC layout (batch, height, width, channels), "
            f"got x.shape = {x.shape}{hint}."
        )
    _, d1, d2, d3 = x.shape
    if spatial and d1 in _IMAGE_CHANNELS and d3 not in _IMAGE_CHANNELS and d1 < min(d2, d3):
        raise ValueError(
            f"{fn_name}: x must be in NHWC layout (batch, height, width, channels), got x.shape = {x.shape}, "
            f"which looks like NCHW ({d1} channels on axis 1); convert it with jnp.moveaxis(x, 1, -1)."
        )
    return x


def _check_resampled_dtype(x: jax.Array, fn_name: str) -> None:
    """Interpolating ops compute in float32: floats, and integers of at most 16 bits (exact in float32)."""
    dtype = x.dtype
    if jnp.issubdtype(dtype, jnp.floating):
        return
    if jnp.issubdtype(dtype, jnp.integer) and dtype.itemsize <= 2:
        return
    raise TypeError(
        f"{fn_name}: x must be a floating or an 8/16-bit integer image batch (uint8, int8, uint16, int16; resampled "
        f"in float32, then rounded and clipped back), got x.dtype = {dtype}; wider integers are not exact in "
        "float32: convert x to a float dtype first."
    )


def _check_fill(fill_value: Any, x: jax.Array) -> float:
    """``fill_value`` as a float; NaN and infinities only for floating images (NaN marks outside samples)."""
    fill = check_number("fill_value", fill_value)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        check_in_range("fill_value", fill)  # an integer image cannot hold NaN or inf
    return fill


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


# ----------------------------------------------------------------------------------------------- dtypes


def _compute_dtype(dtype: Any) -> Any:
    # float64 stays (x64 runs); everything narrower is computed in float32 and cast back.
    return jnp.float64 if dtype == jnp.float64 else jnp.float32


def _cast_back(y: jax.Array, dtype: Any) -> jax.Array:
    if jnp.issubdtype(dtype, jnp.integer):
        info = jnp.iinfo(dtype)
        y = jnp.clip(jnp.round(y), info.min, info.max)
    return y.astype(dtype)


# ------------------------------------------------------------------------------------------------- keys


def _example_keys(key: KeyArray, batch: int) -> jax.Array:
    return jax.random.split(key, batch)


# ------------------------------------------------------------------------------------- point-op checks


def _check_pixel_dtype(x: jax.Array, fn_name: str) -> None:
    """Point ops, erasing and policies take ``uint8`` images (PIL's range 0..255) or floats in [0, 1]."""
    if x.dtype == jnp.uint8 or jnp.issubdtype(x.dtype, jnp.floating):
        return
    raise TypeError(
        f"{fn_name}: x must be uint8 images (0..255) or floating images in [0, 1], got x.dtype = {x.dtype}; "
        "convert other integer images with x.astype(jnp.uint8) (if they hold 0..255) or to float / 255."
    )


def _pixel_max(dtype: Any) -> float:
    """The brightest pixel value: 255 for ``uint8``, 1 for floating images."""
    return 255.0 if dtype == jnp.uint8 else 1.0


def _per_example_param(
    name: str,
    value: Any,
    batch: int,
    fn_name: str,
    low: float | None = None,
    high: float | None = None,
    *,
    dtype: Any = jnp.float32,
) -> jax.Array:
    """A magnitude shared by the batch (shape ``()``) or one per example (shape ``(batch,)``), as ``(batch,)``.

    Concrete values are range-checked (NaN and infinities refused); traced ones pass unchecked.
    """
    if isinstance(value, (bool, np.bool_, str)) or value is None:
        raise TypeError(f"{fn_name}: {name} must be a number or an array of shape ({batch},), got {name} = {value!r}.")
    if isinstance(value, (list, tuple)):
        value = np.asarray(value)
    shape = np.shape(value)
    if shape not in ((), (batch,)):
        raise ValueError(
            f"{fn_name}: {name} must be a scalar (shared by the batch) or have shape ({batch},) (one per example), "
            f"got {name} with shape {shape}."
        )
    check_in_range(name, value, low, high)
    return jnp.broadcast_to(jnp.asarray(value, dtype), (batch,))
