"""Tests of the compare experiment (jaxreg/experiments/compare.py, models.py, report.py, the registry).

References: the regularization effect is checked against the unregularized baseline trained on identical
data, batches and initial weights; label noise against a numpy count; the optimizer chains against
hand-written numpy updates (SGD with momentum, decoupled decay); augmentation against numpy shifts; the
transformer's padding mask against the same sequence without padding; results.json against itself
(byte-identical) and against an uninterrupted run (checkpoint resume).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxreg import experiments
from jaxreg.experiments import UsageError, compare, models, programs, report, runner, technique_programs
from jaxreg.experiments.compare import CompareConfig, Recipe, parse_techniques, run_compare

SEEDS = (0, 1)


@pytest.fixture(scope="module")
def effect_runs():
    """The default setup (MLP, digits, 20% label noise, SGD) at 30 instead of 60 epochs, over two seeds."""
    return _effect_runs()


@functools.cache  # per process: an xdist worker may tear the module fixture down between its tests
def _effect_runs():
    config = CompareConfig(techniques=("none", "l2", "dropout"), epochs=30)
    runs: dict[str, list[dict]] = {}
    for seed in SEEDS:
        for run in run_compare(dataclasses.replace(config, seed=seed))["runs"]:
            runs.setdefault(run["technique"], []).append(run)
    return runs


def _mean(runs, key):
    return float(np.mean([r[key] for r in runs]))


def test_baseline_memorizes_and_regularizers_close_the_gap(effect_runs):
    """Averaged over 2 seeds: none fits its (noisy) training labels and has the largest gap; L2 and dropout
    close it by more than 10 points and beat the baseline on test accuracy by more than 3 points."""
    none, l2, dropout = effect_runs["none"], effect_runs["l2"], effect_runs["dropout"]
    assert _mean(none, "train_accuracy") > 0.9
    assert _mean(none, "generalization_gap") > 0.08
    for reg in (l2, dropout):
        assert _mean(reg, "generalization_gap") < _mean(none, "generalization_gap") - 0.10
        assert _mean(reg, "test_accuracy") > _mean(none, "test_accuracy") + 0.03
    # The memorized noise: the baseline agrees with the noisy labels far more than the regularized models.
    assert _mean(none, "train_accuracy") - _mean(dropout, "train_accuracy") > 0.08


def test_run_record_is_consistent(effect_runs):
    """Gap = train - test accuracy; history lengths = epochs run; the weight histogram counts every kernel weight
    (64*256 + 256*256 + 256*10 for the default MLP)."""
    run = effect_runs["none"][0]
    assert run["generalization_gap"] == run["train_accuracy"] - run["test_accuracy"]
    assert run["epochs_run"] == 30 and len(run["history"]["val_loss"]) == 30
    assert sum(run["weight_histogram"]["counts"]) == 64 * 256 + 256 * 256 + 256 * 10
    assert run["num_params"] == 64 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10
    assert run["train_clean_accuracy"] < run["train_accuracy"]  # the memorized labels are the noisy ones
    # fit's history gap uses the eval-mode training accuracy: matches the final record at the last epoch.
    assert run["history"]["train_eval_accuracy"][-1] == pytest.approx(run["train_accuracy"], abs=1e-6)


def test_results_json_is_byte_identical_and_has_no_timings(tmp_path):
    from jaxreg.cli import main

    args = ["compare", "--techniques", "dropout", "--epochs", "2", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    first, second = (tmp_path / d / "results.json" for d in "ab")
    assert first.read_bytes() == second.read_bytes()
    result = json.loads(first.read_text())
    assert [r["technique"] for r in result["runs"]] == ["dropout"]
    required = {"technique", "train_accuracy", "test_accuracy", "train_loss", "test_loss", "generalization_gap",
                "epochs_run", "history", "sparsity"}
    assert all(required <= set(r) for r in result["runs"])
    text = first.read_text()
    assert "seconds" not in text and "time" not in text and str(tmp_path) not in text
    timing = json.loads((tmp_path / "a" / "timing.json").read_text())
    assert set(timing["per_technique_seconds"]) == {"dropout"}
    assert {p.name for p in (tmp_path / "a").glob("*.png")} >= {"accuracy_gap.png", "curves_loss.png"}


@pytest.mark.slow  # two compare runs end to end (~13 s); checkpoint resume is unit-tested in test_checkpoint.py
def test_checkpoint_resume_gives_the_uninterrupted_result(tmp_path):
    """A run stopped after 2 of 3 epochs and started again ends with the results of one 3-epoch run."""
    config = CompareConfig(techniques=("early_stopping=1",), epochs=3)  # the stopper state is resumed too
    straight = report.canonical_json(run_compare(config))
    ckpt = str(tmp_path / "ckpt")
    run_compare(dataclasses.replace(config, epochs=2), checkpoint_dir=ckpt)  # "killed" after epoch 2
    resumed = report.canonical_json(run_compare(config, checkpoint_dir=ckpt))
    assert resumed == straight
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["00-early_stopping=1", "compare_config.json"]
    with pytest.raises(UsageError, match="other arguments"):
        run_compare(CompareConfig(techniques=("none",), epochs=3), checkpoint_dir=ckpt)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("none,,l2", "empty item"),
        ("l3", "unknown technique 'l3'"),
        ("none+l2", "stands alone"),
        ("l2+l2", "twice"),
        ("l2,l2", "listed twice"),
        ("dropout=1.5", r"in \(0, 1\)"),
        ("l2=-1", ">= 0"),
        ("l2=abc", "must be a number"),
        ("batchnorm=3", "takes no value"),
        ("early_stopping=2.5", "integer"),
        ("dropout+gaussian_dropout", "cannot be combined"),
        ("max_norm=0", "> 0"),
    ],
)
def test_parse_techniques_rejects(text, message):
    with pytest.raises(UsageError, match=message):
        parse_techniques(text)


def test_parse_techniques_builds_recipes():
    parsed = dict(parse_techniques("none, dropout+batchnorm, l2=1e-3, early_stopping=4"))
    assert parsed["none"] == Recipe()
    assert parsed["dropout+batchnorm"] == Recipe(dropout=0.5, batch_norm=True)
    assert parsed["l2=1e-3"] == Recipe(l2=1e-3)
    assert parsed["early_stopping=4"].early_stopping == 4
    assert Recipe(l2=1e-3).settings() == {"l2": 1e-3}


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"model": "rnn"}, "unknown model"),
        ({"optimizer": "lbfgs"}, "unknown optimizer"),
        ({"dataset": "synthetic_regression"}, "classification"),
        ({"dataset": "nope"}, "Unknown dataset"),
        ({"techniques": ("spatial_dropout",)}, "feature maps"),
        ({"model": "transformer", "techniques": ("batchnorm",)}, "LayerNorm"),
        ({"dataset": "synthetic_sequences", "techniques": ("augment",)}, "needs images"),
        ({"dataset": "synthetic_sequences", "model": "cnn"}, "needs images"),
        ({"label_noise": 1.0}, "label-noise"),
        ({"learning_rate": 0.0}, "learning-rate"),
    ],
)
def test_bad_configs_are_usage_errors_before_training(changes, message):
    with pytest.raises(UsageError, match=message):
        compare._check_config(CompareConfig(**changes))


def test_label_noise_flips_exactly_the_fraction_to_other_classes():
    """numpy reference: exactly round(0.2 * n) labels change, each to a different class; same seed, same flips."""
    labels = np.arange(449, dtype=np.int32) % 10
    noisy = runner.noisy_labels(labels, 0.2, 10, seed=3)
    changed = noisy != labels
    assert int(changed.sum()) == round(0.2 * 449)
    assert noisy.dtype == np.int32 and noisy.min() >= 0 and noisy.max() <= 9
    np.testing.assert_array_equal(noisy, runner.noisy_labels(labels, 0.2, 10, seed=3))
    assert (runner.noisy_labels(labels, 0.2, 10, seed=4) != noisy).any()
    np.testing.assert_array_equal(runner.noisy_labels(labels, 0.0, 10, seed=3), labels)


def test_sgd_chain_with_decoupled_weight_decay_matches_numpy():
    """Reference: v = 0.9 v + g; w -= lr * (v + rate * w) on kernels only (biases not decayed)."""
    tx = technique_programs._optimizer(Recipe(weight_decay=0.1), "sgd", 0.05)
    params = {"dense": {"kernel": jnp.array([[1.0, -2.0]]), "bias": jnp.array([0.5, 0.5])}}
    grads = {"dense": {"kernel": jnp.array([[0.3, 0.1]]), "bias": jnp.array([1.0, -1.0])}}
    state = tx.init(params)
    w, b, v_w, v_b = np.array([[1.0, -2.0]]), np.array([0.5, 0.5]), np.zeros((1, 2)), np.zeros(2)
    for _ in range(3):
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        v_w, v_b = 0.9 * v_w + np.array([[0.3, 0.1]]), 0.9 * v_b + np.array([1.0, -1.0])
        w, b = w - 0.05 * (v_w + 0.1 * w), b - 0.05 * v_b
    np.testing.assert_allclose(params["dense"]["kernel"], w, rtol=1e-6)
    np.testing.assert_allclose(params["dense"]["bias"], b, rtol=1e-6)


def test_max_norm_projects_dense_columns_and_conv_channels():
    """Reference: numpy norms of dense kernel columns / conv output channels are capped at the max norm."""
    tx = technique_programs._optimizer(Recipe(max_norm=0.5), "sgd", 0.05)
    params = {"Conv_0": {"kernel": jnp.ones((3, 3, 1, 2))}, "Dense_0": {"kernel": jnp.ones((4, 3)),
                                                                        "bias": jnp.full(3, 9.0)}}
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(new["Dense_0"]["kernel"]), axis=0), 0.5, rtol=1e-5)
    conv = np.asarray(new["Conv_0"]["kernel"]).reshape(-1, 2)
    np.testing.assert_allclose(np.linalg.norm(conv, axis=0), 0.5, rtol=1e-5)
    np.testing.assert_array_equal(new["Dense_0"]["bias"], params["Dense_0"]["bias"])


def test_augmentation_shifts_training_batches_only():
    """Reference: every augmented image equals the original shifted by (dy, dx) in {-1, 0, 1}^2 with zero fill."""
    seen = []

    def apply_fn(params, model_state, x, *, key, training):
        seen.append(x)
        return x, model_state

    apply = programs.with_augmentation(apply_fn, technique_programs._shift_images)
    x = jax.random.uniform(jax.random.key(0), (16, 8, 8, 1)) + 0.1
    apply({}, {}, x, key=jax.random.key(1), training=True)
    apply({}, {}, x, key=None, training=False)
    augmented, evaluated = np.asarray(seen[0]), np.asarray(seen[1])
    np.testing.assert_array_equal(evaluated, np.asarray(x))
    padded = np.pad(np.asarray(x), ((0, 0), (1, 1), (1, 1), (0, 0)))
    shifts = []
    for i in range(16):
        matches = [(dy, dx) for dy in range(3) for dx in range(3)
                   if np.array_equal(padded[i, dy:dy + 8, dx:dx + 8], augmented[i])]
        assert matches, f"image {i} is not a 1-pixel shift of the original"
        shifts.append(matches[0])
    assert len(set(shifts)) > 1  # per-example shifts


def test_models_have_the_documented_structure():
    x = jnp.ones((2, 8, 8, 1))
    mlp = models.MLP(num_outputs=10, hidden_sizes=(32, 16), batch_norm=True)
    variables = jax.eval_shape(lambda: mlp.init(jax.random.key(0), x, train=False))
    shapes = jax.tree.map(lambda a: a.shape, variables["params"])
    assert shapes["Dense_0"] == {"kernel": (64, 32)}  # no bias before batch norm
    assert shapes["Dense_2"] == {"kernel": (16, 10), "bias": (10,)}
    assert set(variables["batch_stats"]) == {"BatchNorm_0", "BatchNorm_1"}
    cnn = models.RegularizedCNN(num_outputs=10, features=(4, 8), dense_size=16)
    cnn_vars = jax.eval_shape(lambda: cnn.init(jax.random.key(0), x, train=False))
    assert cnn_vars["params"]["Dense_0"]["kernel"].shape == (4 * 4 * 8, 16)  # 2x2 max pool: 8x8 -> 4x4
    with pytest.raises(ValueError, match="dropout_rate"):
        models.MLP(num_outputs=10, dropout_rate=1.0)
    with pytest.raises(ValueError, match="num_heads must divide"):
        models.TransformerClassifier(num_outputs=2, model_dim=10, num_heads=4)


def test_transformer_ignores_padding_tokens():
    """Padding (token 0) is masked out of attention and pooling: changing the padding embedding changes
    nothing, changing a real token's embedding changes the logits (one compiled apply, random weights)."""
    model = models.TransformerClassifier(num_outputs=2, vocab_size=16, model_dim=8, num_heads=2, mlp_dim=8,
                                         num_layers=1)
    tokens = jnp.array([[3, 5, 7, 9, 0, 0]], jnp.int32)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), tokens, train=False))
    rng = np.random.default_rng(0)
    variables = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape) * 0.5, a.dtype), shapes)
    apply = jax.jit(lambda v: model.apply(v, tokens, train=False))

    def with_embedding_row(token, row):
        table = variables["params"]["Embed_0"]["embedding"].at[token].set(row)
        return {"params": {**variables["params"], "Embed_0": {"embedding": table}}}

    reference = np.asarray(apply(variables))
    np.testing.assert_allclose(apply(with_embedding_row(0, 10.0 * jnp.ones(8))), reference, rtol=1e-5, atol=1e-6)
    assert np.abs(np.asarray(apply(with_embedding_row(3, 10.0 * jnp.ones(8)))) - reference).max() > 1e-3


