"""Optimizer-side regularizers as ``optax.GradientTransformation`` factories (floor 3).

Everything that acts on gradients or parameters *after* the gradient is computed lives here, as a factory
that returns an ``optax.GradientTransformation`` to put into ``optax.chain``. Where a transform goes in the
chain is part of its meaning:

- :func:`add_penalty`: **first**, before the optimizer, while the updates are still gradients (a coupled
  penalty ``g + s * grad(penalty)``, as if it were in the loss).
- :func:`weight_decay`: after the preconditioner and **before** ``scale_by_learning_rate`` (decoupled,
  AdamW-style decay over ``optax.add_decayed_weights``).
- :func:`proximal_l1`, :func:`proximal_elastic_net`, :func:`proximal_group_lasso`: **last**; a proximal
  step on ``params + updates`` that yields exact zeros.
- :func:`max_norm`, :func:`unit_norm`, :func:`non_negative`: **last**; Keras-constraint projection of
  ``params + updates``.

Gradient clipping, learning-rate reduction on plateau, moving averages and SAM are optax's, not ours:
``optax.clip_by_global_norm``, ``optax.contrib.reduce_on_plateau``, ``optax.ema`` (of updates) or
``optax.incremental_update`` (Polyak/EMA of params) and ``optax.contrib.sam``. They compose with the
transforms here like any optax piece::

    tx = optax.chain(
        optax.clip_by_global_norm(1.0),                       # optax: clip the raw gradients
        jr.add_penalty(jr.l2, 1e-4, mask=jr.kernel_mask),     # coupled L2, still on gradients
        optax.scale_by_adam(),
        jr.weight_decay(1e-4),                                # decoupled decay, before the lr
        optax.scale_by_learning_rate(1e-3),
        optax.contrib.reduce_on_plateau(patience=5),          # optax: update(..., value=loss)
        jr.max_norm(3.0, mask=jr.kernel_mask),                # constraints and prox steps last
    )
    ema_params = optax.incremental_update(new_params, ema_params, step_size=1e-3)   # weight EMA
    sam_tx = optax.contrib.sam(optax.chain(optax.sgd(1e-2), jr.max_norm(3.0)),     # SAM around a
                               optax.chain(optax.contrib.normalize(), optax.sgd(0.05)))  # constrained step

Note: in optax 0.2.8, ``optax.adam``/``adamw`` (``b1 ** count``) and ``optax.contrib.reduce_on_plateau``
(``count * average``) mix int32 and float, which fails under ``jax_numpy_dtype_promotion="strict"``; if you
enable strict promotion, trace their ``update`` under ``jax.numpy_dtype_promotion("standard")``. The
transforms here are clean under strict promotion.

Conventions shared by every factory: hyperparameters are checked at construction (``ValueError`` quoting the
bad value; traced values, e.g. a strength swept under ``jax.vmap``, pass unchecked) and must be scalars
(several values: ``jax.vmap``); ``mask`` (a bool pytree,
a prefix of one, or a callable such as :func:`jaxreg.kernel_mask`) is handed to ``optax.masked``, so
unselected leaves' updates pass through untouched; a ``strength`` or ``learning_rate`` may be an optax
schedule, evaluated at the number of updates done so far (kept in the state, as in
``optax.scale_by_schedule``). Norms are taken *over* ``axis`` as in Keras constraints and
:func:`jaxreg.group_lasso`: for a dense kernel ``(in, out)`` the default ``axis=0`` gives one unit per output
(a column); use ``axis=(0, 1, 2)`` for the output channels of a conv kernel ``(h, w, in, out)``. A 1-D leaf
with ``axis=0`` (a bias) is one unit; a leaf whose rank is too small for ``axis`` raises a ``ValueError`` at
trace time (deselect it with ``mask=jr.kernel_mask``).

Example:
  >>> import jax, jax.numpy as jnp, optax
  >>> import jaxreg as jr
  >>> params = {"dense": {"kernel": jnp.array([[3.0, 0.1], [4.0, 0.1]]), "bias": jnp.array([-1.0, 1.0])}}
  >>> tx = optax.chain(
  ...     optax.clip_by_global_norm(1.0),
  ...     optax.sgd(0.1),
  ...     jr.max_norm(1.0, mask=jr.kernel_mask),
  ...     jr.non_negative(mask={"dense": {"kernel": False, "bias": True}}),
  ... )
  >>> state = tx.init(params)
  >>> grads = jax.tree.map(jnp.zeros_like, params)
  >>> updates, state = jax.jit(tx.update)(grads, state, params)
  >>> new = optax.apply_updates(params, updates)
  >>> print(jnp.linalg.norm(new["dense"]["kernel"], axis=0), new["dense"]["bias"])
  [1.  0.1414] [0. 1.]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from jaxreg._typing import MaskOrFn, PyTree
from jaxreg._validate import check_axes, check_callable, check_in_range, check_leaf_axes
from jaxreg.select import kernel_mask, resolve_mask

__all__ = [
    "AddPenaltyState",
    "ProximalState",
    "add_penalty",
    "proximal_l1",
    "proximal_elastic_net",
    "proximal_group_lasso",
    "max_norm",
    "unit_norm",
    "non_negative",
    "weight_decay",
]

# keras.backend.epsilon(): Keras' MaxNorm and UnitNorm divide by (epsilon + norm); we do the same.
_KERAS_EPSILON = 1e-7

# optax's own message (optax._src.base.NO_PARAMS_MSG), repeated to avoid importing a private module.
_NO_PARAMS_MSG = (
    "You are using a transformation that requires the current value of "
    "parameters, but you are not passing `params` when calling `update`."
)

Axis = int | Sequence[int]


class AddPenaltyState(NamedTuple):
    """State of :func:`add_penalty`: the update count at which a ``strength`` schedule is evaluated.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> jr.add_penalty(jr.l2, 1e-4).init(jnp.ones(3))
      AddPenaltyState(count=Array(0, dtype=int32))
    """

    count: jax.Array  # shape=(), dtype=jnp.int32


class ProximalState(NamedTuple):
    """State of the ``proximal_*`` transforms: the update count at which schedules are evaluated.

    ``strength`` and ``learning_rate`` schedules are read at ``count`` before it is incremented, the same
    count ``optax.scale_by_schedule`` uses, so the optimizer's learning-rate schedule can be passed as is.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> jr.proximal_l1(1e-3, learning_rate=0.1).init(jnp.ones(3))
      ProximalState(count=Array(0, dtype=int32))
    """

    count: jax.Array  # shape=(), dtype=jnp.int32


def _maybe_masked(tx: optax.GradientTransformation, mask: MaskOrFn) -> optax.GradientTransformation:
    if mask is None:
        return tx
    masked = optax.masked(tx, mask)

    def init(params: optax.Params) -> optax.OptState:
        resolve_mask(params, mask)  # a mask that does not fit the params: a ValueError naming `mask`
        return masked.init(params)

    return masked._replace(init=init)


def _value_at(hyperparam: optax.ScalarOrSchedule, count: jax.Array) -> ArrayLike:
    return hyperparam(count) if callable(hyperparam) else hyperparam


def _as(value: ArrayLike, like: jax.Array) -> jax.Array:
    # An explicit cast keeps strict dtype promotion happy (a float32 strength with bfloat16 params).
    return jnp.asarray(value).astype(like.dtype)


def _unit_norms(w: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    """L2 norm over ``axes`` (keepdims): one norm per unit, broadcastable against ``w``."""
    check_leaf_axes("axis", axes, w.shape)
    return jnp.sqrt(jnp.sum(jnp.square(w), axis=axes, keepdims=True))


def _require_params(params: PyTree | None) -> None:
    if params is None:
        raise ValueError(_NO_PARAMS_MSG)


def add_penalty(
    penalty_fn: Callable[[PyTree], jax.Array],
    strength: optax.ScalarOrSchedule,
    *,
    mask: MaskOrFn = None,
) -> optax.GradientTransformation:
    """Add ``strength * grad(penalty_fn)(params)`` to the updates: a coupled penalty outside the loss.

    Training with ``optax.chain(jr.add_penalty(fn, s), opt)`` on a loss ``L`` is the same as training with
    ``opt`` on ``L + s * fn(params)``: place it *before* the optimizer, where the updates are still gradients
    (after it they would bypass the preconditioner and the learning rate). Any scalar function of the params
    works: ``jr.l1``, ``jr.l2``, ``jr.group_lasso``, ``jr.orthogonal`` or, with its hyperparameters bound,
    ``functools.partial(jr.elastic_net, alpha=..., l1_ratio=...)``.

    Args:
      penalty_fn: ``params -> scalar``, differentiable (a subgradient such as ``sign`` is fine).
      strength: the coefficient ``s >= 0``, or an optax schedule of the update count. May be a traced
        scalar (a sweep under ``jax.vmap``).
      mask: leaves to penalize (bool pytree, prefix, or callable such as ``jr.kernel_mask``); handed to
        ``optax.masked``, so ``penalty_fn`` only sees the selected leaves and the others pass through.

    Returns:
      An ``optax.GradientTransformation`` with :class:`AddPenaltyState`. Its ``update`` needs ``params``;
      each output leaf has its update's dtype and shape.

    Raises:
      TypeError: if ``penalty_fn`` is not callable.
      ValueError: if a concrete ``strength`` is negative or NaN; at update time, if ``params`` is None.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> import jaxreg as jr
      >>> params = {"kernel": jnp.array([[1.0, -2.0]]), "bias": jnp.array([3.0])}
      >>> tx = jr.add_penalty(jr.l2, 0.5, mask=jr.kernel_mask)   # adds 0.5 * 2 * kernel
      >>> grads = {"kernel": jnp.zeros((1, 2)), "bias": jnp.zeros(1)}
      >>> updates, _ = tx.update(grads, tx.init(params), params)
      >>> print(updates["kernel"], updates["bias"])
      [[ 1. -2.]] [0.]
    """
    check_callable("penalty_fn", penalty_fn)
    check_in_range("strength", strength, 0.0, None, scalar=True)

    def init_fn(params: PyTree) -> AddPenaltyState:
        del params
        return AddPenaltyState(count=jnp.zeros([], jnp.int32))

    def update_fn(
        updates: PyTree, state: AddPenaltyState, params: PyTree | None = None
    ) -> tuple[PyTree, AddPenaltyState]:
        _require_params(params)
        s = _value_at(strength, state.count)
        penalty_grads = jax.grad(penalty_fn)(params)
        updates = jax.tree.map(lambda u, g: u + _as(s, u) * g.astype(u.dtype), updates, penalty_grads)
        return updates, AddPenaltyState(count=optax.safe_increment(state.count))

    return _maybe_masked(optax.GradientTransformation(init_fn, update_fn), mask)


def _proximal(
    prox: Callable[[jax.Array, jax.Array, jax.Array], jax.Array],
    strength: optax.ScalarOrSchedule,
    learning_rate: optax.ScalarOrSchedule,
    mask: MaskOrFn,
) -> optax.GradientTransformation:
    """Shared body of the proximal transforms: ``updates' = prox(params + updates, lr, s) - params``."""

    def init_fn(params: PyTree) -> ProximalState:
        del params
        return ProximalState(count=jnp.zeros([], jnp.int32))

    def update_fn(
        updates: PyTree, state: ProximalState, params: PyTree | None = None
    ) -> tuple[PyTree, ProximalState]:
        _require_params(params)
        lr = _value_at(learning_rate, state.count)
        s = _value_at(strength, state.count)

        def leaf(u: jax.Array, p: jax.Array) -> jax.Array:
            x = p + u.astype(p.dtype)
            # new params = prox(x); when prox(x) == 0 the update is exactly -p, so the param lands on 0.0.
            return (prox(x, _as(lr, x), _as(s, x)) - p).astype(u.dtype)

        return jax.tree.map(leaf, updates, params), ProximalState(count=optax.safe_increment(state.count))

    return _maybe_masked(optax.GradientTransformation(init_fn, update_fn), mask)


