"""Datasets as numpy arrays: bundled digits, synthetic tasks, and TFDS sets read offline (the lab).

:func:`load` returns ``(x, y)`` numpy arrays for one of three splits, ``"train"``, ``"validation"`` and
``"test"``, always the same arrays for the same ``seed``:

========================  =========  ================================  ====================================
name                      source     x                                 y
========================  =========  ================================  ====================================
``digits`` (default)      bundled    float32 (n, 8, 8, 1) in [0, 1]    int32 (n,), 10 classes
``synthetic_regression``  synthetic  float32 (n, 10)                   **float32** (n, 1) regression target
``synthetic_sequences``   synthetic  int32 tokens (n, 16), vocab 32    int32 (n,), 2 classes
``mnist``                 TFDS       float32 (n, 28, 28, 1) in [0, 1]  int32 (n,), 10 classes
``fashion_mnist``         TFDS       float32 (n, 28, 28, 1) in [0, 1]  int32 (n,), 10 classes
``cifar10``               TFDS       float32 (n, 32, 32, 3) in [0, 1]  int32 (n,), 10 classes
``ag_news_subset``        TFDS       int32 bytes (n, 128), vocab 257   int32 (n,), 4 classes
``imdb_reviews``          TFDS       int32 bytes (n, 512), vocab 257   int32 (n,), 2 classes
========================  =========  ================================  ====================================

Images are NHWC (a model that wants vectors flattens them). Bundled and synthetic sets always work offline.
TFDS sets are read with ``tfds.data_source`` from ArrayRecord files that must already be prepared in
``data_dir`` (no TensorFlow, never a download); when they are not, :class:`DatasetUnavailableError` says how
to prepare them. TFDS has no validation split for these sets, so it is carved, stratified, from TFDS
``train`` with the seed; ``test`` is TFDS ``test``. Text is tokenized byte-level (:func:`byte_tokenize`):
UTF-8 byte ``b`` becomes token ``b + 1``, 0 pads. Decoded TFDS splits are cached in-process (4 entries),
so loading ``train`` then ``validation`` reads the records once.
"""

from __future__ import annotations

import functools
import inspect
import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from jaxreg._optional import require
from jaxreg._validate import check_choice, check_in_range, check_positive_int
from jaxreg.experiments.synthetic import SPLITS, load_synthetic_regression, load_synthetic_sequences

tfds = require("tensorflow_datasets", extra="data", user="jaxreg.experiments.data")
require("sklearn", extra="data", user="jaxreg.experiments.data")  # the bundled digits

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

# Byte-level text: token = byte + 1, so 0 is free for padding.
_BYTE_VOCAB_SIZE = 257


class DatasetUnavailableError(RuntimeError):
    """A TFDS dataset is not prepared in ``data_dir`` and jaxreg will not download it.

    The message is one paragraph meant for an end user (the CLI prints it without a traceback): which
    dataset, which directory was searched, how to prepare the data on a connected machine, and the offline
    alternative.

    Example:
      >>> import tempfile
      >>> import jaxreg as jr
      >>> with tempfile.TemporaryDirectory() as empty_dir:
      ...     try:
      ...         jr.data.load("mnist", split="train", data_dir=empty_dir)
      ...     except jr.data.DatasetUnavailableError as e:
      ...         print(str(e)[:45])
      Dataset 'mnist' is not available offline: no
    """


class DatasetInfo(NamedTuple):
    """What a model needs to know about a dataset, without loading it.

    Fields describe the default options of :func:`load` (e.g. ``synthetic_sequences`` with ``length=16``).
    """

    name: str
    input_shape: tuple[int, ...]  # per example, e.g. (8, 8, 1) NHWC without N, or (16,) tokens
    num_classes: int | None  # None for regression
    task: str  # "classification" | "regression"
    offline: bool  # loadable right now without network (bundled, synthetic, or prepared in data_dir)
    num_outputs: int  # width of the model's last layer: num_classes, or regression targets
    input_dtype: str  # "float32" (features/pixels) or "int32" (token ids)
    vocab_size: int | None  # token vocabulary for int32 inputs (0 is padding), else None
    source: str  # "bundled" | "synthetic" | "tfds"
    description: str


