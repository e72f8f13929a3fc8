"""An epoch as one ``lax.scan`` over shuffled batches of data already on the device (floor 6).

:func:`make_train_epoch` is the building block of :mod:`jaxreg.loop`: epoch ``e`` is shuffled by
``jax.random.permutation(shuffle_key(state.key, e), n)`` where :func:`shuffle_key` folds ``2**32 - 1`` (a
value no int32 step number reaches) and then ``e`` into the state's key, so the shuffles never meet the steps'
noise keys ``fold_in(state.key, step)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxreg._typing import KeyArray, PyTree
from jaxreg._validate import check_bool, check_callable, check_in_range, check_key, check_positive_int, check_scalar

__all__ = ["shuffle_key", "make_train_epoch"]

# fold_in data of the shuffling stream: uint32 max, a value no int32 step number reaches, so the shuffle keys
# never coincide with a step's noise key fold_in(key, step).
_SHUFFLE_STREAM = np.uint32(0xFFFFFFFF)


def shuffle_key(key: KeyArray, epoch: ArrayLike) -> KeyArray:
    """The key that shuffles epoch ``epoch``: ``fold_in(fold_in(key, 2**32 - 1), epoch)``.

    Args:
      key: one ``jax.random`` key (typed or legacy), e.g. ``state.key``.
      epoch: the epoch number, an integer scalar >= 0 (Python, numpy, or a JAX array; may be traced).

    Returns:
      A key of the kind of ``key``.

    Raises:
      TypeError: if ``key`` is not one ``jax.random`` key or ``epoch`` is not an integer.
      ValueError: if ``epoch`` is not a scalar, or a concrete ``epoch`` is negative.

    Example:
      >>> import jax
      >>> import jaxreg as jr
      >>> jax.random.permutation(jr.shuffle_key(jax.random.key(0), 3), 5).shape
      (5,)
    """
    check_key(key, "shuffle_key")
    check_scalar("epoch", epoch, "shuffle_key")
    dtype = getattr(epoch, "dtype", None)
    integral = (isinstance(epoch, int) and not isinstance(epoch, bool)) if dtype is None else (
        jnp.issubdtype(dtype, jnp.integer))
    if not integral:
        raise TypeError(f"shuffle_key: epoch must be an integer, got epoch = {epoch!r}.")
    check_in_range("epoch", epoch, 0.0, None)
    return jax.random.fold_in(jax.random.fold_in(key, _SHUFFLE_STREAM), epoch)


def num_examples(name: str, *trees: PyTree) -> int:
    """The common leading (example) length of every leaf of ``trees``; ValueError naming ``name`` otherwise."""
    sizes = {np.shape(leaf)[0] for tree in trees for leaf in jax.tree.leaves(tree)}
    if len(sizes) != 1:
        raise ValueError(f"x, y and weights of {name} must share their leading (example) axis, got sizes "
                         f"{sorted(sizes)}.")
    return sizes.pop()


def _epoch_means(metrics: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Mean of each stacked step metric over the non-skipped steps (NaN if all skipped); ``skipped`` summed."""
    skipped = metrics["skipped"]
    ok = skipped == 0
    num_ok = jnp.sum(ok).astype(jnp.float32)
    out = {"skipped": jnp.sum(skipped)}
    for name, values in metrics.items():
        if name != "skipped":
            total = jnp.sum(jnp.where(ok, values, jnp.zeros_like(values)))
            out[name] = jnp.where(num_ok > 0, total / jnp.maximum(num_ok, 1.0), jnp.nan).astype(values.dtype)
    return out