def _soft_threshold(x: jax.Array, t: jax.Array) -> jax.Array:
    return jnp.sign(x) * jnp.maximum(jnp.abs(x) - t, 0)


def proximal_l1(
    strength: optax.ScalarOrSchedule,
    *,
    learning_rate: optax.ScalarOrSchedule,
    mask: MaskOrFn = None,
) -> optax.GradientTransformation:
    """Turn the step into a proximal L1 (lasso) step: soft-threshold ``params + updates``.

    Place it **last**, after the optimizer. With ``x = params + updates`` the new params are
    ``sign(x) * max(|x| - learning_rate * strength, 0)``, the proximal operator of
    ``learning_rate * strength * sum|w|``; the returned updates are that minus ``params``. Coordinates
    inside the threshold become exactly 0.0. With ``optax.sgd(learning_rate)`` before it this is ISTA
    (proximal gradient descent), which converges to the lasso solution of ``loss + strength * jr.l1``
    (scikit-learn's ``Lasso(alpha=strength)`` for the loss ``||Xw - y||^2 / (2 n)``). After an adaptive
    optimizer (Adam) it is the usual heuristic: a threshold of ``learning_rate * strength`` per step, still
    giving exact zeros, but not a proximal step in Adam's metric.

    Args:
      strength: the L1 coefficient ``>= 0``, or an optax schedule. May be traced.
      learning_rate: the optimizer's learning rate ``> 0`` (the same schedule, if it has one: both count
        updates from 0). May be traced.
      mask: leaves to sparsify (e.g. ``jr.kernel_mask``); the others' updates pass through.

    Returns:
      An ``optax.GradientTransformation`` with :class:`ProximalState`; ``update`` needs ``params``. Output
      leaves have the updates' shapes and dtypes.

    Raises:
      ValueError: if a concrete ``strength < 0`` or ``learning_rate <= 0``; at update time, if ``params``
        is None.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> import jaxreg as jr
      >>> tx = optax.chain(optax.sgd(0.5), jr.proximal_l1(0.2, learning_rate=0.5))  # threshold 0.1
      >>> params = jnp.array([0.05, -0.5, 2.0])
      >>> updates, _ = tx.update(jnp.zeros(3), tx.init(params), params)
      >>> print(optax.apply_updates(params, updates))
      [ 0.  -0.4  1.9]
    """
    check_in_range("strength", strength, 0.0, None, scalar=True)
    check_in_range("learning_rate", learning_rate, 0.0, None, low_inclusive=False, scalar=True)
    return _proximal(lambda x, lr, s: _soft_threshold(x, lr * s), strength, learning_rate, mask)


