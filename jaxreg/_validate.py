"""Argument checks that run in Python, before tracing (floor 1).

Every public function validates *concrete* hyperparameters here and raises an error that names the argument,
the allowed range and the value it got (optax style). Traced values (a rate swept under ``jax.vmap``, a
strength inside ``jit``) cannot be inspected without a host sync, so they pass through unchecked: that is
what lets a regularization strength be a traced array in a vmapped sweep.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "is_concrete",
    "concrete_value",
    "check_in_range",
    "check_number",
    "check_scalar",
    "check_bool",
    "check_positive_int",
    "check_choice",
    "check_axis",
    "check_axes",
    "check_leaf_axes",
    "check_key",
    "check_callable",
]


def is_concrete(value: Any) -> bool:
    """True when ``value`` is a Python/numpy number or a non-traced scalar JAX array."""
    if isinstance(value, jax.core.Tracer):
        return False
    if isinstance(value, numbers.Number) or isinstance(value, np.generic):
        return True
    if isinstance(value, (np.ndarray, jax.Array)):
        return np.ndim(value) == 0
    return False


def concrete_value(value: Any) -> float | None:
    """``float(value)`` when it is concrete (see :func:`is_concrete`), else ``None``."""
    return float(value) if is_concrete(value) else None


def check_in_range(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    finite: bool = True,
    scalar: bool = False,
) -> None:
    """Raise ``ValueError`` if a concrete ``value`` is NaN, infinite or outside the interval; traced values pass.

    A concrete array (numpy, or a JAX array that is not traced) is concrete too: every element is checked
    (per-member or per-leaf hyperparameters), its shape is the caller's to check.

    Args:
      name: the argument's name, quoted in the message.
      value: a Python number, numpy scalar or array, JAX array, tracer, or a callable (a schedule: not checked).
      low, high: bounds; ``None`` means unbounded on that side.
      low_inclusive, high_inclusive: whether the bounds themselves are allowed.
      finite: reject infinities (the default: no strength, rate or size is meaningful at infinity; Keras
        rejects them too); ``False`` for a value such as a baseline, where an infinity means "none".
      scalar: also require a scalar, traced or not (see :func:`check_scalar`).

    Raises:
      ValueError: ``"{name} must be in the range [low, high), got {name} = value."``; with ``scalar``, also
        ``"{name} must be a scalar, ..."``.
      TypeError: if ``value`` is neither a number, an array, nor a callable.
    """
    if callable(value) and not isinstance(value, (jax.Array, np.ndarray)):
        return  # an optax schedule: checked when it is evaluated, if ever
    if scalar:
        check_scalar(name, value)
    if isinstance(value, jax.core.Tracer):
        return
    if isinstance(value, (bool, np.bool_)) or not (
        isinstance(value, (numbers.Number, np.generic, np.ndarray, jax.Array))
    ):
        raise TypeError(f"{name} must be a number, got {name} = {value!r} of type {type(value).__name__}.")
    values = np.asarray(value, dtype=np.float64).ravel()
    lo_br = "[" if low_inclusive and low is not None else "("
    hi_br = "]" if high_inclusive and high is not None else ")"
    lo_s = "-inf" if low is None else f"{low:g}"
    hi_s = "inf" if high is None else f"{high:g}"
    bad = np.isnan(values)
    if finite:
        bad |= np.isinf(values)
    if low is not None:
        bad |= values < low if low_inclusive else values <= low
    if high is not None:
        bad |= values > high if high_inclusive else values >= high
    if bad.any():
        shown = value if np.ndim(value) == 0 else f"an array holding {values[np.argmax(bad)]:g}"
        raise ValueError(f"{name} must be in the range {lo_br}{lo_s}, {hi_s}{hi_br}, got {name} = {shown}.")


def check_scalar(name: str, value: Any, fn_name: str | None = None) -> None:
    """Raise ``ValueError`` if ``value`` is an array (or a list) of rank > 0; scalars and schedules pass.

    Unlike :func:`check_in_range`, traced values are checked too: their shape is static. Under ``jax.vmap``
    each member sees a scalar, so a batch of values goes through ``vmap``, not through this argument.

    Args:
      name: the argument's name, quoted in the message.
      value: a number, an array, a tracer, or a callable (an optax schedule: not checked).
      fn_name: the public function's name, quoted first when given.

    Raises:
      ValueError: ``"{fn_name}: {name} must be a scalar, got an array of shape (2,); ..."``.
    """
    if callable(value) and not isinstance(value, (jax.Array, np.ndarray)):
        return
    try:
        shape = np.shape(value)
    except (TypeError, ValueError):  # a ragged sequence: not a scalar either
        shape = None
    if shape == ():
        return
    prefix = f"{fn_name}: " if fn_name else ""
    got = f"an array of shape {shape}" if shape is not None else f"{name} = {value!r}"[:80]
    raise ValueError(f"{prefix}{name} must be a scalar, got {got}; to use several values, jax.vmap the function "
                     "over them.")


def check_bool(name: str, value: Any, fn_name: str | None = None) -> bool:
    """Return ``bool(value)``; raise ``TypeError`` unless ``value`` is a Python or numpy bool.

    For static flags (``horizontal``, ``batch_mean``, ``jit``...): an array, NaN, ``0``/``1`` or a string is
    refused rather than read by its truth value.

    Raises:
      TypeError: ``"{fn_name}: {name} must be a bool, got {name} = value."``
    """
    if not isinstance(value, (bool, np.bool_)):
        prefix = f"{fn_name}: " if fn_name else ""
        shown = f"{value!r}"[:80]
        raise TypeError(f"{prefix}{name} must be a bool, got {name} = {shown}.")
    return bool(value)


def check_positive_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """Return ``int(value)``; raise ``TypeError``/``ValueError`` unless it is an integer >= ``minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {name} = {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {name} = {value}.")
    return int(value)


def check_number(name: str, value: Any) -> float:
    """Return ``float(value)`` for a concrete real scalar; raise ``TypeError`` for anything else.

    For hyperparameters that must be known in Python (a static fill value, a threshold compared in Python):
    bools, tracers, strings, callables and arrays of rank > 0 are rejected. NaN and infinities pass; bound
    them with :func:`check_in_range`.

    Raises:
      TypeError: ``"{name} must be a real number, got {name} = value."``
    """
    dtype = getattr(value, "dtype", None)
    if dtype is None:  # a Python number
        real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    else:  # a numpy scalar or a 0-d array, not traced
        real = (
            not isinstance(value, jax.core.Tracer)
            and np.ndim(value) == 0
            and (jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating))
        )
    if not real:
        raise TypeError(f"{name} must be a real number, got {name} = {value!r}.")
    return float(value)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    choices = tuple(choices)
    # An array is never a choice (choices are static Python values), and `in` would ask for its truth value.
    if isinstance(value, (np.ndarray, jax.Array)) or value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {allowed}, got {name} = {value!r}.")


