"""Training logs next to ``results.json``: ``history.csv`` (Keras' ``CSVLogger``) and TensorBoard event files.

Both are written after training from the runs' histories (:func:`jaxreg.fit`'s per-epoch dicts of lists), so
they cost the training step nothing. Epochs are numbered from 1 here, as in every table and figure of the lab
(the histories inside ``results.json`` keep :func:`jaxreg.fit`'s ``epoch`` key, which counts from 0).

``history.csv`` has one row per run x epoch: ``run`` (the technique's label), then ``member``, ``fold`` and
``seed`` when some run carries them, ``epoch`` (from 1), then every history metric, sorted by name. A finite
value is written with Python's shortest round-trip ``repr`` (so equal histories give byte-identical files), a
non-finite one (``null`` in ``results.json``) as ``nan``, a metric a run did not record as an empty cell.

TensorBoard (``--tensorboard``): one directory per run, ``<out>/tensorboard/<NN>-<label>/``, holding one scalar
per history metric and epoch (step = epoch, from 1); point ``tensorboard --logdir <out>/tensorboard`` at it.
"""

from __future__ import annotations

import csv
import io
import math
import numbers
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jaxreg.experiments.report import write_text_atomic

__all__ = ["IDENTITY_COLUMNS", "history_csv", "write_history_csv", "run_directory_names", "write_tensorboard"]

IDENTITY_COLUMNS = ("member", "fold", "seed")
"""Keys of a run (besides its ``technique``) that become ``history.csv`` columns when some run has them."""

Run = Mapping[str, Any]


def _check_runs(runs: Sequence[Run]) -> list[Run]:
    runs = list(runs)
    for i, run in enumerate(runs):
        if not isinstance(run, Mapping) or "technique" not in run or not isinstance(run.get("history"), Mapping):
            raise ValueError(f"runs[{i}] must be a mapping with 'technique' and a 'history' dict, got {run!r:.80}.")
    return runs


def _cell(value: Any) -> str:
    if value is None:
        return "nan"  # a non-finite value, written to results.json as null
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, numbers.Integral):  # numpy integers included
        return str(int(value))
    value = float(value)
    return repr(value) if math.isfinite(value) else "nan"


def _epochs(history: Mapping[str, Sequence]) -> list[int]:
    lengths = [len(v) for k, v in history.items() if k != "epoch"]
    epochs = history.get("epoch")
    if epochs is None:
        return list(range(1, max(lengths, default=0) + 1))
    return [int(e) + 1 for e in epochs]


def history_csv(runs: Sequence[Run]) -> str:
    """The text of ``history.csv`` (see the module docstring): one row per run x epoch, epochs from 1.

    Args:
      runs: run records (or any mappings) with ``technique`` and ``history``; ``member``, ``fold`` and ``seed``
        keys become columns.

    Returns:
      The CSV text, ``\\n`` line ends, header first; equal inputs give equal text.

    Raises:
      ValueError: a run without ``technique`` or a ``history`` dict.

    Example:
      >>> from jaxreg.experiments.logs import history_csv
      >>> runs = [{"technique": "l2", "history": {"epoch": [0, 1], "train_loss": [0.5, 0.25],
      ...                                          "val_loss": [0.75, None]}}]
      >>> print(history_csv(runs), end="")
      run,epoch,train_loss,val_loss
      l2,1,0.5,0.75
      l2,2,0.25,nan
    """
    runs = _check_runs(runs)
    identity = [k for k in IDENTITY_COLUMNS if any(k in run for run in runs)]
    metrics = sorted({k for run in runs for k in run["history"] if k != "epoch"})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["run", *identity, "epoch", *metrics])
    for run in runs:
        history = run["history"]
        ids = ["" if run.get(k) is None else str(run[k]) for k in identity]
        for row, epoch in enumerate(_epochs(history)):
            values = [_cell(history[k][row]) if k in history and row < len(history[k]) else "" for k in metrics]
            writer.writerow([str(run["technique"]), *ids, epoch, *values])
    return buffer.getvalue()