def proximal_elastic_net(
    strength: optax.ScalarOrSchedule,
    *,
    l1_ratio: ArrayLike = 0.5,
    learning_rate: optax.ScalarOrSchedule,
    mask: MaskOrFn = None,
) -> optax.GradientTransformation:
    """Proximal elastic-net step on ``params + updates``; place it **last**, after the optimizer.

    The prox of ``t * strength * (l1_ratio * |w| + 0.5 * (1 - l1_ratio) * w**2)`` with ``t = learning_rate``:
    soft-threshold at ``t * strength * l1_ratio``, then shrink by ``1 / (1 + t * strength * (1 - l1_ratio))``.
    After ``optax.sgd(learning_rate)`` it converges to scikit-learn's ``ElasticNet(alpha=strength,
    l1_ratio=l1_ratio)`` solution for the loss ``||Xw - y||^2 / (2 n)``, i.e. the minimizer of
    ``loss + jr.elastic_net(w, alpha=strength, l1_ratio=l1_ratio)``.

    Args:
      strength: the overall coefficient ``>= 0``, or an optax schedule. May be traced.
      l1_ratio: the L1 share in ``[0, 1]`` (``1`` is :func:`proximal_l1`, ``0`` a pure ridge shrink); the
        default 0.5 is scikit-learn's and :func:`jaxreg.elastic_net`'s. May be traced.
      learning_rate: the optimizer's learning rate ``> 0``, or its schedule. May be traced.
      mask: leaves to regularize; the others' updates pass through.

    Returns:
      An ``optax.GradientTransformation`` with :class:`ProximalState`; ``update`` needs ``params``. Output
      leaves have the updates' shapes and dtypes.

    Raises:
      ValueError: if a concrete ``strength < 0``, ``l1_ratio`` outside ``[0, 1]`` or ``learning_rate <= 0``;
        at update time, if ``params`` is None.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> import jaxreg as jr
      >>> tx = jr.proximal_elastic_net(1.0, l1_ratio=0.5, learning_rate=0.2)  # threshold 0.1, then divide by 1.1
      >>> params = jnp.array([0.05, -1.2, 2.3])
      >>> updates, _ = tx.update(jnp.zeros(3), tx.init(params), params)
      >>> print(optax.apply_updates(params, updates))
      [ 0. -1.  2.]
    """
    check_in_range("strength", strength, 0.0, None, scalar=True)
    check_in_range("l1_ratio", l1_ratio, 0.0, 1.0, scalar=True)
    check_in_range("learning_rate", learning_rate, 0.0, None, low_inclusive=False, scalar=True)

    def prox(x: jax.Array, lr: jax.Array, s: jax.Array) -> jax.Array:
        r = _as(l1_ratio, x)
        return _soft_threshold(x, lr * s * r) / (1 + lr * s * (1 - r))

    return _proximal(prox, strength, learning_rate, mask)


