"""Checks of the engine step's extra arguments: output/activity penalties, the augment hook, optimizer extras.

Private helpers of :mod:`jaxreg.train`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxreg._validate import check_callable, check_in_range


def check_output_penalties(entries: Sequence[tuple], name: str = "output_penalties",
                            call: str = "fn(outputs, y)") -> tuple[tuple[Callable, ArrayLike], ...]:
    """``(fn, coefficient)`` pairs checked (fn callable, coefficient a scalar >= 0 when concrete) as a tuple.

    Raises:
      TypeError: an entry that is not a pair, or a fn that is not callable (named ``{name}[i]``).
      ValueError: a coefficient that is negative, NaN, infinite or not a scalar.
    """
    out = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, (tuple, list)) or len(entry) != 2:
            raise TypeError(f"{name}[{i}] must be a (fn, coefficient) pair, {call} -> scalar, "
                            f"got {name}[{i}] = {entry!r}.")
        check_callable(f"{name}[{i}] fn", entry[0])
        check_in_range(f"{name}[{i}] coefficient", entry[1], 0.0, None, scalar=True)
        out.append((entry[0], entry[1]))
    return tuple(out)


def accepted_extra_args(optimizer: Any) -> set[str] | None:
    """The extra keyword arguments ``optimizer.update`` takes (None: any, it has ``**kwargs``)."""
    try:
        parameters = inspect.signature(optimizer.update).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


def augmented(augment: Callable[..., Any], key: Any, x: Any, y: Any) -> tuple[Any, Any]:
    """``augment(key, x, y)``, checked at trace time: a pair ``(x, y)`` with the batch size kept.

    Raises:
      TypeError: ``augment`` did not return a pair.
      ValueError: it changed the batch size of ``x`` or ``y``.
    """
    result = augment(key, x, y)
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise TypeError(f"augment(key, x, y) must return the pair (x, y), got {type(result).__name__}.")
    new_x, new_y = result
    for name, old, new in (("x", x, new_x), ("y", y, new_y)):
        old_n, new_n = jnp.shape(old)[:1], jnp.shape(new)[:1]
        if old_n != new_n:
            raise ValueError(f"augment must keep the batch size: it turned {name} of shape {jnp.shape(old)} into "
                             f"shape {jnp.shape(new)}.")
    return new_x, new_y
