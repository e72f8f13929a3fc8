"""A user's own arrays as a dataset: ``--dataset PATH.npz`` (:mod:`jaxreg.experiments.data` routes it here).

The file (``numpy.savez``; read with ``allow_pickle=False``) holds ``x_train``, ``y_train``, ``x_test``,
``y_test`` and optionally ``x_val`` with ``y_val``; without them, validation is carved from train: a seeded
fraction (:data:`VALIDATION_FRACTION` = 0.2) by scikit-learn's ``train_test_split``, stratified by label for
classification (unstratified when a class has fewer than 2 training examples).

* ``x``: any numeric shape ``(n, ...)``, cast to float32 unchanged, except uint8 arrays, which are taken as
  pixels and scaled by 1/255, and 3-D uint8 arrays ``(n, H, W)`` (MNIST as Keras returns it), which also get
  a channel axis, ``(n, H, W, 1)``: NHWC, like the registered image sets.
* ``y``: the task follows its dtype unless ``task`` (``--task``) says otherwise: integer (or bool) labels
  mean classification with ``num_classes = max + 1`` (int32, shape ``(n,)``; ``(n, 1)`` is flattened),
  floats mean regression (float32, a 1-D ``y`` becomes ``(n, 1)``). Classification labels must be
  non-negative integers (floats such as ``3.0`` are accepted with ``task="classification"``).

Every problem is a ``ValueError`` of one line naming the file and the array. The arrays are read and checked
once per process (cached on the path, its size and its modification time).
"""

from __future__ import annotations

import functools
import os
import zipfile
from typing import NamedTuple

import numpy as np

__all__ = ["VALIDATION_FRACTION", "TASKS", "NpzSummary", "is_npz_path", "load_npz", "set_task", "summary"]

VALIDATION_FRACTION = 0.2
TASKS = ("classification", "regression")
_REQUIRED = ("x_train", "y_train", "x_test", "y_test")

# The CLI's --task for a file, remembered by arguments.check_common_arguments so that every later
# data.info / data.load of the same path (in a story that knows nothing of --task) agrees with it.
_TASKS_BY_PATH: dict[str, str] = {}


class NpzSummary(NamedTuple):
    """What :func:`jaxreg.experiments.data.info` needs to know about a checked file."""

    task: str  # "classification" | "regression"
    input_shape: tuple[int, ...]
    num_classes: int | None
    num_outputs: int
    sizes: tuple[int, int, int]  # train, validation, test (a carved validation: with the default fraction)
    carved: bool  # validation carved from train (no x_val / y_val in the file)


def is_npz_path(name: str) -> bool:
    """Whether a ``--dataset`` value names a file: it ends in ``.npz`` or is an existing file.

    Example:
      >>> from jaxreg.experiments.user_data import is_npz_path
      >>> is_npz_path("runs/my_data.npz"), is_npz_path("digits")
      (True, False)
    """
    return str(name).endswith(".npz") or os.path.isfile(name)


def set_task(path: str, task: str | None) -> None:
    """Remember ``--task`` for ``path`` (``None`` forgets it): later :func:`summary` / :func:`load_npz` use it.

    Raises:
      ValueError: a task other than ``"classification"`` or ``"regression"``.
    """
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got task = {task!r}.")
    key = os.path.abspath(os.path.expanduser(path))
    if task is None:
        _TASKS_BY_PATH.pop(key, None)
    else:
        _TASKS_BY_PATH[key] = task


def _fail(path: str, message: str) -> ValueError:
    return ValueError(f"dataset file {path!r}: {message}")


def _read_array(archive, path: str, key: str) -> np.ndarray:
    try:
        array = archive[key]
    except ValueError:  # numpy: "Object arrays cannot be loaded when allow_pickle=False"
        raise _fail(path, f"array {key!r} holds Python objects (dtype=object); save plain numeric arrays "
                          "(np.savez without allow_pickle)") from None
    if array.dtype.kind not in "biuf":
        raise _fail(path, f"array {key!r} has dtype {array.dtype}; numeric arrays are needed")
    if array.ndim == 0 or array.shape[0] == 0:
        raise _fail(path, f"array {key!r} has shape {array.shape}; it needs at least one example")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise _fail(path, f"array {key!r} holds NaN or infinite values")
    return array