def proximal_group_lasso(
    strength: optax.ScalarOrSchedule,
    *,
    learning_rate: optax.ScalarOrSchedule,
    axis: Axis = 0,
    mask: MaskOrFn = None,
) -> optax.GradientTransformation:
    """Proximal group-lasso step (block soft-thresholding of units); place it **last**.

    With ``x = params + updates`` and ``t = learning_rate * strength``, each unit ``x_g`` (the entries sharing
    an index outside ``axis``; a column of a dense kernel for ``axis=0``) becomes
    ``x_g * max(1 - t / ||x_g||_2, 0)``: the prox of ``t * jr.group_lasso(w, axis=axis)`` (unweighted groups,
    the same convention). Units with ``||x_g|| <= t`` become exactly zero as a whole, pruning neurons or
    (``axis=1``) input features.

    Args:
      strength: the group-lasso coefficient ``>= 0``, or an optax schedule. May be traced.
      learning_rate: the optimizer's learning rate ``> 0``, or its schedule. May be traced.
      axis: axis or axes each unit's norm is taken over (negative values count from the end). A 1-D leaf
        with ``axis=0`` is one unit.
      mask: leaves to regularize (e.g. ``jr.kernel_mask``); the others' updates pass through.

    Returns:
      An ``optax.GradientTransformation`` with :class:`ProximalState`; ``update`` needs ``params``. Output
      leaves have the updates' shapes and dtypes.

    Raises:
      TypeError: if ``axis`` is not an int or a sequence of ints.
      ValueError: if a concrete ``strength < 0`` or ``learning_rate <= 0``; at update time, if ``params``
        is None or ``axis`` is out of range for a selected leaf.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> kernel = jnp.array([[3.0, 0.3], [4.0, 0.4]])  # column norms 5.0 and 0.5
      >>> tx = jr.proximal_group_lasso(1.0, learning_rate=1.0)  # threshold 1.0
      >>> updates, _ = tx.update(jnp.zeros((2, 2)), tx.init(kernel), kernel)
      >>> print(kernel + updates)
      [[2.4 0. ]
       [3.2 0. ]]
    """
    check_in_range("strength", strength, 0.0, None, scalar=True)
    check_in_range("learning_rate", learning_rate, 0.0, None, low_inclusive=False, scalar=True)
    axes = check_axes("axis", axis)

    def prox(x: jax.Array, lr: jax.Array, s: jax.Array) -> jax.Array:
        t = lr * s
        norms = _unit_norms(x, axes)
        safe = jnp.where(norms > t, norms, jnp.ones_like(norms))
        return x * jnp.where(norms > t, 1 - t / safe, jnp.zeros_like(norms))

    return _proximal(prox, strength, learning_rate, mask)