def write_history_csv(path: str | os.PathLike, runs: Sequence[Run]) -> Path:
    """Write :func:`history_csv` of ``runs`` to ``path`` (atomically) and return the path.

    Example:
      >>> import csv, io, os, tempfile
      >>> from jaxreg.experiments.logs import write_history_csv
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     path = write_history_csv(os.path.join(tmp, "history.csv"),
      ...                              [{"technique": "none", "member": 0, "history": {"train_loss": [1.0]}}])
      ...     print(list(csv.DictReader(io.StringIO(path.read_text()))))
      [{'run': 'none', 'member': '0', 'epoch': '1', 'train_loss': '1.0'}]
    """
    return write_text_atomic(path, history_csv(runs))


def run_directory_names(runs: Sequence[Run]) -> list[str]:
    """One directory name per run: ``NN-<label>`` (position, then the label with unsafe characters as ``_``).

    Example:
      >>> from jaxreg.experiments.logs import run_directory_names
      >>> run_directory_names([{"technique": "no dropout"}, {"technique": "l2 1e-4", "fold": 2}])
      ['00-no_dropout', '01-l2_1e-4-fold2']
    """
    names = []
    for index, run in enumerate(runs):
        label = str(run["technique"]) + "".join(f"-{k}{run[k]}" for k in ("fold", "seed") if run.get(k) is not None)
        names.append(f"{index:02d}-" + re.sub(r"[^A-Za-z0-9_.=+-]", "_", label))
    return names


def _import_tensorboardx() -> Any:
    from jaxreg._optional import require

    # tensorboardX imports torch when it is installed, only to accept torch tensors (3 s, and a second
    # framework in memory); the lab writes Python floats, so it imports it as if torch were absent, a
    # case tensorboardX supports. Nothing changes when torch is already imported.
    blocked = "torch" not in sys.modules
    if blocked:
        sys.modules["torch"] = None  # type: ignore[assignment]  # makes `import torch` raise ImportError
    try:
        return require("tensorboardX", extra="tensorboard", user="--tensorboard")
    finally:
        if blocked:
            del sys.modules["torch"]


def write_tensorboard(directory: str | os.PathLike, runs: Sequence[Run]) -> list[Path]:
    """Write each run's history as TensorBoard scalars, one event file per run under ``directory``.

    Tags are the history keys (``train_loss``, ``val_accuracy``, ``weight_l2/Dense_0/kernel``...), steps the
    epochs counted from 1; a non-finite value (``None``) is left out. Event files left in a run's directory by
    an earlier run of the same name are replaced, so TensorBoard shows each curve once.

    Uses tensorboardX, the small pure-Python event writer (protobuf and numpy only): ``tensorboard`` itself
    is the viewer (a web server), and clu's and ``torch.utils.tensorboard``'s writers need TensorFlow or
    PyTorch.

    Args:
      directory: the TensorBoard log directory (``<out>/tensorboard``), created if needed.
      runs: mappings with ``technique`` and ``history`` (as :func:`history_csv`).

    Returns:
      The run directories written, in the order of ``runs``.

    Raises:
      ImportError: tensorboardX is not installed (the message names the ``tensorboard`` extra).
      ValueError: a run without ``technique`` or a ``history`` dict.

    Example:
      >>> import os, tempfile
      >>> from jaxreg.experiments.logs import write_tensorboard
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     (path,) = write_tensorboard(tmp, [{"technique": "l2", "history": {"epoch": [0], "val_loss": [0.5]}}])
      ...     path.name, [f.startswith("events.out.tfevents.") for f in os.listdir(path)]
      ('00-l2', [True])
    """
    tensorboardx = _import_tensorboardx()
    runs = _check_runs(runs)
    written = []
    for name, run in zip(run_directory_names(runs), runs):
        path = Path(directory) / name
        path.mkdir(parents=True, exist_ok=True)
        for old in path.glob("events.out.tfevents.*"):
            old.unlink()
        history = run["history"]
        writer = tensorboardx.SummaryWriter(logdir=str(path), flush_secs=3600)
        try:
            for row, epoch in enumerate(_epochs(history)):
                for tag in sorted(k for k in history if k != "epoch"):
                    values = history[tag]
                    if row < len(values) and values[row] is not None:
                        writer.add_scalar(tag, float(values[row]), global_step=epoch)
        finally:
            writer.close()
        written.append(path)
    return written
