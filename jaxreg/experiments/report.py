"""Writing an experiment's results: canonical ``results.json``, ``timing.json``, a text table, ``report.md``.

``results.json`` is a pure function of the computation: keys sorted, floats written with Python's
shortest round-trip ``repr`` (so bitwise-identical params give byte-identical files), NaN/inf written as
``null`` (strict JSON), no timestamps, paths or timings. Wall-clock numbers go to ``timing.json``.

The table is Markdown (GitHub pipes), printed on stdout by the CLI and embedded in ``report.md``, so the
same text reads well in a terminal and renders in a README. Any story can use these helpers with its own
columns (see :class:`Column`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "Column",
    "COMPARE_COLUMNS",
    "to_json_data",
    "canonical_json",
    "write_json",
    "format_table",
    "write_report",
    "write_all",
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
    path.write_text(canonical_json(value), encoding="utf-8")
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


def _config_lines(config: Mapping[str, Any]) -> list[str]:
    return [f"- `{key}`: `{json.dumps(to_json_data(value))}`" for key, value in sorted(config.items())]


def write_report(
    out_dir: str | os.PathLike,
    result: Mapping[str, Any],
    *,
    title: str,
    figures: Mapping[str, Path] | None = None,
    notes: Sequence[str] = (),
    columns: Sequence[Column] = COMPARE_COLUMNS,
) -> Path:
    """Write ``out_dir/report.md``: title, notes, the results table, the config and the figures.

    Args:
      out_dir: the output directory.
      result: ``{"config": {...}, "runs": [...]}``.
      title: the Markdown title.
      figures: ``{name: path}`` of the figures to embed (paths made relative to ``out_dir``).
      notes: paragraphs shown under the title.
      columns: the table columns.

    Returns:
      The path of ``report.md``.

    Example:
      >>> import tempfile
      >>> from jaxreg.experiments.report import write_report
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     path = write_report(tmp, {"config": {"epochs": 1}, "runs": [{"technique": "none"}]}, title="T")
      ...     print(path.read_text().splitlines()[0])
      # T
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# {title}", ""]
    for note in notes:
        lines += [note, ""]
    lines += [format_table(result["runs"], columns), "", "## Configuration", "", *_config_lines(result["config"]), ""]
    if figures:
        lines += ["## Figures", ""]
        for name, path in figures.items():
            relative = os.path.relpath(path, out)
            lines += [f"### {name.replace('_', ' ')}", "", f"![{name}]({relative})", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def write_all(
    out_dir: str | os.PathLike,
    result: Mapping[str, Any],
    *,
    title: str,
    timing: Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
    columns: Sequence[Column] = COMPARE_COLUMNS,
    figures: bool = True,
) -> dict[str, Path]:
    """Write ``results.json``, ``timing.json`` (if ``timing``), the figures (``jaxreg.experiments.plots``) and ``report.md``.

    Args:
      out_dir: the output directory (created if needed).
      result: ``{"config": {...}, "runs": [...]}``, JSON-ready (see :func:`to_json_data`).
      title: the report's title.
      timing: wall-clock data for ``timing.json`` (kept out of ``results.json``).
      notes: paragraphs for the report.
      columns: the table columns.
      figures: draw the figures of :func:`jaxreg.experiments.plots.comparison_figures`.

    Returns:
      ``{name: path}`` of everything written: ``results``, ``timing``, each figure, ``report``.

    Example:
      >>> import tempfile
      >>> from jaxreg.experiments.report import write_all
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     written = write_all(tmp, {"config": {}, "runs": [{"technique": "none"}]}, title="T", figures=False)
      ...     print(sorted(written))
      ['report', 'results']
    """
    out = Path(out_dir)
    written = {"results": write_json(out / "results.json", result)}
    if timing is not None:
        written["timing"] = write_json(out / "timing.json", timing)
    drawn: dict[str, Path] = {}
    if figures:
        from jaxreg.experiments import plots

        drawn = plots.comparison_figures(result["runs"], out)
        written.update(drawn)
    written["report"] = write_report(out, result, title=title, figures=drawn, notes=notes, columns=columns)
    return written
