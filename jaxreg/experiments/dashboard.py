"""The 2x2 overview figure of a set of runs (``dashboard.png``): the four comparison figures on one page.

Panels, from the same run records and the same data as :mod:`jaxreg.experiments.plots`' single figures:
loss curves (training dashed, validation solid, one colour per technique; as :func:`~.plots.training_curves`),
the final kernel-weight distribution (:func:`~.plots.weight_distributions`), the weight-norm evolution
(:func:`~.plots.weight_norms`) and the overfitting score (:func:`~.plots.overfitting_scores`). Epochs count
from 1, on whole-number ticks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.lines import Line2D

# The single figures' data helpers, so that the dashboard draws exactly what they draw.
from jaxreg.experiments.plots import _check_runs, _epochs, _histogram, _new_figure, _series, _total_norm, epoch_axis

__all__ = ["has_dashboard_data", "dashboard"]

Run = Mapping[str, Any]


def has_dashboard_data(runs: Sequence[Run]) -> bool:
    """Whether every run record has a ``history`` and final weights (``weight_histogram`` or ``weights``).

    Example:
      >>> from jaxreg.experiments.dashboard import has_dashboard_data
      >>> has_dashboard_data([{"technique": "l2", "history": {}, "weight_histogram": {}}]), has_dashboard_data([{}])
      (True, False)
    """
    runs = list(runs)
    return bool(runs) and all(isinstance(r, Mapping) and "history" in r and ("weight_histogram" in r or "weights" in r)
                              for r in runs)


def _note(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=8, color="gray", transform=ax.transAxes)


def dashboard(runs: Sequence[Run], *, title: str = "") -> Any:
    """One figure of four labelled panels: loss curves, weight distribution, weight norms, overfitting score.

    Args:
      runs: run records with ``technique``, ``history`` and ``weight_histogram`` (or ``weights``), as
        ``results.json`` holds them; a panel whose data no run recorded says so instead.
      title: the figure's title (default: ``"Regularization dashboard"``).

    Returns:
      A ``matplotlib.figure.Figure`` with 4 Axes, each with a title and x and y labels, and one legend of
      the techniques below them.

    Raises:
      ValueError: empty ``runs``, or a record without ``technique``, ``history`` or final weights.
      TypeError: a record that is not a mapping.

    Example:
      >>> from jaxreg.experiments.dashboard import dashboard
      >>> run = {"technique": "l2", "weights": [0.1, -0.2, 0.3],
      ...        "history": {"epoch": [0, 1], "train_loss": [1.0, 0.5], "val_loss": [1.2, 0.8],
      ...                    "overfitting_score": [1.2, 1.6], "weight_l2/Dense_0/kernel": [1.0, 0.9]}}
      >>> fig = dashboard([run])
      >>> [ax.get_title() for ax in fig.axes]
      ['Loss curves', 'Final kernel-weight distribution', 'Weight-norm evolution', 'Overfitting score']
    """
    runs = _check_runs(runs, need=("technique", "history"))
    for i, run in enumerate(runs):
        if "weight_histogram" not in run and "weights" not in run:
            raise ValueError(f"runs[{i}] has neither 'weight_histogram' nor 'weights'.")
    fig = _new_figure(10.0, 7.6)
    (loss_ax, weight_ax), (norm_ax, score_ax) = fig.subplots(2, 2)
    for i, run in enumerate(runs):
        color, history = f"C{i % 10}", run["history"]
        train_key = "train_eval_loss" if "train_eval_loss" in history else "train_loss"
        train = _series(history, train_key)
        loss_ax.plot(_epochs(history, len(train)), train, color=color, linestyle="--", linewidth=1.1)
        val = _series(history, "val_loss")
        if val.size:
            loss_ax.plot(_epochs(history, len(val)), val, color=color, linewidth=1.5)
        edges, counts = _histogram(run)
        weight_ax.stairs(np.maximum(counts, 0.5), edges, color=color, baseline=0.5, linewidth=1.2)
        norms = _total_norm(history)
        if norms.size:
            norm_ax.plot(_epochs(history, len(norms)), norms, color=color)
        score = _series(history, "overfitting_score")
        if score.size:
            score_ax.plot(_epochs(history, len(score)), score, color=color)
    score_ax.axhline(1.0, color="gray", linestyle="--", linewidth=0.8)
    panels = (
        (loss_ax, "Loss curves", None, "loss (dashed: train, solid: val.)", True),
        (weight_ax, "Final kernel-weight distribution", "kernel weight", "count", True),
        (norm_ax, "Weight-norm evolution", None, "total kernel L2 norm", False),
        (score_ax, "Overfitting score", None, "val. loss / train loss (1 = no gap)", True),
    )
    for ax, panel_title, xlabel, ylabel, log in panels:
        ax.set_title(panel_title, fontsize=10)
        if xlabel is None:
            epoch_axis(ax, fontsize=8)
        else:
            ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if log and (ax.lines or ax.patches):
            ax.set_yscale("log")
    if not norm_ax.lines:
        _note(norm_ax, "no weight norms recorded")
    if len(score_ax.lines) == 1:  # the reference line only
        _note(score_ax, "no validation data: no overfitting score")
    handles = [Line2D([], [], color=f"C{i % 10}", label=str(run["technique"])) for i, run in enumerate(runs)]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(runs), 5), fontsize=8)
    fig.suptitle(title or "Regularization dashboard", fontsize=11)
    return fig
