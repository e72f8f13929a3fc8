"""Many models as one: pytrees stacked along a leading member axis (k folds, sweeps; floor 6).

:func:`jaxreg.fit_members` trains states stacked by :func:`stack_members`; :func:`unstack_members` splits the
result, and :func:`num_members` checks that a stacked argument has the member axis it should.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxreg._typing import PyTree

__all__ = ["stack_members", "unstack_members", "num_members"]


def stack_members(trees: Sequence[PyTree]) -> PyTree:
    """Stack equally structured pytrees (one per member) along a new leading member axis.

    Typed ``jax.random`` keys stack like any other leaf. Every leaf of the result is a fresh buffer, so the
    stacked tree can be donated (:func:`jaxreg.fit_members` donates its ``states``) while the inputs stay valid.

    Args:
      trees: a non-empty sequence of pytrees with identical structure, shapes and dtypes, e.g. one
        :class:`jaxreg.TrainState` per member (``[state] * k`` repeats one initial state).

    Returns:
      A pytree of the same structure whose leaves have a leading axis of length ``len(trees)``.

    Raises:
      ValueError: if ``trees`` is empty or the structures differ.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> import jaxreg as jr
      >>> state = jr.create_train_state({"w": jnp.zeros(2)}, optax.sgd(0.1), jax.random.key(0))
      >>> states = jr.stack_members([state] * 3)
      >>> states.params["w"].shape, states.key.shape, states.step
      ((3, 2), (3,), Array([0, 0, 0], dtype=int32))
      >>> jr.unstack_members(states)[2].params["w"]
      Array([0., 0.], dtype=float32)
    """
    trees = list(trees)
    if not trees:
        raise ValueError("stack_members needs at least one pytree, got an empty sequence.")
    try:
        return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)
    except ValueError as err:
        raise ValueError(f"stack_members needs pytrees of identical structure: {err}") from None


def unstack_members(tree: PyTree) -> list[PyTree]:
    """Split a pytree stacked along a leading member axis into one pytree per member.

    Args:
      tree: a pytree whose leaves all have the same leading length ``K`` (e.g. the states returned by
        :func:`jaxreg.fit_members`).

    Returns:
      A list of ``K`` pytrees, member ``i`` holding ``leaf[i]`` of every leaf.

    Raises:
      ValueError: if the tree has no leaves or the leading lengths differ.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> [m["w"].tolist() for m in jr.unstack_members({"w": jnp.arange(4.0).reshape(2, 2)})]
      [[0.0, 1.0], [2.0, 3.0]]
    """
    num = num_members("tree", tree)
    return [jax.tree.map(lambda a, i=i: a[i], tree) for i in range(num)]


def num_members(name: str, tree: PyTree, expected: int | None = None) -> int:
    """The common leading (member) length of every leaf of ``tree``.

    Args:
      name: the argument's name, for messages.
      tree: a pytree stacked along a leading member axis.
      expected: if given, the length every leaf must have.

    Returns:
      The leading length.

    Raises:
      ValueError: naming ``name``, if the tree has no array leaves, a leaf is a scalar, the leading lengths
        differ, or they are not ``expected``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxreg.members import num_members
      >>> num_members("hparams", {"l2": jnp.zeros(4), "rate": jnp.ones(4)})
      4
    """
    sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in jax.tree.leaves(tree)}
    if not sizes:
        raise ValueError(f"{name} has no array leaves; expected a pytree stacked along a member axis.")
    if None in sizes or len(sizes) != 1:
        raise ValueError(
            f"every leaf of {name} must have the same leading (member) axis, got leading lengths "
            f"{sorted(s for s in sizes if s is not None)}{' and scalars' if None in sizes else ''}."
        )
    found = sizes.pop()
    if expected is not None and found != expected:
        raise ValueError(f"every leaf of {name} must have a leading member axis of length {expected}, got {found}.")
    return found
