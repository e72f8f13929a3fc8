"""Penalties of a model's outputs and of its input gradients (floor 2): confidence, R-Drop, double backprop.

Pure functions of arrays, usable on their own and by the engine (:func:`jaxreg.make_train_step`'s
``output_penalties=``, ``rdrop=``, ``input_gradient=`` and ``jacobian=``):

* :func:`confidence_penalty` — Pereyra et al. 2017, "Regularizing neural networks by penalizing confident
  output distributions": the loss is ``CE - beta * H(softmax(logits))``, i.e. ``beta * mean(-H)`` added.
* :func:`rdrop_loss` — Liang et al. 2021, "R-Drop": the symmetric KL divergence of the softmax
  distributions of two forward passes with different dropout masks.
* :func:`input_gradient_penalty` — Drucker & LeCun 1992, "double backpropagation": the squared norm of the
  loss' gradient with respect to the input.
* :func:`jacobian_penalty` — Hoffman, Roberts & Yaida 2019, "Robust learning with Jacobian regularization":
  the squared Frobenius norm of the input-output Jacobian, estimated by random projections.

Example:
  >>> import jax.numpy as jnp
  >>> import jaxreg as jr
  >>> logits = jnp.array([[2.0, 0.0], [0.0, 0.0]])
  >>> print(f"{float(jr.confidence_penalty(logits)):.4f}", float(jr.rdrop_loss(logits, logits)))
  -0.5292 0.0
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxreg._typing import KeyArray
from jaxreg._validate import check_axis, check_callable, check_key, check_positive_int

__all__ = ["confidence_penalty", "rdrop_loss", "input_gradient_penalty", "jacobian_penalty"]


def _check_logits(name: str, logits: Any) -> jax.Array:
    logits = jnp.asarray(logits)
    if logits.ndim < 1 or not jnp.issubdtype(logits.dtype, jnp.floating):
        raise TypeError(f"{name} must be a float array of shape (..., classes), got {name} of dtype "
                        f"{logits.dtype} and shape {logits.shape}.")
    return logits


def _batch_mean(values: jax.Array) -> jax.Array:
    return jnp.mean(values) if values.ndim else values


def confidence_penalty(logits: ArrayLike, *, axis: int = -1) -> jax.Array:
    """The batch mean of the negative entropy of ``softmax(logits)``: add ``beta * confidence_penalty``.

    Pereyra et al. 2017 train on ``CE - beta * H(p)``; the penalty is ``mean(-H(p)) = mean(sum(p * log p))``,
    which is ``-log(classes)`` for uniform predictions and 0 for one-hot ones (confident outputs cost more).

    Args:
      logits: float array ``(..., classes)`` (``classes`` on ``axis``).
      axis: the class axis.

    Returns:
      A float scalar (the mean over every other axis).

    Raises:
      TypeError: if ``logits`` is not a float array or ``axis`` not an int.
      ValueError: if ``axis`` is out of range.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> print(round(float(jr.confidence_penalty(jnp.zeros((4, 10)))), 4))   # -log(10)
      -2.3026
    """
    logits = _check_logits("logits", logits)
    axis = check_axis("axis", axis, logits.ndim)
    log_p = jax.nn.log_softmax(logits, axis=axis)
    return _batch_mean(jnp.sum(jnp.exp(log_p) * log_p, axis=axis))


def rdrop_loss(logits_a: ArrayLike, logits_b: ArrayLike, *, axis: int = -1) -> jax.Array:
    """The batch mean of ``0.5 * (KL(p_a || p_b) + KL(p_b || p_a))`` of the softmax distributions (R-Drop).

    Args:
      logits_a, logits_b: float arrays of one shape ``(..., classes)``: two forward passes of one batch with
        different dropout keys.
      axis: the class axis.

    Returns:
      A float scalar >= 0 (0 when the two agree).

    Raises:
      TypeError: if either is not a float array, or ``axis`` not an int.
      ValueError: if their shapes differ or ``axis`` is out of range.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> print(round(float(jr.rdrop_loss(jnp.array([[1.0, 0.0]]), jnp.array([[0.0, 1.0]]))), 4))
      0.4621
    """
    return _batch_mean(symmetric_kl(logits_a, logits_b, axis=axis))


def symmetric_kl(logits_a: ArrayLike, logits_b: ArrayLike, *, axis: int = -1) -> jax.Array:
    """Per-example ``0.5 * (KL(p_a || p_b) + KL(p_b || p_a))``: :func:`rdrop_loss` before the batch mean.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxreg.output_penalties import symmetric_kl
      >>> symmetric_kl(jnp.zeros((3, 2)), jnp.zeros((3, 2))).shape
      (3,)
    """
    logits_a, logits_b = _check_logits("logits_a", logits_a), _check_logits("logits_b", logits_b)
    if logits_a.shape != logits_b.shape:
        raise ValueError(f"logits_a and logits_b must have one shape, got {logits_a.shape} and {logits_b.shape}.")
    axis = check_axis("axis", axis, logits_a.ndim)
    log_a, log_b = jax.nn.log_softmax(logits_a, axis=axis), jax.nn.log_softmax(logits_b, axis=axis)
    kl_ab = jnp.sum(jnp.exp(log_a) * (log_a - log_b), axis=axis)
    kl_ba = jnp.sum(jnp.exp(log_b) * (log_b - log_a), axis=axis)
    return 0.5 * (kl_ab + kl_ba)


def _per_example_sq_norm(g: jax.Array) -> jax.Array:
    return jnp.sum(jnp.square(g).reshape(g.shape[0], -1), axis=1)


def input_gradient_penalty(loss_of_x: Callable[[jax.Array], jax.Array], x: ArrayLike) -> jax.Array:
    """Double backpropagation: ``mean_i ||d loss_sum / d x_i||^2`` for a batch ``x``.

    ``loss_of_x(x)`` returns the per-example losses ``(batch,)`` (or their sum); the penalty is the batch
    mean of each example's squared gradient norm of the summed loss, which for a model without cross-example
    coupling (no batch statistics in training mode) is ``mean_i ||d l_i / d x_i||^2``, independent of the
    batch size. Differentiable (the engine adds ``coefficient *`` this to the loss and differentiates again).

    Args:
      loss_of_x: the loss as a function of the input batch.
      x: float array ``(batch, ...)``.

    Returns:
      A float scalar.

    Raises:
      TypeError: if ``loss_of_x`` is not callable or ``x`` not a float array.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> w = jnp.array([3.0, 4.0])
      >>> print(float(jr.input_gradient_penalty(lambda x: x @ w, jnp.ones((5, 2)))))   # ||w||^2
      25.0
    """
    check_callable("loss_of_x", loss_of_x)
    x = jnp.asarray(x)
    if x.ndim < 1 or not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x must be a float array of shape (batch, ...), got dtype {x.dtype}, shape {x.shape}.")
    grads = jax.grad(lambda inputs: jnp.sum(loss_of_x(inputs)))(x)
    return jnp.mean(_per_example_sq_norm(grads))


def jacobian_penalty(key: KeyArray, outputs_of_x: Callable[[jax.Array], jax.Array], x: ArrayLike, *,
                     num_projections: int = 1) -> jax.Array:
    """``mean_i ||J_i||_F^2`` of the Jacobian ``J_i = d f(x)_i / d x_i``, estimated by random projections.

    Hoffman et al. 2019: for ``v`` uniform on the unit sphere of the ``C`` outputs, ``C * E||v^T J||^2 =
    ||J||_F^2``; each projection is one vector-Jacobian product. The estimate is unbiased (exact in
    expectation over ``key``); more projections lower its variance.

    Args:
      key: a ``jax.random`` key for the projections.
      outputs_of_x: the model as a function of the input batch, returning ``(batch, C)`` (trailing output axes
        are flattened).
      x: float array ``(batch, ...)``.
      num_projections: projections per step, an int >= 1.

    Returns:
      A float scalar.

    Raises:
      TypeError: bad ``key``, ``outputs_of_x`` not callable, ``x`` not a float array.
      ValueError: ``num_projections`` < 1.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxreg as jr
      >>> w = jnp.array([[1.0, 0.0], [0.0, 2.0]])          # J = w.T for every example: ||J||_F^2 = 5
      >>> est = jr.jacobian_penalty(jax.random.key(0), lambda x: x @ w, jnp.ones((4, 2)), num_projections=400)
      >>> bool(abs(float(est) - 5.0) < 0.5)
      True
    """
    check_key(key, "jacobian_penalty")
    check_callable("outputs_of_x", outputs_of_x)
    num_projections = check_positive_int("num_projections", num_projections)
    x = jnp.asarray(x)
    if x.ndim < 1 or not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x must be a float array of shape (batch, ...), got dtype {x.dtype}, shape {x.shape}.")
    outputs, vjp = jax.vjp(lambda inputs: outputs_of_x(inputs).reshape(x.shape[0], -1), x)
    num_outputs = outputs.shape[1]

    def one(k):
        v = jax.random.normal(k, outputs.shape, outputs.dtype)
        v = v / jnp.linalg.norm(v, axis=1, keepdims=True)
        (g,) = vjp(v)
        return _per_example_sq_norm(g)

    sq = jax.vmap(one)(jax.random.split(key, num_projections))  # (projections, batch)
    return num_outputs * jnp.mean(sq)
