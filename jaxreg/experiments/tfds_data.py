"""TFDS datasets for :mod:`jaxreg.experiments.data`: read prepared ArrayRecord offline, or prepare them.

Reading (:func:`tfds_image_loader`, :func:`tfds_text_loader`) goes through ``tfds.data_source`` on ArrayRecord
files already prepared in ``data_dir``: no TensorFlow, never a download; when they are not there,
:class:`DatasetUnavailableError` says how to prepare them. :func:`prepare` (``jaxreg datasets prepare``) is
the one place that downloads, for ``mnist``, ``fashion_mnist`` and ``cifar10``, by one of two routes:

* ``array_record``: ``tfds.builder(name).download_and_prepare(file_format="array_record")``. TFDS 4.9 needs
  ``tensorflow`` for it (the builders yield numpy images, which TFDS PNG-encodes through a TensorFlow graph:
  without TensorFlow, ``tfds.features.Image().encode_example(array)`` raises ``ModuleNotFoundError:
  tensorflow``) and ``importlib_resources`` (``tensorflow_datasets.core.dataset_builder`` imports it lazily
  but declares it only for Python < 3.9: without it ``tfds.data_source(name, download=True)`` fails with
  ``ModuleNotFoundError: importlib_resources`` before any download). Reading the result needs neither
  TensorFlow nor network.
* ``npz``: ``keras.datasets.<name>.load_data()`` (Keras 3, any backend) written with ``numpy.savez`` as the
  arrays ``x_train, y_train, x_test, y_test`` that ``--dataset PATH.npz`` reads
  (:mod:`jaxreg.experiments.user_data`).

Both download from ``storage.googleapis.com``; :func:`prepare` first checks in 3 seconds that the host
answers and otherwise fails at once with one paragraph (what it tried, what it needs, the alternatives)
instead of TFDS' minutes of retries.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import re
import socket
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from jaxreg._optional import require
from jaxreg._validate import check_choice, check_in_range, check_positive_int
from jaxreg.experiments.bundled import split_indices

tfds = require("tensorflow_datasets", extra="data", user="jaxreg.experiments.data")

__all__ = [
    "BYTE_VOCAB_SIZE",
    "PREPARABLE",
    "TFDS",
    "DatasetUnavailableError",
    "byte_tokenize",
    "prepare",
    "prepared_version",
    "tfds_image_loader",
    "tfds_text_loader",
]

# Byte-level text: token = byte + 1, so 0 is free for padding.
BYTE_VOCAB_SIZE = 257


class DatasetUnavailableError(RuntimeError):
    """A TFDS dataset is not prepared in ``data_dir`` (jaxreg will not download it), or :func:`prepare` failed.

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


class _TfdsSpec(NamedTuple):
    config: str | None  # builder config, part of the on-disk path (imdb_reviews/plain_text/1.0.0)
    feature_keys: tuple[str, ...]  # one image key, or text keys joined with a space
    text: bool
    input_shape: tuple[int, ...]
    num_classes: int
    mean: tuple[float, ...] | None = None  # conventional per-channel statistics of the [0, 1] train pixels
    std: tuple[float, ...] | None = None
    max_length: int = 0


