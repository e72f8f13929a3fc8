"""Tests for jaxreg/metrics.py.

References: scikit-learn's ``accuracy_score`` (with ``sample_weight``); numpy formulas for the gaps, norms and
sparsity; a Python loop over the split keys (numpy mean/std) for Monte Carlo dropout, with flax.linen.Dropout
as the noisy model.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import accuracy_score

import jaxreg as jr

RNG = np.random.RandomState(0)
PARAMS = {
    "Dense_0": {"kernel": RNG.normal(size=(4, 5)).astype(np.float32), "bias": RNG.normal(size=5).astype(np.float32)},
    "BatchNorm_0": {"scale": np.ones(5, np.float32), "bias": np.zeros(5, np.float32)},
    "Dense_1": {"kernel": np.where(RNG.rand(5, 3) < 0.4, 0.0, RNG.normal(size=(5, 3))).astype(np.float32)},
}


def test_accuracy_matches_sklearn_with_and_without_weights():
    logits = RNG.normal(size=(50, 4)).astype(np.float32)
    labels = RNG.randint(0, 4, 50)
    weights = RNG.rand(50).astype(np.float32) * 2  # sum > 1, where max(sum(w), 1) = sum(w)
    pred = logits.argmax(-1)
    acc = jax.jit(jr.accuracy)(jnp.asarray(logits), jnp.asarray(labels))
    assert acc.dtype == jnp.float32
    np.testing.assert_allclose(acc, accuracy_score(labels, pred), rtol=1e-6)
    np.testing.assert_allclose(
        jr.accuracy(logits, labels, weights=weights), accuracy_score(labels, pred, sample_weight=weights), rtol=1e-5
    )
    with pytest.raises(ValueError, match="labels"):
        jr.accuracy(logits, labels[:10])


def test_accuracy_label_forms_and_shape_errors():
    """Legal label forms: integer classes of shape logits.shape[:-1] (sklearn's reference) and one-hot/soft labels
    of the logits' shape (their argmax is the class). Anything else, and weights that are not one per example,
    raise a ValueError naming both shapes (issue 15: a wrong weights shape died in JAX broadcasting)."""
    logits = RNG.normal(size=(20, 4)).astype(np.float32)
    labels = RNG.randint(0, 4, 20)
    weights = RNG.rand(20).astype(np.float32)
    expected = accuracy_score(labels, logits.argmax(-1), sample_weight=weights)
    one_hot = np.eye(4, dtype=np.float32)[labels]
    soft = 0.9 * one_hot + 0.1 / 4  # smoothed labels keep their argmax
    for form in (labels, one_hot, soft):
        np.testing.assert_allclose(jr.accuracy(logits, form, weights=weights), expected, rtol=1e-5)
    with pytest.raises(ValueError, match=r"logits of shape \(20, 4\) and labels of shape \(20, 3\)"):
        jr.accuracy(logits, one_hot[:, :3])
    with pytest.raises(ValueError, match=r"weights must have shape .*\(20,\).*got weights of shape \(19,\)") as info:
        jr.accuracy(logits, labels, weights=weights[:19])
    assert info.traceback[-1].path.name == "metrics.py"
    with pytest.raises(TypeError, match="labels"):
        jr.accuracy(logits, labels.astype(np.float32))  # class indices must be integers


def test_gap_and_score_shape_mismatch_is_a_value_error_naming_both_shapes():
    """Issue 15: mismatched train/val arrays died in JAX broadcasting (a TypeError from jax internals)."""
    with pytest.raises(ValueError, match=r"train_metric of shape \(3,\) and val_metric of shape \(2,\)") as info:
        jr.generalization_gap(np.ones(3, np.float32), np.ones(2, np.float32))
    assert info.traceback[-1].path.name == "metrics.py"
    with pytest.raises(ValueError, match=r"train_loss of shape \(3,\) and val_loss of shape \(2,\)"):
        jr.overfitting_score(np.ones(3, np.float32), np.ones(2, np.float32))
    with pytest.raises(TypeError, match="higher_is_better"):
        jr.generalization_gap(0.9, 0.8, higher_is_better="yes")
    # Broadcasting a scalar against per-run values is still fine.
    np.testing.assert_allclose(jr.generalization_gap(np.array([0.9, 0.8], np.float32), 0.5), [0.4, 0.3], rtol=1e-6)


def test_gap_and_overfitting_score_formulas():
    train_acc, val_acc = np.array([0.9, 0.8, 0.95], np.float32), np.array([0.85, 0.82, 0.7], np.float32)
    np.testing.assert_allclose(jr.generalization_gap(train_acc, val_acc), train_acc - val_acc, rtol=1e-6)
    train_loss, val_loss = np.array([0.2, 0.5], np.float32), np.array([0.3, 0.4], np.float32)
    np.testing.assert_allclose(
        jr.generalization_gap(train_loss, val_loss, higher_is_better=False), val_loss - train_loss, rtol=1e-6
    )
    np.testing.assert_allclose(jr.overfitting_score(train_loss, val_loss), val_loss / train_loss, rtol=1e-6)
    # Sign convention: train better than val is positive either way.
    assert float(jr.generalization_gap(0.9, 0.7)) > 0
    assert float(jr.generalization_gap(0.1, 0.3, higher_is_better=False)) > 0


def test_weight_norms_and_sparsity_match_numpy():
    params = jax.tree.map(jnp.asarray, PARAMS)
    norms, sparsity_all, sparsity_kernels = jax.jit(
        lambda p: (jr.weight_norms(p), jr.sparsity(p), jr.sparsity(p, mask=jr.kernel_mask))
    )(params)
    assert sorted(norms) == sorted(
        ["BatchNorm_0/bias", "BatchNorm_0/scale", "Dense_0/bias", "Dense_0/kernel", "Dense_1/kernel"]
    )
    for path, d in norms.items():
        layer, leaf = path.split("/")
        w = np.float64(PARAMS[layer][leaf])
        np.testing.assert_allclose(d["l1"], np.abs(w).sum(), rtol=1e-6)
        np.testing.assert_allclose(d["l2"], np.sqrt((w**2).sum()), rtol=1e-6)
    kernels_only = jr.weight_norms(params, mask=jr.kernel_mask)
    assert sorted(kernels_only) == ["Dense_0/kernel", "Dense_1/kernel"]

    leaves = jax.tree.leaves(PARAMS)
    zeros = sum(int((w == 0).sum()) for w in leaves)
    np.testing.assert_allclose(sparsity_all, zeros / sum(w.size for w in leaves), rtol=1e-6)
    kernels = [PARAMS["Dense_0"]["kernel"], PARAMS["Dense_1"]["kernel"]]
    expected = sum(int((k == 0).sum()) for k in kernels) / sum(k.size for k in kernels)
    assert expected > 0.1
    np.testing.assert_allclose(sparsity_kernels, expected, rtol=1e-6)
    assert float(jr.sparsity(params, mask=False)) == 0.0  # empty selection


def test_weight_norms_of_bfloat16_are_float32():
    w = jnp.array([[3.0, -4.0]], jnp.bfloat16)
    norms = jr.weight_norms({"k": w})["k"]
    assert norms["l1"].dtype == jnp.float32 and norms["l2"].dtype == jnp.float32
    np.testing.assert_allclose([norms["l1"], norms["l2"]], [7.0, 5.0])


def test_mc_predict_matches_a_python_loop_over_keys():
    """mean/std over vmapped keys = numpy mean/std (ddof=0) of a loop over jax.random.split(key, S)."""
    dense, dropout = nn.Dense(3), nn.Dropout(0.5, deterministic=False)
    x = jnp.asarray(RNG.normal(size=(6, 4)), jnp.float32)
    params = dense.init(jax.random.key(0), x)

    def apply_fn(p, x, key):
        return dense.apply(p, dropout.apply({}, x, rng=key))

    key, num_samples = jax.random.key(7), 8
    mean, std = jax.jit(jr.mc_predict, static_argnums=(0, 4))(apply_fn, params, x, key, num_samples)
    apply_jit = jax.jit(apply_fn)
    samples = np.stack([np.asarray(apply_jit(params, x, k)) for k in jax.random.split(key, num_samples)])
    np.testing.assert_allclose(mean, samples.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std, samples.std(0), rtol=1e-4, atol=1e-6)
    assert float(std.max()) > 0  # the dropout noise is really on
    with pytest.raises(ValueError, match="num_samples"):
        jr.mc_predict(apply_fn, params, x, key, 0)
    with pytest.raises(ValueError, match="key"):
        jr.mc_predict(apply_fn, params, x, None, 4)
    with pytest.raises(TypeError, match="apply_fn"):
        jr.mc_predict(None, params, x, key, 4)
