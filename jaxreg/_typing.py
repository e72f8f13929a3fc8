"""Type aliases shared across jaxreg (floor 1)."""

from __future__ import annotations

from typing import Any, Callable, Protocol, Union

import jax

PyTree = Any
"""Any JAX pytree: nested dicts/lists/tuples/NamedTuples/dataclasses of arrays, or an nnx ``State``."""

MaskOrFn = Union[PyTree, Callable[[PyTree], PyTree], None]
"""A bool pytree (or a prefix of the params tree), a callable ``params -> bool pytree``, or ``None`` (all)."""

KeyArray = jax.Array
"""A ``jax.random`` key: new-style typed key (``jax.random.key``) or legacy uint32[2] (``PRNGKey``)."""

class ApplyFn(Protocol):
    """The engine's model contract: ``apply_fn(params, model_state, x, *, key, training) -> (outputs, state)``.

    See :mod:`jaxreg.train`; :func:`jaxreg.flax.linen.linen_apply` and :func:`jaxreg.flax.nnx.nnx_apply` build one.
    """

    def __call__(
        self, params: PyTree, model_state: PyTree, x: Any, *, key: KeyArray | None, training: bool
    ) -> tuple[Any, PyTree]: ...


__all__ = ["PyTree", "MaskOrFn", "KeyArray", "ApplyFn"]
