"""Pytree masks that pick which parameter leaves a regularizer touches (floor 1).

A *mask* has the structure of the params (or a prefix of it) with bool leaves, exactly what
``optax.masked`` takes; a *mask function* maps params to such a tree. ``kernel_mask`` is the sensible
default for weight penalties and decay: kernels and embedding tables yes, biases, norm scales/offsets and
batch statistics no. Works on Flax linen param dicts and on ``flax.nnx.State`` alike.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import numpy as np
from jax.tree_util import DictKey, FlattenedIndexKey, GetAttrKey, SequenceKey

from jaxreg._typing import MaskOrFn, PyTree

__all__ = ["kernel_mask", "path_mask", "key_path_str", "resolve_mask", "selected_leaves"]

# Leaf names that are never weights, whatever their rank.
_NON_KERNEL_NAMES = frozenset({"bias", "scale", "offset", "mean", "var", "batch_stats"})


def key_path_str(path: tuple) -> str:
    """Join a jax key path into ``'layer/sub/leaf'``: the strings :func:`path_mask` matches against.

    nnx ``Variable`` leaves add a trailing ``.value`` attribute to the path; it is dropped so that linen
    dicts and nnx ``State`` give the same strings.

    Args:
      path: a key path from ``jax.tree_util.tree_flatten_with_path`` or ``tree_map_with_path``.

    Returns:
      The path's dict keys, attribute names and sequence indices joined by ``'/'``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxreg.select import key_path_str
      >>> tree = {"blocks": [{"kernel": jnp.ones(2)}]}
      >>> [key_path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
      ['blocks/0/kernel']
    """
    parts = []
    for k in path:
        if isinstance(k, DictKey):
            parts.append(str(k.key))
        elif isinstance(k, GetAttrKey):
            if k.name == "value":
                continue
            parts.append(k.name)
        elif isinstance(k, SequenceKey):
            parts.append(str(k.idx))
        elif isinstance(k, FlattenedIndexKey):
            parts.append(str(k.key))
        else:  # pragma: no cover - future key types
            parts.append(str(k))
    return "/".join(parts)


def kernel_mask(params: PyTree) -> PyTree:
    """Bool mask that is True for weight leaves (kernels, embeddings) and False for everything else.

    A leaf counts as a weight when it has ``ndim >= 2`` and no component of its path is named ``bias``,
    ``scale``, ``offset``, ``mean``, ``var`` or ``batch_stats``. Dense/conv kernels and embedding tables are
    selected; biases, LayerNorm/BatchNorm scales and offsets, and running statistics are not.

    Args:
      params: a pytree of arrays (linen ``params`` dict, ``nnx.State``, any nesting).

    Returns:
      A pytree of Python bools with the structure of ``params``, usable as ``optax.masked``'s mask and as
      the ``mask=`` of every jaxreg penalty and transform.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> params = {"dense": {"kernel": jnp.ones((3, 4)), "bias": jnp.zeros(4)},
      ...           "bn": {"scale": jnp.ones(4), "bias": jnp.zeros(4)}}
      >>> jr.kernel_mask(params)
      {'bn': {'bias': False, 'scale': False}, 'dense': {'bias': False, 'kernel': True}}
    """

    def is_kernel(path, leaf) -> bool:
        names = set(key_path_str(path).split("/"))
        return getattr(leaf, "ndim", 0) >= 2 and not (names & _NON_KERNEL_NAMES)

    return jax.tree_util.tree_map_with_path(is_kernel, params)


def path_mask(params: PyTree, *, include: str | None = None, exclude: str | None = None) -> PyTree:
    """Bool mask selecting leaves by a regular expression on their ``'/'``-joined key path.

    A leaf is selected when ``include`` (default: everything) matches somewhere in its path
    (``re.search``) and ``exclude`` (default: nothing) does not.

    Args:
      params: a pytree of arrays.
      include: regex a path must match to be selected, e.g. ``r"kernel$"``.
      exclude: regex that deselects matching paths, e.g. ``r"^embed/"``.

    Returns:
      A bool pytree with the structure of ``params``.

    Raises:
      ValueError: if a pattern is not a valid regular expression.
      TypeError: if ``include`` or ``exclude`` is neither a string (or compiled pattern) nor None.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> params = {"encoder": {"kernel": jnp.ones((2, 2))}, "head": {"kernel": jnp.ones((2, 2))}}
      >>> jr.path_mask(params, include="kernel", exclude="^head/")
      {'encoder': {'kernel': True}, 'head': {'kernel': False}}
    """
    for name, pattern in (("include", include), ("exclude", exclude)):
        if pattern is not None and not isinstance(pattern, (str, re.Pattern)):
            raise TypeError(f"path_mask: {name} must be a regular expression string or None, got {name} = "
                            f"{pattern!r}"[:160] + ".")
    try:
        inc = re.compile(include) if include is not None else None
        exc = re.compile(exclude) if exclude is not None else None
    except re.error as e:
        raise ValueError(f"path_mask got an invalid regular expression: {e}") from e

    def select(path, _leaf) -> bool:
        s = key_path_str(path)
        return (inc is None or inc.search(s) is not None) and (exc is None or exc.search(s) is None)

    return jax.tree_util.tree_map_with_path(select, params)


def resolve_mask(tree: PyTree, mask: MaskOrFn) -> PyTree:
    """Full bool tree for ``tree``: ``None`` selects all, a callable is applied, a prefix is broadcast.

    Args:
      tree: the params pytree.
      mask: ``None``, a callable ``tree -> bool pytree``, or a bool pytree that is ``tree``'s structure or
        a prefix of it (a single ``True``/``False`` is the smallest prefix).

    Returns:
      A pytree with ``tree``'s structure and Python-bool (or bool array) leaves.

    Raises:
      ValueError: if ``mask`` is not a prefix of ``tree``'s structure.
      TypeError: if a mask entry is not a bool (an array of rank > 0, a number, NaN...).

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxreg.select import resolve_mask
      >>> tree = {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}, "head": jnp.ones(2)}
      >>> resolve_mask(tree, {"dense": True, "head": False})
      {'dense': {'bias': True, 'kernel': True}, 'head': False}
    """
    if mask is None:
        return jax.tree.map(lambda _: True, tree)
    if callable(mask) and not isinstance(mask, (bool, jax.Array)):
        mask = mask(tree)
    try:
        full = jax.tree.map(lambda m, sub: jax.tree.map(lambda _: m, sub), mask, tree)
    except (ValueError, TypeError) as e:
        raise ValueError(
            "mask must be a bool pytree with the structure of the params (or a prefix of it), or a callable "
            f"params -> mask; it does not match: {e}"
        ) from e
    for path, entry in jax.tree_util.tree_flatten_with_path(full)[0]:
        if not _is_bool_entry(entry):
            shape = getattr(entry, "shape", None)
            got = f"an array of shape {shape}" if shape else repr(entry)[:60]
            raise TypeError(
                f"mask must be a bool pytree with one True/False per leaf (or subtree) of the params, got {got} "
                f"for '{key_path_str(path)}'."
            )
    return full


def _is_bool_entry(entry: Any) -> bool:
    """A Python/numpy bool, or a 0-d bool array (a traced one too: selected_leaves refuses it by name)."""
    if isinstance(entry, (bool, np.bool_)):
        return True
    return isinstance(entry, (jax.Array, np.ndarray)) and entry.dtype == np.bool_ and entry.ndim == 0


def selected_leaves(tree: PyTree, mask: MaskOrFn) -> list[jax.Array]:
    """The leaves of ``tree`` whose mask entry is True (in flatten order).

    Mask entries must be concrete Python/numpy bools: selection happens at trace time.

    Args:
      tree: the params pytree.
      mask: ``None`` (all leaves), a callable ``tree -> bool pytree`` or a bool pytree (or prefix), as for
        :func:`resolve_mask`.

    Returns:
      A list of the selected leaves themselves (no copies), empty if nothing is selected.

    Raises:
      TypeError: if a mask entry is a traced array.
      ValueError: if ``mask`` is not a prefix of ``tree``'s structure.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> from jaxreg.select import selected_leaves
      >>> params = {"dense": {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2)}}
      >>> [leaf.shape for leaf in selected_leaves(params, jr.kernel_mask)]
      [(3, 2)]
    """
    full = resolve_mask(tree, mask)
    leaves = jax.tree.leaves(tree)
    flags = jax.tree.leaves(full)
    out = []
    for leaf, flag in zip(leaves, flags, strict=True):
        if isinstance(flag, jax.core.Tracer):
            raise TypeError("mask entries must be concrete bools, got a traced value.")
        if bool(flag):
            out.append(leaf)
    return out

