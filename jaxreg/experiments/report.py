"""Writing an experiment's results: canonical ``results.json``, ``timing.json``, a text table, ``report.md``, logs.

``results.json`` is a pure function of the computation: keys sorted, floats written with Python's
shortest round-trip ``repr`` (so bitwise-identical params give byte-identical files), NaN/inf written as
``null`` (strict JSON), no timestamps, paths or timings. Wall-clock numbers go to ``timing.json``.

The table is Markdown (GitHub pipes), printed on stdout by the CLI and embedded in ``report.md``, so the
same text reads well in a terminal and renders in a README. Any story can use these helpers with its own
columns (see :class:`Column`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "Column",
    "COMPARE_COLUMNS",
    "to_json_data",
    "canonical_json",
    "write_text_atomic",
    "write_json",
    "format_table",
    "columns",
    "CLASSIFICATION_COLUMNS",
    "config_markdown",
    "log",
    "write_outputs",
    "write_tensorboard",
    "publish",
]


class Column(NamedTuple):
    """One table column: header, the run-record key it shows, and how to format the value.

    Example:
      >>> from jaxreg.experiments.report import Column
      >>> Column("test acc", "test_accuracy", lambda v: f"{100 * v:.1f}%").format(0.9)
      '90.0%'
    """

    header: str
    key: str
    format: Callable[[Any], str]
    align: str = ">"  # "<" left, ">" right


def _percent(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _points(value: Any) -> str:
    return "-" if value is None else f"{100 * value:+.1f}"


def _fixed(digits: int) -> Callable[[Any], str]:
    return lambda value: "-" if value is None else f"{value:.{digits}f}"


COMPARE_COLUMNS = (
    Column("technique", "technique", str, "<"),
    Column("train acc", "train_accuracy", _percent),
    Column("test acc", "test_accuracy", _percent),
    Column("gap (pts)", "generalization_gap", _points),
    Column("test loss", "test_loss", _fixed(3)),
    Column("epochs", "epochs_run", str),
    Column("sparsity", "sparsity", _percent),
    Column("near-zero", "near_zero_fraction", _percent),
)
"""The columns of ``jaxreg compare``: accuracies in %, the gap (train - test accuracy) in points, the test
loss, the epochs run, the fraction of exactly-zero kernel weights (sparsity) and of kernel weights with
``|w| < 1e-3`` (near-zero)."""


def to_json_data(value: Any) -> Any:
    """``value`` with numpy/JAX scalars and arrays turned into Python numbers and lists, non-finite floats into None.

    Args:
      value: nested dicts (string keys), lists, tuples, numbers, strings, booleans, None, numpy or JAX arrays.

    Returns:
      The same structure made of JSON types only.

    Raises:
      TypeError: for a value of another type (the path is in the message).

    Example:
      >>> import numpy as np
      >>> from jaxreg.experiments.report import to_json_data
      >>> to_json_data({"a": np.float32(0.5), "b": [float("nan"), np.arange(2)]})
      {'a': 0.5, 'b': [None, [0, 1]]}
    """

    def convert(v: Any, where: str) -> Any:
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, Mapping):
            return {str(k): convert(x, f"{where}.{k}") for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [convert(x, f"{where}[{i}]") for i, x in enumerate(v)]
        if isinstance(v, (np.bool_,)):
            return bool(v)
        if isinstance(v, (int, np.integer)):
            return int(v)
        if isinstance(v, (float, np.floating)):
            return float(v) if math.isfinite(v) else None
        if hasattr(v, "__array__"):
            array = np.asarray(v)
            return convert(array.item() if array.ndim == 0 else array.tolist(), where)
        raise TypeError(f"cannot write {where} of type {type(v).__name__} to JSON.")

    return convert(value, "value")


def canonical_json(value: Any) -> str:
    """Deterministic JSON text: sorted keys, 1-space indent, round-trip floats, ``null`` for NaN/inf, final newline.

    Args:
      value: data accepted by :func:`to_json_data`.

    Returns:
      The JSON text; equal data give equal text.

    Example:
      >>> from jaxreg.experiments.report import canonical_json
      >>> print(canonical_json({"b": 0.1, "a": [1, float("inf")]}), end="")
      {
       "a": [
        1,
        null
       ],
       "b": 0.1
      }
    """
    return json.dumps(to_json_data(value), sort_keys=True, indent=1, allow_nan=False, ensure_ascii=True) + "\n"


def write_json(path: str | os.PathLike, value: Any) -> Path:
    """Write :func:`canonical_json` of ``value`` to ``path`` (parents created) and return the path.

    Example:
      >>> import json, os, tempfile
      >>> from jaxreg.experiments.report import write_json
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     path = write_json(os.path.join(tmp, "r.json"), {"x": 1})
      ...     print(json.loads(path.read_text()))
      {'x': 1}
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, canonical_json(value))
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename: a reader (or a run killed meanwhile)
    sees the old file or the new one, never a part.

    Example:
      >>> import os, tempfile
      >>> from jaxreg.experiments.report import write_text_atomic
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     print(write_text_atomic(os.path.join(tmp, "a.md"), "# hi\\n").read_text(), end="")
      # hi
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def format_table(runs: Sequence[Mapping[str, Any]], columns: Sequence[Column] = COMPARE_COLUMNS) -> str:
    """A Markdown table with one row per run record, columns padded to align in a terminal.

    Args:
      runs: run records (dicts); a missing key shows as ``-``.
      columns: the :class:`Column` s to show (default: :data:`COMPARE_COLUMNS`).

    Returns:
      The table text, one line per row, without a trailing newline.

    Example:
      >>> from jaxreg.experiments.report import format_table
      >>> table = format_table([{"technique": "none", "train_accuracy": 1.0, "test_accuracy": 0.8,
      ...                        "generalization_gap": 0.2}])
      >>> print(table.splitlines()[2])
      | none      |    100.0% |    80.0% |     +20.0 |         - |      - |        - |        - |
    """
    header = [c.header for c in columns]
    rows = [[c.format(run[c.key]) if run.get(c.key) is not None else "-" for c in columns] for run in runs]
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]

    def line(cells: Sequence[str]) -> str:
        padded = [f"{cell:{c.align}{w}}" for cell, c, w in zip(cells, columns, widths)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if c.align == ">" else (":" + "-" * (w + 1))
                          for c, w in zip(columns, widths)) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def columns(*specs: tuple[str, str, str]) -> list[Any]:
    """:class:`Column` s from ``(header, key, format_spec)`` triples.

    The first column is left-aligned, the others right-aligned; a format spec such as ``".4f"`` or ``"+.3f"``
    applies to floats, other values print with ``str``.

    Example:
      >>> from jaxreg.experiments.report import columns, format_table
      >>> print(format_table([{"a": "x", "b": 0.5}], columns(("name", "a", ""), ("value", "b", ".2f"))))
      | name | value |
      |:-----|------:|
      | x    |  0.50 |
    """
    def formatter(spec: str) -> Callable[[Any], str]:
        return lambda value: format(value, spec) if spec and isinstance(value, float) else str(value)

    return [Column(header, key, formatter(spec), "<" if i == 0 else ">")
            for i, (header, key, spec) in enumerate(specs)]


