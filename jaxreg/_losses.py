"""The task loss of the engine's steps: per-example losses, weighting, and the outputs/labels batch check.

Private helpers of :mod:`jaxreg.train` (the training and evaluation steps share them).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike


def check_batch(outputs: Any, y: Any, weights: Any) -> None:
    """Trace-time shape checks (shapes are static): the batch axis of outputs, y and weights must agree.

    ``loss_fn`` is the user's, so only the leading axis is compared: outputs and labels whose batch sizes
    differ would otherwise die in (or silently survive) broadcasting inside it. Pytree outputs or labels
    (several heads) are left to ``loss_fn``.
    """
    out_shape, y_shape = getattr(outputs, "shape", None), getattr(y, "shape", None)
    if out_shape and y_shape and out_shape[0] != y_shape[0]:
        raise ValueError(
            f"loss_fn(outputs, y) got outputs of shape {tuple(out_shape)} and y of shape {tuple(y_shape)}: their "
            f"leading (batch) dimensions differ ({out_shape[0]} != {y_shape[0]}); apply_fn must return one output "
            "row per example of x, and y must hold one label per example."
        )
    batch = out_shape[0] if out_shape else (y_shape[0] if y_shape else None)
    if weights is not None and batch is not None and jnp.shape(weights) != (batch,):
        raise ValueError(f"weights must have shape (batch,) = ({batch},), one per example, got weights of shape "
                         f"{jnp.shape(weights)}.")


def per_example(losses: jax.Array) -> jax.Array:
    """``loss_fn``'s output as one loss per example, shape ``(batch,)``: trailing axes averaged."""
    losses = jnp.asarray(losses)
    return losses if losses.ndim <= 1 else jnp.mean(losses, axis=tuple(range(1, losses.ndim)))


def weighted_mean(losses: jax.Array, weights: ArrayLike | None) -> jax.Array:
    """The task loss: the mean per-example loss, or ``sum(w * l) / max(sum(w), 1)`` with weights.

    Raises:
      ValueError: weights given for a loss that is already a scalar.
    """
    losses = per_example(losses)
    if weights is None:
        return jnp.mean(losses)
    if losses.ndim == 0:
        raise ValueError("weights need a per-example loss: loss_fn returned a scalar.")
    w = jnp.asarray(weights).astype(losses.dtype)
    return jnp.sum(w * losses) / jnp.maximum(jnp.sum(w), 1.0)


def is_classification(outputs: Any, y: Any) -> bool:
    """Whether ``(outputs, y)`` are ``(..., classes)`` scores with integer labels (the steps report accuracy)."""
    return (
        hasattr(outputs, "dtype")
        and hasattr(y, "dtype")
        and jnp.issubdtype(y.dtype, jnp.integer)
        and jnp.ndim(outputs) == jnp.ndim(y) + 1
    )
