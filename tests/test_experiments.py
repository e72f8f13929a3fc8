"""The experiment stories of ``jaxreg/experiments/`` end to end, at tiny sizes, through ``jaxreg.cli.main``.

Each story runs once (a module-scoped cache) and the tests read its ``results.json``. The checks are chosen
so that they can fail:

* structure: the fields every story promises, one record per variant / member, histories of ``--epochs``
  entries, accuracies that are multiples of ``1 / n`` for the ``n`` evaluation examples;
* independent references: parameter counts from the layer shapes (arithmetic), the ``RidgeCV`` row of
  ``regression`` against numpy's closed-form ridge at the chosen alpha, the fold sizes of ``kfold`` against
  scikit-learn's ``KFold``, cross-validation means against numpy, the early-stopping decision against Keras'
  documented rule (``patience=0``: stop at the first epoch that does not improve);
* the claims the stories make: proximal L1 gives exact zeros, L1 by subgradient gives none; strong L2 pulls
  the training accuracy down (underfitting); restoring the best weights gives the best epoch's validation
  loss;
* reproducibility: a story run twice writes byte-identical ``results.json``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.model_selection import KFold

from jaxreg.experiments import data
from jaxreg.cli import main
from jaxreg.experiments import names

# Shared tiny setting: 64 training / validation / test examples (one evaluation shape), batches of 16.
SMALL = ["--epochs", "2", "--train-size", "64", "--eval-size", "64", "--batch-size", "16", "--quiet"]
MLP16 = ["--hidden-sizes", "16"]
TINY_ARGS = {
    "dropout_mlp": [*SMALL, *MLP16],
    "penalties": [*SMALL, *MLP16, "--proximal-l1", "1.0"],
    # The default dataset, diabetes (300 / 53 / 89): the ridge reference below reads the same data.
    "regression": ["--epochs", "2", "--quiet", *MLP16, "--repeats", "2"],
    "cnn": [*SMALL, "--features", "4,8", "--dense-size", "16", "--variants", "plain,full recipe"],
    "transformer": [*SMALL, "--model-dim", "8", "--num-heads", "2", "--num-layers", "1", "--mlp-dim", "16",
                    "--variants", "plain,regularized+input_dropout"],
    "kfold": [*SMALL, *MLP16, "--dropout-rates", "0,0.5", "--l2", "0"],
    # min_delta 10: no epoch after the first improves, so patience 0 stops at the second epoch (Keras' rule).
    "early_stopping": [*SMALL, *MLP16, "--epochs", "4", "--patience", "0", "--min-delta", "10"],
    # 3 + 3 - 1 = 5 members, as many as penalties' techniques: the two stories share one compiled program.
    "bias_variance": [*SMALL, *MLP16, "--epochs", "10", "--l2", "0,1,10", "--dropout-rates", "0,0.3,0.6"],
}
STORIES = tuple(TINY_ARGS)
RUN_KEYS = {"technique", "settings", "train_loss", "val_loss", "test_loss", "generalization_gap", "epochs_run",
            "sparsity", "near_zero_fraction", "kernel_l2_norm", "num_params", "skipped_steps", "weight_histogram",
            "history"}


# Per process, not per fixture: an xdist worker whose queue runs dry tears module fixtures down, and make test
# sends each test file to one worker (--dist loadfile), so each story runs once.
_STORY_RUNS: dict = {}


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    """``story(name) -> (out_dir, results)``: run the story once at its tiny size and load its results."""
    done = _STORY_RUNS

    def run(name: str):
        if name not in done:
            out = tmp_path_factory.mktemp(name)
            assert main(["experiment", name, *TINY_ARGS[name], "--out", str(out)]) == 0
            done[name] = (out, json.loads((out / "results.json").read_text()))
        return done[name]

    return run


def _is_multiple(value: float, n: int) -> bool:
    return abs(value * n - round(value * n)) < 1e-4


def _check_classification_run(run: dict, *, epochs: int, n_eval: int = 64) -> None:
    assert RUN_KEYS | {"train_accuracy", "val_accuracy", "test_accuracy"} <= set(run)
    assert run["epochs_run"] == epochs == len(run["history"]["epoch"])
    for key in ("train_accuracy", "val_accuracy", "test_accuracy"):
        assert 0.0 <= run[key] <= 1.0 and _is_multiple(run[key], n_eval), (key, run[key])
    assert run["generalization_gap"] == run["train_accuracy"] - run["test_accuracy"]
    assert all(math.isfinite(v) for v in run["history"]["val_loss"])
    assert run["skipped_steps"] == 0
    hist = run["weight_histogram"]
    assert len(hist["edges"]) == len(hist["counts"]) + 1


def test_every_story_is_registered():
    assert set(STORIES) <= set(names())


@pytest.mark.parametrize("name", STORIES)
def test_story_writes_results_report_and_figures(story, name):
    out, results = story(name)
    assert results["experiment"] == name
    config = results["config"]
    assert "out" not in config and "quiet" not in config and config["seed"] == 0
    report = (out / "report.md").read_text()
    assert report.startswith("# ") and "Reproduce: `jaxreg experiment" in report
    figures = sorted(p.name for p in out.glob("*.png"))
    assert figures, "every story draws at least one figure"
    for figure in figures:
        assert (out / figure).read_bytes()[:4] == b"\x89PNG" and f"({figure})" in report


def test_dropout_mlp_runs_both_variants(story):
    _, results = story("dropout_mlp")
    base, drop = results["runs"]
    assert (base["technique"], drop["technique"]) == ("no dropout", "dropout 0.5")
    assert (base["settings"]["dropout_rate"], drop["settings"]["dropout_rate"]) == (0.0, 0.5)
    for run in (base, drop):
        _check_classification_run(run, epochs=2)
        # 64 inputs -> 16 -> 10 classes: kernels and biases, counted by hand.
        assert run["num_params"] == 64 * 16 + 16 + 16 * 10 + 10
    # Same initial parameters and batches; dropout is the only difference, so the runs must differ.
    assert base["history"]["train_loss"] != drop["history"]["train_loss"]


def test_penalties_proximal_l1_makes_exact_zeros_and_subgradient_l1_does_not(story):
    _, results = story("penalties")
    runs = {r["technique"]: r for r in results["runs"]}
    assert list(runs) == ["none", "l1", "l2", "elastic_net", "proximal_l1"]
    for run in runs.values():
        _check_classification_run(run, epochs=2)
        assert run["num_kernel_weights"] == 64 * 16 + 16 * 10
        assert run["exact_zeros"] == round(run["sparsity"] * run["num_kernel_weights"])
        fractions = run["abs_weight_fractions"]
        assert run["thresholds"][0] == 0.0 and fractions[0] == run["sparsity"]
        assert fractions == sorted(fractions)  # a cumulative distribution
    assert runs["proximal_l1"]["sparsity"] > 0.0
    for name in ("none", "l1", "l2", "elastic_net"):
        assert runs[name]["sparsity"] == 0.0, name
    # L1 pulls weights towards 0 without reaching it: more weights under 1e-3 than without a penalty.
    assert runs["l1"]["near_zero_fraction"] > runs["none"]["near_zero_fraction"]
    assert runs["proximal_l1"]["kernel_l1_norm"] < runs["none"]["kernel_l1_norm"]


def test_regression_reports_mse_per_variant_and_the_linear_references(story):
    out, results = story("regression")
    assert results["config"]["dataset"] == "diabetes" and results["config"]["num_train"] == 300
    runs = {r["technique"]: r for r in results["runs"]}
    assert list(runs) == ["none", "dropout", "batchnorm", "dropout+batchnorm"]
    for name, run in runs.items():
        assert len(run["repeats"]) == 2 and [r["seed"] for r in run["repeats"]] == [0, 1]
        test_mse = [r["test_mse"] for r in run["repeats"]]
        assert run["test_mse"] == pytest.approx(np.mean(test_mse), rel=1e-12)
        assert run["test_mse_std"] == pytest.approx(np.std(test_mse), rel=1e-9, abs=1e-12)
        assert run["settings"]["batch_norm"] == ("batchnorm" in name)
        assert len(run["history"]["epoch"]) == 2 and run["test_mse"] > 0
    ridge, lasso = results["references"]
    assert (ridge["technique"], lasso["technique"]) == ("RidgeCV", "LassoCV")
    # Reference: ridge in closed form by numpy (centered data, intercept = mean residual) at RidgeCV's alpha.
    x, y = (a.astype(np.float64) for a in data.load("diabetes", split="train", seed=0))
    (alpha,) = ridge["alpha"]
    xc, yc = x - x.mean(0), y - y.mean(0)
    w = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ yc)
    x_test, y_test = (a.astype(np.float64) for a in data.load("diabetes", split="test", seed=0))
    mse = float(np.mean((x_test @ w + (y.mean(0) - x.mean(0) @ w) - y_test) ** 2))
    assert ridge["test_mse"] == pytest.approx(mse, rel=1e-6)
    # The linear models explain part of the variance (standardized target: the mean predicts about 1).
    assert 0.3 < ridge["test_mse"] < 0.8 and 0.3 < lasso["test_mse"] < 0.8
    report_text = (out / "report.md").read_text()
    assert "| RidgeCV " in report_text and "| LassoCV " in report_text and "noise floor" not in report_text


def test_cnn_full_recipe_carries_every_regularizer(story):
    _, results = story("cnn")
    plain, full = results["runs"]
    assert (plain["technique"], full["technique"]) == ("plain", "full recipe")
    _check_classification_run(plain, epochs=2)
    assert 1 <= full["epochs_run"] <= 2 and 0 <= full["best_epoch"] < full["epochs_run"]
    # conv 3x3x1->4, conv 3x3x4->8, 2x2 max-pool of 8x8 -> 4x4x8 = 128 -> dense 16 -> 10, by hand; with batch
    # norm the three hidden layers lose their biases and gain a scale and an offset per unit.
    plain_params = (9 * 4 + 4) + (9 * 4 * 8 + 8) + (128 * 16 + 16) + (16 * 10 + 10)
    assert plain["num_params"] == plain_params
    assert full["num_params"] == plain_params - (4 + 8 + 16) + 2 * (4 + 8 + 16)
    assert "lr_scale" in full["history"] and 0.0 < full["final_lr_scale"] <= 1.0
    assert full["settings"]["augmentation"] and full["settings"]["clip_norm"] == 1.0
    assert full["history"]["train_penalty"][0] > 0.0  # the L2 penalty is in the loss
    assert plain["history"]["train_penalty"] == [0.0, 0.0]


def test_transformer_with_and_without_regularization(story):
    _, results = story("transformer")
    plain, everywhere = results["runs"]  # --variants: two of the three (the third differs only in a rate)
    assert plain["settings"] == {"dropout_rate": 0.0, "input_dropout_rate": 0.0, "weight_decay": 0.0}
    assert everywhere["settings"] == {"dropout_rate": 0.1, "input_dropout_rate": 0.1, "weight_decay": 0.01}
    for run in (plain, everywhere):
        _check_classification_run(run, epochs=2)
    assert plain["num_params"] == everywhere["num_params"]  # dropout and decay add no parameters
    assert results["config"]["sequence_length"] == 8


def test_kfold_trains_folds_times_settings_and_averages_them(story):
    _, results = story("kfold")
    assert results["folds"] == 5 and results["num_members"] == 5 * 2 == len(results["members"])
    assert {(m["setting"], m["fold"]) for m in results["members"]} == {(s, f) for s in range(2) for f in range(5)}
    # The pooled train + validation examples (64 + 64) are split as scikit-learn's KFold splits them.
    sizes = [len(val) for _, val in KFold(n_splits=5).split(np.zeros(128))]
    for member in results["members"]:
        assert _is_multiple(member["val_accuracy"], sizes[member["fold"]]), member
    for g, setting in enumerate(results["settings"]):
        accs = [m["val_accuracy"] for m in results["members"] if m["setting"] == g]
        assert setting["cv_accuracy"] == pytest.approx(np.mean(accs), rel=1e-12)
        assert setting["cv_accuracy_std"] == pytest.approx(np.std(accs), abs=1e-12)
    best = max(range(2), key=lambda g: results["settings"][g]["cv_accuracy"])
    assert results["best"]["setting"] == best
    assert [s["dropout_rate"] for s in results["settings"]] == [0.0, 0.5]


def test_early_stopping_stops_restores_and_saves_epochs(story):
    _, results = story("early_stopping")
    fixed, restored, last = results["runs"]
    assert fixed["epochs_run"] == 4 and fixed["epochs_saved"] == 0
    # Keras' rule with patience 0: the first epoch always improves, the second (no gain of min_delta) stops.
    assert restored["epochs_run"] == last["epochs_run"] == 2 and restored["epochs_saved"] == 2
    assert restored["best_epoch"] == 0
    # The three runs share their first epochs, so the restored weights are the fixed run's epoch-0 weights
    # and the last weights its epoch-1 weights.
    assert restored["val_loss"] == pytest.approx(fixed["history"]["val_loss"][0], rel=1e-5)
    assert last["val_loss"] == pytest.approx(fixed["history"]["val_loss"][1], rel=1e-5)
    assert restored["history"]["val_loss"] == fixed["history"]["val_loss"][:2]
    assert results["fixed_run_best_val_epoch"] == int(np.argmin(fixed["history"]["val_loss"]))


def test_bias_variance_strong_l2_underfits(story):
    _, results = story("bias_variance")
    sweeps = results["sweeps"]
    assert [p["strength"] for p in sweeps["l2"]] == [0.0, 1.0, 10.0]
    assert [p["strength"] for p in sweeps["dropout"]] == [0.0, 0.3, 0.6]
    assert results["num_members"] == 3 + 3 - 1  # the unregularized member is shared by the two sweeps
    assert sweeps["l2"][0]["train_accuracy"] == sweeps["dropout"][0]["train_accuracy"]
    train = [p["train_accuracy"] for p in sweeps["l2"]]
    # Under-fitting end: the training accuracy does not rise with the strength and ends well below L2 = 0.
    assert train[2] <= train[1] and train[2] < train[0] - 0.15, train
    for points in sweeps.values():
        for p in points:
            assert p["gap"] == p["train_accuracy"] - p["val_accuracy"]
            assert len(p["val_accuracy_curve"]) == 10


def test_results_are_byte_identical_for_equal_arguments(story, tmp_path):
    out, _ = story("dropout_mlp")
    assert main(["experiment", "dropout_mlp", *TINY_ARGS["dropout_mlp"], "--out", str(tmp_path)]) == 0
    assert (tmp_path / "results.json").read_bytes() == (out / "results.json").read_bytes()


@pytest.mark.parametrize("argv", [
    ["kfold", "--dropout-rates", "0,1.5"],
    ["cnn", "--variants", "plain,nope"],
    ["cnn", "--dataset", "synthetic_sequences"],
    ["bias_variance", "--l2", "0,x"],
    ["penalties", "--proximal-l1", "-1"],
    ["transformer", "--model-dim", "6", "--num-heads", "4"],
    ["regression", "--dataset", "digits"],
    ["dropout_mlp", "--epochs", "0"],
    ["early_stopping", "--checkpoint-dir", "somewhere"],
])
def test_bad_arguments_are_usage_errors(argv, capsys, tmp_path):
    assert main(["experiment", *argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and len(err.strip().splitlines()) == 1


def test_unprepared_tfds_dataset_exits_with_status_1(capsys, tmp_path):
    assert main(["experiment", "cnn", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--out",
                 str(tmp_path / "out")]) == 1
    assert "cifar10" in capsys.readouterr().err
