"""Weight averaging inside the training step: EMA and SWA, and batch-norm statistics for averaged weights.

:func:`jaxreg.create_train_state` with ``ema_decay=d`` and/or ``swa_start=s`` gives the state a
:class:`WeightAverages`; every applied (finite) step of :func:`jaxreg.make_train_step` then updates it, in
the same compiled program:

* **EMA** (Keras ``use_ema``, timm ``ModelEmaV3`` without warm-up): ``ema = d * ema + (1 - d) * params``
  from the initial params, with optax's ``incremental_update`` (``step_size = 1 - d``).
* **SWA** (``torch.optim.swa_utils.AveragedModel`` with its default equal-weight average): from step ``s``
  on, ``swa = swa + (params - swa) / (n + 1)`` with ``n`` the number of params averaged so far (the first
  one is copied), i.e. the plain mean of the params after steps ``s, s + 1, ...``.

A skipped step (non-finite loss) leaves the averages unchanged. Evaluate the averaged weights with
``jr.make_eval_step(..., average="ema")`` (or ``"swa"``); recompute batch-norm statistics for them with
:func:`update_bn` (PyTorch's ``swa_utils.update_bn``). ``decay`` and ``swa_start`` are arrays in the state,
so a sweep may vmap over them.

Example:
  >>> import jax, jax.numpy as jnp, optax
  >>> import jaxreg as jr
  >>> state = jr.create_train_state({"w": jnp.zeros(2)}, optax.sgd(1.0), jax.random.key(0), ema_decay=0.5)
  >>> step = jr.make_train_step(lambda p, s, x, *, key, training: (x @ p["w"], s), lambda o, y: (o - y) ** 2,
  ...                           optax.sgd(1.0))
  >>> state, _ = step(state, jnp.array([[0.5, 0.0]]), jnp.array([1.0]))   # w -> [1, 0]
  >>> print(state.params["w"], state.ema_params["w"])
  [1. 0.] [0.5 0. ]
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from jaxreg._typing import PyTree
from jaxreg._validate import check_choice, check_in_range, check_positive_int

__all__ = ["WeightAverages", "init_averages", "update_averages", "averaged_params", "update_bn", "warn_if_unaveraged"]

AVERAGES = ("ema", "swa")


class WeightAverages(NamedTuple):
    """The averaged weights a :class:`jaxreg.TrainState` carries (``state.averages``).

    Attributes:
      ema: the exponential moving average of the params, or None.
      decay: shape=(), the EMA decay in [0, 1), or None.
      swa: the equal-weight average of the params since ``swa_start``, or None (before the first averaged
        step it holds the initial params).
      swa_count: shape=(), int32: how many params ``swa`` averages (0 before ``swa_start``).
      swa_start: shape=(), int32: the first step whose params SWA averages, or None.
    """

    ema: PyTree | None
    decay: jax.Array | None
    swa: PyTree | None
    swa_count: jax.Array | None
    swa_start: jax.Array | None


def init_averages(params: PyTree, *, ema_decay: ArrayLike | None = None,
                  swa_start: int | None = None) -> WeightAverages | None:
    """The averages of a fresh state (None when neither is asked for).

    Args:
      params: the initial params.
      ema_decay: the EMA decay in [0, 1) (concrete values checked; a traced one is taken as is), or None.
      swa_start: the first step SWA averages, an int >= 0, or None.

    Raises:
      ValueError: ``ema_decay`` outside [0, 1) or not a scalar; ``swa_start`` < 0.
      TypeError: ``swa_start`` not an int.
    """
    if ema_decay is None and swa_start is None:
        return None
    ema = decay = swa = count = start = None
    if ema_decay is not None:
        check_in_range("ema_decay", ema_decay, 0.0, 1.0, high_inclusive=False, scalar=True)
        decay = jnp.asarray(ema_decay, jnp.float32)
        ema = params
    if swa_start is not None:
        start = jnp.asarray(check_positive_int("swa_start", swa_start, minimum=0), jnp.int32)
        swa, count = params, jnp.zeros((), jnp.int32)
    return WeightAverages(ema=ema, decay=decay, swa=swa, swa_count=count, swa_start=start)


def update_averages(averages: WeightAverages | None, params: PyTree, step: jax.Array,
                    applied: jax.Array) -> WeightAverages | None:
    """The averages after a step that produced ``params`` as step number ``step`` (0-based).

    ``applied`` (a bool scalar) is False for a skipped step: the averages stay as they were.
    """
    if averages is None:
        return None
    ema, swa, count = averages.ema, averages.swa, averages.swa_count
    if ema is not None:
        new = optax.incremental_update(params, ema, step_size=1.0 - averages.decay)
        ema = jax.tree.map(lambda n, o: jnp.where(applied, n.astype(o.dtype), o), new, ema)
    if swa is not None:
        take = applied & (step >= averages.swa_start)
        weight = 1.0 / (count + 1).astype(jnp.float32)
        swa = jax.tree.map(
            lambda s, p: jnp.where(take, (s + (p - s) * weight.astype(s.dtype)).astype(s.dtype), s), swa, params)
        count = count + take.astype(jnp.int32)
    return averages._replace(ema=ema, swa=swa, swa_count=count)


def warn_if_unaveraged(state: Any, stacklevel: int = 3) -> None:
    """Warn once when a state keeps an SWA average that averaged no step (``swa_start`` past the run's end).

    The SWA params are then still the initial ones: evaluating them (``average="swa"``) would mislead.
    Called by :func:`jaxreg.fit` and :func:`jaxreg.fit_members` after training (vmapped states: any member).
    """
    averages = getattr(state, "averages", None)
    if averages is None or averages.swa is None:
        return
    counts = np.asarray(jax.device_get(averages.swa_count)).reshape(-1)
    if (counts == 0).any():
        start = int(np.asarray(jax.device_get(averages.swa_start)).reshape(-1)[int(np.argmin(counts))])
        steps = int(np.asarray(jax.device_get(state.step)).reshape(-1)[0])
        warnings.warn(f"SWA averaged no step: swa_start = {start} is past the {steps} steps trained, so swa_params "
                      "are still the initial params; lower swa_start or train longer.", RuntimeWarning,
                      stacklevel=stacklevel)


def averaged_params(state: Any, average: str | None) -> PyTree:
    """``state.params`` (``average=None``) or its ``"ema"``/``"swa"`` average.

    Raises:
      ValueError: ``average`` is not None/"ema"/"swa", or the state does not keep that average.
    """
    if average is None:
        return state.params
    check_choice("average", average, AVERAGES)
    averages = getattr(state, "averages", None)
    kept = None if averages is None else getattr(averages, average)
    if kept is None:
        option = "ema_decay" if average == "ema" else "swa_start"
        raise ValueError(f"average = {average!r} needs a state created with create_train_state(..., {option}=...).")
    return kept


def update_bn(apply_fn: Callable[..., Any], state: Any, x: ArrayLike, *, batch_size: int,
              average: str | None = "swa") -> Any:
    """Recompute the model state (batch-norm statistics) for averaged weights: PyTorch's ``update_bn``.

    Averaged weights were never run with the running statistics they need. Like
    ``torch.optim.swa_utils.update_bn``, this runs the model in training mode over ``x`` batch by batch and
    sets every statistic to the equal-weight mean of its per-batch values. It needs no knowledge of the
    layers' momentum: any statistic updated as ``new = m * old + (1 - m) * batch`` (flax's and jaxreg's batch
    norm) is read back exactly by running each batch from two known old states (0 and 1). Other model-state
    leaves are left as they were. The last partial batch is dropped when ``x`` does not divide.

    Args:
      apply_fn: the model, ``apply_fn(params, model_state, x, *, key, training)``.
      state: a :class:`jaxreg.TrainState`.
      x: the training inputs ``(n, ...)``.
      batch_size: examples per batch, an int >= 1 (at most ``n``).
      average: whose statistics: ``"swa"`` (default), ``"ema"``, or None for ``state.params``.

    Returns:
      ``state`` with ``model_state`` replaced (params untouched). Noise layers run with ``key=state.key``.

    Raises:
      ValueError: bad ``average`` or ``batch_size``, or no such average in the state.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> import jaxreg as jr
      >>> def apply_fn(params, ms, x, *, key, training):
      ...     y, bn = jr.batch_norm(x, params["bn"], ms["bn"], training=training, momentum=0.9)
      ...     return y, {"bn": bn}
      >>> bn_params, bn_state = jr.batch_norm_init(2)
      >>> state = jr.create_train_state({"bn": bn_params}, optax.sgd(0.1), jax.random.key(0),
      ...                               model_state={"bn": bn_state}, swa_start=0)
      >>> x = jnp.arange(16.0).reshape(8, 2)
      >>> state = jr.update_bn(apply_fn, state, x, batch_size=4)
      >>> print(state.model_state["bn"].mean)          # the mean of the two batches' means
      [7. 8.]
    """
    params = averaged_params(state, average)
    x = jnp.asarray(x)
    batch_size = check_positive_int("batch_size", batch_size)
    if x.ndim < 1 or batch_size > x.shape[0]:
        raise ValueError(f"batch_size must be in [1, n] = [1, {x.shape[0] if x.ndim else 0}], got {batch_size}.")
    num = x.shape[0] // batch_size
    batches = x[: num * batch_size].reshape(num, batch_size, *x.shape[1:])
    zeros = jax.tree.map(jnp.zeros_like, state.model_state)
    ones = jax.tree.map(jnp.ones_like, state.model_state)

    def batch_stats(xb):
        new0 = apply_fn(params, zeros, xb, key=state.key, training=True)[1]
        new1 = apply_fn(params, ones, xb, key=state.key, training=True)[1]

        def read(a, b, old):  # a = (1 - m) s, b = m + (1 - m) s  ->  m = b - a, s = a / (1 - m)
            if not jnp.issubdtype(jnp.asarray(old).dtype, jnp.floating):
                return old
            keep = 1.0 - (b - a)
            return jnp.where(keep != 0, a / jnp.where(keep != 0, keep, 1), old)

        return jax.tree.map(read, new0, new1, state.model_state)

    per_batch = jax.lax.map(jax.jit(batch_stats), batches)
    mean = jax.tree.map(lambda s, old: jnp.mean(s, axis=0).astype(jnp.asarray(old).dtype)
                        if jnp.issubdtype(jnp.asarray(old).dtype, jnp.floating) else old,
                        per_batch, state.model_state)
    return state.replace(model_state=mean)
