"""Cross-validation and sweeps (floor 6): fold splits, and k folds or a grid trained as one program.

Fold splits are host-side numpy: :func:`kfold_indices` gives scikit-learn's ``KFold`` folds (shuffled
reproducibly by a ``jax.random`` key when one is given), and :func:`kfold_masks` gives the same folds as a
``(k, num_examples)`` bool array, the form a ``jax.vmap`` over folds consumes: every fold sees the full,
equally shaped dataset and weights its loss by its own mask.

Many models in one program: :func:`kfold_fit` (``k`` folds, optionally crossed with a sweep) and
:func:`sweep_fit` (one member per hyperparameter setting) are thin layers over :func:`jaxreg.fit_members`
(:mod:`jaxreg.loop`), which trains stacked :class:`jaxreg.TrainState` s as one ``jax.vmap``-ped program, each
member with its own key, per-example weights (fold masks), traced hyperparameters and early stopper. Member
``i`` of a run equals ``jr.fit`` of that member alone, to float tolerance. Whether it is faster than training
the members one after the other depends on the model and the device: ``benchmarks/sweep.py`` measures it.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxreg._typing import KeyArray, PyTree
from jaxreg._validate import check_positive_int
from jaxreg.epoch import num_examples
from jaxreg.loop import fit_members
from jaxreg.members import num_members
from jaxreg.train import TrainState

__all__ = ["kfold_indices", "kfold_masks", "sweep_fit", "kfold_fit"]


# ----------------------------------------------------------------------------------------------------------
# Fold splits (host-side numpy)
# ----------------------------------------------------------------------------------------------------------


def _check_split_args(num_examples: int, k: int, key: KeyArray | None) -> tuple[int, int]:
    """Validate the split arguments; return them as Python ints."""
    num_examples = check_positive_int("num_examples", num_examples, minimum=2)
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (numbers.Integral, np.integer)):
        raise TypeError(f"k must be an integer in the range [2, num_examples], got k = {k!r}.")
    k = int(k)
    if not 2 <= k <= num_examples:
        raise ValueError(f"k must be in the range [2, num_examples] = [2, {num_examples}], got k = {k}.")
    if key is not None:
        is_typed_key = isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
        is_raw_key = isinstance(key, (jax.Array, np.ndarray)) and key.dtype == np.uint32 and key.shape == (2,)
        if not (is_typed_key and key.shape == ()) and not is_raw_key:
            raise TypeError(
                "key must be a single jax.random key (jax.random.key(0) or jax.random.PRNGKey(0)) or None, "
                f"got key = {key!r}."
            )
    return num_examples, k


def _validation_folds(num_examples: int, k: int, key: KeyArray | None) -> list[np.ndarray]:
    """The k validation index sets, each sorted; sizes as scikit-learn's KFold (the first n % k get one more)."""
    order = np.arange(num_examples) if key is None else np.asarray(jax.random.permutation(key, num_examples))
    sizes = np.full(k, num_examples // k, dtype=np.int64)
    sizes[: num_examples % k] += 1
    stops = np.cumsum(sizes)
    starts = stops - sizes
    return [np.sort(order[start:stop]).astype(np.int64) for start, stop in zip(starts, stops)]


def kfold_indices(
    num_examples: int, k: int, *, key: KeyArray | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split ``range(num_examples)`` into ``k`` folds: ``k`` pairs ``(train_idx, val_idx)``.

    Without a key the folds are scikit-learn's ``KFold(n_splits=k)`` (no shuffling): fold ``i`` validates
    on a contiguous block, the first ``num_examples % k`` blocks being one example longer. With a key the
    examples are first permuted by ``jax.random.permutation(key, num_examples)`` and the blocks are taken
    from that order: same key, same folds. Either way every example is validated in exactly one fold, and
    both index arrays of a pair are sorted (as scikit-learn returns them).

    Args:
      num_examples: number of examples, an int >= 2.
      k: number of folds, an int in ``[2, num_examples]``.
      key: optional ``jax.random`` key (typed or legacy ``uint32[2]``) to shuffle the examples first.

    Returns:
      A list of ``k`` tuples ``(train_idx, val_idx)`` of int64 numpy arrays, of lengths
      ``num_examples - m`` and ``m`` where ``m`` is the fold's validation size.

    Raises:
      TypeError: if ``num_examples`` or ``k`` is not an int, or ``key`` is not a single key.
      ValueError: if ``num_examples < 2`` or ``k`` is outside ``[2, num_examples]``.

    Example:
      >>> import jax
      >>> import jaxreg as jr
      >>> for train_idx, val_idx in jr.kfold_indices(5, 2):
      ...     print(train_idx, val_idx)
      [3 4] [0 1 2]
      [0 1 2] [3 4]
      >>> folds = jr.kfold_indices(10, 3, key=jax.random.key(0))
      >>> sorted(int(i) for _, val_idx in folds for i in val_idx) == list(range(10))
      True
    """
    num_examples, k = _check_split_args(num_examples, k, key)
    everything = np.arange(num_examples, dtype=np.int64)
    folds = []
    for val_idx in _validation_folds(num_examples, k, key):
        train_idx = np.setdiff1d(everything, val_idx, assume_unique=True)
        folds.append((train_idx, val_idx))
    return folds


def kfold_masks(num_examples: int, k: int, *, key: KeyArray | None = None) -> np.ndarray:
    """The folds of :func:`kfold_indices` as a ``(k, num_examples)`` bool array, True = TRAINING example.

    ``masks[i, j]`` is True when example ``j`` is in the training set of fold ``i``; the validation mask of
    fold ``i`` is ``~masks[i]``.
    This is the form for training all folds as one ``jax.vmap``-ped program: each fold keeps the whole
    dataset (equal shapes) and weights its per-example loss by ``masks[i]`` (and its validation metric by
    ``~masks[i]``). Same arguments, same folds as :func:`kfold_indices`.

    Args:
      num_examples: number of examples, an int >= 2.
      k: number of folds, an int in ``[2, num_examples]``.
      key: optional ``jax.random`` key to shuffle the examples first, as in :func:`kfold_indices`.

    Returns:
      A numpy bool array of shape ``(k, num_examples)``; each column has exactly one False (every example
      is validated once), and row ``i`` has ``len(val_idx_i)`` Falses.

    Raises:
      TypeError: if ``num_examples`` or ``k`` is not an int, or ``key`` is not a single key.
      ValueError: if ``num_examples < 2`` or ``k`` is outside ``[2, num_examples]``.

    Example:
      >>> import jaxreg as jr
      >>> jr.kfold_masks(5, 2).astype(int)
      array([[0, 0, 0, 1, 1],
             [1, 1, 1, 0, 0]])
    """
    num_examples, k = _check_split_args(num_examples, k, key)
    masks = np.ones((k, num_examples), dtype=bool)
    for fold, val_idx in enumerate(_validation_folds(num_examples, k, key)):
        masks[fold, val_idx] = False
    return masks


# ----------------------------------------------------------------------------------------------------------
# Many models in one program: k folds and hyperparameter sweeps as one jax.vmap
# ----------------------------------------------------------------------------------------------------------

@functools.partial(jax.jit, static_argnums=1)
def _repeat_members(tree: PyTree, num: int) -> PyTree:
    # One compiled program for the whole tree (fresh output buffers): per-leaf jnp.repeat calls would cost a
    # dispatch each, more than a small model's epoch.
    return jax.tree.map(lambda a: jnp.broadcast_to(a[None], (num, *jnp.shape(a))), tree)


def sweep_fit(
    state: TrainState,
    make_step: Callable[[PyTree], Callable[..., Any]],
    train_data: tuple,
    *,
    hparams: PyTree,
    epochs: int,
    batch_size: int,
    **kwargs: Any,
) -> tuple[TrainState, list[dict[str, list]]]:
    """Train one model per hyperparameter setting, all from the same initial ``state``, as one vmapped program.

    ``sweep_fit(state, make_step, data, hparams=h, ...)`` is :func:`fit_members` on ``K`` copies of ``state``
    (same initial params and key, so members differ only by their hyperparameters), where ``K`` is the
    leading length of ``hparams``' leaves. For a grid over two hyperparameters, flatten it first, e.g.
    ``l2, rate = (a.ravel() for a in jnp.meshgrid(l2s, rates))``.

    Args:
      state: one :class:`jaxreg.TrainState` (not stacked); copied, so it stays valid.
      make_step: ``hparams_i -> step``, called inside the vmapped program with one member's traced
        hyperparameters (see :func:`fit_members`).
      train_data: ``(x, y)`` shared by every member.
      hparams: pytree of arrays with a leading member axis, e.g. ``{"l2": jnp.array([0.0, 1e-4, 1e-3])}``.
      epochs: the epoch number to stop before.
      batch_size: examples per step.
      **kwargs: any other keyword argument of :func:`fit_members` (``val_data``, ``eval_step``,
        ``early_stopping``, ``monitor``, ``train_weights``, ``on_epoch_end``...).

    Returns:
      ``(states, histories)`` as :func:`fit_members`: member ``i`` was trained with ``hparams[...][i]``.

    Raises:
      ValueError, TypeError: as :func:`fit_members`; also if ``hparams`` is None or has no array leaves.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> import jaxreg as jr
      >>> def apply_fn(params, model_state, x, *, key, training):
      ...     return x @ params["w"], model_state
      >>> def loss_fn(pred, y):
      ...     return (pred - y) ** 2
      >>> tx = optax.sgd(0.1)
      >>> def make_step(h):
      ...     return jr.make_train_step(apply_fn, loss_fn, tx, penalties=[(jr.l1, h["l1"])], jit=False)
      >>> x = jax.random.normal(jax.random.key(1), (64, 4))
      >>> y = x @ jnp.array([1.0, -1.0, 0.0, 0.0])
      >>> state = jr.create_train_state({"w": jnp.zeros(4)}, tx, jax.random.key(0))
      >>> states, histories = jr.sweep_fit(state, make_step, (x, y), hparams={"l1": jnp.array([0.0, 0.5])},
      ...                                  epochs=3, batch_size=16, val_data=(x, y),
      ...                                  eval_step=jr.make_eval_step(apply_fn, loss_fn))
      >>> [h["val_loss"][-1] < h["val_loss"][0] for h in histories]
      [True, True]
    """
    if hparams is None:
        raise ValueError("sweep_fit needs hparams (a pytree of arrays with a leading member axis).")
    num = num_members("hparams", hparams)
    return fit_members(
        _repeat_members(state, num), make_step, train_data, epochs=epochs, batch_size=batch_size,
        hparams=hparams, **kwargs,
    )


def kfold_fit(
    state: TrainState,
    train_step: Callable[..., Any],
    data: tuple,
    *,
    k: int,
    epochs: int,
    batch_size: int,
    eval_step: Callable[..., dict[str, jax.Array]],
    key: KeyArray | None = None,
    hparams: PyTree | None = None,
    **kwargs: Any,
) -> tuple[TrainState, list[dict[str, list]]]:
    """k-fold cross-validation: train the ``k`` folds (times an optional sweep) as one vmapped program.

    The folds are :func:`kfold_masks` ``(num_examples, k, key=key)``; fold ``f`` trains on ``data`` weighted by
    ``masks[f]`` and validates, after every epoch, on the same ``data`` weighted by ``~masks[f]``, so its
    ``val_*`` history is the held-out score of that fold. Every fold starts from the same ``state`` (same
    initial params and key). With ``hparams`` (``G`` settings) there are ``G * k`` members, ordered setting
    by setting: member ``g * k + f`` is setting ``g`` on fold ``f`` (``reshape(G, k)`` to average over folds).

    Args:
      state: one :class:`jaxreg.TrainState` (not stacked); copied, so it stays valid.
      train_step: a step from :func:`jaxreg.make_train_step` (``jit=False`` preferred); with ``hparams``, a
        function ``hparams_i -> step`` (see :func:`fit_members`).
      data: ``(x, y)`` or ``(x, y, weights)``: the whole dataset; optional per-example ``weights`` (shape
        ``(num_examples,)``) multiply the fold masks.
      k: number of folds, an int in ``[2, num_examples]``.
      epochs: the epoch number to stop before.
      batch_size: examples per step, drawn from the whole dataset (about ``(k - 1) / k`` of them count).
      eval_step: from :func:`jaxreg.make_eval_step`.
      key: optional ``jax.random`` key to shuffle the examples before splitting (as :func:`kfold_masks`).
      hparams: optional pytree of arrays with a leading axis of ``G`` settings, crossed with the folds.
      **kwargs: other keyword arguments of :func:`fit_members` (``early_stopping``, ``monitor``,
        ``eval_train``, ``norms_mask``, ``on_epoch_end``...).

    Returns:
      ``(states, histories)`` as :func:`fit_members`, with ``k`` (or ``G * k``) members.

    Raises:
      ValueError, TypeError: as :func:`kfold_masks` and :func:`fit_members`; also if ``data`` is not a 2- or
      3-tuple or ``kwargs`` holds ``val_data``/``train_weights``/``val_weights`` (the folds define them).

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np, optax
      >>> import jaxreg as jr
      >>> def apply_fn(params, model_state, x, *, key, training):
      ...     return x @ params["w"], model_state
      >>> def loss_fn(pred, y):
      ...     return (pred - y) ** 2
      >>> tx = optax.sgd(0.1)
      >>> x = jax.random.normal(jax.random.key(1), (60, 3))
      >>> y = x @ jnp.array([1.0, -1.0, 0.5])
      >>> state = jr.create_train_state({"w": jnp.zeros(3)}, tx, jax.random.key(0))
      >>> states, histories = jr.kfold_fit(state, jr.make_train_step(apply_fn, loss_fn, tx, jit=False), (x, y),
      ...                                  k=3, epochs=4, batch_size=10,
      ...                                  eval_step=jr.make_eval_step(apply_fn, loss_fn))
      >>> states.params["w"].shape, len(histories)
      ((3, 3), 3)
      >>> cv_loss = np.mean([h["val_loss"][-1] for h in histories])   # the cross-validated loss
      >>> bool(cv_loss < histories[0]["val_loss"][0])
      True
    """
    for name in ("val_data", "train_weights", "val_weights"):
        if name in kwargs:
            raise ValueError(f"kfold_fit defines {name} from the folds; do not pass {name}.")
    if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
        raise TypeError(f"data must be a tuple (x, y) or (x, y, weights), got data = {type(data).__name__}.")
    x, y = data[0], data[1]
    n = num_examples("data", x, y)
    masks = kfold_masks(n, k, key=key)
    train_w = masks.astype(np.float32)
    val_w = (~masks).astype(np.float32)
    if len(data) == 3:
        w = np.asarray(data[2], dtype=np.float32)
        if w.shape != (n,):
            raise ValueError(f"data weights must have shape ({n},), got shape {w.shape}.")
        train_w, val_w = train_w * w, val_w * w
    num = k
    if hparams is not None:
        settings = num_members("hparams", hparams)
        hparams = jax.tree.map(lambda a: jnp.repeat(jnp.asarray(a), k, axis=0), hparams)
        train_w, val_w = np.tile(train_w, (settings, 1)), np.tile(val_w, (settings, 1))
        num = settings * k
    return fit_members(
        _repeat_members(state, num), train_step, (x, y), epochs=epochs, batch_size=batch_size,
        hparams=hparams, train_weights=train_w, val_data=(x, y), val_weights=val_w, eval_step=eval_step,
        **kwargs,
    )