def _features(path: str, key: str, x: np.ndarray) -> np.ndarray:
    if x.ndim < 2:
        raise _fail(path, f"{key} has shape {x.shape}; it needs (n, features...), e.g. x.reshape(-1, 1)")
    if x.dtype == np.uint8:
        x = (x.astype(np.float32) / np.float32(255.0))
        return x[..., None] if x.ndim == 3 else x
    return x.astype(np.float32)


def _targets(path: str, key: str, y: np.ndarray, task: str) -> np.ndarray:
    if y.ndim > 2 or (task == "classification" and y.ndim == 2 and y.shape[1] != 1):
        want = "(n,) or (n, 1) class labels" if task == "classification" else "(n,) or (n, k) targets"
        raise _fail(path, f"{key} has shape {y.shape}; {task} needs {want}")
    if task == "regression":
        return y.astype(np.float32).reshape(len(y), -1)
    y = y.reshape(-1)
    if y.dtype.kind == "f" and not np.all(y == np.round(y)):
        raise _fail(path, f"{key} holds non-integral labels; classification needs integer class labels "
                          "(or use --task regression)")
    if np.any(y < 0):
        raise _fail(path, f"{key} holds negative labels (min {y.min():g}); class labels must be 0, 1, 2, ...")
    return y.astype(np.int32)