def make_train_epoch(
    train_step: Callable[..., tuple[Any, dict[str, jax.Array]]],
    *,
    batch_size: int,
    donate: bool = True,
    jit: bool = True,
) -> Callable[..., tuple[Any, dict[str, jax.Array]]]:
    """Build ``epoch(state, x, y, epoch, weights=None, value=None) -> (state, mean_metrics)``: one ``lax.scan``.

    The ``n`` examples are shuffled by ``jax.random.permutation(shuffle_key(state.key, epoch), n)``; the first
    ``n // batch_size * batch_size`` indices of the permutation form the batches, in order, and the last
    ``n % batch_size`` are **dropped** for this epoch (a different subset each epoch), so every batch has the
    same shape and the whole epoch is one compiled program over data already on the device. ``weights`` and
    ``value`` are passed to every step (see :func:`jaxreg.make_train_step`).

    Args:
      train_step: ``step(state, x, y, weights=None, value=None) -> (state, metrics)``, jitted or not
        (:func:`jaxreg.make_train_step`, with ``jit=False`` to avoid a nested jit).
      batch_size: examples per step; an int >= 1 and <= ``n``.
      donate: donate the ``state`` argument of the compiled epoch.
      jit: return the ``jax.jit``-compiled epoch (default) or the plain function (to ``vmap`` over folds).

    Returns:
      ``epoch(state, x, y, epoch, weights=None, value=None)``; ``x``/``y`` are arrays (or pytrees of arrays)
      with a leading example axis, ``epoch`` an int (pass ``jnp.int32(e)`` to reuse one compilation). The
      metrics are the means of the step metrics over the epoch's non-skipped steps (NaN if every step was
      skipped), except ``skipped``, the number of skipped steps.

    Raises:
      ValueError: if ``batch_size`` is not positive, exceeds ``n``, or the leading axes disagree.
      TypeError: if ``train_step`` is not callable, ``batch_size`` not an int, or ``donate``/``jit`` not a bool.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> import jaxreg as jr
      >>> def apply_fn(params, model_state, x, *, key, training):
      ...     return x @ params["w"], model_state
      >>> tx = optax.sgd(0.1)
      >>> step = jr.make_train_step(apply_fn, lambda p, y: (p - y) ** 2, tx, jit=False)
      >>> epoch = jr.make_train_epoch(step, batch_size=4)
      >>> state = jr.create_train_state({"w": jnp.zeros(3)}, tx, jax.random.key(0))
      >>> x = jax.random.normal(jax.random.key(1), (10, 3))
      >>> state, metrics = epoch(state, x, x @ jnp.array([1.0, -1.0, 2.0]), jnp.int32(0))
      >>> print(int(state.step), sorted(metrics))   # 10 // 4 = 2 steps; 2 examples dropped
      2 ['grad_norm', 'loss', 'penalty', 'skipped']
    """
    check_callable("train_step", train_step)
    batch_size = check_positive_int("batch_size", batch_size)
    check_bool("donate", donate, "make_train_epoch")
    check_bool("jit", jit, "make_train_epoch")

    def train_epoch(state, x, y, epoch, weights=None, value=None):
        n = num_examples("the training data", x, y, weights)
        num_batches = n // batch_size
        if num_batches == 0:
            raise ValueError(f"batch_size must be <= the number of examples {n}, got batch_size = {batch_size}.")
        order = jax.random.permutation(shuffle_key(state.key, epoch), n)
        batches = order[: num_batches * batch_size].reshape(num_batches, batch_size)

        def body(state, idx):
            take = functools.partial(jnp.take, indices=idx, axis=0)
            w = None if weights is None else take(jnp.asarray(weights))
            return train_step(state, jax.tree.map(take, x), jax.tree.map(take, y), w, value)

        state, metrics = jax.lax.scan(body, state, batches)
        return state, _epoch_means(metrics)

    if not jit:
        return train_epoch
    compiled = jax.jit(train_epoch, donate_argnums=(0,) if donate else ())

    @functools.wraps(train_epoch)
    def jitted_train_epoch(state, x, y, epoch, weights=None, value=None):
        return compiled(state, x, y, epoch, weights, value)  # fixed arity: one jit cache entry

    return jitted_train_epoch