def _constraint(project: Callable[[jax.Array], jax.Array], mask: MaskOrFn) -> optax.GradientTransformation:
    """Shared body of the constraints: ``updates' = project(params + updates) - params``."""

    def init_fn(params: PyTree) -> optax.EmptyState:
        del params
        return optax.EmptyState()

    def update_fn(
        updates: PyTree, state: optax.EmptyState, params: PyTree | None = None
    ) -> tuple[PyTree, optax.EmptyState]:
        _require_params(params)

        def leaf(u: jax.Array, p: jax.Array) -> jax.Array:
            return (project(p + u.astype(p.dtype)) - p).astype(u.dtype)

        return jax.tree.map(leaf, updates, params), state

    return _maybe_masked(optax.GradientTransformation(init_fn, update_fn), mask)


def max_norm(max_value: ArrayLike, *, axis: Axis = 0, mask: MaskOrFn = None) -> optax.GradientTransformation:
    """Constrain each unit's L2 norm to at most ``max_value`` after the step (Keras ``MaxNorm``); place last.

    The new params are ``w * clip(n, 0, max_value) / (1e-7 + n)`` with ``w = params + updates`` and ``n`` the
    norm of each unit over ``axis``: ``keras.constraints.MaxNorm(max_value, axis)(w)``, Keras' epsilon
    included (units under the bound are scaled by ``n / (n + 1e-7)``, a no-op in float32 for
    ``n >> 1e-7``), to float rounding: the returned updates are that minus ``params``, and optax adds them
    back, so each new entry is within about 1 ulp of ``|params|`` of Keras' value (float32 weights of
    magnitude 50: ~2e-6 per entry, unit norms ~3e-6 off the bound; Keras assigns the projection, ~2e-7).

    Args:
      max_value: the largest allowed unit norm, ``> 0``. May be traced.
      axis: axis or axes each norm is taken over; ``0`` (Keras' default) is per output unit of a dense
        kernel ``(in, out)``, ``(0, 1, 2)`` per output channel of a conv kernel. A 1-D leaf (a bias) with
        ``axis=0`` is one unit; leaves too small for ``axis`` must be deselected with ``mask``.
      mask: leaves to constrain (e.g. ``jr.kernel_mask``); the others' updates pass through.

    Returns:
      A stateless (``optax.EmptyState``) ``optax.GradientTransformation``; ``update`` needs ``params``.
      Output leaves have the updates' shapes and dtypes.

    Raises:
      TypeError: if ``axis`` is not an int or a sequence of ints.
      ValueError: if a concrete ``max_value <= 0``; at update time, if ``params`` is None or ``axis`` is
        out of range for a selected leaf.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> kernel = jnp.array([[3.0, 0.3], [4.0, 0.4]])  # column norms 5.0 and 0.5
      >>> tx = jr.max_norm(2.0)
      >>> updates, _ = tx.update(jnp.zeros((2, 2)), tx.init(kernel), kernel)
      >>> print(jnp.linalg.norm(kernel + updates, axis=0))
      [2.  0.5]
    """
    check_in_range("max_value", max_value, 0.0, None, low_inclusive=False, scalar=True)
    axes = check_axes("axis", axis)

    def project(w: jax.Array) -> jax.Array:
        norms = _unit_norms(w, axes)
        desired = jnp.clip(norms, 0, _as(max_value, norms))
        return w * (desired / (_KERAS_EPSILON + norms))

    return _constraint(project, mask)