# The per-run table of the classification stories (train/val/test accuracy, gap, test loss).
CLASSIFICATION_COLUMNS = columns(
    ("run", "technique", ""), ("train acc", "train_accuracy", ".4f"), ("val acc", "val_accuracy", ".4f"),
    ("test acc", "test_accuracy", ".4f"), ("gap", "generalization_gap", "+.4f"), ("test loss", "test_loss", ".4f"),
)


def config_markdown(config: Mapping[str, Any]) -> str:
    """A run's ``config`` as a Markdown list, one ```key`: `value``` line per option (for ``report.md``).

    Example:
      >>> from jaxreg.experiments.report import config_markdown
      >>> print(config_markdown({"seed": 0, "dataset": "digits"}))
      - `dataset`: `"digits"`
      - `seed`: `0`
    """
    return "\n".join(f"- `{key}`: `{json.dumps(to_json_data(value))}`" for key, value in sorted(config.items()))


def log(args: argparse.Namespace, message: str) -> None:
    """Print a progress message to stderr unless ``--quiet``."""
    if not getattr(args, "quiet", False):
        print(message, file=sys.stderr, flush=True)


def write_outputs(out: str | os.PathLike, result: Mapping[str, Any], *, title: str, report: str,
                  figures: Mapping[str, Any] = (), histories: Sequence[Mapping[str, Any]] | None = None,
                  tensorboard: bool = False) -> list[Path]:
    """Write ``results.json`` (:func:`write_json`, byte-stable), ``report.md``, figures and the training logs.

    The logs (:mod:`jaxreg.experiments.logs`): ``history.csv`` (one row per run x epoch, epochs from 1,
    byte-stable) and, with ``tensorboard``, TensorBoard event files under ``<out>/tensorboard/<run>/``.

    Args:
      out: the output directory (created).
      result: JSON-ready results (``config``, ``runs``...).
      title: the report's title.
      report: the Markdown body of ``report.md`` (after the title).
      figures: ``{file name: matplotlib Figure}``; each is saved as a PNG in ``out``
        (:func:`jaxreg.experiments.plots.save`, no timestamps).
      histories: the runs whose histories the logs hold: mappings with ``technique`` and ``history`` (and
        ``member``/``fold``/``seed``); default: the records of ``result["runs"]`` that have a ``history``.
      tensorboard: also write TensorBoard event files (``--tensorboard``; needs the ``tensorboard`` extra).

    Returns:
      The paths written.

    Example:
      >>> import os, tempfile
      >>> from jaxreg.experiments.report import write_outputs
      >>> runs = [{"technique": "none", "history": {"epoch": [0], "val_loss": [0.5]}}]
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     print([p.name for p in write_outputs(tmp, {"runs": runs}, title="T", report="body")])
      ['results.json', 'report.md', 'history.csv']
    """
    from jaxreg.experiments import logs, plots

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [write_json(out / "results.json", result)]
    path = out / "report.md"
    write_text_atomic(path, f"# {title}\n\n{report.rstrip()}\n")
    written.append(path)
    for name, figure in dict(figures).items():
        written.append(plots.save(figure, out / name, dpi=figure.dpi))
    if histories is None:
        histories = [run for run in result.get("runs", ()) if isinstance(run, Mapping) and "history" in run]
    if histories:
        written.append(logs.write_history_csv(out / "history.csv", histories))
        if tensorboard:
            written.extend(logs.write_tensorboard(out / "tensorboard", histories))
    return written