# ----------------------------------------------------------------------------------------------------------
# Splits
# ----------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------
# Bundled and synthetic sets
# ----------------------------------------------------------------------------------------------------------


def _check_fraction(name: str, value: float) -> None:
    check_in_range(name, value, 0.0, 1.0, low_inclusive=False, high_inclusive=False)


@functools.cache
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images.astype(np.float32) / np.float32(16.0))[..., None]
    labels = digits.target.astype(np.int32)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def _load_digits(
    split: str, data_dir: Path, seed: int, *, train_fraction: float = 0.25, validation_fraction: float = 0.25
) -> tuple[np.ndarray, np.ndarray]:
    del data_dir  # bundled with scikit-learn
    _check_fraction("train_fraction", train_fraction)
    _check_fraction("validation_fraction", validation_fraction)
    test_fraction = 1.0 - train_fraction - validation_fraction
    if test_fraction < 1e-9:  # not `<= 0`: 1 - 0.7 - 0.3 is 5.6e-17
        raise ValueError(
            "train_fraction + validation_fraction must be < 1 to leave a test split, got "
            f"train_fraction = {train_fraction}, validation_fraction = {validation_fraction}."
        )
    images, labels = _digits_arrays()
    parts = split_indices(labels, fractions=(train_fraction, validation_fraction, test_fraction), seed=seed)
    idx = parts[SPLITS.index(split)]
    return images[idx], labels[idx]


# ----------------------------------------------------------------------------------------------------------
# TFDS sets (ArrayRecord through tfds.data_source: no TensorFlow, no download)
# ----------------------------------------------------------------------------------------------------------


class _TfdsSpec(NamedTuple):
    config: str | None  # builder config, part of the on-disk path (imdb_reviews/plain_text/1.0.0)
    feature_keys: tuple[str, ...]  # one image key, or text keys joined with a space
    text: bool
    input_shape: tuple[int, ...]
    num_classes: int
    mean: tuple[float, ...] | None = None  # conventional per-channel statistics of the [0, 1] train pixels
    std: tuple[float, ...] | None = None
    max_length: int = 0


_TFDS = {
    "mnist": _TfdsSpec(None, ("image",), False, (28, 28, 1), 10, (0.1307,), (0.3081,)),
    "fashion_mnist": _TfdsSpec(None, ("image",), False, (28, 28, 1), 10, (0.2860,), (0.3530,)),
    "cifar10": _TfdsSpec(
        None, ("image",), False, (32, 32, 3), 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    ),
    "ag_news_subset": _TfdsSpec(None, ("title", "description"), True, (128,), 4, max_length=128),
    "imdb_reviews": _TfdsSpec("plain_text", ("text",), True, (512,), 2, max_length=512),
}

_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")


def _dataset_folder(name: str, data_dir: Path) -> Path:
    config = _TFDS[name].config
    return data_dir / name / config if config else data_dir / name


def _prepared_version(name: str, data_dir: Path, tfds_splits: Sequence[str]) -> str | None:
    """Newest version folder holding dataset_info.json and ArrayRecord shards of every split, else None."""
    folder = _dataset_folder(name, data_dir)
    if not folder.is_dir():
        return None
    ready = []
    for version_dir in folder.iterdir():
        if not (_VERSION_RE.match(version_dir.name) and (version_dir / "dataset_info.json").is_file()):
            continue
        if all(any(version_dir.glob(f"{name}-{s}.array_record*")) for s in tfds_splits):
            ready.append(version_dir.name)
    return max(ready, key=lambda v: tuple(int(p) for p in v.split(".")), default=None)


def _unavailable_message(name: str, data_dir: Path) -> str:
    folder = _dataset_folder(name, data_dir)
    tfrecord_hint = ""
    if folder.is_dir() and any(folder.glob("*/*.tfrecord*")):
        tfrecord_hint = (
            f" (TFRecord files were found in {str(folder)!r}, but tfds.data_source reads only ArrayRecord, "
            "so rebuild with --file_format=array_record)"
        )
    return (
        f"Dataset {name!r} is not available offline: no prepared ArrayRecord data for its train and test "
        f"splits was found in {str(folder)!r} (data_dir={str(data_dir)!r}){tfrecord_hint}. jaxreg never "
        "downloads data itself. To prepare it, on a machine with internet access run "
        f"`tfds build {name} --data_dir={data_dir} --file_format=array_record` or, in Python, "
        f"`tensorflow_datasets.data_source({name!r}, data_dir={str(data_dir)!r})` (which downloads and "
        "prepares it), then copy that data_dir to this machine and pass it as data_dir (or set "
        "TFDS_DATA_DIR). To run offline right now, use the bundled dataset instead: `--dataset digits`."
    )


