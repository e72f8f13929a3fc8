"""Run records: the JSON-ready summary of one trained model that every story writes to ``results.json``.

The schema (:func:`run_record`), shared by ``compare`` and every other story so that any story's records
plot with :mod:`jaxreg.experiments.plots`: ``technique``, ``settings``, final ``{train,val,test}_loss`` and
``_accuracy`` (classification) or ``_mse`` (regression), ``train_clean_accuracy`` (with label noise),
``generalization_gap``, ``epochs_run``, ``best_epoch`` (early stopping), ``sparsity``, ``near_zero_fraction``,
``kernel_l2_norm``, ``num_params``, ``skipped_steps``, ``weight_histogram`` (:func:`histogram` of
:func:`kernel_values`) and ``history`` (:func:`jaxreg.fit`'s, non-finite values as None).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from jaxreg.select import kernel_mask

__all__ = [
    "NEAR_ZERO", "RunError", "DivergedError", "finite", "kernel_values", "histogram", "run_record", "check_diverged",
]


class RunError(RuntimeError):
    """A run that cannot give a result (a diverged run, unreadable checkpoints); the CLI says why and exits 1."""


class DivergedError(RunError):
    """Runs that diverged (every step skipped for non-finite values, or a non-finite final loss).

    The CLI prints its message on one line and exits with status 1, after the results were written.
    """


# A weight counts as "near zero" below this magnitude (what L1 does under SGD, which makes few exact zeros).
NEAR_ZERO = 1e-3


_HISTOGRAM_BINS = 60


def finite(value: Any) -> float | None:
    """``float(value)``, or None for NaN/inf (JSON has no NaN)."""
    value = float(value)
    return value if math.isfinite(value) else None


def kernel_values(params: Any) -> np.ndarray:
    """All kernel weights (:func:`jaxreg.kernel_mask`) flattened into one numpy vector."""
    leaves = [np.asarray(leaf).ravel() for leaf, keep in
              zip(jax.tree.leaves(params), jax.tree.leaves(kernel_mask(params))) if keep]
    return np.concatenate(leaves) if leaves else np.zeros(0, np.float32)


def histogram(values: np.ndarray, *, bins: int = _HISTOGRAM_BINS) -> dict[str, list]:
    """A symmetric histogram of ``values`` as JSON-ready ``{"edges": [...], "counts": [...]}``."""
    bound = float(np.max(np.abs(values))) if values.size else 1.0
    bound = bound if bound > 0 else 1.0
    counts, edges = np.histogram(values, bins=bins, range=(-bound, bound))
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def _json_history(history: Mapping[str, list]) -> dict[str, list]:
    return {k: [finite(v) if isinstance(v, float) else v for v in vs] for k, vs in history.items()}


def run_record(label: str, task: str, final: Mapping[str, Mapping[str, Any]], params: Any,
               history: Mapping[str, list], *, settings: Mapping[str, Any] | None = None, skipped: int = 0,
               best_epoch: int | None = None) -> dict[str, Any]:
    """A JSON-ready run record (the schema of the module docstring).

    Keys: ``technique`` (= ``label``), ``settings``, final ``{train,val,test}_loss`` (and ``_accuracy`` for
    classification, ``_mse`` for regression), ``generalization_gap`` (train - test accuracy, or test - train
    MSE), ``epochs_run``, ``sparsity`` (exact zeros among kernel weights), ``near_zero_fraction`` (``|w| <
    1e-3``), ``kernel_l2_norm``, ``num_params``, ``skipped_steps``, ``weight_histogram``, ``history`` and, when
    given, ``best_epoch``.

    Args:
      label: the run's name.
      task: ``"classification"`` or ``"regression"``.
      final: ``{"train": metrics, "validation": metrics, "test": metrics}`` (and ``"train_clean"`` with label
        noise) from :func:`jaxreg.experiments.runner.evaluate`.
      params: the final parameters (numpy or JAX).
      history: :func:`jaxreg.fit`'s history.
      settings: the run's regularizers.
      skipped: steps skipped for non-finite values.
      best_epoch: the early-stopping best epoch, if any.

    Returns:
      The record.
    """
    flat = kernel_values(params)
    record: dict[str, Any] = {"technique": label, "settings": dict(settings or {})}
    for name, prefix in (("train", "train"), ("validation", "val"), ("test", "test")):
        record[f"{prefix}_loss"] = finite(final[name]["loss"])
        if task == "classification":
            record[f"{prefix}_accuracy"] = float(final[name]["accuracy"])
        else:
            record[f"{prefix}_mse"] = finite(final[name]["loss"])
    if task == "classification" and "train_clean" in final:
        record["train_clean_accuracy"] = float(final["train_clean"]["accuracy"])
    if task == "classification":
        record["generalization_gap"] = record["train_accuracy"] - record["test_accuracy"]
    else:
        record["generalization_gap"] = finite(float(final["test"]["loss"]) - float(final["train"]["loss"]))
    total = int(sum(np.size(leaf) for leaf in jax.tree.leaves(params)))
    record.update({
        "epochs_run": len(history["epoch"]),
        "sparsity": float(np.mean(flat == 0.0)) if flat.size else 0.0,
        "near_zero_fraction": float(np.mean(np.abs(flat) < NEAR_ZERO)) if flat.size else 0.0,
        "kernel_l2_norm": float(np.sqrt(np.sum(np.square(flat.astype(np.float64))))),
        "num_params": total,
        "skipped_steps": int(skipped),
        "weight_histogram": histogram(flat),
        "history": _json_history(history),
    })
    if best_epoch is not None:
        record["best_epoch"] = int(best_epoch)
    return record



def check_diverged(runs: list[dict[str, Any]]) -> None:
    """Raise :class:`DivergedError` naming the runs that diverged; do nothing otherwise.

    A run diverged when its final train or test loss is not finite, or when every step of every epoch after
    the first was skipped for a non-finite loss or gradient (those epochs' ``train_loss`` is None).

    Args:
      runs: run records (:func:`run_record`).

    Raises:
      DivergedError: one line naming each diverged run, its skipped steps and its final losses.

    Example:
      >>> from jaxreg.experiments.records import DivergedError, check_diverged
      >>> ok = {"technique": "l2", "skipped_steps": 0, "train_loss": 0.3, "test_loss": 0.4,
      ...       "history": {"train_loss": [0.9, 0.5]}}
      >>> check_diverged([ok])
      >>> try:
      ...     check_diverged([ok, {**ok, "technique": "none", "skipped_steps": 19, "test_loss": None}])
      ... except DivergedError as err:
      ...     print(err)
      run 'none' diverged: 19 steps skipped for non-finite values, final train loss 0.3, test loss nan/inf
    """
    bad = []
    for run in runs:
        losses = [run.get(k) for k in ("train_loss", "test_loss")]
        epoch_losses = run.get("history", {}).get("train_loss", [])
        all_skipped = len(epoch_losses) > 1 and all(v is None for v in epoch_losses[1:])
        if all_skipped or any(v is None for v in losses):
            shown = ["nan/inf" if v is None else f"{v:.4g}" for v in losses]
            bad.append(f"run {run['technique']!r} diverged: {int(run.get('skipped_steps', 0))} steps skipped for "
                       f"non-finite values, final train loss {shown[0]}, test loss {shown[1]}")
    if bad:
        raise DivergedError("; ".join(bad))