def write_tensorboard(out: str | os.PathLike, runs: Sequence[Mapping[str, Any]]) -> list[Path]:
    """Write the TensorBoard event files of ``runs`` under ``<out>/tensorboard/<run>/`` (``--tensorboard``).

    Args:
      out: the story's output directory.
      runs: mappings with ``technique`` and ``history`` (run records).

    Returns:
      The run directories written (:func:`jaxreg.experiments.logs.write_tensorboard`).

    Raises:
      ImportError: tensorboardX is not installed (the message names the ``tensorboard`` extra).

    Example:
      >>> import tempfile
      >>> from jaxreg.experiments.report import write_tensorboard
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     print([p.name for p in write_tensorboard(tmp, [{"technique": "l2", "history": {"val_loss": [0.5]}}])])
      ['00-l2']
    """
    from jaxreg.experiments import logs

    return logs.write_tensorboard(Path(out) / "tensorboard", runs)


def publish(out: str | os.PathLike, result: Mapping[str, Any], *, title: str, report: str,
            figures: Mapping[str, Any] = (), columns: Sequence[Column] = COMPARE_COLUMNS,
            histories: Sequence[Mapping[str, Any]] | None = None, tensorboard: bool = False) -> int:
    """The end of a story: :func:`write_outputs`, then the runs' table (``columns``) on stdout; returns 0.

    Args:
      out, result, title, report, figures, histories, tensorboard: as :func:`write_outputs`.
      columns: the table's columns (:func:`columns`).

    Returns:
      0, the story's exit status.
    """
    write_outputs(out, result, title=title, report=report, figures=figures, histories=histories,
                  tensorboard=tensorboard)
    print(format_table(result["runs"], columns))
    return 0
