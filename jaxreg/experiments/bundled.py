"""The real datasets bundled with scikit-learn, split and scaled for :mod:`jaxreg.experiments.data`.

Every set here loads offline (scikit-learn ships the files) and splits with a seed:

* ``digits`` keeps its own stratified 25/25/50 split (:func:`split_indices`), unchanged since the first release.
* The tabular sets (``diabetes``, ``breast_cancer``, ``wine``, ``iris``) split with scikit-learn's
  ``train_test_split`` twice (test first, then validation from the rest; ``stratify=`` the labels for the
  classification sets, ``random_state=seed``). Features are standardized with the *training* split's mean
  and standard deviation (also applied to validation and test, so nothing leaks); ``diabetes``' target too,
  so its MSE is in units of the target's training variance (predicting the training mean scores about 1).
* ``sample_images`` are random 32x32 crops of the two photos of ``load_sample_images`` (0 = china.jpg,
  1 = flower.jpg), for augmentation demos: train crops come from the left 60% of each photo's columns,
  validation from the next 20%, test from the last 20%, so no pixel is in two splits.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxreg._validate import check_in_range, check_positive_int
from jaxreg.experiments.keys import dataset_rng
from jaxreg.experiments.synthetic import SPLITS

__all__ = ["TABULAR", "split_indices", "load_digits", "tabular_loader", "load_sample_images"]

# name -> (scikit-learn loader, task, number of classes or None); shapes are read from the arrays.
TABULAR = {
    "diabetes": ("load_diabetes", "regression", None),
    "breast_cancer": ("load_breast_cancer", "classification", 2),
    "wine": ("load_wine", "classification", 3),
    "iris": ("load_iris", "classification", 3),
}


def _check_fraction(name: str, value: float) -> None:
    check_in_range(name, value, 0.0, 1.0, low_inclusive=False, high_inclusive=False)


def split_indices(labels: np.ndarray, *, fractions: Sequence[float], seed: int = 0) -> tuple[np.ndarray, ...]:
    """Partition ``range(len(labels))`` into stratified, seeded parts of the given fractions.

    Every class is spread over the parts in proportion (on digits, each class count is within one example
    of its share in every part, for every seed tried). The part sizes are exact: the first ``k - 1`` parts
    end at ``round(cumsum(fractions) * n)``, the last takes the remainder. Used for the digits split and to
    carve a validation split from a TFDS train split.

    Args:
      labels: integer class labels, shape ``(n,)``.
      fractions: positive fractions summing to 1, one per part.
      seed: non-negative integer; the same seed gives the same parts (``numpy.random.default_rng``).

    Returns:
      One sorted int64 index array per fraction; together they partition ``range(n)`` without overlap.

    Raises:
      ValueError: if a fraction is not in (0, 1), they do not sum to 1, or ``seed`` is negative.

    Example:
      >>> import numpy as np
      >>> import jaxreg as jr
      >>> train, test = jr.data.split_indices(np.array([0, 0, 0, 0, 1, 1, 1, 1]), fractions=(0.5, 0.5))
      >>> print(len(train), len(test), sorted(np.r_[train, test].tolist()) == list(range(8)))
      4 4 True
    """
    seed = check_positive_int("seed", seed, minimum=0)
    fractions = tuple(float(f) for f in fractions)
    for f in fractions:
        _check_fraction("fractions", f)
    if len(fractions) < 2 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be at least two numbers summing to 1, got fractions = {fractions}.")
    labels = np.asarray(labels).reshape(-1)
    n = labels.shape[0]
    rng = np.random.default_rng(seed)
    # Order every class randomly, give each example its quantile within its class, then deal the examples out
    # in quantile order: any prefix of that order is stratified to within one example per class.
    perm = rng.permutation(n)
    grouped = perm[np.argsort(labels[perm], kind="stable")]
    _, starts, counts = np.unique(labels[grouped], return_index=True, return_counts=True)
    rank = np.arange(n) - np.repeat(starts, counts)
    quantile = np.empty(n)
    quantile[grouped] = (rank + 0.5) / np.repeat(counts, counts)
    order = np.lexsort((rng.random(n), quantile))
    bounds = np.round(np.cumsum(fractions[:-1]) * n).astype(int)
    return tuple(np.sort(part) for part in np.split(order, bounds))


def _check_three_way(train_name: str, train: float, validation: float) -> float:
    _check_fraction(train_name, train)
    _check_fraction("validation_fraction", validation)
    rest = 1.0 - train - validation
    if rest < 1e-9:  # not `<= 0`: 1 - 0.7 - 0.3 is 5.6e-17
        raise ValueError(
            f"{train_name} + validation_fraction must be < 1 to leave a test split, got "
            f"{train_name} = {train}, validation_fraction = {validation}."
        )
    return rest


# ----------------------------------------------------------------------------------------------------------
# digits
# ----------------------------------------------------------------------------------------------------------


@functools.cache
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = (digits.images.astype(np.float32) / np.float32(16.0))[..., None]
    labels = digits.target.astype(np.int32)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def load_digits(
    split: str, data_dir: Path | None, seed: int, *, train_fraction: float = 0.25, validation_fraction: float = 0.25
) -> tuple[np.ndarray, np.ndarray]:
    """``digits``: scikit-learn's 8x8 digits / 16, float32 NHWC; stratified 25/25/50 by :func:`split_indices`.

    Example:
      >>> from jaxreg.experiments.bundled import load_digits
      >>> x, y = load_digits("train", None, 0)
      >>> x.shape, y.shape
      ((449, 8, 8, 1), (449,))
    """
    del data_dir  # bundled with scikit-learn
    test_fraction = _check_three_way("train_fraction", train_fraction, validation_fraction)
    images, labels = _digits_arrays()
    parts = split_indices(labels, fractions=(train_fraction, validation_fraction, test_fraction), seed=seed)
    idx = parts[SPLITS.index(split)]
    return images[idx], labels[idx]


# ----------------------------------------------------------------------------------------------------------
# tabular sets
# ----------------------------------------------------------------------------------------------------------


@functools.cache
def _tabular_arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
    import sklearn.datasets

    loader = getattr(sklearn.datasets, TABULAR[name][0])
    kwargs = {"scaled": False} if name == "diabetes" else {}  # raw features: we standardize them ourselves
    x, y = loader(return_X_y=True, **kwargs)
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64) if TABULAR[name][1] == "regression" else np.asarray(y, np.int32)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def _standardize(train: np.ndarray, values: np.ndarray) -> np.ndarray:
    std = train.std(axis=0)
    return (values - train.mean(axis=0)) / np.where(std > 0, std, 1.0)


def tabular_loader(name: str):
    """The loader of a tabular set of :data:`TABULAR`; options ``validation_fraction`` (0.12 for diabetes, else
    0.2) and ``test_fraction`` (0.2), as fractions of all examples.

    Example:
      >>> from jaxreg.experiments.bundled import tabular_loader
      >>> x, y = tabular_loader("diabetes")("train", None, 0)
      >>> x.shape, y.shape, abs(float(y.mean())) < 1e-6
      ((300, 10), (300, 1), True)
    """
    regression = TABULAR[name][1] == "regression"
    # diabetes: 68/12/20, 300 training examples; the classification sets: stratified 60/20/20.
    default_validation = 0.12 if regression else 0.2

    def load_tabular(split: str, data_dir: Path | None, seed: int, *, validation_fraction: float = default_validation,
                     test_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.model_selection import train_test_split

        del data_dir  # bundled with scikit-learn
        _check_three_way("test_fraction", test_fraction, validation_fraction)
        x, y = _tabular_arrays(name)
        n = len(y)
        index = np.arange(n)
        rest, test = train_test_split(index, test_size=test_fraction, random_state=seed,
                                      stratify=None if regression else y)
        n_validation = int(round(validation_fraction * n))
        train, validation = train_test_split(rest, test_size=n_validation, random_state=seed,
                                             stratify=None if regression else y[rest])
        part = {"train": train, "validation": validation, "test": test}[split]
        features = _standardize(x[train], x[part]).astype(np.float32)
        if not regression:
            return features, y[part].copy()
        target = _standardize(y[train], y[part]).astype(np.float32)
        return features, target.reshape(-1, 1)

    load_tabular.__name__ = f"load_{name}"
    return load_tabular


# ----------------------------------------------------------------------------------------------------------
# sample images
# ----------------------------------------------------------------------------------------------------------

_CROP = 32
# Column ranges (fractions of the width) each split crops from: disjoint, so no pixel is in two splits.
_COLUMNS = {"train": (0.0, 0.6), "validation": (0.6, 0.8), "test": (0.8, 1.0)}


@functools.cache
def _photos() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_sample_images as sklearn_sample_images

    photos = tuple(np.asarray(image, np.uint8) for image in sklearn_sample_images().images)
    for photo in photos:
        photo.flags.writeable = False
    return photos


def load_sample_images(split: str, data_dir: Path | None, seed: int, *, n_train: int = 512,
                       n_validation: int = 128, n_test: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """``sample_images``: seeded 32x32 crops of scikit-learn's two photos, / 255, NHWC; label = which photo.

    Half of each split's crops come from each photo (``n_*`` must be even), from the split's own band of
    columns (see the module docstring); split ``i`` draws from ``keys.dataset_rng(seed, 1 + i)``.

    Example:
      >>> from jaxreg.experiments.bundled import load_sample_images
      >>> x, y = load_sample_images("test", None, 0)
      >>> x.shape, y.tolist().count(1)
      ((128, 32, 32, 3), 64)
    """
    del data_dir  # bundled with scikit-learn
    sizes = {"train": n_train, "validation": n_validation, "test": n_test}
    for key, value in sizes.items():
        check_positive_int(f"n_{key}", value, minimum=2)
        if value % 2:
            raise ValueError(f"n_{key} must be even (half the crops from each photo), got n_{key} = {value}.")
    rng = dataset_rng(seed, 1 + SPLITS.index(split))
    per_photo = sizes[split] // 2
    crops, labels = [], []
    for label, photo in enumerate(_photos()):
        height, width, _ = photo.shape
        low, high = (int(f * width) for f in _COLUMNS[split])
        rows = rng.integers(0, height - _CROP + 1, per_photo)
        cols = rng.integers(low, high - _CROP + 1, per_photo)
        crops += [photo[r:r + _CROP, c:c + _CROP] for r, c in zip(rows, cols)]
        labels += [label] * per_photo
    return np.stack(crops).astype(np.float32) / np.float32(255.0), np.asarray(labels, np.int32)