TFDS = {
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
    config = TFDS[name].config
    return data_dir / name / config if config else data_dir / name


def prepared_version(name: str, data_dir: Path, tfds_splits: Sequence[str]) -> str | None:
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
    prepare_command = f"jaxreg datasets prepare {name} --data-dir {data_dir}"
    npz_hint = ""
    if name in PREPARABLE:
        npz_hint = (f" Without TFDS: `jaxreg datasets prepare {name} --format npz --out {name}.npz` (keras) and "
                    f"`--dataset {name}.npz`.")
    return (
        f"Dataset {name!r} is not available offline: no prepared ArrayRecord data for its train and test "
        f"splits was found in {str(folder)!r} (data_dir={str(data_dir)!r}){tfrecord_hint}. jaxreg never "
        "downloads data while loading. To prepare it, on a machine with internet access and tensorflow "
        f"installed run `{prepare_command}` or `tfds build {name} --data_dir={data_dir} "
        "--file_format=array_record`, then copy that data_dir to this machine and pass it as data_dir "
        f"(or set TFDS_DATA_DIR).{npz_hint} To run offline right now, use a bundled dataset instead: "
        "`--dataset digits` (`jaxreg datasets` lists them)."
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
    spec = TFDS[name]
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
    check_in_range("validation_fraction", validation_fraction, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
    version = prepared_version(name, data_dir, ("train", "test"))
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


def tfds_image_loader(name: str) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """The registry's loader of TFDS image set ``name``: ``load(split, data_dir, seed, *, validation_fraction=0.1,
    standardize=False) -> (x, y)``, pixels / 255 (NHWC float32), optionally standardized per channel.

    Example:
      >>> from jaxreg.experiments.tfds_data import tfds_image_loader
      >>> callable(tfds_image_loader("mnist"))
      True
    """
    spec = TFDS[name]

    def load_images(
        split: str, data_dir: Path, seed: int, *, validation_fraction: float = 0.1, standardize: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        images, labels = _tfds_examples(name, split, data_dir, seed, validation_fraction)
        x = images.astype(np.float32) / np.float32(255.0)
        if standardize:
            x = (x - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
        return x, np.array(labels)

    return load_images


def tfds_text_loader(name: str) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """The registry's loader of TFDS text set ``name``: ``load(split, data_dir, seed, *, validation_fraction=0.1,
    max_length=...) -> (tokens, y)``, byte-level tokens (:func:`byte_tokenize`).

    Example:
      >>> from jaxreg.experiments.tfds_data import tfds_text_loader
      >>> callable(tfds_text_loader("imdb_reviews"))
      True
    """
    spec = TFDS[name]

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
# Preparing MNIST, Fashion-MNIST and CIFAR-10 (`jaxreg datasets prepare`): the one place that downloads
# ----------------------------------------------------------------------------------------------------------

PREPARABLE = ("mnist", "fashion_mnist", "cifar10")
FORMATS = ("array_record", "npz")
# TFDS and Keras both fetch these sets from Google Cloud Storage.
DOWNLOAD_HOST = "storage.googleapis.com"
# Approximate megabytes: (download, prepared ArrayRecord data_dir, uint8 npz).
_DISK_MB = {"mnist": (12, 21, 55), "fashion_mnist": (30, 37, 55), "cifar10": (163, 133, 185)}


def _reachable(host: str, timeout: float) -> bool:
    """Whether a TCP connection to ``host:443`` opens within ``timeout`` seconds (DNS included)."""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _missing(modules: Sequence[str]) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def _prepare_failure(name: str, data_dir: Path, file_format: str, out: Path, reason: str) -> DatasetUnavailableError:
    download, prepared, npz = _DISK_MB[name]
    if file_format == "array_record":
        tried = (f"tfds.builder({name!r}, data_dir={str(data_dir)!r}).download_and_prepare("
                 "file_format='array_record')")
        needs = (f"`pip install tensorflow importlib_resources array-record` (TFDS PNG-encodes the images through "
                 f"TensorFlow), internet access to {DOWNLOAD_HOST}, and about {download + prepared} MB of disk "
                 f"in {str(data_dir)!r}")
    else:
        tried = f"keras.datasets.{name}.load_data() written to {str(out)!r}"
        needs = (f"`pip install keras` (any backend), internet access to {DOWNLOAD_HOST}, and about "
                 f"{download + npz} MB of disk (Keras caches the download in ~/.keras/datasets)")
    snippet = (f"`import keras, numpy as np; (x_train, y_train), (x_test, y_test) = keras.datasets.{name}"
               f".load_data(); np.savez('{name}.npz', x_train=x_train, y_train=y_train, x_test=x_test, "
               "y_test=y_test)`")
    return DatasetUnavailableError(
        f"Could not prepare {name!r}: {reason}. Tried: {tried}. That needs {needs}. Alternatives: copy a "
        f"data_dir prepared on a connected machine (`jaxreg datasets prepare {name} --data-dir DIR` there) to "
        "this machine and pass `--data-dir DIR` (or set TFDS_DATA_DIR); or, on a connected machine with keras, "
        f"write an npz with {snippet}, copy it here and run with `--dataset {name}.npz`; or run offline now on "
        "a bundled dataset (`--dataset digits`; `jaxreg datasets` lists them)."
    )


def prepare(name: str, *, data_dir: str | os.PathLike | None = None, file_format: str = "array_record",
            out: str | os.PathLike | None = None, timeout: float = 3.0) -> Path:
    """Download and prepare ``mnist``, ``fashion_mnist`` or ``cifar10`` for offline use; return where it is.

    ``array_record`` (default) prepares the TFDS data_dir that ``--data-dir`` / ``TFDS_DATA_DIR`` reads (and
    returns at once, without network, when it is already prepared there). ``npz`` writes the Keras arrays
    ``x_train, y_train, x_test, y_test`` (uint8 pixels, integer labels) to ``out`` for ``--dataset PATH.npz``.
    Before downloading, ``DOWNLOAD_HOST`` must answer within ``timeout`` seconds.

    Args:
      name: one of :data:`PREPARABLE`.
      data_dir: the TFDS data directory (``None``: ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
      file_format: ``"array_record"`` or ``"npz"``.
      out: the npz file (default ``NAME.npz`` in the working directory); ``npz`` only.
      timeout: seconds to wait for the download host.

    Returns:
      The prepared version folder (``array_record``) or the npz file.

    Raises:
      ValueError: an unknown name or format.
      DatasetUnavailableError: a missing package or no network; one paragraph saying what was tried, what it
        needs (packages, internet, disk) and the alternatives.

    Example:
      >>> import tempfile
      >>> from jaxreg.experiments import tfds_data
      >>> with tempfile.TemporaryDirectory() as empty_dir:
      ...     try:
      ...         tfds_data.prepare("mnist", data_dir=empty_dir, timeout=1e-9)
      ...     except tfds_data.DatasetUnavailableError as err:
      ...         print(str(err)[:25])
      Could not prepare 'mnist'
    """
    check_choice("name", name, PREPARABLE)
    check_choice("file_format", file_format, FORMATS)
    directory = Path(os.path.abspath(os.path.expanduser(os.fspath(
        data_dir if data_dir is not None else os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"))))
    target = Path(os.fspath(out)) if out is not None else Path(f"{name}.npz")
    if file_format == "array_record":
        version = prepared_version(name, directory, ("train", "test"))
        if version is not None:
            return _dataset_folder(name, directory) / version
        missing = _missing(("tensorflow", "importlib_resources", "array_record"))
        if missing:
            raise _prepare_failure(name, directory, file_format, target,
                                   f"missing Python package(s) {', '.join(missing)}")
    elif _missing(("keras",)):
        raise _prepare_failure(name, directory, file_format, target, "missing Python package keras")
    if not _reachable(DOWNLOAD_HOST, timeout):
        raise _prepare_failure(name, directory, file_format, target,
                               f"{DOWNLOAD_HOST} did not answer within {timeout:g} s (offline?)")
    if file_format == "array_record":
        builder = tfds.builder(name, data_dir=str(directory), file_format="array_record")
        builder.download_and_prepare()
        return Path(builder.data_dir)
    # Keras 3 defaults to the TensorFlow backend; jax is always here (keras.datasets itself needs no backend).
    os.environ.setdefault("KERAS_BACKEND", "jax")
    (x_train, y_train), (x_test, y_test) = importlib.import_module(f"keras.datasets.{name}").load_data()
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as f:  # a file object: savez would append .npz to a name without it
        np.savez(f, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return target
