"""Functional batch normalization and batch renormalization (floor 2).

``batch_norm(x, params, state, *, training)`` returns ``(y, new_state)``: the running statistics are a small
``BatchNormState`` pytree that the caller threads through the training step, never hidden module state. The
numerics and conventions are those of ``flax.linen.BatchNorm`` (``momentum=0.99``, ``epsilon=1e-5``, biased
variance computed as ``E[x^2] - E[x]^2`` in at least float32, ``running = momentum * running + (1 - momentum)
* batch``), and ``to_flax_batch_stats`` / ``from_flax_batch_stats`` convert to and from a linen
``batch_stats`` collection, so a model can move between the two without retraining.

Training mode computes the statistics with ordinary (differentiable) ``jax.numpy`` reductions and applies
them through a hand-written reverse-mode rule (``jax.custom_vjp``) for ``(x - mean) * rsqrt(var + eps) *
scale + bias``: its backward pass is two reductions (``sum(g)``, ``sum(g * x)``) and one elementwise
pass, which together with autodiff of the statistics gives the classic closed-form gradient
``dx = a * (g - mean(g) - xhat * mean(g * xhat))``, ``a = scale * rsqrt(var + eps)``, without the full-size
intermediate that plain autodiff materializes. On the benchmark shapes this is faster than
``flax.linen.BatchNorm`` under ``jax.grad`` (see ``benchmarks/norm.py``). Because the statistics stay plain
autodiff, ``axis_name`` collectives transpose as JAX defines them, under ``vmap`` and ``shard_map`` alike.
The price of a custom VJP is that pure forward-mode differentiation (``jax.jvp``, ``jax.jacfwd`` of the
function itself) of training-mode ``batch_norm``/``batch_renorm`` raises ``TypeError``; reverse mode
(``jax.grad``, ``jax.vjp``, ``jax.jacrev``, nested reverse mode) and forward-over-reverse (Hessian-vector
products ``jax.jvp(jax.grad(f), ...)``) work. Evaluation mode is plain ``jax.numpy`` and supports every
transformation.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Hashable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxreg._validate import check_axis, check_in_range, check_positive_int, is_concrete

__all__ = [
    "BatchNormState",
    "batch_norm_init",
    "batch_norm",
    "batch_renorm",
    "to_flax_batch_stats",
    "from_flax_batch_stats",
]

AxisName = Hashable | tuple[Hashable, ...]


class BatchNormState(NamedTuple):
    """Running statistics of one batch-norm layer (``flax.linen.BatchNorm``'s ``batch_stats``).

    Attributes:
      mean: running mean of each feature.
      var: running biased variance of each feature.
    """

    mean: jax.Array  # shape=(features,), float32 (at least)
    var: jax.Array  # shape=(features,), float32 (at least)


def batch_norm_init(
    num_features: int, dtype: jnp.dtype | type = jnp.float32
) -> tuple[dict[str, jax.Array], BatchNormState]:
    """Initial parameters and running statistics of a batch-norm layer (as ``flax.linen.BatchNorm``).

    Args:
      num_features: size of the feature axis.
      dtype: dtype of ``scale`` and ``bias``. The running statistics use ``dtype`` promoted to at least
        float32, as flax does, so that bfloat16 parameters still keep float32 statistics.

    Returns:
      ``(params, state)``: ``params = {'scale': ones, 'bias': zeros}`` of shape ``(num_features,)`` and
      ``BatchNormState(mean=zeros, var=ones)``.

    Raises:
      TypeError, ValueError: if ``num_features`` is not a positive integer.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> params, state = jr.batch_norm_init(3)
      >>> print(params["scale"], params["bias"], state.mean, state.var)
      [1. 1. 1.] [0. 0. 0.] [0. 0. 0.] [1. 1. 1.]
    """
    num_features = check_positive_int("num_features", num_features)
    stats_dtype = _at_least_float32(dtype)
    params = {"scale": jnp.ones((num_features,), dtype), "bias": jnp.zeros((num_features,), dtype)}
    return params, BatchNormState(
        mean=jnp.zeros((num_features,), stats_dtype), var=jnp.ones((num_features,), stats_dtype)
    )


def to_flax_batch_stats(state: BatchNormState) -> dict[str, jax.Array]:
    """The ``{'mean': ..., 'var': ...}`` dict that ``flax.linen.BatchNorm`` keeps under ``batch_stats``.

    Args:
      state: running statistics from :func:`batch_norm`.

    Returns:
      ``{'mean': state.mean, 'var': state.var}`` (the same arrays, no copy), ready to put at
      ``variables['batch_stats'][<layer name>]``.

    Example:
      >>> import jaxreg as jr
      >>> _, state = jr.batch_norm_init(2)
      >>> print(jr.to_flax_batch_stats(state))
      {'mean': Array([0., 0.], dtype=float32), 'var': Array([1., 1.], dtype=float32)}
    """
    return {"mean": state.mean, "var": state.var}


def from_flax_batch_stats(batch_stats: Mapping[str, Any]) -> BatchNormState:
    """A ``BatchNormState`` from one linen ``BatchNorm`` layer's ``batch_stats`` dict.

    Args:
      batch_stats: ``{'mean': (features,), 'var': (features,)}``, e.g. ``variables['batch_stats']['BatchNorm_0']``.

    Returns:
      ``BatchNormState(mean=batch_stats['mean'], var=batch_stats['var'])`` as JAX arrays.

    Raises:
      ValueError: if ``'mean'`` or ``'var'`` is missing, or their shapes differ or are not 1-D.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> state = jr.from_flax_batch_stats({"mean": jnp.zeros(2), "var": jnp.ones(2)})
      >>> print(state.mean.shape, state.var)
      (2,) [1. 1.]
    """
    missing = [k for k in ("mean", "var") if k not in batch_stats]
    if missing:
        raise ValueError(
            f"batch_stats must hold 'mean' and 'var' (one BatchNorm layer's collection), missing {missing}; "
            f"got keys {sorted(batch_stats)}."
        )
    mean, var = jnp.asarray(batch_stats["mean"]), jnp.asarray(batch_stats["var"])
    if mean.ndim != 1 or mean.shape != var.shape:
        raise ValueError(
            f"batch_stats 'mean' and 'var' must be 1-D of the same shape, got {mean.shape} and {var.shape}."
        )
    return BatchNormState(mean=mean, var=var)


# ----------------------------------------------------------------------------------------------------------
# Layout: every input is viewed (a free reshape) as [ghosts,] rows, features, cols with size-1 dims dropped,
# so that the reductions are plain 2-D/3-D ones whatever the rank and feature axis.


class _Layout(NamedTuple):
    shape: tuple[int, ...]  # the canonical view of x
    reduce_axes: tuple[int, ...]  # statistics are taken over these axes of the view
    param_shape: tuple[int, ...]  # scale, bias and running statistics broadcast in this shape
    ghost_axis: int | None  # axis of the view that indexes ghost batches


def _layout(shape: tuple[int, ...], axis: int, num_ghosts: int | None) -> _Layout:
    features = shape[axis]
    rows, cols = math.prod(shape[:axis]), math.prod(shape[axis + 1 :])
    dims: list[tuple[int, str]] = []
    if num_ghosts is not None:
        dims.append((num_ghosts, "ghost"))
        rows //= num_ghosts
    dims += [(rows, "reduce"), (features, "feature"), (cols, "reduce")]
    dims = [(n, kind) for n, kind in dims if n != 1 or kind == "feature"]
    view = tuple(n for n, _ in dims)
    reduce_axes = tuple(i for i, (_, kind) in enumerate(dims) if kind == "reduce")
    param_shape = tuple(n if kind == "feature" else 1 for n, kind in dims)
    ghost_axis = next((i for i, (_, kind) in enumerate(dims) if kind == "ghost"), None)
    return _Layout(view, reduce_axes, param_shape, ghost_axis)


def _at_least_float32(*dtypes: Any) -> jnp.dtype:
    """The widest of ``dtypes`` and float32 (statistics never run in half precision, as in flax)."""
    return max((jnp.dtype(d) for d in (jnp.float32, *dtypes)), key=lambda d: d.itemsize)


def _stats_dtype(x: jax.Array) -> jnp.dtype:
    return _at_least_float32(x.dtype)


def _sum_to_shape(a: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Sum ``a`` over the axes where ``shape`` is 1 (ghost batches share one scale and bias)."""
    axes = tuple(i for i, (n, m) in enumerate(zip(a.shape, shape)) if m == 1 and n != 1)
    return jnp.sum(a, axes, keepdims=True) if axes else a


def _pmean_stacked(arrays: list[jax.Array], axis_name: AxisName | None) -> list[jax.Array]:
    # One collective for all the statistics, as flax does, to pay the latency once.
    if axis_name is None:
        return arrays
    stacked = lax.pmean(jnp.stack(arrays), axis_name)
    return [stacked[i] for i in range(len(arrays))]


def _moments(x: jax.Array, axes: tuple[int, ...], axis_name: AxisName | None) -> tuple[jax.Array, jax.Array]:
    """Mean and biased variance over ``axes`` in float32 (at least), flax's ``_compute_stats`` numerics."""
    xf = x.astype(_stats_dtype(x))
    mean, mean_sq = _pmean_stacked(
        [jnp.mean(xf, axes, keepdims=True), jnp.mean(lax.square(xf), axes, keepdims=True)], axis_name
    )
    # E[x^2] - E[x]^2 can round below zero.
    return mean, jnp.maximum(0.0, mean_sq - lax.square(mean))


@functools.partial(jax.custom_vjp, nondiff_argnums=(6,))
def _normalize(
    x: jax.Array,
    mean: jax.Array,
    var: jax.Array,
    scale: jax.Array | None,
    bias: jax.Array | None,
    epsilon: jax.Array,
    axes: tuple[int, ...],
) -> jax.Array:
    """``(x - mean) * (rsqrt(var + epsilon) * scale) + bias`` in the statistics' dtype, cast to ``x.dtype``."""
    return _normalize_fwd(x, mean, var, scale, bias, epsilon, axes)[0]


def _normalize_fwd(x, mean, var, scale, bias, epsilon, axes):
    rstd = lax.rsqrt(var + epsilon)
    mul = rstd if scale is None else rstd * scale  # flax's order: rsqrt first, then the scale
    y = (x.astype(mean.dtype) - mean) * mul
    if bias is not None:
        y = y + bias
    return y.astype(x.dtype), (x, mean, rstd, scale, bias)


def _normalize_bwd(axes, residuals, g):
    # Autodiff of the forward would form g * mul once for dx and once for the reduction that gives the mean's
    # cotangent, and XLA materializes a product with two consumers. Here the only full-size reductions are
    # sum(g) and sum(g * x), per-feature factors are applied to the small results, and d_x is one fused pass
    # with the terms that autodiff of the statistics adds.
    x, mean, rstd, scale, bias = residuals
    xf = x.astype(mean.dtype)
    gf = g.astype(mean.dtype)
    sum_g = jnp.sum(gf, axes, keepdims=True)
    # sum(g * (x - mean)) from raw sums: XLA:CPU reduces a plain product faster than one with a broadcast
    # operand; the rounding this adds is far below that of flax's E[x^2] - E[x]^2 variance, which bounds
    # the gradient's accuracy for inputs with a large mean either way.
    sum_g_xc = jnp.sum(gf * xf, axes, keepdims=True) - mean * sum_g
    mul = rstd if scale is None else rstd * scale
    d_x = (mul * gf).astype(x.dtype)
    d_mean = -mul * sum_g
    d_var = -0.5 * lax.square(rstd) * mul * sum_g_xc
    d_scale = None if scale is None else _sum_to_shape(rstd * sum_g_xc, scale.shape).astype(scale.dtype)
    d_bias = None if bias is None else _sum_to_shape(sum_g, bias.shape).astype(bias.dtype)
    return d_x, d_mean, d_var, d_scale, d_bias, jnp.sum(d_var).astype(mean.dtype)


_normalize.defvjp(_normalize_fwd, _normalize_bwd)


# ----------------------------------------------------------------------------------------------------------
# Argument checks, all in Python before anything is traced.


def _check_common(x: Any, params: Any, state: Any, training: Any, momentum: Any, epsilon: Any, axis: Any):
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(
            f"training must be a Python bool (it selects batch or running statistics at trace time), "
            f"got training = {training!r}."
        )
    check_in_range("momentum", momentum, 0.0, 1.0, scalar=True)
    check_in_range("epsilon", epsilon, 0.0, None, low_inclusive=False, scalar=True)
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x must have a floating dtype, got x.dtype = {x.dtype}.")
    if x.ndim < 1:
        raise ValueError(f"x must have at least one axis (the feature axis), got shape {x.shape}.")
    axis = check_axis("axis", axis, x.ndim)
    features = x.shape[axis]
    if not isinstance(state, BatchNormState):
        raise TypeError(f"state must be a BatchNormState, got {type(state).__name__}.")
    for name in ("mean", "var"):
        if jnp.shape(getattr(state, name)) != (features,):
            raise ValueError(
                f"state.{name} must have shape ({features},) to match x.shape[{axis}], "
                f"got {jnp.shape(getattr(state, name))}."
            )
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise TypeError(
            f"params must be a dict with optional 'scale' and 'bias', or None, got {type(params).__name__}."
        )
    unknown = sorted(set(params) - {"scale", "bias"})
    if unknown:
        raise ValueError(f"params may only hold 'scale' and 'bias', got unexpected keys {unknown}.")
    for name in ("scale", "bias"):
        if name in params and jnp.shape(params[name]) != (features,):
            raise ValueError(
                f"params['{name}'] must have shape ({features},) to match x.shape[{axis}], "
                f"got {jnp.shape(params[name])}."
            )
    return x, axis, params.get("scale"), params.get("bias")


def _as_param(value: jax.Array | None, layout: _Layout, dtype: jnp.dtype) -> jax.Array | None:
    # Parameters join the float32 statistics in float32 (flax promotes the same way).
    if value is None:
        return None
    value = jnp.asarray(value)
    return value.astype(_at_least_float32(value.dtype, dtype)).reshape(layout.param_shape)


def _ema(running: jax.Array, batch: jax.Array, momentum: Any) -> jax.Array:
    batch = batch.astype(running.dtype)
    if is_concrete(momentum):
        # Python arithmetic for (1 - momentum), exactly as flax writes it, so the two agree to the bit.
        momentum = float(momentum)
        return momentum * running + (1.0 - momentum) * batch
    momentum = jnp.asarray(momentum, running.dtype)
    return momentum * running + (1 - momentum) * batch


def _normalize_eval(x, scale, bias, state, epsilon, axis):
    layout = _layout(x.shape, axis, None)
    dtype = _at_least_float32(x.dtype, state.mean.dtype)
    mean = state.mean.astype(dtype).reshape(layout.param_shape)
    var = state.var.astype(dtype).reshape(layout.param_shape)
    scale, bias = _as_param(scale, layout, dtype), _as_param(bias, layout, dtype)
    mul = lax.rsqrt(var + jnp.asarray(epsilon, dtype))
    if scale is not None:
        mul = mul * scale
    y = (x.reshape(layout.shape).astype(dtype) - mean) * mul
    if bias is not None:
        y = y + bias
    return y.astype(x.dtype).reshape(x.shape)


def batch_norm(
    x: jax.Array,
    params: Mapping[str, jax.Array] | None,
    state: BatchNormState,
    *,
    training: bool,
    momentum: float | jax.Array = 0.99,
    epsilon: float | jax.Array = 1e-5,
    axis: int = -1,
    axis_name: AxisName | None = None,
    ghost_batch_size: int | None = None,
) -> tuple[jax.Array, BatchNormState]:
    """Batch normalization with explicit running statistics, numerically matching ``flax.linen.BatchNorm``.

    Training mode normalizes with the statistics of this batch over every axis but ``axis``: mean and biased
    variance ``E[x^2] - E[x]^2`` computed in at least float32 (clipped at 0), ``y = (x - mean) *
    (rsqrt(var + epsilon) * scale) + bias``, and updates ``running = momentum * running + (1 - momentum) *
    batch``. Evaluation mode (``training=False``) normalizes with the running statistics and returns
    ``state`` itself, unchanged.

    Distributed batches: ``axis_name`` averages the statistics over a named mapped axis with one
    ``jax.lax.pmean`` (``jax.vmap(..., axis_name=...)``, ``shard_map``, ``pmap``), so every member normalizes
    with the statistics of the whole batch and keeps identical running statistics; gradients flow through
    the mean as well. Under plain ``jax.jit`` with a batch sharded by ``jax.sharding``, leave ``axis_name``
    as ``None``: the reductions are already over the global batch (XLA inserts the all-reduce).

    Ghost batch normalization (Hoffer et al., 2017, "Train longer, generalize better"): with
    ``ghost_batch_size=k`` the leading axis of ``x`` (the batch) is split into ``batch // k`` consecutive
    chunks of ``k`` examples and each chunk is normalized with its own statistics. The running statistics are
    updated with the *average* of the ghost-batch means and variances (as tf.keras' ``virtual_batch_size`` does):
    the running variance then estimates the variance *within* a ghost batch, the one the network saw while
    training, rather than the variance of the whole batch. With ``axis_name``, ghost batches stay local to
    each member (they are sub-batches of its examples) and only the running-statistic update is averaged.

    Differentiation: training mode has a hand-written backward pass (see the module docstring); reverse mode
    and forward-over-reverse work, pure forward mode (``jax.jvp`` of this function) raises ``TypeError``.

    Args:
      x: input of any rank >= 1 and floating dtype; ``y`` has its shape and dtype.
      params: ``{'scale': (features,), 'bias': (features,)}`` as from :func:`batch_norm_init`; either key
        may be left out (no scale, no bias), or ``None`` for no affine transform at all.
      state: running statistics, ``BatchNormState`` with ``(features,)`` arrays.
      training: ``True`` for batch statistics and a state update, ``False`` for the running statistics.
        A Python bool: the two modes are different programs.
      momentum: decay of the running averages, in ``[0, 1]``; flax's default 0.99. May be traced.
      epsilon: added to the variance before ``rsqrt``, ``> 0``. May be traced.
      axis: the feature axis (``-1`` for NHWC/NC, ``1`` for NCHW); statistics are over all the others.
      axis_name: name(s) of a mapped axis to average the statistics over, or ``None``.
      ghost_batch_size: if set, normalize ghost batches of this many examples along axis 0; must divide
        ``x.shape[0]``, and the feature axis must not be axis 0. Ignored in evaluation mode.

    Returns:
      ``(y, new_state)``. ``y`` has ``x``'s shape and dtype (computed in float32 for lower-precision inputs;
      note that ``flax.linen.BatchNorm`` with its default ``dtype=None`` would instead return float32 for a
      bfloat16 input with float32 parameters). ``new_state`` has ``state``'s dtypes; it is ``state`` itself
      when ``training=False``.

    Raises:
      ValueError: ``momentum`` outside ``[0, 1]``, ``epsilon <= 0``, ``axis`` out of range,
        ``ghost_batch_size`` not a positive divisor of the batch, shapes of ``params``/``state`` that do not
        match the feature axis, unexpected keys in ``params``.
      TypeError: ``training`` not a bool, ``axis``/``ghost_batch_size`` not integers, non-float ``x``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxreg as jr
      >>> x = jnp.array([[1.0, 10.0], [3.0, 30.0]])
      >>> params, state = jr.batch_norm_init(2)
      >>> y, state = jr.batch_norm(x, params, state, training=True)
      >>> print(jnp.round(y, 3))
      [[-1. -1.]
       [ 1.  1.]]
      >>> print(state.mean, state.var)  # 0.99 * initial + 0.01 * batch statistics
      [0.02 0.2] [1. 1.99]
      >>> y_eval, same = jr.batch_norm(x, params, state, training=False)
      >>> same is state
      True
    """
    x, axis, scale, bias = _check_common(x, params, state, training, momentum, epsilon, axis)
    num_ghosts = None
    if ghost_batch_size is not None:
        ghost_batch_size = check_positive_int("ghost_batch_size", ghost_batch_size)
        if axis == 0:
            raise ValueError(
                "ghost_batch_size splits axis 0 (the batch), so the feature axis cannot be 0; got axis = 0."
            )
        if x.shape[0] % ghost_batch_size:
            raise ValueError(
                f"ghost_batch_size must divide the batch size x.shape[0] = {x.shape[0]}, "
                f"got ghost_batch_size = {ghost_batch_size}."
            )
        num_ghosts = x.shape[0] // ghost_batch_size

    if not training:
        return _normalize_eval(x, scale, bias, state, epsilon, axis), state

    layout = _layout(x.shape, axis, num_ghosts)
    dtype = _stats_dtype(x)
    xv = x.reshape(layout.shape)
    # Ghost batches are sub-batches of this member's examples: their statistics stay local.
    mean, var = _moments(xv, layout.reduce_axes, axis_name if num_ghosts is None else None)
    y = _normalize(
        xv,
        mean,
        var,
        _as_param(scale, layout, dtype),
        _as_param(bias, layout, dtype),
        jnp.asarray(epsilon, dtype),
        layout.reduce_axes,
    )
    if layout.ghost_axis is not None:
        mean, var = _pmean_stacked(
            [jnp.mean(mean, layout.ghost_axis, keepdims=True), jnp.mean(var, layout.ghost_axis, keepdims=True)],
            axis_name,
        )
    return y.reshape(x.shape), _updated_state(state, mean, var, momentum)


def _updated_state(state: BatchNormState, mean: jax.Array, var: jax.Array, momentum: Any) -> BatchNormState:
    features = state.mean.shape[0]
    return BatchNormState(
        mean=_ema(state.mean, mean.reshape(features), momentum),
        var=_ema(state.var, var.reshape(features), momentum),
    )


def batch_renorm(
    x: jax.Array,
    params: Mapping[str, jax.Array] | None,
    state: BatchNormState,
    *,
    training: bool,
    momentum: float | jax.Array = 0.99,
    epsilon: float | jax.Array = 1e-5,
    r_max: float | jax.Array = 3.0,
    d_max: float | jax.Array = 5.0,
    axis: int = -1,
    axis_name: AxisName | None = None,
) -> tuple[jax.Array, BatchNormState]:
    """Batch renormalization (Ioffe, 2017): batch statistics corrected toward the running ones.

    In training mode, with batch statistics ``mu_B``, ``sigma_B = sqrt(var_B + epsilon)`` and running
    ``mu``, ``sigma = sqrt(running_var + epsilon)``::

        r = stop_gradient(clip(sigma_B / sigma, 1 / r_max, r_max))
        d = stop_gradient(clip((mu_B - mu) / sigma, -d_max, d_max))
        y = ((x - mu_B) / sigma_B * r + d) * scale + bias

    so the output no longer depends on the composition of the batch once ``r`` and ``d`` are inside their
    clips, while gradients still flow through ``mu_B`` and ``sigma_B``. ``r_max=1, d_max=0`` is plain batch
    norm. The paper ramps ``r_max`` from 1 to about 3 and ``d_max`` from 0 to about 5 during training; both
    may be traced values (e.g. from an optax schedule) to do so inside one compiled step.

    State convention: the paper keeps a moving average of ``sigma``; this function keeps the moving average
    of the variance (the same ``BatchNormState`` as :func:`batch_norm`, updated exactly like it) and derives
    ``sigma = sqrt(running_var + epsilon)``. Evaluation mode is therefore identical to
    ``batch_norm(..., training=False)``, and the state is interchangeable with flax's ``batch_stats``.

    Args:
      x: input of any rank >= 1 and floating dtype; ``y`` has its shape and dtype.
      params: ``{'scale', 'bias'}`` (either optional) or ``None``, as for :func:`batch_norm`.
      state: running statistics, ``BatchNormState`` with ``(features,)`` arrays.
      training: Python bool; ``False`` normalizes with the running statistics and returns ``state``.
      momentum: decay of the running averages in ``[0, 1]`` (the paper's ``alpha`` is ``1 - momentum``).
      epsilon: added to variances, ``> 0``.
      r_max: clip of ``r`` to ``[1 / r_max, r_max]``, ``>= 1``.
      d_max: clip of ``d`` to ``[-d_max, d_max]``, ``>= 0``.
      axis: the feature axis; statistics are over all the others.
      axis_name: name(s) of a mapped axis to average the batch statistics over (see :func:`batch_norm`).

    Returns:
      ``(y, new_state)`` as for :func:`batch_norm`.

    Raises:
      ValueError: bad ``momentum``, ``epsilon``, ``axis`` or shapes (as :func:`batch_norm`), ``r_max < 1``,
        ``d_max < 0``.
      TypeError: ``training`` not a bool, ``axis`` not an integer, non-float ``x``.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> x = jnp.array([[1.0], [3.0]])
      >>> params, state = jr.batch_norm_init(1)
      >>> y, state = jr.batch_renorm(x, params, state, training=True, r_max=1.0, d_max=0.5)
      >>> print(jnp.round(y.ravel(), 3))  # d = clip((2 - 0) / 1, -0.5, 0.5) shifts the output by 0.5
      [-0.5  1.5]
    """
    x, axis, scale, bias = _check_common(x, params, state, training, momentum, epsilon, axis)
    check_in_range("r_max", r_max, 1.0, None, scalar=True)
    check_in_range("d_max", d_max, 0.0, None, scalar=True)
    if not training:
        return _normalize_eval(x, scale, bias, state, epsilon, axis), state

    layout = _layout(x.shape, axis, None)
    dtype = _stats_dtype(x)
    xv = x.reshape(layout.shape)
    eps = jnp.asarray(epsilon, dtype)
    mean, var = _moments(xv, layout.reduce_axes, axis_name)
    run_mean = state.mean.astype(dtype).reshape(layout.param_shape)
    run_std = jnp.sqrt(state.var.astype(dtype).reshape(layout.param_shape) + eps)
    r_max = jnp.asarray(r_max, dtype)
    d_max = jnp.asarray(d_max, dtype)
    r = lax.stop_gradient(jnp.clip(jnp.sqrt(var + eps) / run_std, 1 / r_max, r_max))
    d = lax.stop_gradient(jnp.clip((mean - run_mean) / run_std, -d_max, d_max))
    # ((x - mu_B) / sigma_B * r + d) * scale + bias is batch norm with scale' = scale * r and
    # bias' = bias + scale * d, so it shares batch_norm's hand-written gradient.
    scale_v = _as_param(scale, layout, dtype)
    bias_v = _as_param(bias, layout, dtype)
    shift = d if scale_v is None else scale_v * d
    y = _normalize(
        xv,
        mean,
        var,
        r if scale_v is None else scale_v * r,
        shift if bias_v is None else bias_v + shift,
        eps,
        layout.reduce_axes,
    )
    return y.reshape(x.shape), _updated_state(state, mean, var, momentum)
