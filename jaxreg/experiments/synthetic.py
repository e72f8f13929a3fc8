"""The synthetic datasets of :mod:`jaxreg.experiments.data`: a linear regression and a token task, made from a seed.

Each split draws from its own stream, ``keys.dataset_rng(seed, 1 + split index)`` (stream 0 holds what the
splits share: the regression weights), so a split is the same for the same seed whatever else was loaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxreg._validate import check_in_range, check_positive_int
from jaxreg.experiments.keys import dataset_rng

__all__ = ["SPLITS", "load_synthetic_regression", "load_synthetic_sequences"]

SPLITS = ("train", "validation", "test")


def _split_rng(seed: int, split: str) -> np.random.Generator:
    # Stream 0 is reserved for quantities shared by all splits (the regression weights).
    return dataset_rng(seed, 1 + SPLITS.index(split))


def _split_sizes(n_train: int, n_validation: int, n_test: int) -> dict[str, int]:
    """Validated example counts of a synthetic set's three splits."""
    return {
        "train": check_positive_int("n_train", n_train),
        "validation": check_positive_int("n_validation", n_validation),
        "test": check_positive_int("n_test", n_test),
    }


def load_synthetic_regression(
    split: str,
    data_dir: Path | None,
    seed: int,
    *,
    n_train: int = 100,
    n_validation: int = 1000,
    n_test: int = 1000,
    num_features: int = 10,
    noise_std: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """``synthetic_regression``: ``y = x @ w + noise_std * noise``, ``x ~ N(0, I)``; float32 ``(n, F)``, ``(n, 1)``.

    ``w ~ N(0, I)`` is drawn once per seed (shared by the splits); each split has its own stream.

    Example:
      >>> from jaxreg.experiments.synthetic import load_synthetic_regression
      >>> x, y = load_synthetic_regression("train", None, 0)
      >>> x.shape, y.shape
      ((100, 10), (100, 1))
    """
    del data_dir
    sizes = _split_sizes(n_train, n_validation, n_test)
    num_features = check_positive_int("num_features", num_features)
    check_in_range("noise_std", noise_std, 0.0, None)
    weights = dataset_rng(seed, 0).standard_normal((num_features, 1))
    rng = _split_rng(seed, split)
    x = rng.standard_normal((sizes[split], num_features))
    y = x @ weights + noise_std * rng.standard_normal((sizes[split], 1))
    return x.astype(np.float32), y.astype(np.float32)


def load_synthetic_sequences(
    split: str,
    data_dir: Path | None,
    seed: int,
    *,
    n_train: int = 2000,
    n_validation: int = 1000,
    n_test: int = 1000,
    vocab_size: int = 32,
    length: int = 16,
    label_noise: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """``synthetic_sequences``: int32 tokens ``(n, length)`` in ``[1, vocab_size)``; label: does token 0 recur.

    A task that needs attention across positions; ``label_noise`` flips that fraction of the labels.

    Example:
      >>> from jaxreg.experiments.synthetic import load_synthetic_sequences
      >>> x, y = load_synthetic_sequences("test", None, 0)
      >>> x.shape, y.shape, int(x.min()) >= 1
      ((1000, 16), (1000,), True)
    """
    del data_dir
    sizes = _split_sizes(n_train, n_validation, n_test)
    vocab_size = check_positive_int("vocab_size", vocab_size, minimum=3)
    length = check_positive_int("length", length, minimum=2)
    check_in_range("label_noise", label_noise, 0.0, 1.0)
    n = sizes[split]
    rng = _split_rng(seed, split)
    labels = rng.integers(0, 2, n)
    first = rng.integers(1, vocab_size, n)
    # The other tokens are uniform over the vocabulary minus {pad, first token} ...
    rest = rng.integers(1, vocab_size - 1, (n, length - 1))
    rest += rest >= first[:, None]
    # ... and positives get the first token once more, at a random position.
    position = rng.integers(0, length - 1, n)
    positive = labels == 1
    rest[positive, position[positive]] = first[positive]
    flip = rng.random(n) < label_noise
    tokens = np.concatenate([first[:, None], rest], axis=1)
    return tokens.astype(np.int32), (labels ^ flip).astype(np.int32)