def unit_norm(*, axis: Axis = 0, mask: MaskOrFn = None) -> optax.GradientTransformation:
    """Rescale each unit to L2 norm 1 after the step (Keras ``UnitNorm``); place last.

    The new params are ``w / (1e-7 + n)`` with ``w = params + updates`` and ``n`` each unit's norm over
    ``axis``: ``keras.constraints.UnitNorm(axis)(w)`` to float rounding (about 1 ulp of ``|params|`` per
    entry, as :func:`max_norm` explains: optax adds the updates to the params). An all-zero unit stays zero.

    Args:
      axis: axis or axes each norm is taken over (``0``: per output unit of a dense kernel ``(in, out)``).
        A 1-D leaf with ``axis=0`` is one unit; leaves too small for ``axis`` must be deselected.
      mask: leaves to constrain (e.g. ``jr.kernel_mask``); the others' updates pass through.

    Returns:
      A stateless ``optax.GradientTransformation``; ``update`` needs ``params``. Output leaves have the
      updates' shapes and dtypes.

    Raises:
      TypeError: if ``axis`` is not an int or a sequence of ints.
      ValueError: at update time, if ``params`` is None or ``axis`` is out of range for a selected leaf.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> kernel = jnp.array([[3.0, 0.0], [4.0, 2.0]])
      >>> tx = jr.unit_norm()
      >>> updates, _ = tx.update(jnp.zeros((2, 2)), tx.init(kernel), kernel)
      >>> print(kernel + updates)
      [[0.6 0. ]
       [0.8 1. ]]
    """
    axes = check_axes("axis", axis)

    def project(w: jax.Array) -> jax.Array:
        return w / (_KERAS_EPSILON + _unit_norms(w, axes))

    return _constraint(project, mask)