def _is_int(value: Any) -> bool:
    return isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, (bool, np.bool_))


def _axes_range_error(name: str, shown: Any, ndim: int) -> ValueError:
    return ValueError(f"{name} must be in the range [{-ndim}, {ndim}) for a {ndim}-D input, got {name} = {shown}.")


def check_axis(name: str, axis: Any, ndim: int) -> int:
    """Return ``axis`` as a non-negative int for an ``ndim``-D array.

    Raises:
      TypeError: if ``axis`` is not an integer.
      ValueError: ``"{name} must be in the range [-ndim, ndim) for a ndim-D input, got {name} = axis."``
    """
    if not _is_int(axis):
        raise TypeError(f"{name} must be an integer, got {name} = {axis!r}.")
    if not -ndim <= axis < ndim:
        raise _axes_range_error(name, axis, ndim)
    return int(axis) % ndim


def check_axes(name: str, axis: Any, *, ndim: int | None = None, allow_empty: bool = False) -> tuple[int, ...]:
    """Return an int or a sequence of ints as a tuple of ints; with ``ndim``, range-checked and non-negative.

    Args:
      name: the argument's name, quoted in the message.
      axis: an int or a sequence of ints.
      ndim: the rank the axes index; ``None`` when it is not known yet (checked per leaf later, see
        :func:`check_leaf_axes`).
      allow_empty: whether ``()`` is valid (``broadcast_dims``: no axis) rather than an error (a norm over
        no axis is meaningless).

    Raises:
      TypeError: if ``axis`` is not an int or a (non-empty) sequence of ints.
      ValueError: with ``ndim``, if an axis is outside ``[-ndim, ndim)``.
    """
    axes = (axis,) if _is_int(axis) else axis
    if (
        isinstance(axes, str)
        or not isinstance(axes, Sequence)
        or not (axes or allow_empty)
        or not all(map(_is_int, axes))
    ):
        kind = "a sequence" if allow_empty else "a non-empty sequence"
        raise TypeError(f"{name} must be an int or {kind} of ints, got {name} = {axis!r}.")
    if ndim is None:
        return tuple(int(a) for a in axes)
    if not all(-ndim <= a < ndim for a in axes):
        raise _axes_range_error(name, axis, ndim)
    return tuple(int(a) % ndim for a in axes)


