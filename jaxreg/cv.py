"""Cross-validation (floor 6).

Fold splits are host-side numpy: :func:`kfold_indices` gives scikit-learn's ``KFold`` folds (shuffled
reproducibly by a ``jax.random`` key when one is given), and :func:`kfold_masks` gives the same folds as a
``(k, num_examples)`` bool array, the form a ``jax.vmap`` over folds consumes: every fold sees the full,
equally shaped dataset and weights its loss by its own mask.
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np

from jaxreg._typing import KeyArray
from jaxreg._validate import check_positive_int

__all__ = ["kfold_indices", "kfold_masks"]


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
