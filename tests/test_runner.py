"""Tests for the lab's runtime: jaxreg/experiments/runner.py, keys.py, records.py and programs.py.

References: numpy counts for the label noise; the documented key derivations of ``keys``; numpy for the run
record's kernel statistics. The stories that use these end to end are in test_experiments.py/test_compare.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxreg.experiments import UsageError, keys, programs, records, runner


def test_load_splits_with_label_noise_keeps_the_clean_labels():
    """numpy reference: exactly round(0.2 * n) training labels differ from the clean ones; inputs are shared."""
    splits = runner.load_splits("digits", seed=3, label_noise=0.2)
    clean = runner.load_splits("digits", seed=3)
    (x, y), (xc, yc) = splits.train, splits.train_clean
    np.testing.assert_array_equal(np.asarray(x), np.asarray(xc))
    np.testing.assert_array_equal(np.asarray(yc), np.asarray(clean.train[1]))
    assert int(np.sum(np.asarray(y) != np.asarray(yc))) == round(0.2 * len(yc))
    assert clean.train_clean is None
    np.testing.assert_array_equal(np.asarray(splits.test[1]), np.asarray(clean.test[1]))  # eval labels clean
    final = runner.final_metrics(lambda s, x, y, w: {"loss": jnp.mean(x), "accuracy": jnp.mean(x)}, None,
                                 splits)
    assert sorted(final) == ["test", "train", "train_clean", "validation"]


@pytest.mark.parametrize("kwargs, message", [
    ({"label_noise": 1.0}, r"--label-noise must be in \[0, 1\)"),
    ({"label_noise": -0.1}, r"--label-noise must be in \[0, 1\)"),
    ({"dataset": "synthetic_regression", "label_noise": 0.1}, "needs a classification dataset"),
    ({"batch_size": 10_000}, "--batch-size must be <="),
])
def test_load_splits_rejects_bad_arguments_before_loading(kwargs, message):
    kwargs = {"dataset": "digits", **kwargs}
    with pytest.raises(UsageError, match=message):
        runner.load_splits(kwargs.pop("dataset"), seed=0, **kwargs)


def test_key_streams_are_the_documented_derivations():
    assert jnp.array_equal(jax.random.key_data(keys.train_key(5)),
                           jax.random.key_data(jax.random.fold_in(jax.random.key(5), 1)))
    assert jnp.array_equal(jax.random.key_data(keys.init_key(5)),
                           jax.random.key_data(jax.random.key(5, impl="rbg")))
    step_key = jax.random.fold_in(keys.train_key(5), 7)
    assert jnp.array_equal(jax.random.key_data(keys.augment_key(step_key)),
                           jax.random.key_data(jax.random.fold_in(step_key, 0x61756720)))
    # numpy streams: one seed sequence each, so they never coincide.
    draws = [keys.label_noise_rng(5).random(), keys.subset_rng(5, 0).random(), keys.dataset_rng(5, 1).random()]
    assert len(set(draws)) == 3
    assert keys.label_noise_rng(5).random() == draws[0]


def test_run_record_counts_kernel_weights_and_marks_non_finite_values():
    """numpy reference: sparsity, near-zero fraction and L2 norm over the kernels only (biases excluded)."""
    params = {"Dense_0": {"kernel": np.array([[0.0, 2e-4], [3.0, -4.0]], np.float32),
                          "bias": np.zeros(2, np.float32)}}
    final = {name: {"loss": 0.5, "accuracy": 0.75} for name in ("train", "validation", "test")}
    final["test"] = {"loss": float("nan"), "accuracy": 0.5}
    history = {"epoch": [0, 1], "val_loss": [1.0, float("inf")]}
    record = records.run_record("l2", "classification", final, params, history, settings={"l2": 1e-3})
    assert record["sparsity"] == 0.25 and record["near_zero_fraction"] == 0.5
    assert record["kernel_l2_norm"] == pytest.approx(5.0)
    assert record["num_params"] == 6 and record["epochs_run"] == 2
    assert record["test_loss"] is None and record["history"]["val_loss"] == [1.0, None]
    assert record["generalization_gap"] == pytest.approx(0.25) and record["settings"] == {"l2": 1e-3}
    assert sum(record["weight_histogram"]["counts"]) == 4


def test_program_builders_share_one_cache():
    """Equal arguments give the same program object (the lab's one cache policy), other arguments another."""
    a = programs.mlp_program(10, None, (8,), learning_rate=1e-3)
    assert programs.mlp_program(10, None, [8], learning_rate=1e-3) is a
    assert programs.mlp_program(10, None, (8,), learning_rate=1e-2) is not a
    assert programs.sweep_program(3, (4,)) is programs.sweep_program(3, (4,))
