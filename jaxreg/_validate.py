"""Argument checks that run in Python, before tracing (floor 1).

Every public function validates *concrete* hyperparameters here and raises an error that names the argument,
the allowed range and the value it got (optax style). Traced values (a rate swept under ``jax.vmap``, a
strength inside ``jit``) cannot be inspected without a host sync, so they pass through unchecked: that is
what lets a regularization strength be a traced array in a vmapped sweep.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable
from typing import Any

import jax
import numpy as np

__all__ = [
    "is_concrete",
    "concrete_value",
    "check_in_range",
    "check_positive_int",
    "check_choice",
    "check_key",
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
) -> None:
    """Raise ``ValueError`` if a concrete ``value`` is NaN or outside the interval; traced values pass.

    Args:
      name: the argument's name, quoted in the message.
      value: a Python number, numpy scalar, 0-d array, tracer, or a callable (a schedule: not checked).
      low, high: bounds; ``None`` means unbounded on that side.
      low_inclusive, high_inclusive: whether the bounds themselves are allowed.

    Raises:
      ValueError: ``"{name} must be in the range [low, high), got {name} = value."``
      TypeError: if ``value`` is neither a number, an array, nor a callable.
    """
    if callable(value) and not isinstance(value, (jax.Array, np.ndarray)):
        return  # an optax schedule: checked when it is evaluated, if ever
    if isinstance(value, jax.core.Tracer):
        return
    if isinstance(value, (bool, np.bool_)) or not (
        isinstance(value, (numbers.Number, np.generic, np.ndarray, jax.Array))
    ):
        raise TypeError(f"{name} must be a number, got {name} = {value!r} of type {type(value).__name__}.")
    if np.ndim(value) != 0:
        return  # per-member hyperparameters given as an array; their range is the caller's responsibility
    v = float(value)
    lo_br = "[" if low_inclusive else "("
    hi_br = "]" if high_inclusive else ")"
    lo_s = "-inf" if low is None else f"{low:g}"
    hi_s = "inf" if high is None else f"{high:g}"
    bad = math.isnan(v)
    if low is not None:
        bad |= v < low if low_inclusive else v <= low
    if high is not None:
        bad |= v > high if high_inclusive else v >= high
    if bad:
        raise ValueError(f"{name} must be in the range {lo_br}{lo_s}, {hi_s}{hi_br}, got {name} = {value}.")


def check_positive_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """Return ``int(value)``; raise ``TypeError``/``ValueError`` unless it is an integer >= ``minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {name} = {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {name} = {value}.")
    return int(value)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {allowed}, got {name} = {value!r}.")


def check_key(key: Any, fn_name: str) -> None:
    """Raise ``ValueError`` when a random function in non-deterministic mode got no key (equinox style)."""
    if key is None:
        raise ValueError(
            f"{fn_name} requires a key when running in non-deterministic mode; pass a jax.random key "
            "(e.g. jax.random.key(0)) or deterministic=True."
        )


def check_callable(name: str, value: Any) -> Callable[..., Any]:
    """Return ``value``; raise ``TypeError`` if it is not callable."""
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {name} = {value!r}.")
    return value
