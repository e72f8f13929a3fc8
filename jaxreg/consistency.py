"""Consistency across augmented views (floor 2): AugMix's Jensen-Shannon loss and the engine's views hook.

Hendrycks et al. 2020 ("AugMix") train on each clean batch and two AugMix views of it in one forward pass,
take the task loss on the clean predictions only, and add ``12 * JS(p_clean, p_view1, p_view2)``: the
Jensen-Shannon divergence of the three predictive distributions, which pulls the predictions on the views
towards each other and towards the clean one. The reference code (google-research/augmix, ``cifar.py``;
timm's ``JsdCrossEntropy`` is the same)::

    p_clean, p_aug1, p_aug2 = F.softmax(logits_clean, 1), F.softmax(logits_aug1, 1), F.softmax(logits_aug2, 1)
    # Clamp mixture distribution to avoid exploding KL divergence
    p_mixture = torch.clamp((p_clean + p_aug1 + p_aug2) / 3., 1e-7, 1).log()
    loss += 12 * (F.kl_div(p_mixture, p_clean, reduction='batchmean') +
                  F.kl_div(p_mixture, p_aug1, reduction='batchmean') +
                  F.kl_div(p_mixture, p_aug2, reduction='batchmean')) / 3.

* :func:`jensen_shannon` is that divergence per example (any number of views, the same clamp);
  :func:`jsd_loss` its batch mean.
* :func:`augmix_views` makes the views function of the engine: ``make_train_step(...,
  consistency=(jr.augmix_views(), 12.0))`` runs the clean batch and its views through the model as one
  concatenated batch (so batch norm sees all of them, as in the reference), the task loss on the clean part,
  and ``coefficient * weighted mean of jensen_shannon`` added to the penalty.

Example:
  >>> import jax.numpy as jnp
  >>> import jaxreg as jr
  >>> logits = jnp.array([[2.0, 0.0], [0.0, 0.0]])
  >>> float(jr.jsd_loss(logits, logits, logits))
  0.0
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxreg._typing import KeyArray
from jaxreg._validate import check_axis, check_callable, check_in_range, check_positive_int
from jaxreg.output_penalties import _batch_mean, _check_logits

__all__ = ["augmix_views", "jensen_shannon", "jsd_loss"]

ViewsFn = Callable[[KeyArray, Any], tuple[Any, ...]]
"""``views(key, x) -> (view_1, ..., view_k)``: batches shaped like ``x``, the engine's consistency views."""

_MIXTURE_FLOOR = 1e-7  # the reference code's clamp of the mixture distribution


def jensen_shannon(*logits: ArrayLike, axis: int = -1) -> jax.Array:
    """Per-example Jensen-Shannon divergence of the softmax distributions of ``k >= 2`` predictions.

    ``mean_i KL(p_i || m)`` with ``m = clip(mean_i p_i, 1e-7, 1)``, AugMix's reference formula (see the module
    docstring): 0 when all agree, at most ``log(k)`` (up to the clamp).

    Args:
      *logits: two or more float arrays of one shape ``(..., classes)``: the predictions on the clean batch
        and on its views.
      axis: the class axis.

    Returns:
      The divergences, shape ``logits[0].shape`` without ``axis``, float.

    Raises:
      TypeError: if a prediction is not a float array.
      ValueError: if fewer than two are given, their shapes differ, or ``axis`` is out of range.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxreg.consistency import jensen_shannon
      >>> jensen_shannon(jnp.array([[9.0, -9.0]]), jnp.array([[-9.0, 9.0]])).round(4)
      Array([0.6931], dtype=float32)
    """
    if len(logits) < 2:
        raise ValueError(f"jensen_shannon needs two or more predictions (the clean one and its views), got "
                         f"{len(logits)}.")
    arrays = [_check_logits(f"logits[{i}]", value) for i, value in enumerate(logits)]
    if any(a.shape != arrays[0].shape for a in arrays):
        raise ValueError(f"jensen_shannon: the predictions must have one shape, got {[a.shape for a in arrays]}.")
    axis = check_axis("axis", axis, arrays[0].ndim)
    log_p = jnp.stack([jax.nn.log_softmax(a, axis=axis) for a in arrays])
    p = jnp.exp(log_p)
    log_mixture = jnp.log(jnp.clip(jnp.mean(p, axis=0), _MIXTURE_FLOOR, 1.0))
    # F.kl_div(log m, p_i) = sum p_i (log p_i - log m), with 0 where p_i = 0 (xlogy's convention).
    kl = jnp.sum(jnp.where(p > 0, p * (log_p - log_mixture), 0.0), axis=axis + 1)
    return jnp.mean(kl, axis=0)