@functools.lru_cache(maxsize=4)
def _checked(path: str, size: int, mtime_ns: int, task: str | None) -> tuple[dict[str, tuple], NpzSummary]:
    """The file's arrays, converted and checked (read-only), and their summary; the key includes size and mtime."""
    del size, mtime_ns  # only part of the cache key: a rewritten file is read again
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise _fail(path, f"not a readable .npz file ({err})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise _fail(path, "not an .npz archive (np.savez writes one)")
    with archive:
        keys = set(archive.files)
        for key in (*_REQUIRED, *(("x_val", "y_val") if keys & {"x_val", "y_val"} else ())):
            if key not in keys:
                raise _fail(path, f"missing array {key!r} (found: {', '.join(sorted(keys)) or 'none'}; needs "
                                  "x_train, y_train, x_test, y_test, optionally x_val with y_val)")
        names = {"train": "train", "test": "test", "validation": "val"}
        raw = {split: (_read_array(archive, path, f"x_{suffix}"), _read_array(archive, path, f"y_{suffix}"))
               for split, suffix in names.items() if f"x_{suffix}" in keys}
    for split, (x, y) in raw.items():
        if len(x) != len(y):
            suffix = names[split]
            raise _fail(path, f"x_{suffix} has {len(x)} examples but y_{suffix} has {len(y)}")
    for split, (x, _) in raw.items():
        if x.shape[1:] != raw["train"][0].shape[1:]:
            raise _fail(path, f"x_{names[split]} examples have shape {x.shape[1:]}, x_train's "
                              f"{raw['train'][0].shape[1:]}")
    if task is None:
        task = "classification" if raw["train"][1].dtype.kind in "biu" else "regression"
    arrays = {}
    for split, (x, y) in raw.items():
        arrays[split] = (_features(path, f"x_{names[split]}", x), _targets(path, f"y_{names[split]}", y, task))
    widths = {y.shape[1:] for _, y in arrays.values()}
    if len(widths) > 1:
        raise _fail(path, f"the y arrays have different target shapes {sorted(widths)}")
    for x, y in arrays.values():
        x.flags.writeable = False
        y.flags.writeable = False
    n_train = len(arrays["train"][1])
    carved = "validation" not in arrays
    n_validation = int(round(VALIDATION_FRACTION * n_train)) if carved else len(arrays["validation"][1])
    if carved and not 1 <= n_validation < n_train:
        raise _fail(path, f"x_train has {n_train} examples, too few to carve a validation split from; add "
                          "x_val and y_val")
    y_train = arrays["train"][1]
    if task == "classification":
        num_classes = num_outputs = max(int(y.max()) for _, y in arrays.values()) + 1
    else:
        num_classes, num_outputs = None, int(y_train.shape[1])
    info = NpzSummary(task, tuple(int(d) for d in arrays["train"][0].shape[1:]), num_classes, num_outputs,
                      (n_train - n_validation if carved else n_train, n_validation, len(arrays["test"][1])), carved)
    return arrays, info


def _arrays(path: str, task: str | None) -> tuple[dict[str, tuple], NpzSummary]:
    full = os.path.abspath(os.path.expanduser(path))
    if task is None:
        task = _TASKS_BY_PATH.get(full)
    elif task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got task = {task!r}.")
    try:
        stat = os.stat(full)
    except OSError:
        raise _fail(path, "no such file (--dataset takes a dataset name or a path to an .npz file)") from None
    if not os.path.isfile(full):
        raise _fail(path, "not a file")
    return _checked(full, stat.st_size, stat.st_mtime_ns, task)


def summary(path: str, *, task: str | None = None) -> NpzSummary:
    """Read and check the file once; return its task, shapes and split sizes.

    Args:
      path: the ``.npz`` file.
      task: ``"classification"`` or ``"regression"`` to override the dtype rule; ``None``: the task remembered
        by :func:`set_task`, else the dtype rule.

    Returns:
      An :class:`NpzSummary`.

    Raises:
      ValueError: one line naming the file and what is wrong with it.

    Example:
      >>> import os, tempfile
      >>> import numpy as np
      >>> from jaxreg.experiments.user_data import summary
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     path = os.path.join(tmp, "xor.npz")
      ...     x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]] * 5, np.float32)
      ...     np.savez(path, x_train=x, y_train=x[:, 0] != x[:, 1], x_test=x, y_test=x[:, 0] != x[:, 1])
      ...     print(summary(path))
      NpzSummary(task='classification', input_shape=(2,), num_classes=2, num_outputs=2, sizes=(16, 4, 20), carved=True)
    """
    return _arrays(path, task)[1]


def load_npz(path: str, split: str, seed: int, *, task: str | None = None,
             validation_fraction: float = VALIDATION_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """One split of a user's ``.npz`` file as ``(x, y)`` (see the module docstring for the conversions).

    Args:
      path: the ``.npz`` file.
      split: ``"train"``, ``"validation"`` or ``"test"``.
      seed: fixes the carved validation split (unused when the file has ``x_val`` and ``y_val``).
      task: as :func:`summary`.
      validation_fraction: the fraction of train carved for validation when the file has none.

    Returns:
      ``(x, y)``: float32 features; int32 labels ``(n,)`` or float32 targets ``(n, k)``.

    Raises:
      ValueError: a problem with the file (one line) or with ``validation_fraction``.
    """
    from sklearn.model_selection import train_test_split

    arrays, info = _arrays(path, task)
    if split == "test" or not info.carved:
        x, y = arrays[split]
        return np.array(x), np.array(y)
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got validation_fraction = {validation_fraction}.")
    x, y = arrays["train"]
    n_validation = int(round(validation_fraction * len(y)))
    if not 1 <= n_validation < len(y):
        raise _fail(path, f"x_train has {len(y)} examples, too few to carve a validation split from")
    stratify = None
    if info.task == "classification":
        counts = np.bincount(y)
        present = counts[counts > 0]
        # scikit-learn's stratified split needs 2 examples per class and a class's worth of room on each side.
        if present.min() >= 2 and min(n_validation, len(y) - n_validation) >= len(present):
            stratify = y
    train, validation = train_test_split(np.arange(len(y)), test_size=n_validation, random_state=seed,
                                         stratify=stratify)
    idx = np.sort(train if split == "train" else validation)
    return x[idx], y[idx]