def check_leaf_axes(name: str, axes: tuple[int, ...], shape: tuple[int, ...]) -> None:
    """Raise ``ValueError`` when ``axes`` do not index a selected pytree leaf of ``shape``.

    For per-unit norms (group lasso, max-norm constraints) that apply one ``axis`` to every selected leaf:
    the message names the leaf's shape and the way out, deselecting it with ``mask=``.
    """
    if any(not -len(shape) <= a < len(shape) for a in axes):
        shown = axes[0] if len(axes) == 1 else axes
        raise ValueError(
            f"{name} must index the dimensions of every selected leaf, got {name} = {shown} for a leaf of shape "
            f"{shape}; deselect it with mask= (e.g. mask=jr.kernel_mask) or choose another {name}."
        )


def check_key(key: Any, fn_name: str, *, has_deterministic: bool = False) -> None:
    """Check that ``key`` is ONE ``jax.random`` key (traced keys included), before it reaches JAX.

    Accepted: a typed key of shape ``()`` (``jax.random.key(0)``, any implementation) or a legacy raw key,
    a ``uint32`` array of shape ``(2,)`` (``jax.random.PRNGKey(0)``). Under ``jax.vmap`` over a batch of keys
    the function sees one key, so batches go through ``vmap``, not through this argument.

    Args:
      key: the key argument as given.
      fn_name: the public function's name, quoted in the message.
      has_deterministic: whether the function has a ``deterministic=True`` mode that needs no key; the
        message then mentions it as the other way out.

    Raises:
      ValueError: ``"{fn_name} requires a key ..."`` if ``key`` is None (equinox's wording).
      TypeError: ``"{fn_name}: key must be a single jax.random key ..., got ..."`` for anything else that is
        not one key: an int, a string, a float or int array, a ``uint32`` array of another shape, a batch of
        keys.
    """
    if key is None:
        if has_deterministic:
            raise ValueError(
                f"{fn_name} requires a key when running in non-deterministic mode; pass a jax.random key "
                "(e.g. jax.random.key(0)) or deterministic=True."
            )
        raise ValueError(f"{fn_name} requires a key; pass a jax.random key (e.g. jax.random.key(0)).")
    dtype, shape = getattr(key, "dtype", None), getattr(key, "shape", None)
    if isinstance(key, (jax.Array, np.ndarray)):
        if jnp.issubdtype(dtype, jax.dtypes.prng_key) and shape == ():
            return
        if dtype == np.uint32 and shape == (2,):
            return
        got = f"an array of dtype {dtype} and shape {shape}"
        if jnp.issubdtype(dtype, jax.dtypes.prng_key) or (dtype == np.uint32 and len(shape) == 2 and shape[-1] == 2):
            got += " (a batch of keys: jax.vmap the function over them)"
    else:
        got = f"{type(key).__name__} {key!r}"[:80]
    raise TypeError(
        f"{fn_name}: key must be a single jax.random key (jax.random.key(0), or a legacy uint32[2] "
        f"jax.random.PRNGKey(0)), got {got}."
    )


def check_callable(name: str, value: Any) -> Callable[..., Any]:
    """Return ``value``; raise ``TypeError`` if it is not callable."""
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {name} = {value!r}.")
    return value
