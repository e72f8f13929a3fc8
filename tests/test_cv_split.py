"""Tests for the fold splits of jaxreg/cv.py.

Reference: scikit-learn's ``sklearn.model_selection.KFold`` (unshuffled folds must be identical to it;
shuffled folds must be a KFold-shaped partition of a jax.random permutation).
"""

import jax
import numpy as np
import pytest
from sklearn.model_selection import KFold

import jaxreg as jr

SIZES = [(2, 2), (5, 2), (7, 3), (10, 5), (11, 4), (13, 13), (100, 7)]


@pytest.mark.parametrize("num_examples,k", SIZES)
def test_unshuffled_folds_equal_sklearn_kfold(num_examples, k):
    """Reference: sklearn KFold(n_splits=k) without shuffling, fold by fold and element by element."""
    ours = jr.kfold_indices(num_examples, k)
    theirs = list(KFold(n_splits=k).split(np.zeros((num_examples, 1))))
    assert len(ours) == k
    for (train, val), (sk_train, sk_val) in zip(ours, theirs):
        np.testing.assert_array_equal(train, sk_train)
        np.testing.assert_array_equal(val, sk_val)
        assert train.dtype == np.int64 and val.dtype == np.int64


# Shuffled cases on two sizes only: each new num_examples compiles a new jax.random.permutation.
@pytest.mark.parametrize(
    "num_examples,k,use_key", [(n, k, False) for n, k in SIZES] + [(23, 4, True), (100, 7, True)]
)
def test_partition_and_masks_consistent(num_examples, k, use_key):
    """Every example validated exactly once; train = complement of val; masks match the indices."""
    key = jax.random.key(3) if use_key else None
    folds = jr.kfold_indices(num_examples, k, key=key)
    masks = jr.kfold_masks(num_examples, k, key=key)
    assert masks.shape == (k, num_examples) and masks.dtype == np.bool_
    all_val = np.concatenate([val for _, val in folds])
    np.testing.assert_array_equal(np.sort(all_val), np.arange(num_examples))
    np.testing.assert_array_equal((~masks).sum(axis=0), np.ones(num_examples, dtype=int))
    # Fold sizes are scikit-learn's: the first n % k folds get one extra example.
    expected_sizes = [len(val) for _, val in KFold(n_splits=k).split(np.zeros((num_examples, 1)))]
    assert [len(val) for _, val in folds] == expected_sizes
    for i, (train, val) in enumerate(folds):
        np.testing.assert_array_equal(np.union1d(train, val), np.arange(num_examples))
        assert np.intersect1d(train, val).size == 0
        np.testing.assert_array_equal(np.flatnonzero(masks[i]), train)
        np.testing.assert_array_equal(np.flatnonzero(~masks[i]), val)


def test_shuffled_folds_follow_jax_permutation_and_are_reproducible():
    """Reference: fold i validates on block i (KFold sizes) of jax.random.permutation(key, n)."""
    n, k = 23, 4
    key = jax.random.key(7)
    perm = np.asarray(jax.random.permutation(key, n))
    sizes = [len(val) for _, val in KFold(n_splits=k).split(np.zeros((n, 1)))]
    bounds = np.cumsum([0, *sizes])
    folds = jr.kfold_indices(n, k, key=key)
    for i, (_, val) in enumerate(folds):
        np.testing.assert_array_equal(val, np.sort(perm[bounds[i] : bounds[i + 1]]))
    again = jr.kfold_indices(n, k, key=jax.random.key(7))
    for (t1, v1), (t2, v2) in zip(folds, again):
        np.testing.assert_array_equal(t1, t2)
        np.testing.assert_array_equal(v1, v2)
    # A legacy uint32[2] key is accepted and gives the permutation of that key.
    legacy = jax.random.PRNGKey(7)
    legacy_perm = np.asarray(jax.random.permutation(legacy, n))
    np.testing.assert_array_equal(jr.kfold_indices(n, k, key=legacy)[0][1], np.sort(legacy_perm[: sizes[0]]))
    # Another key gives other folds, and shuffled folds differ from the contiguous ones.
    other = jr.kfold_masks(n, k, key=jax.random.key(8))
    assert not np.array_equal(other, jr.kfold_masks(n, k, key=key))
    assert not np.array_equal(jr.kfold_masks(n, k, key=key), jr.kfold_masks(n, k))


@pytest.mark.parametrize("fn", [jr.kfold_indices, jr.kfold_masks])
def test_bad_arguments(fn):
    for k in (1, 0, -2, 6):
        with pytest.raises(ValueError, match=r"k must be in the range \[2, num_examples\] = \[2, 5\]"):
            fn(5, k)
    for k in (2.0, "3", True, None):
        with pytest.raises(TypeError, match="k must be an integer"):
            fn(5, k)
    with pytest.raises(ValueError, match="num_examples"):
        fn(1, 2)
    with pytest.raises(TypeError, match="num_examples"):
        fn(5.0, 2)
    for key in (0, np.zeros(3, np.uint32), jax.random.split(jax.random.key(0), 2)):
        with pytest.raises(TypeError, match="key must be a single jax.random key"):
            fn(5, 2, key=key)


def test_numpy_integer_arguments_accepted():
    np.testing.assert_array_equal(jr.kfold_masks(np.int64(9), np.int32(4)), jr.kfold_masks(9, 4))
