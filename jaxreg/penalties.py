"""Pure weight and activity penalties over parameter pytrees (floor 2).

Every penalty maps a pytree (a linen ``params`` dict, an ``nnx.State`` from ``nnx.state(model, nnx.Param)``,
a bare array) to a scalar that you add to the task loss::

    loss = task_loss + 1e-4 * jr.l2(params, mask=jr.kernel_mask)

They are pure ``jax.numpy`` functions, so they compose with ``jax.jit``, ``jax.grad`` and ``jax.vmap`` (a
vmap over stacked trees gives one penalty per member). ``mask`` picks the leaves, as in ``optax.masked``: a
bool pytree with the structure of the tree (or a prefix of it), a callable ``tree -> bool pytree`` such as
:func:`jaxreg.kernel_mask`, or ``None`` for every leaf. Selection happens at trace time, so mask entries must
be concrete bools. An empty selection gives ``0.0``.

Output dtype: sums are accumulated and returned in float32 for float32/float16/bfloat16 leaves (float64 when
any selected leaf is float64, under ``jax_enable_x64``); gradients come back in each leaf's own dtype.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxreg._typing import MaskOrFn, PyTree
from jaxreg._validate import check_axes, check_bool, check_choice, check_in_range, check_leaf_axes, check_scalar
from jaxreg.select import selected_leaves

__all__ = [
    "l1",
    "l2",
    "elastic_net",
    "group_lasso",
    "orthogonal",
    "activity_l1",
    "activity_l2",
]

# keras.backend.epsilon(): the floor of the norm in keras.ops.normalize, which OrthogonalRegularizer uses.
_KERAS_EPSILON = 1e-7


def _acc_dtype(leaves: Sequence[jax.Array]) -> jnp.dtype:
    """float64 if any leaf is float64 (x64 mode), else float32: low-precision leaves accumulate in float32."""
    if any(jnp.dtype(leaf.dtype) == jnp.float64 for leaf in leaves):
        return jnp.dtype(jnp.float64)
    return jnp.dtype(jnp.float32)


def _sum_over_leaves(leaves: Sequence[jax.Array], per_leaf: Callable[[jax.Array], jax.Array]) -> jax.Array:
    """Sum ``per_leaf(leaf cast to the accumulation dtype)`` over ``leaves``; 0.0 if there are none."""
    dtype = _acc_dtype(leaves)
    total = jnp.zeros((), dtype)
    for leaf in leaves:
        total = total + per_leaf(leaf.astype(dtype)).astype(dtype)
    return total


def _safe_sqrt(s: jax.Array) -> jax.Array:
    """``sqrt(s)`` for ``s >= 0`` whose gradient at ``s == 0`` is 0 instead of inf (no NaN downstream)."""
    positive = s > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, s, jnp.ones_like(s))), jnp.zeros_like(s))


def _sum_abs(w: jax.Array) -> jax.Array:
    """``sum |w|`` whose gradient is ``sign(w)``: 0 at ``w == 0`` (``jax.grad(jnp.abs)(0.0)`` is 1)."""
    return jnp.sum(w * jax.lax.stop_gradient(jnp.sign(w)))


def _sum_squares(w: jax.Array) -> jax.Array:
    return jnp.sum(jnp.square(w))


# The cores below are jitted so that a penalty called eagerly (tests, logging) compiles one small program per
# tree signature instead of dispatching op by op; inside a caller's jit they are inlined.
@jax.jit
def _l1_core(leaves: list[jax.Array]) -> jax.Array:
    return _sum_over_leaves(leaves, _sum_abs)


@jax.jit
def _l2_core(leaves: list[jax.Array]) -> jax.Array:
    return _sum_over_leaves(leaves, _sum_squares)


@jax.jit
def _elastic_net_core(leaves: list[jax.Array], alpha: jax.Array, l1_ratio: jax.Array) -> jax.Array:
    dtype = _acc_dtype(leaves)
    a = jnp.asarray(alpha).astype(dtype)
    r = jnp.asarray(l1_ratio).astype(dtype)
    return a * r * _sum_over_leaves(leaves, _sum_abs) + 0.5 * a * (1 - r) * _sum_over_leaves(leaves, _sum_squares)


@functools.partial(jax.jit, static_argnames="axes")
def _group_lasso_core(leaves: list[jax.Array], axes: tuple[int, ...]) -> jax.Array:
    def unit_norms(w: jax.Array) -> jax.Array:
        check_leaf_axes("axis", axes, w.shape)
        return jnp.sum(_safe_sqrt(jnp.sum(jnp.square(w), axis=axes)))

    return _sum_over_leaves(leaves, unit_norms)


@functools.partial(jax.jit, static_argnames="mode")
def _orthogonal_core(leaves: list[jax.Array], factor: jax.Array, mode: str) -> jax.Array:
    leaves = [leaf.reshape(-1, leaf.shape[-1]) for leaf in leaves if leaf.ndim >= 2]

    def mean_abs_cosine(w: jax.Array) -> jax.Array:
        if mode == "columns":
            w = w.T
        n = w.shape[0]
        if n < 2:
            return jnp.zeros((), w.dtype)
        sq = jnp.sum(jnp.square(w), axis=1, keepdims=True)
        nonzero = sq > 0
        inv_norm = jnp.minimum(jax.lax.rsqrt(jnp.where(nonzero, sq, jnp.ones_like(sq))), 1.0 / _KERAS_EPSILON)
        # An all-zero row normalizes to 0 as in Keras; the where gives it a zero gradient instead of NaN.
        u = jnp.where(nonzero, w * inv_norm, jnp.zeros_like(w))
        gram = u @ u.T
        off_diagonal = gram * (1.0 - jnp.eye(n, dtype=w.dtype))
        return 0.5 * _sum_abs(off_diagonal) / (n * (n - 1.0) / 2.0)

    return jnp.asarray(factor).astype(_acc_dtype(leaves)) * _sum_over_leaves(leaves, mean_abs_cosine)


@functools.partial(jax.jit, static_argnames=("squared", "batch_mean"))
def _activity_core(leaves: list[jax.Array], squared: bool, batch_mean: bool) -> jax.Array:
    def per_leaf(a: jax.Array) -> jax.Array:
        value = _sum_squares(a) if squared else _sum_abs(a)
        if not batch_mean or a.ndim == 0:
            return value
        if a.shape[0] == 0:  # keras uses divide_no_nan: an empty batch contributes 0
            return jnp.zeros_like(value)
        return value / a.shape[0]

    return _sum_over_leaves(leaves, per_leaf)


def l1(tree: PyTree, *, mask: MaskOrFn = None) -> jax.Array:
    """Sum of absolute values of the selected leaves, ``sum |w|`` (lasso penalty).

    Keras' ``keras.regularizers.L1(c)`` applied to a kernel equals ``c * jr.l1(kernel)``.

    Args:
      tree: a pytree of float arrays (linen params, ``nnx.State``, a single array).
      mask: bool pytree (or prefix) / callable ``tree -> bool pytree`` / ``None`` (all leaves) selecting
        the leaves to penalize; see the module docstring.

    Returns:
      A scalar: float32 (float64 if a selected leaf is float64). ``0.0`` for an empty selection.
      Its gradient is ``sign(w)`` on selected leaves (0 at ``w == 0``) and 0 elsewhere.

    Raises:
      ValueError: if ``mask`` does not match the structure of ``tree``.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> params = {"dense": {"kernel": jnp.array([[1.0, -2.0], [0.5, 0.0]]), "bias": jnp.array([3.0, 3.0])}}
      >>> print(jr.l1(params), jr.l1(params, mask=jr.kernel_mask))
      9.5 3.5
    """
    return _l1_core(selected_leaves(tree, mask))


def l2(tree: PyTree, *, mask: MaskOrFn = None) -> jax.Array:
    """Sum of squares of the selected leaves, ``sum w**2`` (ridge / weight-decay penalty, no factor 1/2).

    Keras' ``keras.regularizers.L2(c)`` applied to a kernel equals ``c * jr.l2(kernel)``. Coupled weight
    decay ``optax.add_decayed_weights(wd)`` corresponds to adding ``(wd / 2) * jr.l2(params)`` to the loss.

    Args:
      tree: a pytree of float arrays (linen params, ``nnx.State``, a single array).
      mask: bool pytree (or prefix) / callable ``tree -> bool pytree`` / ``None`` (all leaves).

    Returns:
      A scalar: float32 (float64 if a selected leaf is float64). ``0.0`` for an empty selection.
      Its gradient is ``2 * w`` on selected leaves and 0 elsewhere.

    Raises:
      ValueError: if ``mask`` does not match the structure of ``tree``.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> params = {"dense": {"kernel": jnp.array([[1.0, -2.0], [0.5, 0.0]]), "bias": jnp.array([3.0, 3.0])}}
      >>> print(jr.l2(params), jr.l2(params, mask=jr.kernel_mask))
      23.25 5.25
    """
    return _l2_core(selected_leaves(tree, mask))


def elastic_net(
    tree: PyTree,
    *,
    alpha: ArrayLike = 1.0,
    l1_ratio: ArrayLike = 0.5,
    mask: MaskOrFn = None,
) -> jax.Array:
    """Elastic-net penalty ``alpha * l1_ratio * sum|w| + 0.5 * alpha * (1 - l1_ratio) * sum w**2``.

    This is the penalty term of scikit-learn's ``ElasticNet`` objective (``1 / (2 n) ||y - Xw||^2`` plus
    this), with the same defaults. ``l1_ratio=1`` is ``alpha * l1``; ``l1_ratio=0`` is ``alpha / 2 * l2``.

    Args:
      tree: a pytree of float arrays.
      alpha: overall strength, ``>= 0``. May be a traced scalar (e.g. swept under ``jax.vmap``).
      l1_ratio: L1 share of the penalty, in ``[0, 1]``. May be traced.
      mask: bool pytree (or prefix) / callable ``tree -> bool pytree`` / ``None`` (all leaves).

    Returns:
      A scalar in the accumulation dtype (float32, or float64 if a selected leaf is float64).

    Raises:
      ValueError: if a concrete ``alpha < 0``, ``l1_ratio`` is outside ``[0, 1]``, either is NaN or not a
        scalar, or ``mask`` does not match ``tree``.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> w = jnp.array([1.0, -2.0, 2.0])
      >>> print(jr.elastic_net(w, alpha=0.1, l1_ratio=0.5))  # 0.05 * 5 + 0.025 * 9
      0.475
    """
    check_in_range("alpha", alpha, 0.0, None)
    check_in_range("l1_ratio", l1_ratio, 0.0, 1.0)
    check_scalar("alpha", alpha, "elastic_net")  # a penalty is one number: several strengths go through vmap
    check_scalar("l1_ratio", l1_ratio, "elastic_net")
    return _elastic_net_core(selected_leaves(tree, mask), alpha, l1_ratio)


def group_lasso(tree: PyTree, *, axis: int | Sequence[int] = 0, mask: MaskOrFn = None) -> jax.Array:
    """Group-lasso penalty: sum over units of each unit's Euclidean norm, ``sum_g ||w_g||_2``.

    For each selected leaf the L2 norm is taken *over* ``axis`` (as in Keras constraints such as
    ``MaxNorm(axis=0)``), leaving one norm per remaining index: a unit. For a dense kernel of shape
    ``(in, out)`` the default ``axis=0`` gives one norm per output unit (a column: that unit's incoming
    weights), so the penalty drives whole output units to zero. For a conv kernel ``(h, w, in, out)`` use
    ``axis=(0, 1, 2)`` for one group per output channel; ``axis=1`` on a dense kernel groups by input feature
    (feature selection). Groups are not weighted by ``sqrt(group size)``. A 1-D leaf with ``axis=0`` is one
    group.

    The gradient is ``w_g / ||w_g||`` for a non-zero unit and 0 (a valid subgradient, never NaN) for an
    all-zero unit.

    Args:
      tree: a pytree of float arrays.
      axis: the axis (or axes) each norm is computed over; negative values count from the end.
      mask: bool pytree (or prefix) / callable ``tree -> bool pytree`` / ``None`` (all leaves).

    Returns:
      A scalar in the accumulation dtype (float32, or float64 if a selected leaf is float64).

    Raises:
      TypeError: if ``axis`` is not an int or a non-empty sequence of ints.
      ValueError: if ``axis`` is out of range for a selected leaf, or ``mask`` does not match ``tree``.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> kernel = jnp.array([[3.0, 0.0], [4.0, 0.0]])  # columns: output units with norms 5 and 0
      >>> print(jr.group_lasso(kernel), jr.group_lasso(kernel, axis=1))
      5.0 7.0
    """
    axes = check_axes("axis", axis)
    return _group_lasso_core(selected_leaves(tree, mask), axes)


def orthogonal(
    tree: PyTree, *, factor: ArrayLike = 0.01, mode: str = "rows", mask: MaskOrFn = None
) -> jax.Array:
    """Keras' ``OrthogonalRegularizer``: ``factor`` times the mean ``|cosine|`` between distinct rows/columns.

    For each selected leaf ``W`` of rank 2, the rows (``mode="rows"``) or columns (``mode="columns"``) are
    L2-normalized exactly as ``keras.ops.normalize`` does (``x * min(rsqrt(sum x**2), 1 / 1e-7)``), the Gram
    matrix ``G`` of the normalized vectors is formed, and the penalty is
    ``factor * 0.5 * sum_{i != j} |G_ij| / (n (n - 1) / 2)`` for ``n`` vectors: the same number
    ``keras.regularizers.OrthogonalRegularizer(factor, mode)(W)`` returns. Results are summed over leaves.
    Differences from Keras, all outside its domain: leaves of rank > 2 (conv kernels) are reshaped to
    ``(-1, last_dim)`` first (Keras rejects them); leaves of rank < 2 (biases, scales) contribute 0; a leaf
    with a single row/column contributes 0 (Keras returns NaN); an all-zero row/column gets a zero gradient
    (Keras' is NaN). As in Keras, a row with norm below 1e-7 is scaled by 1e7, not normalized.

    For a dense kernel ``(in, out)``, ``"rows"`` decorrelates the input features' weight vectors and
    ``"columns"`` decorrelates the output units.

    Args:
      tree: a pytree of float arrays.
      factor: strength, ``>= 0``. May be a traced scalar.
      mode: ``"rows"`` or ``"columns"``.
      mask: bool pytree (or prefix) / callable ``tree -> bool pytree`` / ``None`` (all leaves).

    Returns:
      A scalar in the accumulation dtype (float32, or float64 if a selected leaf is float64).

    Raises:
      ValueError: if a concrete ``factor`` is negative or NaN, ``factor`` is not a scalar, ``mode`` is not
        ``"rows"``/``"columns"``, or ``mask`` does not match ``tree``.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> w = jnp.array([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])  # row cosines: 0.7071, 0, 0.7071
      >>> print(jr.orthogonal(w, factor=1.0))
      0.4714045
      >>> print(jr.orthogonal(jnp.eye(3), factor=1.0, mode="columns"))
      0.0
    """
    check_in_range("factor", factor, 0.0, None)
    check_scalar("factor", factor, "orthogonal")
    check_choice("mode", mode, ("rows", "columns"))
    return _orthogonal_core(selected_leaves(tree, mask), factor, mode)


def activity_l1(activations: PyTree, *, batch_mean: bool = False) -> jax.Array:
    """L1 activity penalty ``sum |a|`` over a layer's outputs (an array or a pytree of arrays).

    With ``batch_mean=False`` this is what ``keras.regularizers.L1(1.0)(a)`` returns. With
    ``batch_mean=True`` each output of rank >= 1 is divided by its leading (batch) dimension, which is what
    a Keras 3 layer with ``activity_regularizer=L1(1.0)`` (or ``ActivityRegularization(l1=1.0)``) adds to
    ``layer.losses``, keeping the penalty's weight independent of the batch size.

    Args:
      activations: an array or pytree of float arrays, batch on axis 0.
      batch_mean: divide each output's sum by its batch size (a bool).

    Returns:
      A scalar in the accumulation dtype (float32, or float64 for float64 activations).

    Raises:
      TypeError: if ``batch_mean`` is not a bool.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> a = jnp.array([[1.0, -1.0], [2.0, 0.0]])
      >>> print(jr.activity_l1(a), jr.activity_l1(a, batch_mean=True))
      4.0 2.0
    """
    check_bool("batch_mean", batch_mean, "activity_l1")
    return _activity_core(jax.tree.leaves(activations), squared=False, batch_mean=batch_mean)


def activity_l2(activations: PyTree, *, batch_mean: bool = False) -> jax.Array:
    """L2 activity penalty ``sum a**2`` over a layer's outputs (an array or a pytree of arrays).

    With ``batch_mean=False`` this is what ``keras.regularizers.L2(1.0)(a)`` returns. With
    ``batch_mean=True`` each output of rank >= 1 is divided by its leading (batch) dimension, matching
    ``layer.losses`` of a Keras 3 layer with ``activity_regularizer=L2(1.0)`` (or
    ``ActivityRegularization(l2=1.0)``).

    Args:
      activations: an array or pytree of float arrays, batch on axis 0.
      batch_mean: divide each output's sum by its batch size (a bool).

    Returns:
      A scalar in the accumulation dtype (float32, or float64 for float64 activations).

    Raises:
      TypeError: if ``batch_mean`` is not a bool.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> a = jnp.array([[1.0, -1.0], [2.0, 0.0]])
      >>> print(jr.activity_l2(a), jr.activity_l2(a, batch_mean=True))
      6.0 3.0
    """
    check_bool("batch_mean", batch_mean, "activity_l2")
    return _activity_core(jax.tree.leaves(activations), squared=True, batch_mean=batch_mean)