def jsd_loss(*logits: ArrayLike, axis: int = -1) -> jax.Array:
    """The batch mean of :func:`jensen_shannon`: AugMix's consistency loss before its coefficient (12).

    Args:
      *logits: two or more float arrays of one shape ``(batch, classes)`` (or ``(..., classes)``; the mean is
        over all leading axes).
      axis: the class axis.

    Returns:
      A float scalar >= 0.

    Raises:
      TypeError, ValueError: as :func:`jensen_shannon`.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> round(float(jr.jsd_loss(jnp.array([[1.0, 0.0]]), jnp.array([[0.0, 1.0]]))), 4)
      0.1109
    """
    return _batch_mean(jensen_shannon(*logits, axis=axis))


def augmix_views(num_views: int = 2, **augmix_options: Any) -> ViewsFn:
    """The engine's views function of AugMix: ``views(key, x)`` returns ``num_views`` AugMix views of ``x``.

    Each view is :func:`jaxreg.augmix` of the whole batch with its own key (``jax.random.split(key,
    num_views)``), so every image gets ``num_views`` independent augmentations, as the reference's
    ``AugMixDataset`` (``no_jsd=False``) returns ``(x, augmix(x), augmix(x))``.

    Args:
      num_views: views per batch, an integer >= 1 (2 in the paper).
      **augmix_options: keyword arguments of :func:`jaxreg.augmix` (``severity``, ``width``, ``depth``,
        ``alpha``, ``all_ops``, ``fill``, ``order``), checked on the first call.

    Returns:
      ``views(key, x) -> tuple`` of ``num_views`` arrays shaped like ``x`` (NHWC images, ``uint8`` or floats in
      [0, 1]).

    Raises:
      TypeError: if ``num_views`` is not an integer.
      ValueError: if ``num_views`` < 1.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxreg as jr
      >>> views = jr.augmix_views(2, severity=2)
      >>> [v.shape for v in jax.eval_shape(views, jax.random.key(0), jnp.zeros((4, 8, 8, 3)))]
      [(4, 8, 8, 3), (4, 8, 8, 3)]
    """
    num_views = check_positive_int("num_views", num_views)
    from jaxreg.augment.augmix import augmix

    def views(key: KeyArray, x: Any) -> tuple[jax.Array, ...]:
        return tuple(augmix(k, x, **augmix_options) for k in jax.random.split(key, num_views))

    return views


def check_consistency(consistency: Any) -> tuple[ViewsFn, ArrayLike] | None:
    """The engine's ``consistency=(views_fn, coefficient)`` argument, checked (None passes)."""
    if consistency is None:
        return None
    if not isinstance(consistency, (tuple, list)) or len(consistency) != 2:
        raise TypeError(f"consistency must be a (views_fn, coefficient) pair, e.g. (jr.augmix_views(), 12.0), got "
                        f"consistency = {consistency!r}.")
    check_callable("consistency views_fn", consistency[0])
    check_in_range("consistency coefficient", consistency[1], 0.0, None, scalar=True)
    return consistency[0], consistency[1]


def joint_forward(forward: Callable, x: Any, key: KeyArray, views_key: KeyArray,
                  views_fn: ViewsFn) -> tuple[Any, Any, jax.Array]:
    """One forward pass over ``[x, *views_fn(views_key, x)]``: ``(clean outputs, model_state, per-example JS)``."""
    views = tuple(views_fn(views_key, x))
    if not views:
        raise ValueError("consistency views_fn returned no views; it must return a tuple of batches shaped like x.")
    for i, view in enumerate(views):
        if jnp.shape(view) != jnp.shape(x):
            raise ValueError(f"consistency views_fn's view {i} has shape {jnp.shape(view)}, the batch {jnp.shape(x)}: "
                             "views must have the batch's shape.")
    joint = jnp.concatenate([jnp.asarray(x)] + [jnp.asarray(v, jnp.asarray(x).dtype) for v in views])
    outputs, model_state = forward(joint, key)
    parts = jnp.split(outputs, len(views) + 1)
    return parts[0], model_state, jensen_shannon(*parts)