def test_registry_and_common_arguments():
    assert "compare" in experiments.names()
    assert experiments.get("compare") is compare.EXPERIMENT
    with pytest.raises(UsageError, match="unknown experiment 'nope'; available experiments: .*compare"):
        experiments.get("nope")
    with pytest.raises(ValueError, match="already registered"):
        experiments.register(experiments.Experiment("compare", "x", lambda p: None, lambda a: 0))
    with pytest.raises(ValueError, match="experiment name"):
        experiments.register(experiments.Experiment("Bad Name", "x", lambda p: None, lambda a: 0))
    parser = argparse.ArgumentParser()
    experiments.add_common_arguments(parser, epochs=7, out="runs/x")
    args = parser.parse_args([])
    assert (args.epochs, args.out, args.checkpoint_dir) == (7, "runs/x", None)


def test_report_table_and_canonical_json():
    runs = [{"technique": "none", "train_accuracy": 1.0, "test_accuracy": 0.834, "generalization_gap": 0.166,
             "test_loss": 0.5, "epochs_run": 60, "sparsity": 0.0, "near_zero_fraction": 0.01}]
    lines = report.format_table(runs).splitlines()
    assert len(lines) == 3 and len({len(line) for line in lines}) == 1  # aligned
    assert [c.strip() for c in lines[2].strip("|").split("|")] == [
        "none", "100.0%", "83.4%", "+16.6", "0.500", "60", "0.0%", "1.0%"]
    assert json.loads(report.canonical_json({"x": [float("nan"), np.float32(0.25)]})) == {"x": [None, 0.25]}
    value = 0.1 + 0.2  # not representable exactly: must round-trip through the file
    assert json.loads(report.canonical_json({"v": value}))["v"] == value


