"""flax's ``BatchNorm`` arguments resolved for jaxreg's linen and nnx adapters (floor 4).

Both adapters take flax's whole ``BatchNorm`` signature. A call runs :func:`jaxreg.batch_norm` whenever the
functional core computes what flax computes: real (or integer) inputs, flax's default fast variance, no
``mask``, no ``axis_index_groups``, float32 (at least) statistics. Feature axes given as a tuple are viewed
as one axis (a free reshape when they are adjacent, a transpose in and out when not). The arguments the core
has no notion of (``mask``, ``use_fast_variance=False``, ``axis_index_groups``, complex inputs,
``force_float32_reductions=False``, a statistics ``dtype`` wider than the input's) are run by flax's own
helpers (``_compute_stats``, ``_normalize``), so their semantics are flax's by construction; this module
names them (:func:`flax_path_reasons`) and fetches the helpers (:func:`flax_helper`).

Dtypes are resolved with flax's rules, which are those of JAX's standard promotion (a bfloat16 input with
float32 parameters gives a float32 output): :func:`standard_promotion` scopes that, so the adapters also
work under ``jax_numpy_dtype_promotion="strict"``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
from flax.linen import dtypes as flax_dtypes

from jaxreg import norm
from jaxreg._validate import check_axes, check_in_range

__all__ = [
    "standard_promotion",
    "feature_axes",
    "check_hyperparameters",
    "flax_path_reasons",
    "check_no_ghost_batches",
    "flax_helper",
    "output_dtype",
    "core_batch_norm",
]


def standard_promotion() -> Any:
    """A context in which dtypes promote as flax's normalization code expects (JAX's standard lattice)."""
    return jax.numpy_dtype_promotion("standard")


def feature_axes(axis: int | Sequence[int], ndim: int) -> tuple[int, ...]:
    """flax's ``_canonicalize_axes``: non-negative, deduplicated, sorted; range-checked, naming ``axis``.

    Raises:
      TypeError: ``axis`` is neither an int nor a sequence of ints.
      ValueError: an axis outside ``[-ndim, ndim)``.
    """
    return tuple(sorted(set(check_axes("axis", axis, ndim=ndim, allow_empty=True))))


def check_hyperparameters(momentum: Any, epsilon: Any) -> None:
    """The core's checks, applied on every path (flax itself accepts any value)."""
    check_in_range("momentum", momentum, 0.0, 1.0)
    check_in_range("epsilon", epsilon, 0.0, None, low_inclusive=False)


def flax_path_reasons(
    x_dtype: Any,
    *,
    training: bool,
    mask: Any,
    use_fast_variance: bool,
    axis_index_groups: Any,
    dtype: Any,
    force_float32_reductions: bool = True,
) -> list[str]:
    """The arguments of this call that :func:`jaxreg.batch_norm` cannot compute; empty when it can.

    Evaluation mode ignores the statistics options, as flax does (``mask`` only selects the positions the
    batch statistics are taken over).
    """
    reasons = []
    if jnp.issubdtype(x_dtype, jnp.complexfloating):
        reasons.append(f"a complex input (x.dtype = {jnp.dtype(x_dtype)})")
    if not force_float32_reductions:
        reasons.append("force_float32_reductions=False")
    if training:
        if mask is not None:
            reasons.append("mask")
        if not use_fast_variance:
            reasons.append("use_fast_variance=False")
        if axis_index_groups is not None:
            reasons.append("axis_index_groups")
        with standard_promotion():
            wider = dtype is not None and jnp.promote_types(dtype, jnp.float32) != jnp.promote_types(
                x_dtype, jnp.float32
            )
        if wider:
            reasons.append(f"dtype = {jnp.dtype(dtype)} (statistics wider than the input's float32 promotion)")
    return reasons


def check_no_ghost_batches(ghost_batch_size: int | None, reasons: list[str]) -> None:
    """Ghost batches are the core's; the calls flax's helpers run cannot have them.

    Raises:
      ValueError: ``ghost_batch_size`` set together with one of ``reasons``.
    """
    if ghost_batch_size is not None and reasons:
        raise ValueError(
            f"ghost_batch_size cannot be combined with {', '.join(reasons)}: ghost batches are computed by "
            "jaxreg.batch_norm, and these arguments by flax's own helpers; set ghost_batch_size=None."
        )