_READ_CHUNK = 4096


def _examples(source: Sequence[Any]) -> Iterator[Any]:
    """Every example of a data source, read in chunks.

    ``__getitems__`` reads a chunk of ArrayRecord records at once (about 40% faster than one ``[i]`` per
    record on MNIST); a source without a working one (``tfds.testing.mock_data``'s, in tfds 4.9) is read
    one index at a time, which raises any genuine read error again.
    """
    n = len(source)
    for start in range(0, n, _READ_CHUNK):
        keys = list(range(start, min(start + _READ_CHUNK, n)))
        try:
            chunk = source.__getitems__(keys)
        except (AttributeError, TypeError):
            chunk = [source[i] for i in keys]
        yield from chunk


@functools.lru_cache(maxsize=4)
def _read_tfds_split(name: str, version: str, tfds_split: str, data_dir: str) -> tuple[Any, np.ndarray]:
    """All examples of one TFDS split: (uint8 images or a tuple of UTF-8 byte strings, int32 labels)."""
    spec = _TFDS[name]
    full_name = f"{name}/{spec.config}:{version}" if spec.config else f"{name}:{version}"
    source = tfds.data_source(full_name, split=tfds_split, data_dir=data_dir, download=False, try_gcs=False)
    n = len(source)
    labels = np.empty(n, np.int32)
    if spec.text:
        texts = []
        for i, example in enumerate(_examples(source)):
            texts.append(b" ".join(_as_bytes(example[k]) for k in spec.feature_keys))
            labels[i] = example["label"]
        labels.flags.writeable = False
        return tuple(texts), labels
    images = np.empty((n, *spec.input_shape), np.uint8)
    for i, example in enumerate(_examples(source)):
        images[i] = example[spec.feature_keys[0]]
        labels[i] = example["label"]
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def _as_bytes(value: Any) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _tfds_examples(
    name: str, split: str, data_dir: Path, seed: int, validation_fraction: float
) -> tuple[Any, np.ndarray]:
    _check_fraction("validation_fraction", validation_fraction)
    version = _prepared_version(name, data_dir, ("train", "test"))
    if version is None:
        raise DatasetUnavailableError(_unavailable_message(name, data_dir))
    if split == "test":
        return _read_tfds_split(name, version, "test", str(data_dir))
    inputs, labels = _read_tfds_split(name, version, "train", str(data_dir))
    parts = split_indices(labels, fractions=(1.0 - validation_fraction, validation_fraction), seed=seed)
    idx = parts[0] if split == "train" else parts[1]
    if isinstance(inputs, tuple):
        return tuple(inputs[i] for i in idx), labels[idx]
    return inputs[idx], labels[idx]


