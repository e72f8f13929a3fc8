"""``BatchNorm`` for ``flax.nnx``: :func:`jaxreg.batch_norm` behind ``nnx.BatchNorm``'s signature (floor 4).

Re-exported as ``jaxreg.flax.nnx.BatchNorm``; the shared argument handling is in ``_batch_norm_args``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.nn import dtypes as nnx_dtypes
from flax.nnx.nn import normalization as nnx_normalization
from flax.typing import Dtype, Initializer, PromoteDtypeFn
from jax import lax

from jaxreg._validate import check_positive_int
from jaxreg.flax import _batch_norm_args as bn_args

__all__ = ["BatchNorm"]


def _like(value: jax.Array, running: jax.Array) -> jax.Array:
    """``value`` in the running statistic's shape and dtype, as ``nnx.BatchStat``'s ``[...] =`` keeps them.

    A complex batch mean loses its imaginary part in a real running mean, as in ``nnx.BatchNorm`` (where the
    cast happens inside the assignment's scatter, which warns); here it is explicit and silent.
    """
    if jnp.iscomplexobj(value) and not jnp.iscomplexobj(running):
        value = jnp.real(value)
    return value.reshape(running.shape).astype(running.dtype)


class BatchNorm(nnx.Module):
    """Batch normalization, :func:`jaxreg.batch_norm` as a drop-in for ``nnx.BatchNorm``.

    Takes ``nnx.BatchNorm``'s whole signature (``__call__(x, use_running_average=None, *, mask=None)``) with
    its semantics. Same state: ``nnx.Param`` ``scale`` and ``bias`` (``param_dtype``, with
    ``scale_metadata``/``bias_metadata``), ``nnx.BatchStat`` ``mean`` and ``var`` (float32), all of shape
    ``(num_features,)``, so ``nnx.update`` moves state between the two. As nnx, each call first passes
    ``(x, mean, var, scale, bias)`` through ``promote_dtype(..., dtype=dtype)``. In training mode
    (``use_running_average=False``, ``model.train()``) a call normalizes with the batch statistics and
    updates ``mean``/``var`` (outside the gradient, ``stop_gradient``); ``model.eval()`` switches to the
    running statistics.

    Most calls run the functional core. A training call with ``mask``, ``use_fast_variance=False``,
    ``axis_index_groups`` or a statistics ``dtype`` wider than the input's, and any call with a complex input,
    runs nnx's own ``_compute_stats``/``_normalize`` instead (the core has no such options).

    Differences from ``nnx.BatchNorm``:

    * ``ghost_batch_size`` (a jaxreg addition); it cannot be combined with the options that run nnx's helpers
      (``ValueError`` naming both), nor with ``0`` among the feature axes.
    * A tuple ``axis`` works in training mode too (``nnx.BatchNorm`` fails to broadcast its statistics
      there); ``num_features`` must then be the product of the feature axes' sizes, and the state holds them
      flattened in C order, as nnx's evaluation mode reads it. A mismatch raises ``ValueError``.
    * ``momentum`` outside ``[0, 1]``, ``epsilon <= 0`` and an out-of-range ``axis`` raise ``ValueError``.
    * Evaluation with a ``dtype`` below float32 (``dtype=jnp.bfloat16``): nnx normalizes in that dtype with
      the statistics cast to it; jaxreg normalizes the same cast values in float32 and casts the result,
      so outputs differ by the dtype's rounding.
    * On the core path, training-mode gradients come from jaxreg's hand-written backward pass: equal to nnx's
      up to float rounding, and ``jax.jvp``/``jax.jacfwd`` of a training-mode call raise ``TypeError``.
    * A complex batch mean's imaginary part is dropped from the real running mean explicitly and silently
      (nnx drops it inside the assignment, with a ``FutureWarning`` or, under ``jit``, a ``ComplexWarning``).
    * Dtypes follow nnx's (standard) promotion even under ``jax_numpy_dtype_promotion="strict"``.

    Args:
      num_features: number of features: the size of ``axis`` (the product of the sizes, for a tuple).
      use_running_average: ``True`` normalizes with the running statistics.
      axis: the feature axis, or a tuple of feature axes.
      momentum: decay of the running averages, in ``[0, 1]``.
      epsilon: added to the variance, ``> 0``.
      dtype: the output dtype, passed to ``promote_dtype``; ``None`` infers it.
      param_dtype: dtype of ``scale`` and ``bias``.
      use_bias: learn a bias.
      use_scale: learn a scale.
      bias_init: initializer of ``bias``.
      scale_init: initializer of ``scale``.
      axis_name: mapped axis to average the batch statistics over.
      axis_index_groups: groups of indices of ``axis_name`` to average within (``pmap``).
      use_fast_variance: ``E[|x|^2] - |E[x]|^2`` (nnx's default) rather than ``E[|x - E[x]|^2]``.
      promote_dtype: ``fn((x, mean, var, scale, bias), dtype=dtype)`` returning the five promoted, as nnx.
      rngs: an ``nnx.Rngs``; its ``params`` stream feeds the initializers (scale first, as nnx).
      bias_metadata: metadata of the ``bias`` ``nnx.Param``.
      scale_metadata: metadata of the ``scale`` ``nnx.Param``.
      ghost_batch_size: normalize ghost batches of this many examples (see :func:`jaxreg.batch_norm`).

    Raises:
      TypeError, ValueError: ``num_features`` not a positive integer.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from jaxreg.flax import nnx as jrn
      >>> bn = jrn.BatchNorm(2, momentum=0.9, rngs=nnx.Rngs(0))
      >>> y = bn(jnp.array([[1.0, 10.0], [3.0, 30.0]]))
      >>> print(jnp.round(y, 3))
      [[-1. -1.]
       [ 1.  1.]]
      >>> print(bn.mean[...])  # 0.9 * 0 + 0.1 * batch mean
      [0.2 2. ]
      >>> bn.eval()
      >>> bn.use_running_average
      True
    """

    def __init__(
        self,
        num_features: int,
        *,
        use_running_average: bool | None = False,
        axis: int | Sequence[int] = -1,
        momentum: float = 0.99,
        epsilon: float = 1e-5,
        dtype: Dtype | None = None,
        param_dtype: Dtype = jnp.float32,
        use_bias: bool = True,
        use_scale: bool = True,
        bias_init: Initializer = nnx.initializers.zeros_init(),
        scale_init: Initializer = nnx.initializers.ones_init(),
        axis_name: str | None = None,
        axis_index_groups: Any = None,
        use_fast_variance: bool = True,
        promote_dtype: PromoteDtypeFn = nnx_dtypes.promote_dtype,
        rngs: nnx.Rngs,
        bias_metadata: Mapping[str, Any] = MappingProxyType({}),
        scale_metadata: Mapping[str, Any] = MappingProxyType({}),
        ghost_batch_size: int | None = None,
    ) -> None:
        feature_shape = (check_positive_int("num_features", num_features),)
        self.mean = nnx.BatchStat(jnp.zeros(feature_shape, jnp.float32))
        self.var = nnx.BatchStat(jnp.ones(feature_shape, jnp.float32))
        self.scale: nnx.Param[jax.Array] | None
        self.bias: nnx.Param[jax.Array] | None
        # Keys drawn in nnx.BatchNorm's order, so custom initializers give the same values.
        self.scale = (
            nnx.Param(scale_init(rngs.params(), feature_shape, param_dtype), **scale_metadata)
            if use_scale
            else nnx.data(None)
        )
        self.bias = (
            nnx.Param(bias_init(rngs.params(), feature_shape, param_dtype), **bias_metadata)
            if use_bias
            else nnx.data(None)
        )
        self.num_features = num_features
        self.use_running_average = use_running_average
        self.axis = axis
        self.momentum = momentum
        self.epsilon = epsilon
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.use_bias = use_bias
        self.use_scale = use_scale
        self.axis_name = axis_name
        self.axis_index_groups = axis_index_groups
        self.use_fast_variance = use_fast_variance
        self.promote_dtype = promote_dtype
        self.ghost_batch_size = ghost_batch_size

    def __call__(
        self,
        x: jax.typing.ArrayLike,
        use_running_average: bool | None = None,
        *,
        mask: jax.typing.ArrayLike | None = None,
    ) -> jax.Array:
        """Normalize ``x``; in training mode, update ``mean`` and ``var``.

        Args:
          x: an array of rank >= 1 (real, integer or complex) with ``num_features`` features on ``axis``.
          use_running_average: overrides the attribute when given.
          mask: booleans broadcastable to ``x``: the positions the batch statistics are taken over
            (training mode only, as nnx).

        Returns:
          An array with the shape of ``x`` and nnx's output dtype.

        Raises:
          ValueError, TypeError: as :func:`jaxreg.batch_norm`; ``use_running_average`` ``None`` in both places;
            ``num_features`` not the size of the feature axes; ``ghost_batch_size`` with an option run by
            nnx's helpers.
          NotImplementedError: an option that needs an nnx helper the installed flax lacks.
        """
        if use_running_average is None:
            use_running_average = self.use_running_average
        if use_running_average is None:
            raise ValueError(
                "No `use_running_average` was given to BatchNorm: set it in the constructor, pass it to the "
                "call, or use model.train() / model.eval()."
            )
        x = jnp.asarray(x)
        axes = bn_args.feature_axes(self.axis, x.ndim)
        bn_args.check_hyperparameters(self.momentum, self.epsilon)
        features = math.prod(x.shape[a] for a in axes)
        if features != self.num_features:
            raise ValueError(
                f"BatchNorm has num_features = {self.num_features}, but x of shape {x.shape} has {features} "
                f"features on axis = {self.axis}; build it with num_features={features}."
            )
        scale = None if self.scale is None else self.scale[...]
        bias = None if self.bias is None else self.bias[...]
        with bn_args.standard_promotion():
            x, mean, var, scale, bias = self.promote_dtype(
                (x, self.mean[...], self.var[...], scale, bias), dtype=self.dtype
            )
        training = not use_running_average
        reasons = bn_args.flax_path_reasons(
            x.dtype,
            training=training,
            mask=mask,
            use_fast_variance=self.use_fast_variance,
            axis_index_groups=self.axis_index_groups,
            dtype=self.dtype,
        )
        if reasons:
            bn_args.check_no_ghost_batches(self.ghost_batch_size, reasons)
            return self._flax_batch_norm(x, mask, mean, var, scale, bias, training, axes, reasons)
        # Training updates the unpromoted statistics, as nnx; evaluation reads the promoted ones.
        running = (self.mean[...], self.var[...]) if training else (mean, var)
        y, new_mean, new_var = bn_args.core_batch_norm(
            x,
            scale,
            bias,
            *running,
            training=training,
            momentum=self.momentum,
            epsilon=self.epsilon,
            axes=axes,
            axis_name=self.axis_name,
            ghost_batch_size=self.ghost_batch_size,
        )
        if training:
            self.mean[...] = lax.stop_gradient(new_mean)
            self.var[...] = lax.stop_gradient(new_var)
        return y.astype(bn_args.output_dtype(x, scale, bias, self.dtype))

    def _flax_batch_norm(self, x, mask, mean, var, scale, bias, training, axes, reasons):
        """The calls the core cannot compute: ``nnx.BatchNorm.__call__``'s body, with nnx's helpers."""
        compute_stats = bn_args.flax_helper(nnx_normalization, "_compute_stats", reasons)
        normalize = bn_args.flax_helper(nnx_normalization, "_normalize", reasons)
        reduction_axes = tuple(a for a in range(x.ndim) if a not in axes)
        with bn_args.standard_promotion():
            if training:
                mean, var = compute_stats(
                    x,
                    reduction_axes,
                    dtype=self.dtype,
                    axis_name=self.axis_name,
                    axis_index_groups=self.axis_index_groups,
                    use_fast_variance=self.use_fast_variance,
                    mask=mask,
                )
                running_mean, running_var = self.mean[...], self.var[...]
                self.mean[...] = lax.stop_gradient(
                    _like(self.momentum * running_mean + (1 - self.momentum) * mean.reshape(-1), running_mean)
                )
                self.var[...] = lax.stop_gradient(
                    _like(self.momentum * running_var + (1 - self.momentum) * var.reshape(-1), running_var)
                )
            return normalize(x, mean, var, scale, bias, reduction_axes, axes, self.dtype, self.epsilon)

    def set_view(self, use_running_average: bool | None = None) -> None:
        """Set ``use_running_average`` for ``nnx.view``, as ``nnx.BatchNorm.set_view``.

        Args:
          use_running_average: the new value; ``None`` leaves it unchanged.
        """
        if use_running_average is not None:
            self.use_running_average = use_running_average