def flax_helper(module: ModuleType, name: str, reasons: list[str]) -> Callable[..., Any]:
    """flax's private helper ``module.name``, looked up at call time.

    Raises:
      NotImplementedError: the installed flax has no such helper; names the arguments that need it.
    """
    helper = getattr(module, name, None)
    if helper is None:
        raise NotImplementedError(
            f"{', '.join(reasons)}: jaxreg's BatchNorm runs these with flax's own {module.__name__}.{name}, "
            f"which flax {flax.__version__} does not have; use flax's BatchNorm for this call."
        )
    return helper


def output_dtype(x: jax.Array, scale: jax.Array | None, bias: jax.Array | None, dtype: Any) -> jnp.dtype:
    """flax's result dtype: ``dtype`` if given, else the promotion of ``x``, ``scale`` and ``bias``."""
    with standard_promotion():
        return jnp.dtype(flax_dtypes.canonicalize_dtype(x, scale, bias, dtype=dtype))


def core_batch_norm(
    x: jax.Array,
    scale: jax.Array | None,
    bias: jax.Array | None,
    mean: jax.Array,
    var: jax.Array,
    *,
    training: bool,
    momentum: Any,
    epsilon: Any,
    axes: tuple[int, ...],
    axis_name: Any,
    ghost_batch_size: int | None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """:func:`jaxreg.batch_norm` over the feature axes ``axes`` of ``x``, viewed as one axis.

    Args:
      x: the input, real or integer.
      scale, bias: ``None`` or an array of any shape holding one value per feature (linen's ``(C1, C2)``,
        nnx's flattened ``(C1 * C2,)``), in C order of ``axes``.
      mean, var: the running statistics, shaped like ``scale``.
      training, momentum, epsilon, axis_name, ghost_batch_size: as :func:`jaxreg.batch_norm`.
      axes: sorted non-negative feature axes, from :func:`feature_axes`.

    Returns:
      ``(y, new_mean, new_var)``: ``y`` in ``x.dtype`` promoted to at least float32 (flax computes there
      too; the caller casts to flax's output dtype), the statistics in ``mean``'s and ``var``'s shapes.

    Raises:
      ValueError: ``ghost_batch_size`` with ``0`` among the feature axes; as :func:`jaxreg.batch_norm`.
    """
    if ghost_batch_size is not None and 0 in axes:
        raise ValueError(
            f"ghost_batch_size splits axis 0 (the batch), so axis cannot include 0; got axis = {axes}."
        )
    with standard_promotion():
        compute_dtype = jnp.promote_types(x.dtype, jnp.float32)
    # Exact (float32 holds every bfloat16), and flax's x - mean promotes to the same dtype.
    x = x.astype(compute_dtype)
    rest = tuple(a for a in range(x.ndim) if a not in axes)
    if axes and axes == tuple(range(axes[0], axes[0] + len(axes))):
        perm, start = None, axes[0]
    else:
        perm, start = rest + axes, len(rest)
        if perm == tuple(range(x.ndim)):
            perm = None
    xt = x if perm is None else jnp.transpose(x, perm)
    features = math.prod(xt.shape[start : start + len(axes)])
    view = (*xt.shape[:start], features, *xt.shape[start + len(axes) :])
    params = {name: p.reshape(features) for name, p in (("scale", scale), ("bias", bias)) if p is not None}
    y, state = norm.batch_norm(
        xt.reshape(view),
        params,
        norm.BatchNormState(mean=mean.reshape(features), var=var.reshape(features)),
        training=training,
        momentum=momentum,
        epsilon=epsilon,
        axis=start,
        axis_name=axis_name,
        ghost_batch_size=ghost_batch_size,
    )
    y = y.reshape(xt.shape)
    if perm is not None:
        y = jnp.transpose(y, tuple(int(i) for i in np.argsort(perm)))
    return y, state.mean.reshape(mean.shape), state.var.reshape(var.shape)