def _tfds_image_loader(name: str) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    spec = _TFDS[name]

    def load_images(
        split: str, data_dir: Path, seed: int, *, validation_fraction: float = 0.1, standardize: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        images, labels = _tfds_examples(name, split, data_dir, seed, validation_fraction)
        x = images.astype(np.float32) / np.float32(255.0)
        if standardize:
            x = (x - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
        return x, np.array(labels)

    return load_images


def _tfds_text_loader(name: str) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    spec = _TFDS[name]

    def load_text(
        split: str,
        data_dir: Path,
        seed: int,
        *,
        validation_fraction: float = 0.1,
        max_length: int = spec.max_length,
    ) -> tuple[np.ndarray, np.ndarray]:
        texts, labels = _tfds_examples(name, split, data_dir, seed, validation_fraction)
        return byte_tokenize(texts, max_length=max_length), np.array(labels)

    return load_text


def byte_tokenize(texts: Sequence[str | bytes], *, max_length: int) -> np.ndarray:
    """Byte-level tokens: UTF-8 byte ``b`` becomes ``b + 1``; truncated or 0-padded to ``max_length``.

    Args:
      texts: strings (encoded as UTF-8) or byte strings.
      max_length: tokens per text, at least 1.

    Returns:
      int32 array of shape ``(len(texts), max_length)`` with values in ``[0, 256]`` (vocabulary 257, 0 = pad).

    Raises:
      ValueError: if ``max_length`` < 1.

    Example:
      >>> import jaxreg as jr
      >>> print(jr.data.byte_tokenize(["hi", b"abc"], max_length=4))
      [[105 106   0   0]
       [ 98  99 100   0]]
    """
    max_length = check_positive_int("max_length", max_length)
    tokens = np.zeros((len(texts), max_length), np.int32)
    for row, text in enumerate(texts):
        data = np.frombuffer(_as_bytes(text)[:max_length], np.uint8)
        tokens[row, : data.size] = data.astype(np.int32) + 1
    return tokens


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


def _build_registry() -> dict[str, _Entry]:
    registry = {
        "digits": _Entry(
            _load_digits,
            _classification_info(
                "digits", (8, 8, 1), 10, "bundled",
                "scikit-learn's 1797 8x8 handwritten digits, / 16; stratified 25/25/50 train/validation/test",
                None,
            ),
        ),
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
    }
    for name, spec in _TFDS.items():
        if spec.text:
            loader = _tfds_text_loader(name)
            what, vocab_size = "byte-level tokens of " + " + ".join(spec.feature_keys), _BYTE_VOCAB_SIZE
        else:
            loader, what, vocab_size = _tfds_image_loader(name), "images / 255, NHWC", None
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
        raise ValueError(f"Unknown dataset name = {name!r}; available datasets: {names}.")
    return _REGISTRY[name]


def info(name: str, *, data_dir: str | os.PathLike | None = None) -> DatasetInfo:
    """Metadata of a dataset (shapes, classes, task) and whether it loads offline from ``data_dir`` now.

    Args:
      name: a dataset name (see :func:`list_datasets`).
      data_dir: TFDS data directory; ``None`` means ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``.

    Returns:
      A :class:`DatasetInfo`; shapes are per example and describe :func:`load`'s default options.

    Raises:
      ValueError: for an unknown name (the message lists the known ones).

    Example:
      >>> import jaxreg as jr
      >>> i = jr.data.info("mnist")
      >>> print(i.input_shape, i.num_classes, i.task, i.source)
      (28, 28, 1) 10 classification tfds
    """
    entry = _check_name(name)
    if entry.info.source != "tfds":
        return entry.info
    offline = _prepared_version(name, _resolve_data_dir(data_dir), ("train", "test")) is not None
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
      ...     for i in jr.data.list_datasets(data_dir=empty_dir)[:4]:
      ...         print(i.name, i.offline)
      digits True
      synthetic_regression True
      synthetic_sequences True
      mnist False
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
      ['digits', 'synthetic_regression', 'synthetic_sequences']
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

    Args:
      name: dataset name (see :func:`list_datasets`); the CLI's default is ``DEFAULT_DATASET = "digits"``.
      split: ``"train"``, ``"validation"`` or ``"test"``.
      data_dir: TFDS data directory holding prepared ArrayRecord data; ``None`` means ``$TFDS_DATA_DIR`` or
        ``~/tensorflow_datasets``. Ignored by the bundled and synthetic sets.
      seed: non-negative integer fixing the split and the synthetic draws.
      **options: dataset-specific options listed above.

    Returns:
      ``(x, y)``: ``x`` float32 ``(n, *input_shape)`` (images NHWC) or int32 tokens ``(n, length)``; ``y``
      int32 class labels ``(n,)``, or float32 targets ``(n, 1)`` for ``synthetic_regression``.

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
    entry = _check_name(name)
    check_choice("split", split, SPLITS)
    seed = check_positive_int("seed", seed, minimum=0)
    parameters = inspect.signature(entry.loader).parameters.values()
    accepted = [p.name for p in parameters if p.kind is p.KEYWORD_ONLY]
    unexpected = sorted(set(options) - set(accepted))
    if unexpected:
        raise TypeError(
            f"load({name!r}) got unexpected option(s) {', '.join(unexpected)}; "
            f"{name!r} accepts: {', '.join(accepted) or 'none'}."
        )
    return entry.loader(split, _resolve_data_dir(data_dir), seed, **options)