def non_negative(*, mask: MaskOrFn = None) -> optax.GradientTransformation:
    """Clip the params at 0 after the step (Keras ``NonNeg``: ``max(params + updates, 0)``); place last.

    Unlike ``optax.keep_params_nonnegative`` (which zeroes the *update* of a coordinate that would go
    negative), the parameter lands exactly on 0, as Keras does.

    Args:
      mask: leaves to constrain; the others' updates pass through.

    Returns:
      A stateless ``optax.GradientTransformation``; ``update`` needs ``params``. Output leaves have the
      updates' shapes and dtypes.

    Raises:
      ValueError: at update time, if ``params`` is None.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> params = jnp.array([0.5, 0.5, -1.0])
      >>> tx = jr.non_negative()
      >>> updates, _ = tx.update(jnp.array([-1.0, 0.25, 0.5]), tx.init(params), params)
      >>> print(params + updates)
      [0.   0.75 0.  ]
    """

    def project(w: jax.Array) -> jax.Array:
        return jnp.maximum(w, 0)

    return _constraint(project, mask)


def weight_decay(
    rate: optax.ScalarOrSchedule, *, mask: MaskOrFn = kernel_mask
) -> optax.GradientTransformation:
    """Decoupled weight decay (AdamW's) on kernels by default: ``optax.add_decayed_weights`` with a sane mask.

    Adds ``rate * params`` to the updates of the selected leaves. Place it **after** the preconditioner and
    **before** the learning rate, exactly where ``optax.adamw`` has it::

        optax.chain(optax.scale_by_adam(), jr.weight_decay(1e-4), optax.scale_by_learning_rate(1e-3))

    so the decay is ``lr * rate * params`` per step, untouched by Adam's scaling. Put before the optimizer
    it becomes a coupled L2 gradient (``(rate / 2) * jr.l2`` in the loss); put after the learning rate it
    would *grow* the weights (wrong sign).

    Args:
      rate: decay coefficient ``>= 0``, or an optax schedule (evaluated at optax's own count).
      mask: leaves to decay; default :func:`jaxreg.kernel_mask` (kernels and embeddings, not biases, norm
        scales or statistics); ``None`` decays everything.

    Returns:
      ``optax.add_decayed_weights(rate, mask)``; ``update`` needs ``params``. A traced ``rate`` must have the
      params' dtype (strict dtype promotion).

    Raises:
      ValueError: if a concrete ``rate`` is negative or NaN.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> params = {"kernel": jnp.array([[1.0, -2.0]]), "bias": jnp.array([3.0])}
      >>> tx = jr.weight_decay(0.1)
      >>> grads = {"kernel": jnp.zeros((1, 2)), "bias": jnp.zeros(1)}
      >>> updates, _ = tx.update(grads, tx.init(params), params)
      >>> print(updates["kernel"], updates["bias"])
      [[ 0.1 -0.2]] [0.]
    """
    check_in_range("rate", rate, 0.0, None, scalar=True)
    return _maybe_masked(optax.add_decayed_weights(rate), mask)  # optax.masked, with a mask error naming `mask`
