"""Tests of jaxreg/plots.py: figure content read back from the matplotlib objects, PNG files checked against
the PNG specification (signature, IHDR size = figure size x dpi), values against numpy formulas."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

import jaxreg as jr

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _run(technique, *, epochs=5, train_acc=1.0, test_acc=0.8, seed=0):
    rng = np.random.default_rng(seed)
    history = {
        "epoch": list(range(epochs)),
        "train_loss": list(np.linspace(1.0, 0.2, epochs)),
        "train_eval_loss": list(np.linspace(0.9, 0.05, epochs)),
        "val_loss": list(np.linspace(1.1, 0.6, epochs)),
        "train_eval_accuracy": list(np.linspace(0.5, train_acc, epochs)),
        "val_accuracy": list(np.linspace(0.4, test_acc, epochs)),
        "overfitting_score": list(np.linspace(1.2, 12.0, epochs)),
        "weight_l2/Dense_0/kernel": list(np.linspace(3.0, 6.0, epochs)),
        "weight_l2/Dense_1/kernel": list(np.linspace(4.0, 8.0, epochs)),
    }
    counts, edges = np.histogram(rng.normal(size=500), bins=20)
    return {"technique": technique, "history": history, "train_accuracy": train_acc, "test_accuracy": test_acc,
            "weight_histogram": {"edges": edges.tolist(), "counts": counts.tolist()}}


RUNS = [_run("none"), _run("l2", train_acc=0.9, test_acc=0.85, seed=1), _run("dropout", epochs=3, seed=2)]


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    crc = struct.unpack(">I", data[29:33])[0]
    assert crc == zlib.crc32(data[12:29])  # the chunk is intact
    return width, height


def test_training_curves_plot_train_and_validation_per_run():
    fig = jr.plots.training_curves(RUNS, metric="loss")
    assert len(fig.axes) == 3
    for ax, run in zip(fig.axes, RUNS):
        assert ax.get_title() == run["technique"]
        train, val = ax.lines
        # Evaluation-mode training loss is preferred over the training-mode running mean.
        np.testing.assert_allclose(train.get_ydata(), run["history"]["train_eval_loss"])
        np.testing.assert_allclose(val.get_ydata(), run["history"]["val_loss"])
        np.testing.assert_array_equal(train.get_xdata(), np.add(run["history"]["epoch"], 1))  # from 1, as tables
        assert ax.get_yscale() == "log"
    acc = jr.plots.training_curves(RUNS, metric="accuracy", columns=2)
    assert len(acc.axes) == 3  # 2x2 grid, the empty cell removed
    assert acc.axes[0].get_yscale() == "linear"
    np.testing.assert_allclose(acc.axes[1].lines[0].get_ydata(), RUNS[1]["history"]["train_eval_accuracy"])


def test_accuracy_gap_bars_and_labels():
    fig = jr.plots.accuracy_gap(RUNS)
    (ax,) = fig.axes
    heights = [p.get_height() for p in ax.patches]
    train = [100 * r["train_accuracy"] for r in RUNS]
    test = [100 * r["test_accuracy"] for r in RUNS]
    np.testing.assert_allclose(heights, train + test)  # train bars, then test bars
    labels = [t.get_text() for t in ax.texts]
    assert labels == [f"gap {a - b:+.1f}" for a, b in zip(train, test)] == ["gap +20.0", "gap +5.0", "gap +20.0"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["none", "l2", "dropout"]


def test_weight_distributions_show_the_histograms():
    fig = jr.plots.weight_distributions(RUNS)
    assert len(fig.axes) == 3
    for ax, run in zip(fig.axes, RUNS):
        (stairs,) = ax.patches
        values, edges, _ = stairs.get_data()
        counts = np.asarray(run["weight_histogram"]["counts"], float)
        np.testing.assert_allclose(values, np.maximum(counts, 0.5))
        np.testing.assert_allclose(edges, run["weight_histogram"]["edges"])
    raw = np.random.default_rng(3).laplace(size=1000)
    (ax,) = jr.plots.weight_distributions([{"technique": "raw", "weights": raw}]).axes
    values, edges, _ = ax.patches[0].get_data()
    reference, _ = np.histogram(raw, bins=60, range=(-np.abs(raw).max(), np.abs(raw).max()))
    np.testing.assert_allclose(values, np.maximum(reference, 0.5))


def test_weight_norms_are_the_total_kernel_norm():
    (ax,) = jr.plots.weight_norms(RUNS).axes
    assert len(ax.lines) == 3
    for line, run in zip(ax.lines, RUNS):
        h = run["history"]
        expected = np.sqrt(np.square(h["weight_l2/Dense_0/kernel"]) + np.square(h["weight_l2/Dense_1/kernel"]))
        np.testing.assert_allclose(line.get_ydata(), expected)
        assert line.get_label() == run["technique"]


def test_overfitting_scores_one_line_per_run_and_reference():
    (ax,) = jr.plots.overfitting_scores(RUNS).axes
    assert len(ax.lines) == 4 and ax.get_yscale() == "log"
    np.testing.assert_allclose(ax.lines[0].get_ydata(), RUNS[0]["history"]["overfitting_score"])
    np.testing.assert_allclose(ax.lines[-1].get_ydata(), [1.0, 1.0])  # the "no gap" reference


def test_save_writes_a_deterministic_png_of_the_right_size(tmp_path):
    fig = jr.plots.accuracy_gap(RUNS)
    first = jr.plots.save(fig, tmp_path / "sub" / "a.png", dpi=50)
    second = jr.plots.save(fig, tmp_path / "b.png", dpi=50)
    width, height = fig.get_size_inches()
    assert _png_size(first.read_bytes()) == (round(width * 50), round(height * 50))
    assert first.read_bytes() == second.read_bytes()


def test_comparison_figures_writes_every_figure(tmp_path):
    written = jr.plots.comparison_figures(RUNS, tmp_path)
    assert list(written) == ["dashboard", "curves_loss", "curves_accuracy", "accuracy_gap", "weight_distributions",
                             "weight_norms", "overfitting_score"]
    for name, path in written.items():
        assert path == tmp_path / f"{name}.png"
        _png_size(path.read_bytes())


def test_missing_values_and_bad_inputs():
    run = _run("nan")
    run["history"]["val_loss"][2] = None  # a non-finite value written to JSON as null
    (ax,) = jr.plots.training_curves([run]).axes
    assert np.isnan(ax.lines[1].get_ydata()[2])
    with pytest.raises(ValueError, match="at least one run"):
        jr.plots.accuracy_gap([])
    with pytest.raises(ValueError, match="metric must be one of"):
        jr.plots.training_curves(RUNS, metric="f1")
    with pytest.raises(ValueError, match="has no 'test_accuracy'"):
        jr.plots.accuracy_gap([{"technique": "x", "train_accuracy": 1.0}])
    with pytest.raises(TypeError, match="must be a mapping"):
        jr.plots.weight_norms(["none"])
    with pytest.raises(ValueError, match="neither 'weight_histogram' nor 'weights'"):
        jr.plots.weight_distributions([{"technique": "x"}])


def test_dashboard_is_the_four_labelled_panels_of_the_single_figures(tmp_path):
    from jaxreg.experiments.dashboard import dashboard

    fig = dashboard(RUNS)
    assert len(fig.axes) == 4
    assert [ax.get_title() for ax in fig.axes] == ["Loss curves", "Final kernel-weight distribution",
                                                   "Weight-norm evolution", "Overfitting score"]
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)
    loss, weights, norms, score = fig.axes
    # The same data as the single figures (reference: weight_norms / overfitting_scores / weight_distributions).
    single_norms = jr.plots.weight_norms(RUNS).axes[0].lines
    for line, reference in zip(norms.lines, single_norms):
        np.testing.assert_allclose(line.get_ydata(), reference.get_ydata())
        np.testing.assert_array_equal(line.get_xdata(), reference.get_xdata())
    np.testing.assert_allclose(score.lines[0].get_ydata(), RUNS[0]["history"]["overfitting_score"])
    np.testing.assert_allclose(loss.lines[1].get_ydata(), RUNS[0]["history"]["val_loss"])
    assert len(weights.patches) == len(RUNS)
    path = jr.plots.save(fig, tmp_path / "dashboard.png", dpi=40)
    assert _png_size(path.read_bytes()) == (400, 304)  # 10 x 7.6 inches at 40 dpi


def test_epoch_axes_have_integer_ticks_and_accuracy_gap_says_when_labels_are_noisy():
    from matplotlib.ticker import MaxNLocator

    from jaxreg.experiments.dashboard import dashboard

    axes = [*jr.plots.training_curves(RUNS).axes, *jr.plots.weight_norms(RUNS).axes,
            *jr.plots.overfitting_scores(RUNS).axes, *jr.plots.plot_curves(RUNS, metrics=("loss",)).axes,
            *[ax for ax in dashboard(RUNS).axes if ax.get_xlabel() == "epoch"]]
    assert len(axes) == 3 + 1 + 1 + 1 + 3
    for ax in axes:
        assert ax.get_xlabel() == "epoch" and isinstance(ax.xaxis.get_major_locator(), MaxNLocator)
        ticks = ax.get_xticks()
        assert np.array_equal(ticks, np.round(ticks))  # no 2.5 epochs
    clean = jr.plots.accuracy_gap(RUNS).axes[0]
    noisy = jr.plots.accuracy_gap(RUNS, label_noise=0.2).axes[0]
    assert "noisy" not in clean.get_title() + clean.get_ylabel()
    assert "20% of the training labels are noisy" in noisy.get_title() and "noisy labels" in noisy.get_ylabel()