def test_traced_techniques_share_one_compilation_and_match_their_own_programs(monkeypatch):
    """Penalties, dropout and batch norm on the MLP train through ONE compiled epoch program (their values
    traced); a run is the same whether it goes through the shared program or a program of its own (reference:
    the per-technique build, `technique_programs._cached_program`), to float tolerance; a run without batch
    norm is recorded without the switched-off layers' parameters."""
    from jaxreg import loop

    config = CompareConfig(techniques=("none", "l2=1e-3+proximal_l1", "batchnorm"), epochs=2, hidden_sizes=(16,),
                           seed=3)
    before = loop._epoch_program._cache_size()
    shared = run_compare(config)["runs"]
    assert loop._epoch_program._cache_size() - before <= 1  # 0 when an earlier test compiled it
    _, info = compare._check_config(config)
    assert all(technique_programs.traced(recipe, "mlp", info) for _, recipe in parse_techniques("none,l2,batchnorm"))
    assert not technique_programs.traced(parse_techniques("max_norm")[0][1], "mlp", info)
    assert shared[0]["num_params"] == 64 * 16 + 16 + 16 * 10 + 10  # no BatchNorm_* parameters in the record
    assert shared[2]["num_params"] == shared[0]["num_params"] + 2 * 16  # its scale and bias
    monkeypatch.setattr(technique_programs, "traced", lambda *args: False)
    own = run_compare(dataclasses.replace(config, techniques=("l2=1e-3+proximal_l1",)))["runs"]
    for a, b in zip(shared[1:2], own):
        for key in ("train_loss", "test_loss", "kernel_l2_norm", "sparsity"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), (a["technique"], key)


def test_programs_trained_on_two_threads_give_the_records_of_one_thread(monkeypatch):
    """The default table's two compiled programs (with and without an early stopper) train concurrently; every
    run depends only on its key and data, so the results equal the sequential order's, byte for byte."""
    config = CompareConfig(techniques=("none", "early_stopping=1", "l2"), epochs=2, hidden_sizes=(16,), seed=4)
    _, info = compare._check_config(config)
    techniques = parse_techniques(",".join(config.techniques))
    programs_ = [compare._program(recipe, config, info) for _, recipe in techniques]
    if (os.cpu_count() or 1) >= 2:
        assert compare._compilation_groups(techniques, programs_, concurrent=True) == [[0, 2], [1]]
    assert compare._compilation_groups(techniques, programs_, concurrent=False) == [[0, 1, 2]]
    threaded = report.canonical_json(run_compare(config))
    monkeypatch.setattr(compare, "_compilation_groups", lambda techniques, programs_, concurrent: [[0, 1, 2]])
    assert report.canonical_json(run_compare(config)) == threaded
