"""Matplotlib figures of regularization experiments (the lab; ``jr.plots``, loaded on first use).

Every function takes **run records**, the dicts that ``jaxreg compare`` writes to ``results.json`` (and that
any script can build from :func:`jaxreg.fit`): ``{"technique": label, "history": history, ...}`` where
``history`` is ``fit``'s per-epoch dict of lists. Some figures read more keys: ``train_accuracy`` and
``test_accuracy`` (:func:`accuracy_gap`), ``weight_histogram = {"edges", "counts"}`` or ``weights`` (an
array) (:func:`weight_distributions`). Each returns a ``matplotlib.figure.Figure`` built without
``pyplot`` on the non-interactive Agg canvas, so nothing is shown, no global figure registry grows, and it
works headless and in threads; :func:`save` writes it as a PNG. In a notebook, display a figure with
``IPython.display.display(fig)``.

=========================  ==============================================================================
figure                     content
=========================  ==============================================================================
:func:`training_curves`    one panel per run: training vs. validation loss (or accuracy) per epoch
:func:`accuracy_gap`       train and test accuracy bars per run, the generalization gap written above
:func:`weight_distributions` histogram of the final kernel weights of each run (log counts)
:func:`weight_norms`       total kernel L2 norm per epoch, one line per run
:func:`overfitting_scores` validation loss / training loss per epoch, one line per run (log scale)
=========================  ==============================================================================

Curves prefer the training set measured in evaluation mode (``train_eval_*``, recorded by ``fit(...,
eval_train=True)``) over the running training-mode means (``train_*``), since dropout makes the latter
pessimistic.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxreg._optional import require

require("matplotlib", extra="plots", user="jaxreg.experiments.plots")
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

__all__ = [
    "training_curves",
    "accuracy_gap",
    "weight_distributions",
    "weight_norms",
    "overfitting_scores",
    "save",
    "comparison_figures",
    "new_figure",
    "epoch_axis",
    "plot_curves",
    "as_floats",
]

Run = Mapping[str, Any]

_PANEL_WIDTH = 3.2
_PANEL_HEIGHT = 2.4
_TRAIN_COLOR = "#1f77b4"
_VAL_COLOR = "#d62728"


def _check_runs(runs: Sequence[Run], *, need: Sequence[str] = ("technique",)) -> list[Run]:
    runs = list(runs)
    if not runs:
        raise ValueError("runs must hold at least one run record, got an empty sequence.")
    for i, run in enumerate(runs):
        if not isinstance(run, Mapping):
            raise TypeError(f"runs[{i}] must be a mapping (a run record), got {type(run).__name__}.")
        missing = [k for k in need if k not in run]
        if missing:
            raise ValueError(f"runs[{i}] has no {', '.join(repr(k) for k in missing)}; it has {sorted(run)}.")
    return runs


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _series(history: Mapping[str, Sequence], key: str) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in history.get(key, [])], dtype=np.float64)


def _epochs(history: Mapping[str, Sequence], length: int) -> np.ndarray:
    # Figures count epochs from 1, like the tables and history.csv (fit's history counts from 0).
    epochs = history.get("epoch")
    return np.asarray(epochs[:length]) + 1 if epochs is not None else np.arange(1, length + 1)


def epoch_axis(ax: Any, label: str = "epoch", **label_kwargs: Any) -> None:
    """Label ``ax``'s x axis as epochs and put its ticks on whole numbers (no ``2.5`` epochs).

    Args:
      ax: a matplotlib Axes whose x values are epochs (counted from 1).
      label: the axis label.
      **label_kwargs: passed to ``ax.set_xlabel`` (e.g. ``fontsize=8``).

    Example:
      >>> from jaxreg.experiments.plots import epoch_axis, new_figure
      >>> figure, (ax,) = new_figure()
      >>> _ = ax.plot([1, 2, 3], [0.5, 0.4, 0.3])
      >>> epoch_axis(ax)
      >>> ax.get_xlabel(), all(float(t).is_integer() for t in ax.get_xticks())
      ('epoch', True)
    """
    ax.set_xlabel(label, **label_kwargs)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def training_curves(runs: Sequence[Run], *, metric: str = "loss", columns: int = 4) -> Figure:
    """Training vs. validation ``metric`` per epoch, one panel per run, shared y axis.

    Args:
      runs: run records with ``technique`` and ``history``.
      metric: ``"loss"`` or ``"accuracy"``; reads ``train_eval_<metric>`` (else ``train_<metric>``) and
        ``val_<metric>`` from each history.
      columns: panels per row.

    Returns:
      A Figure with ``len(runs)`` panels (extra grid cells are removed), each with a training line and,
      when recorded, a validation line.

    Raises:
      ValueError: empty ``runs``, a record without ``technique``/``history``, or an unknown ``metric``.
      TypeError: a record that is not a mapping.

    Example:
      >>> import jaxreg as jr
      >>> runs = [{"technique": "none", "history": {"epoch": [0, 1], "train_eval_loss": [1.0, 0.1],
      ...                                             "val_loss": [1.1, 0.9]}}]
      >>> fig = jr.plots.training_curves(runs)
      >>> len(fig.axes), len(fig.axes[0].lines)
      (1, 2)
    """
    runs = _check_runs(runs, need=("technique", "history"))
    if metric not in ("loss", "accuracy"):
        raise ValueError(f"metric must be one of 'loss', 'accuracy', got metric = {metric!r}.")
    columns = max(1, min(int(columns), len(runs)))
    rows = math.ceil(len(runs) / columns)
    fig = _new_figure(_PANEL_WIDTH * columns, _PANEL_HEIGHT * rows + 0.4)
    axes = fig.subplots(rows, columns, sharey=True, squeeze=False).ravel()
    for ax, run in zip(axes, runs):
        history = run["history"]
        train_key = f"train_eval_{metric}" if f"train_eval_{metric}" in history else f"train_{metric}"
        train = _series(history, train_key)
        ax.plot(_epochs(history, len(train)), train, color=_TRAIN_COLOR, label="train")
        if f"val_{metric}" in history:
            val = _series(history, f"val_{metric}")
            ax.plot(_epochs(history, len(val)), val, color=_VAL_COLOR, label="validation")
        ax.set_title(str(run["technique"]), fontsize=9)
        epoch_axis(ax, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if metric == "loss":
            ax.set_yscale("log")
    for ax in axes[len(runs):]:
        fig.delaxes(ax)
    axes[0].set_ylabel(metric, fontsize=8)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Training vs. validation {metric}", fontsize=10)
    return fig


def accuracy_gap(runs: Sequence[Run], *, train_key: str = "train_accuracy",
                 test_key: str = "test_accuracy", label_noise: float = 0.0) -> Figure:
    """Train and test accuracy per run as paired bars, with the gap (train - test, in points) above them.

    Args:
      runs: run records with ``technique`` and the two accuracy keys (fractions in [0, 1]).
      train_key: key of the training accuracy.
      test_key: key of the test (or validation) accuracy.
      label_noise: the fraction of training labels replaced by random ones (``--label-noise``); when
        positive, the title and the y label say that train accuracy is measured against the noisy labels
        (a model that ignores the noise scores about ``1 - label_noise`` there, so its gap is negative).

    Returns:
      A Figure with one Axes holding ``2 * len(runs)`` bars and one gap label per run.

    Raises:
      ValueError: empty ``runs`` or a record without the keys.
      TypeError: a record that is not a mapping.

    Example:
      >>> import jaxreg as jr
      >>> runs = [{"technique": "none", "train_accuracy": 1.0, "test_accuracy": 0.8},
      ...         {"technique": "l2", "train_accuracy": 0.9, "test_accuracy": 0.85}]
      >>> fig = jr.plots.accuracy_gap(runs)
      >>> len(fig.axes[0].patches), [t.get_text() for t in fig.axes[0].texts]
      (4, ['gap +20.0', 'gap +5.0'])
    """
    runs = _check_runs(runs, need=("technique", train_key, test_key))
    train = np.array([float(r[train_key]) for r in runs]) * 100
    test = np.array([float(r[test_key]) for r in runs]) * 100
    x = np.arange(len(runs))
    fig = _new_figure(max(4.0, 0.9 * len(runs) + 1.5), 3.4)
    ax = fig.add_subplot()
    width = 0.38
    ax.bar(x - width / 2, train, width, label="train", color=_TRAIN_COLOR)
    ax.bar(x + width / 2, test, width, label="test", color=_VAL_COLOR)
    for xi, tr, te in zip(x, train, test):
        ax.text(xi, max(tr, te) + 0.8, f"gap {tr - te:+.1f}", ha="center", va="bottom", fontsize=7)
    low = max(0.0, 10 * math.floor((min(train.min(), test.min()) - 5) / 10))
    ax.set_ylim(low, 104)
    ax.set_xticks(x, [str(r["technique"]) for r in runs], rotation=30, ha="right", fontsize=8)
    title = "Train vs. test accuracy and generalization gap (points)"
    ylabel = "accuracy (%)"
    if label_noise > 0:
        title += (f"\n{label_noise:.0%} of the training labels are noisy; a model that\n"
                  f"ignores the noise scores ~{1 - label_noise:.0%} train acc. (a negative gap)")
        ylabel = "accuracy (%; train: vs. the noisy labels)"
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(title, fontsize=9)
    return fig


def _histogram(run: Run) -> tuple[np.ndarray, np.ndarray]:
    if "weight_histogram" in run:
        hist = run["weight_histogram"]
        return np.asarray(hist["edges"], np.float64), np.asarray(hist["counts"], np.float64)
    values = np.asarray(run["weights"], np.float64).ravel()
    bound = float(np.max(np.abs(values))) if values.size else 1.0
    counts, edges = np.histogram(values, bins=60, range=(-bound or -1.0, bound or 1.0))
    return edges, counts.astype(np.float64)


def weight_distributions(runs: Sequence[Run], *, columns: int = 4) -> Figure:
    """Histogram of each run's final kernel weights (log counts), one panel per run.

    Args:
      runs: run records with ``technique`` and either ``weight_histogram = {"edges": [n + 1], "counts":
        [n]}`` or ``weights`` (an array of any shape, binned here into 60 bins).
      columns: panels per row.

    Returns:
      A Figure with ``len(runs)`` panels, each one step histogram.

    Raises:
      ValueError: empty ``runs`` or a record with neither histogram nor weights.
      TypeError: a record that is not a mapping.

    Example:
      >>> import numpy as np
      >>> import jaxreg as jr
      >>> runs = [{"technique": "l1", "weights": np.random.default_rng(0).laplace(size=1000)}]
      >>> fig = jr.plots.weight_distributions(runs)
      >>> len(fig.axes), fig.axes[0].get_title()
      (1, 'l1')
    """
    runs = _check_runs(runs)
    for i, run in enumerate(runs):
        if "weight_histogram" not in run and "weights" not in run:
            raise ValueError(f"runs[{i}] has neither 'weight_histogram' nor 'weights'.")
    columns = max(1, min(int(columns), len(runs)))
    rows = math.ceil(len(runs) / columns)
    fig = _new_figure(_PANEL_WIDTH * columns, _PANEL_HEIGHT * rows + 0.4)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, run in zip(axes, runs):
        edges, counts = _histogram(run)
        ax.stairs(np.maximum(counts, 0.5), edges, fill=True, alpha=0.7, color=_TRAIN_COLOR, baseline=0.5)
        ax.set_yscale("log")
        ax.set_title(str(run["technique"]), fontsize=9)
        ax.set_xlabel("weight", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(runs):]:
        fig.delaxes(ax)
    axes[0].set_ylabel("count", fontsize=8)
    fig.suptitle("Distribution of the final kernel weights", fontsize=10)
    return fig


def _total_norm(history: Mapping[str, Sequence]) -> np.ndarray:
    keys = sorted(k for k in history if k.startswith("weight_l2/"))
    if not keys:
        return np.zeros(0)
    per_leaf = np.stack([_series(history, k) for k in keys])
    return np.sqrt(np.sum(np.square(per_leaf), axis=0))


def weight_norms(runs: Sequence[Run]) -> Figure:
    """Evolution of the total kernel L2 norm ``sqrt(sum ||W||^2)`` per epoch, one line per run.

    Args:
      runs: run records with ``technique`` and a ``history`` holding ``weight_l2/<path>`` series (what
        :func:`jaxreg.fit` records for the kernels).

    Returns:
      A Figure with one Axes and one line per run that has weight norms.

    Raises:
      ValueError: empty ``runs`` or a record without ``history``.
      TypeError: a record that is not a mapping.

    Example:
      >>> import jaxreg as jr
      >>> runs = [{"technique": "l2", "history": {"epoch": [0, 1], "weight_l2/a": [3.0, 4.0],
      ...                                          "weight_l2/b": [4.0, 3.0]}}]
      >>> fig = jr.plots.weight_norms(runs)
      >>> fig.axes[0].lines[0].get_ydata().tolist()
      [5.0, 5.0]
    """
    runs = _check_runs(runs, need=("technique", "history"))
    fig = _new_figure(5.5, 3.4)
    ax = fig.add_subplot()
    for run in runs:
        norms = _total_norm(run["history"])
        if norms.size:
            ax.plot(_epochs(run["history"], len(norms)), norms, label=str(run["technique"]))
    epoch_axis(ax, fontsize=8)
    ax.set_ylabel("total kernel L2 norm", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7, ncols=2)
    ax.set_title("Weight-norm evolution", fontsize=9)
    return fig


def overfitting_scores(runs: Sequence[Run]) -> Figure:
    """Overfitting score (validation loss / training loss) per epoch, one line per run, log scale.

    A score of 1 means no gap; memorizing the training set drives it up. Reads ``history
    ["overfitting_score"]`` (recorded by :func:`jaxreg.fit` with validation data).

    Args:
      runs: run records with ``technique`` and ``history``.

    Returns:
      A Figure with one Axes, one line per run that has the score, and a dashed reference line at 1.

    Raises:
      ValueError: empty ``runs`` or a record without ``history``.
      TypeError: a record that is not a mapping.

    Example:
      >>> import jaxreg as jr
      >>> runs = [{"technique": "none", "history": {"epoch": [0, 1], "overfitting_score": [1.1, 9.0]}},
      ...         {"technique": "l2", "history": {"epoch": [0, 1], "overfitting_score": [1.1, 2.0]}}]
      >>> fig = jr.plots.overfitting_scores(runs)
      >>> len(fig.axes[0].lines)   # two runs and the reference line
      3
    """
    runs = _check_runs(runs, need=("technique", "history"))
    fig = _new_figure(5.5, 3.4)
    ax = fig.add_subplot()
    for run in runs:
        score = _series(run["history"], "overfitting_score")
        if score.size:
            ax.plot(_epochs(run["history"], len(score)), score, label=str(run["technique"]))
    labelled = bool(ax.lines)
    ax.axhline(1.0, color="gray", linestyle="--", linewidth=0.8)
    ax.set_yscale("log")
    epoch_axis(ax, fontsize=8)
    ax.set_ylabel("validation loss / training loss", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    if labelled:
        ax.legend(fontsize=7, ncols=2)
    ax.set_title("Overfitting score (1 = no gap)", fontsize=9)
    return fig


def save(fig: Figure, path: str | os.PathLike, *, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG (parent directories created) and return the path.

    The PNG carries no creation time or software version (``metadata={"Software": None}``), so the same
    figure gives the same bytes.

    Args:
      fig: a Figure from this module (or any matplotlib Figure).
      path: the file to write; ``.png`` is expected.
      dpi: resolution in dots per inch.

    Returns:
      The path written, as a ``pathlib.Path``.

    Example:
      >>> import os, tempfile
      >>> import jaxreg as jr
      >>> fig = jr.plots.accuracy_gap([{"technique": "none", "train_accuracy": 1.0, "test_accuracy": 0.9}])
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     path = jr.plots.save(fig, os.path.join(tmp, "gap.png"))
      ...     print(path.read_bytes()[:4])
      b'\\x89PNG'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=dpi, metadata={"Software": None})
    return path


def comparison_figures(runs: Sequence[Run], out_dir: str | os.PathLike, *, dpi: int = 100,
                       label_noise: float = 0.0) -> dict[str, Path]:
    """Write the figures of a comparison into ``out_dir`` and return ``{name: path}``.

    Files: ``dashboard.png`` (the 2x2 overview, :func:`jaxreg.experiments.dashboard.dashboard`),
    ``curves_loss.png``, ``curves_accuracy.png`` (:func:`training_curves`), ``accuracy_gap.png``,
    ``weight_distributions.png``, ``weight_norms.png``, ``overfitting_score.png``. A figure whose inputs
    the records lack (no accuracy, no weight histogram, no weight norms or overfitting score in any history)
    is skipped.

    Args:
      runs: run records (see the module docstring).
      out_dir: the directory to write into (created if needed).
      dpi: resolution.
      label_noise: the fraction of noisy training labels, said in ``accuracy_gap.png`` (:func:`accuracy_gap`).

    Returns:
      The written files by figure name, in the order above.

    Raises:
      ValueError: empty ``runs``.

    Example:
      >>> import tempfile
      >>> import jaxreg as jr
      >>> runs = [{"technique": "none", "train_accuracy": 1.0, "test_accuracy": 0.9,
      ...          "history": {"epoch": [0], "train_loss": [0.5], "val_loss": [0.7], "overfitting_score": [1.4]}}]
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     print(sorted(jr.plots.comparison_figures(runs, tmp)))
      ['accuracy_gap', 'curves_loss', 'overfitting_score']
    """
    from jaxreg.experiments.dashboard import dashboard, has_dashboard_data

    runs = _check_runs(runs)
    out = Path(out_dir)
    figures: dict[str, Figure] = {}
    if has_dashboard_data(runs):
        figures["dashboard"] = dashboard(runs)
    if all("history" in r for r in runs):
        figures["curves_loss"] = training_curves(runs, metric="loss")
        if all(any(k.endswith("_accuracy") for k in r["history"]) for r in runs):
            figures["curves_accuracy"] = training_curves(runs, metric="accuracy")
    if all("train_accuracy" in r and "test_accuracy" in r for r in runs):
        figures["accuracy_gap"] = accuracy_gap(runs, label_noise=label_noise)
    if all("weight_histogram" in r or "weights" in r for r in runs):
        figures["weight_distributions"] = weight_distributions(runs)
    histories = [r["history"] for r in runs if "history" in r]
    if any(any(k.startswith("weight_l2/") for k in h) for h in histories):
        figures["weight_norms"] = weight_norms([r for r in runs if "history" in r])
    if any("overfitting_score" in h for h in histories):
        figures["overfitting_score"] = overfitting_scores([r for r in runs if "history" in r])
    return {name: save(fig, out / f"{name}.png", dpi=dpi) for name, fig in figures.items()}


def new_figure(ncols: int = 1, *, width: float = 4.2, height: float = 3.0, dpi: int = 90) -> tuple[Any, list]:
    """A matplotlib ``Figure`` with ``ncols`` side-by-side axes (Agg canvas, no pyplot)."""
    figure = Figure(figsize=(width * ncols, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, ncols, squeeze=False)[0]
    return figure, list(axes)


def plot_curves(runs: Sequence[Mapping[str, Any]], *, metrics: Sequence[str] = ("accuracy",), title: str = "",
                mark_best: bool = False) -> Any:
    """Train (dashed, evaluation mode) and validation (solid) curves per epoch for each run, one panel per metric.

    Args:
      runs: run records (their ``history``).
      metrics: ``"accuracy"`` and/or ``"loss"`` (a loss is drawn on a log scale).
      title: the figure's title.
      mark_best: mark each run's ``best_epoch`` (early stopping) with a dot on its validation curves.

    Returns:
      The ``Figure``.
    """
    figure, axes = new_figure(len(metrics), width=4.4, height=3.2)
    for ax, metric in zip(axes, metrics):
        for i, run in enumerate(runs):
            history = run["history"]
            color = f"C{i}"
            train_key = f"train_eval_{metric}" if f"train_eval_{metric}" in history else f"train_{metric}"
            epochs = [e + 1 for e in history["epoch"]]
            ax.plot(epochs, as_floats(history.get(train_key, [])), color=color, linestyle="--", linewidth=1.1)
            ax.plot(epochs, as_floats(history.get(f"val_{metric}", [])), color=color, linewidth=1.5,
                    label=run["technique"])
            if mark_best and run.get("best_epoch") is not None:
                best = run["best_epoch"]
                ax.plot([best + 1], [as_floats(history[f"val_{metric}"])[best]], "o", color=color)
        epoch_axis(ax)
        ax.set_ylabel(f"{metric} (dashed: train, solid: val.)", fontsize=9)
        if metric == "loss":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def as_floats(values: Sequence[Any]) -> list[float]:
    """``values`` as floats for plotting, None (a non-finite value in JSON) as NaN."""
    return [math.nan if v is None else float(v) for v in values]
