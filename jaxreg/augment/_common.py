"""Private helpers shared by the :mod:`jaxreg.augment` modules: argument checks, compute dtypes, keys."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxreg._typing import KeyArray
from jaxreg._validate import check_in_range, is_concrete


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
