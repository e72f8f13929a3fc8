"""Type aliases shared across jaxreg (floor 1)."""

from __future__ import annotations

from typing import Any, Callable, Union

import jax

PyTree = Any
"""Any JAX pytree: nested dicts/lists/tuples/NamedTuples/dataclasses of arrays, or an nnx ``State``."""

MaskOrFn = Union[PyTree, Callable[[PyTree], PyTree], None]
"""A bool pytree (or a prefix of the params tree), a callable ``params -> bool pytree``, or ``None`` (all)."""

KeyArray = jax.Array
"""A ``jax.random`` key: new-style typed key (``jax.random.key``) or legacy uint32[2] (``PRNGKey``)."""

__all__ = ["PyTree", "MaskOrFn", "KeyArray"]
