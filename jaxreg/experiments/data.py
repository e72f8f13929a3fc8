"""Datasets as numpy arrays: scikit-learn's bundled sets, synthetic tasks, TFDS sets read offline, your own .npz.

:func:`load` returns ``(x, y)`` numpy arrays for one of three splits, ``"train"``, ``"validation"`` and
``"test"``, always the same arrays for the same ``seed``:

========================  =========  ================================  ====================================
name                      source     x                                 y
========================  =========  ================================  ====================================
``digits`` (default)      bundled    float32 (n, 8, 8, 1) in [0, 1]    int32 (n,), 10 classes
``diabetes``              bundled    float32 (n, 10), standardized     **float32** (n, 1), standardized
``breast_cancer``         bundled    float32 (n, 30), standardized     int32 (n,), 2 classes
``wine``                  bundled    float32 (n, 13), standardized     int32 (n,), 3 classes
``iris``                  bundled    float32 (n, 4), standardized      int32 (n,), 3 classes
``sample_images``         bundled    float32 (n, 32, 32, 3) in [0, 1]  int32 (n,), 2 classes (which photo)
``synthetic_regression``  synthetic  float32 (n, 10)                   **float32** (n, 1) regression target
``synthetic_sequences``   synthetic  int32 tokens (n, 16), vocab 32    int32 (n,), 2 classes
``mnist``                 TFDS       float32 (n, 28, 28, 1) in [0, 1]  int32 (n,), 10 classes
``fashion_mnist``         TFDS       float32 (n, 28, 28, 1) in [0, 1]  int32 (n,), 10 classes
``cifar10``               TFDS       float32 (n, 32, 32, 3) in [0, 1]  int32 (n,), 10 classes
``ag_news_subset``        TFDS       int32 bytes (n, 128), vocab 257   int32 (n,), 4 classes
``imdb_reviews``          TFDS       int32 bytes (n, 512), vocab 257   int32 (n,), 2 classes
``PATH.npz``              file       float32 (n, ...)                  int32 (n,) or float32 (n, k)
========================  =========  ================================  ====================================

Images are NHWC (a model that wants vectors flattens them). Bundled and synthetic sets always work offline
(:mod:`jaxreg.experiments.bundled`, :mod:`jaxreg.experiments.synthetic`). TFDS sets are read with
``tfds.data_source`` from ArrayRecord files that must already be prepared in ``data_dir`` (no TensorFlow,
never a download; :mod:`jaxreg.experiments.tfds_data`); when they are not, :class:`DatasetUnavailableError`
says how to prepare them (``jaxreg datasets prepare``). TFDS has no validation split for these sets, so it is
carved, stratified, from TFDS ``train`` with the seed; ``test`` is TFDS ``test``. Text is tokenized
byte-level (:func:`byte_tokenize`): UTF-8 byte ``b`` becomes token ``b + 1``, 0 pads. Decoded TFDS splits are
cached in-process (4 entries), so loading ``train`` then ``validation`` reads the records once. A name that
ends in ``.npz`` (or names an existing file) is a user's own arrays (:mod:`jaxreg.experiments.user_data`).
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from jaxreg._optional import require
from jaxreg._validate import check_choice, check_positive_int
from jaxreg.experiments import bundled, tfds_data, user_data
from jaxreg.experiments.bundled import split_indices
from jaxreg.experiments.synthetic import SPLITS, load_synthetic_regression, load_synthetic_sequences
from jaxreg.experiments.tfds_data import DatasetUnavailableError, byte_tokenize

require("sklearn", extra="data", user="jaxreg.experiments.data")  # the bundled sets

__all__ = [
    "DEFAULT_DATASET",
    "SPLITS",
    "DatasetInfo",
    "DatasetUnavailableError",
    "available",
    "byte_tokenize",
    "info",
    "list_datasets",
    "load",
    "split_indices",
]

DEFAULT_DATASET = "digits"


class DatasetInfo(NamedTuple):
    """What a model needs to know about a dataset, without loading it.

    Fields describe the default options of :func:`load` (e.g. ``synthetic_sequences`` with ``length=16``).
    """

    name: str  # the registered name, or the path of a user's .npz file
    input_shape: tuple[int, ...]  # per example, e.g. (8, 8, 1) NHWC without N, or (16,) tokens
    num_classes: int | None  # None for regression
    task: str  # "classification" | "regression"
    offline: bool  # loadable right now without network (bundled, synthetic, file, or prepared in data_dir)
    num_outputs: int  # width of the model's last layer: num_classes, or regression targets
    input_dtype: str  # "float32" (features/pixels) or "int32" (token ids)
    vocab_size: int | None  # token vocabulary for int32 inputs (0 is padding), else None
    source: str  # "bundled" | "synthetic" | "tfds" | "file"
    description: str


# ----------------------------------------------------------------------------------------------------------
# Registry and public entry points
# ----------------------------------------------------------------------------------------------------------


class _Entry(NamedTuple):
    loader: Callable[..., tuple[np.ndarray, np.ndarray]]
    info: DatasetInfo  # offline=True here; TFDS entries get it recomputed for the data_dir asked about


def _classification_info(
    name: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    source: str,
    description: str,
    vocab_size: int | None,
) -> DatasetInfo:
    input_dtype = "float32" if vocab_size is None else "int32"
    return DatasetInfo(
        name, input_shape, num_classes, "classification", True, num_classes, input_dtype, vocab_size, source,
        description,
    )


_TABULAR_DESCRIPTIONS = {
    "diabetes": "scikit-learn's 442 diabetes patients, 10 features; target: disease progression after a year. "
                "x and y standardized with train statistics, so MSE is in units of the target's variance; "
                "300/53/89 train/validation/test",
    "breast_cancer": "scikit-learn's 569 breast tumours, 30 features, malignant or benign; standardized with "
                     "train statistics; stratified 60/20/20 (341/114/114)",
    "wine": "scikit-learn's 178 wines, 13 chemical features, 3 cultivars; standardized with train statistics; "
            "stratified 60/20/20 (106/36/36)",
    "iris": "scikit-learn's 150 irises, 4 measurements, 3 species; standardized with train statistics; "
            "stratified 60/20/20 (90/30/30)",
}
# Tabular shapes, so that listing the datasets reads no data: checked against the arrays by the tests.
_TABULAR_FEATURES = {"diabetes": 10, "breast_cancer": 30, "wine": 13, "iris": 4}


def _build_registry() -> dict[str, _Entry]:
    registry = {
        "digits": _Entry(
            bundled.load_digits,
            _classification_info(
                "digits", (8, 8, 1), 10, "bundled",
                "scikit-learn's 1797 8x8 handwritten digits, / 16; stratified 25/25/50 train/validation/test",
                None,
            ),
        ),
    }
    for name, (_, task, num_classes) in bundled.TABULAR.items():
        shape = (_TABULAR_FEATURES[name],)
        if task == "regression":
            metadata = DatasetInfo(name, shape, None, "regression", True, 1, "float32", None, "bundled",
                                   _TABULAR_DESCRIPTIONS[name])
            registry[name] = _Entry(bundled.tabular_loader(name), metadata)
        else:
            metadata = _classification_info(name, shape, num_classes, "bundled", _TABULAR_DESCRIPTIONS[name], None)
            registry[name] = _Entry(bundled.tabular_loader(name), metadata)
    registry["sample_images"] = _Entry(
        bundled.load_sample_images,
        _classification_info(
            "sample_images", (32, 32, 3), 2, "bundled",
            "random 32x32 crops of scikit-learn's 2 sample photos (label: china 0, flower 1), / 255; "
            "train/validation/test crops from disjoint column bands; 512/128/128", None,
        ),
    )
    registry.update({
        "synthetic_regression": _Entry(
            load_synthetic_regression,
            DatasetInfo(
                "synthetic_regression", (10,), None, "regression", True, 1, "float32", None, "synthetic",
                "y = x @ w + 0.5 * noise, x ~ N(0, I_10); 100 train, 1000 validation, 1000 test",
            ),
        ),
        "synthetic_sequences": _Entry(
            load_synthetic_sequences,
            _classification_info(
                "synthetic_sequences", (16,), 2, "synthetic",
                "16 tokens in [1, 32); label: does the first token occur again; 2000/1000/1000", 32,
            ),
        ),
    })
    for name, spec in tfds_data.TFDS.items():
        if spec.text:
            loader = tfds_data.tfds_text_loader(name)
            what, vocab_size = "byte-level tokens of " + " + ".join(spec.feature_keys), tfds_data.BYTE_VOCAB_SIZE
        else:
            loader, what, vocab_size = tfds_data.tfds_image_loader(name), "images / 255, NHWC", None
        description = f"TFDS {name} ({what}); validation carved from TFDS train"
        metadata = _classification_info(
            name, spec.input_shape, spec.num_classes, "tfds", description, vocab_size
        )
        registry[name] = _Entry(loader, metadata)
    return registry


_REGISTRY = _build_registry()


def _resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    if data_dir is None:
        data_dir = os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    return Path(os.path.abspath(os.path.expanduser(os.fspath(data_dir))))


def _check_name(name: str) -> _Entry:
    if name not in _REGISTRY:
        names = ", ".join(_REGISTRY)
        raise ValueError(f"Unknown dataset name = {name!r}; available datasets: {names}, or a path to an .npz file.")
    return _REGISTRY[name]


def _file_info(path: str, task: str | None) -> DatasetInfo:
    summary = user_data.summary(path, task=task)
    n_train, n_validation, n_test = summary.sizes
    validation = (f"validation carved from train ({user_data.VALIDATION_FRACTION:.0%}, seeded"
                  f"{', stratified' if summary.task == 'classification' else ''})" if summary.carved
                  else "x_val/y_val as validation")
    description = f"arrays from {path}: {n_train}/{n_validation}/{n_test} train/validation/test, {validation}"
    return DatasetInfo(path, summary.input_shape, summary.num_classes, summary.task, True, summary.num_outputs,
                       "float32", None, "file", description)


def info(name: str, *, data_dir: str | os.PathLike | None = None, task: str | None = None) -> DatasetInfo:
    """Metadata of a dataset (shapes, classes, task) and whether it loads offline from ``data_dir`` now.

    Args:
      name: a dataset name (see :func:`list_datasets`), or the path of an ``.npz`` file (read and checked).
      data_dir: TFDS data directory; ``None`` means ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``.
      task: ``"classification"`` or ``"regression"``: for an ``.npz`` file, overrides the task its labels'
        dtype implies (``--task``); for a registered name, must be its task (or ``None``).

    Returns:
      A :class:`DatasetInfo`; shapes are per example and describe :func:`load`'s default options.

    Raises:
      ValueError: for an unknown name (the message lists the known ones), a bad ``.npz`` file (one line
        naming the file and the array), or a ``task`` a registered dataset does not have.

    Example:
      >>> import jaxreg as jr
      >>> i = jr.data.info("mnist")
      >>> print(i.input_shape, i.num_classes, i.task, i.source)
      (28, 28, 1) 10 classification tfds
    """
    if user_data.is_npz_path(name):
        return _file_info(name, task)
    entry = _check_name(name)
    if task is not None and task != entry.info.task:
        raise ValueError(f"dataset {name!r} is a {entry.info.task} dataset; task = {task!r} applies only to .npz "
                         "files.")
    if entry.info.source != "tfds":
        return entry.info
    offline = tfds_data.prepared_version(name, _resolve_data_dir(data_dir), ("train", "test")) is not None
    return entry.info._replace(offline=offline)


def list_datasets(*, data_dir: str | os.PathLike | None = None) -> list[DatasetInfo]:
    """Every dataset :func:`load` knows, each with its ``offline`` flag for ``data_dir``.

    Args:
      data_dir: TFDS data directory; ``None`` means ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``.

    Returns:
      A list of :class:`DatasetInfo`, bundled and synthetic sets first (always ``offline=True``), then the
      TFDS sets (``offline=True`` only when their ArrayRecord files are prepared in ``data_dir``).

    Example:
      >>> import tempfile
      >>> import jaxreg as jr
      >>> with tempfile.TemporaryDirectory() as empty_dir:
      ...     for i in jr.data.list_datasets(data_dir=empty_dir)[5:9]:
      ...         print(i.name, i.source, i.offline)
      sample_images bundled True
      synthetic_regression synthetic True
      synthetic_sequences synthetic True
      mnist tfds False
    """
    return [info(name, data_dir=data_dir) for name in _REGISTRY]


def available(*, data_dir: str | os.PathLike | None = None) -> list[str]:
    """Names of the datasets that :func:`load` can read right now without network access.

    Args:
      data_dir: TFDS data directory; ``None`` means ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``.

    Returns:
      Dataset names, in :func:`list_datasets` order.

    Example:
      >>> import tempfile
      >>> import jaxreg as jr
      >>> with tempfile.TemporaryDirectory() as empty_dir:
      ...     print(jr.data.available(data_dir=empty_dir))
      ['digits', 'diabetes', 'breast_cancer', 'wine', 'iris', 'sample_images', 'synthetic_regression',
       'synthetic_sequences']
    """
    return [i.name for i in list_datasets(data_dir=data_dir) if i.offline]


def load(
    name: str,
    *,
    split: str,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    **options: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of a dataset as numpy arrays ``(x, y)``; the same seed gives identical arrays.

    Options per dataset (keyword arguments after ``seed``):

    * ``digits``: ``train_fraction=0.25``, ``validation_fraction=0.25`` (test gets the rest, 0.5). The
      split is stratified and fixed by ``seed``: 449 / 449 / 899 of the 1797 images by default, a small
      training set on purpose, so that an unregularized MLP overfits visibly. Pixels are scaled by 1/16.
    * ``diabetes``, ``breast_cancer``, ``wine``, ``iris``: ``validation_fraction`` (0.12 for diabetes, 300
      training examples; else 0.2), ``test_fraction=0.2``: scikit-learn's ``train_test_split`` (stratified
      for the classification sets), features (and diabetes' target) standardized with train statistics.
    * ``sample_images``: ``n_train=512``, ``n_validation=128``, ``n_test=128`` crops (even: half per photo).
    * ``synthetic_regression``: ``n_train=100``, ``n_validation=1000``, ``n_test=1000``,
      ``num_features=10``, ``noise_std=0.5``. ``y = x @ w + noise_std * eps`` with ``x, eps ~ N(0, 1)`` and
      ``w ~ N(0, I)`` shared by the splits; every split is an independent draw. ``y`` is float32 ``(n, 1)``.
    * ``synthetic_sequences``: ``n_train=2000``, ``n_validation=1000``, ``n_test=1000``, ``vocab_size=32``,
      ``length=16``, ``label_noise=0.0``. Tokens in ``[1, vocab_size)`` (0 is never used, as padding
      would be); label 1 iff the first token occurs again later in the sequence, which happens for half the
      examples. Token counts alone cannot tell (which token is first matters), one attention head can.
      ``label_noise`` flips that fraction of labels at random.
    * ``mnist``, ``fashion_mnist``, ``cifar10``: ``validation_fraction=0.1`` (stratified from TFDS train),
      ``standardize=False``: pixels are ``/ 255``; with ``standardize=True`` they are then standardized per
      channel with the conventional constants (MNIST mean 0.1307, std 0.3081; Fashion-MNIST 0.2860, 0.3530;
      CIFAR-10 (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)).
    * ``ag_news_subset`` (title + " " + description, 4 classes), ``imdb_reviews`` (2 classes):
      ``validation_fraction=0.1``, ``max_length`` (128, resp. 512) byte tokens, see :func:`byte_tokenize`.
    * ``PATH.npz`` (a user's arrays, :mod:`jaxreg.experiments.user_data`): ``task=None`` (the dtype rule, or
      the CLI's ``--task``), ``validation_fraction=0.2`` (carved from train when the file has no ``x_val``).

    Args:
      name: dataset name (see :func:`list_datasets`; the CLI's default is ``DEFAULT_DATASET = "digits"``) or
        the path of an ``.npz`` file.
      split: ``"train"``, ``"validation"`` or ``"test"``.
      data_dir: TFDS data directory holding prepared ArrayRecord data; ``None`` means ``$TFDS_DATA_DIR`` or
        ``~/tensorflow_datasets``. Ignored by the bundled and synthetic sets.
      seed: non-negative integer fixing the split and the synthetic draws.
      **options: dataset-specific options listed above.

    Returns:
      ``(x, y)``: ``x`` float32 ``(n, *input_shape)`` (images NHWC) or int32 tokens ``(n, length)``; ``y``
      int32 class labels ``(n,)``, or float32 targets ``(n, 1)`` for the regression sets.

    Raises:
      ValueError: unknown ``name`` (the message lists the names) or ``split``, or a bad option value.
      TypeError: an option the dataset does not take.
      DatasetUnavailableError: a TFDS set that is not prepared in ``data_dir``; nothing is downloaded.

    Example:
      >>> import jaxreg as jr
      >>> x, y = jr.data.load("digits", split="train", seed=0)
      >>> print(x.shape, x.dtype, y.shape, y.dtype, float(x.max()))
      (449, 8, 8, 1) float32 (449,) int32 1.0
    """
    if user_data.is_npz_path(name):
        loader = functools.partial(user_data.load_npz, name)
    else:
        loader = _check_name(name).loader
    check_choice("split", split, SPLITS)
    seed = check_positive_int("seed", seed, minimum=0)
    parameters = inspect.signature(loader).parameters.values()
    accepted = [p.name for p in parameters if p.kind is p.KEYWORD_ONLY]
    unexpected = sorted(set(options) - set(accepted))
    if unexpected:
        raise TypeError(
            f"load({name!r}) got unexpected option(s) {', '.join(unexpected)}; "
            f"{name!r} accepts: {', '.join(accepted) or 'none'}."
        )
    if user_data.is_npz_path(name):
        return loader(split, seed, **options)
    return loader(split, _resolve_data_dir(data_dir), seed, **options)
