"""Diagnostics of regularization: overfitting gaps, weight norms, sparsity, Monte Carlo dropout (floor 3).

Everything here is a pure function of arrays and works under ``jax.jit`` (``weight_norms`` returns a dict
whose string keys are fixed at trace time). These are the numbers :func:`jaxreg.fit` records in its
per-epoch ``history``:

* ``generalization_gap(train, val)``: how much better the model does on the data it trained on. Positive
  means "train better than validation" (overfitting) for accuracy-like metrics (``higher_is_better=True``,
  gap = train - val) and for losses (``higher_is_better=False``, gap = val - train).
* ``overfitting_score(train_loss, val_loss)``: the ratio val / train (1 = no gap, > 1 = overfitting).
* ``weight_norms(params)``: per-leaf L1 norm (sum of absolute values) and L2 norm (Euclidean, *not*
  squared), keyed by the ``'layer/leaf'`` path, e.g. ``'Dense_0/kernel'``.
* ``sparsity(params)``: fraction of exact zeros (what ``jr.proximal_l1`` produces).
* ``mc_predict(apply_fn, params, x, key, num_samples)``: mean and standard deviation of the predictions
  over ``num_samples`` dropout masks (Monte Carlo dropout, Gal & Ghahramani 2016), one ``vmap``.
* ``accuracy(logits, labels)``: top-1 accuracy for integer or one-hot labels, optionally weighted.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxreg._typing import KeyArray, MaskOrFn, PyTree
from jaxreg._validate import check_bool, check_callable, check_key, check_positive_int
from jaxreg.select import key_path_str, resolve_mask

__all__ = [
    "accuracy",
    "generalization_gap",
    "overfitting_score",
    "weight_norms",
    "sparsity",
    "mc_predict",
]


def accuracy(logits: ArrayLike, labels: ArrayLike, *, weights: ArrayLike | None = None) -> jax.Array:
    """Top-1 accuracy: the (weighted) fraction of rows whose ``argmax`` equals the label.

    Args:
      logits: scores of shape ``(..., num_classes)``; any float dtype (probabilities work too).
      labels: integer class indices of shape ``logits.shape[:-1]``, or one-hot / soft labels of the shape of
        ``logits`` (their ``argmax`` is the class, as for mixed-up labels).
      weights: optional per-example weights of shape ``logits.shape[:-1]``; the result is
        ``sum(w * correct) / max(sum(w), 1)``, so zero weights exclude examples (k-fold masks).

    Returns:
      A float32 scalar in ``[0, 1]``.

    Raises:
      ValueError: if ``labels`` has neither shape (the message names both shapes), or ``weights`` does not
        have shape ``logits.shape[:-1]``.
      TypeError: if labels of shape ``logits.shape[:-1]`` are not integers.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> logits = jnp.array([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]])
      >>> print(jr.accuracy(logits, jnp.array([0, 1, 1])))
      0.6666667
      >>> print(jr.accuracy(logits, jnp.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])))  # one-hot labels
      0.6666667
    """
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    if logits.ndim == 0:
        raise ValueError(f"logits must have a class axis, (..., num_classes), got logits of shape {logits.shape}.")
    if labels.shape == logits.shape and labels.ndim >= 1:
        labels = jnp.argmax(labels, axis=-1)  # one-hot or soft labels: the class with the most weight
    elif labels.shape == logits.shape[:-1]:
        if not jnp.issubdtype(labels.dtype, jnp.integer):
            raise TypeError(f"labels of shape logits.shape[:-1] = {logits.shape[:-1]} must be integer class "
                            f"indices, got labels.dtype = {labels.dtype}.")
    else:
        raise ValueError(
            f"accuracy got logits of shape {logits.shape} and labels of shape {labels.shape}: labels must be "
            f"integer class indices of shape logits.shape[:-1] = {logits.shape[:-1]} or one-hot/soft labels of "
            f"shape {logits.shape}."
        )
    correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    if weights is None:
        return jnp.mean(correct)
    if jnp.shape(weights) != labels.shape:
        raise ValueError(f"weights must have shape logits.shape[:-1] = {labels.shape}, one per example, got weights "
                         f"of shape {jnp.shape(weights)}.")
    w = jnp.asarray(weights).astype(jnp.float32)
    return jnp.sum(w * correct) / jnp.maximum(jnp.sum(w), 1.0)


def _check_broadcast(name_a: str, a: jax.Array, name_b: str, b: jax.Array) -> None:
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"{name_a} of shape {a.shape} and {name_b} of shape {b.shape} do not broadcast; pass the "
                         "same metric for the same runs (equal shapes, or a scalar for one side).") from None


def generalization_gap(
    train_metric: ArrayLike, val_metric: ArrayLike, *, higher_is_better: bool = True
) -> jax.Array:
    """Train-minus-validation performance gap, signed so that positive means overfitting.

    For accuracy-like metrics (``higher_is_better=True``, the default) the gap is ``train - val``; for losses
    (``higher_is_better=False``) it is ``val - train``. Either way a positive gap means the model does better on
    its training data than on held-out data.

    Args:
      train_metric: the metric on the training data (scalar or array; broadcasting applies).
      val_metric: the same metric on validation data.
      higher_is_better: whether larger metric values are better (accuracy: True, loss: False).

    Returns:
      An array of the broadcast shape and the operands' (common) dtype.

    Raises:
      ValueError: if the two shapes do not broadcast (the message names both).
      TypeError: if ``higher_is_better`` is not a bool.

    Example:
      >>> import jaxreg as jr
      >>> print(jr.generalization_gap(0.98, 0.90))
      0.08
      >>> print(jr.generalization_gap(0.1, 0.4, higher_is_better=False))
      0.3
    """
    train = jnp.asarray(train_metric)
    val = jnp.asarray(val_metric)
    _check_broadcast("train_metric", train, "val_metric", val)
    check_bool("higher_is_better", higher_is_better, "generalization_gap")
    return train - val if higher_is_better else val - train


def overfitting_score(train_loss: ArrayLike, val_loss: ArrayLike) -> jax.Array:
    """Ratio ``val_loss / train_loss``: 1 means no gap, above 1 means the model overfits.

    Args:
      train_loss: the (positive) training loss, scalar or array.
      val_loss: the validation loss, same shape or broadcastable.

    Returns:
      An array of the broadcast shape. A zero training loss gives ``inf`` (or ``nan`` when both are zero),
      as IEEE division does.

    Raises:
      ValueError: if the two shapes do not broadcast (the message names both).

    Example:
      >>> import jaxreg as jr
      >>> print(jr.overfitting_score(0.2, 0.5))
      2.5
    """
    train, val = jnp.asarray(train_loss), jnp.asarray(val_loss)
    _check_broadcast("train_loss", train, "val_loss", val)
    return val / train


def weight_norms(params: PyTree, *, mask: MaskOrFn = None) -> dict[str, dict[str, jax.Array]]:
    """Per-leaf L1 and L2 norms of the selected parameters, keyed by ``'layer/leaf'`` path.

    ``l1 = sum(|w|)`` and ``l2 = sqrt(sum(w**2))`` (the Euclidean norm, not its square; the L2 *penalty*
    ``jr.l2`` is the square). Norms are computed and returned in float32 (float64 for float64 leaves).

    Args:
      params: a pytree of arrays (a linen ``params`` dict, an nnx ``State``, ...).
      mask: which leaves to include: ``None`` (all), a bool pytree or prefix, or a callable such as
        ``jr.kernel_mask`` (see :func:`jaxreg.select.resolve_mask`). Entries must be concrete.

    Returns:
      ``{path: {"l1": scalar, "l2": scalar}}`` with paths from :func:`jaxreg.select.key_path_str`, in
      flatten order.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> params = {"dense": {"kernel": jnp.array([[3.0, -4.0]]), "bias": jnp.array([1.0])}}
      >>> norms = jr.weight_norms(params, mask=jr.kernel_mask)
      >>> {k: {n: float(v) for n, v in d.items()} for k, d in norms.items()}
      {'dense/kernel': {'l1': 7.0, 'l2': 5.0}}
    """
    flags = jax.tree.leaves(resolve_mask(params, mask))
    leaves_with_path = jax.tree_util.tree_flatten_with_path(params)[0]
    out: dict[str, dict[str, jax.Array]] = {}
    for (path, leaf), flag in zip(leaves_with_path, flags, strict=True):
        if not bool(flag):
            continue
        w = jnp.asarray(leaf)
        w = w.astype(jnp.float64 if w.dtype == jnp.float64 else jnp.float32)  # accumulate low precision in f32
        out[key_path_str(path)] = {"l1": jnp.sum(jnp.abs(w)), "l2": jnp.sqrt(jnp.sum(jnp.square(w)))}
    return out


def sparsity(params: PyTree, *, mask: MaskOrFn = None) -> jax.Array:
    """Fraction of exactly-zero entries among the selected leaves (all leaves pooled, size-weighted).

    Args:
      params: a pytree of arrays.
      mask: which leaves count: ``None`` (all), a bool pytree or prefix, or a callable (``jr.kernel_mask``).

    Returns:
      A float32 scalar in ``[0, 1]``; ``0.0`` when no leaf (or only empty leaves) is selected.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> print(jr.sparsity({"w": jnp.array([0.0, 1.0, 0.0, 2.0]), "b": jnp.zeros(4)}, mask={"w": True, "b": False}))
      0.5
    """
    flags = jax.tree.leaves(resolve_mask(params, mask))
    selected = [jnp.asarray(x) for x, f in zip(jax.tree.leaves(params), flags, strict=True) if bool(f)]
    total = sum(x.size for x in selected)
    if total == 0:
        return jnp.zeros((), jnp.float32)
    zeros = sum(jnp.sum(x == 0, dtype=jnp.int32) for x in selected)
    return zeros.astype(jnp.float32) / jnp.float32(total)


def mc_predict(
    apply_fn: Callable[[PyTree, jax.Array, KeyArray], jax.Array],
    params: PyTree,
    x: ArrayLike,
    key: KeyArray,
    num_samples: int,
) -> tuple[jax.Array, jax.Array]:
    """Monte Carlo dropout: mean and standard deviation of predictions over ``num_samples`` noise keys.

    The keys are ``jax.random.split(key, num_samples)`` and the ``num_samples`` forward passes run as one
    ``jax.vmap``, so memory grows with ``num_samples * batch``. The standard deviation is the population one
    (``ddof=0``), an estimate of the model's predictive uncertainty.

    Args:
      apply_fn: ``apply_fn(params, x, key) -> outputs`` with the noise *on*; for a model written to the
        :mod:`jaxreg.train` contract use
        ``lambda p, x, k: apply(p, model_state, x, key=k, training=True)[0]`` (note that ``training=True`` also
        switches batch norm to batch statistics; prefer a model whose dropout flag is separate).
        Apply ``jax.nn.softmax`` inside it to average probabilities rather than logits.
      params: the parameters passed through unchanged.
      x: the inputs.
      key: a ``jax.random`` key.
      num_samples: number of dropout samples, >= 1.

    Returns:
      ``(mean, std)``, each with the shape and dtype of one ``apply_fn`` output.

    Raises:
      ValueError: if ``key`` is None or ``num_samples < 1``.
      TypeError: if ``apply_fn`` is not callable or ``num_samples`` is not an integer.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxreg as jr
      >>> def apply_fn(p, x, k):  # inverted dropout with rate 0.5 on a linear model
      ...     keep = jax.random.bernoulli(k, 0.5, x.shape)
      ...     return jnp.where(keep, 2.0 * x, 0.0) @ p
      >>> mean, std = jr.mc_predict(apply_fn, jnp.ones((3, 1)), jnp.ones((2, 3)), jax.random.key(0), 64)
      >>> mean.shape, std.shape
      ((2, 1), (2, 1))
    """
    check_callable("apply_fn", apply_fn)
    check_key(key, "mc_predict")
    num_samples = check_positive_int("num_samples", num_samples)
    keys = jax.random.split(key, num_samples)
    samples = jax.vmap(lambda k: apply_fn(params, x, k))(keys)
    return jnp.mean(samples, axis=0), jnp.std(samples, axis=0)
