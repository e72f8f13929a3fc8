"""Tests for jaxreg.consistency: AugMix's Jensen-Shannon loss, the engine's ``consistency=`` hook, the views.

References:

* google-research/augmix ``cifar.py`` (timm's ``JsdCrossEntropy`` is the same), quoted and re-implemented in
  numpy in ``_reference_jsd``::

      p_mixture = torch.clamp((p_clean + p_aug1 + p_aug2) / 3., 1e-7, 1).log()
      loss += 12 * (F.kl_div(p_mixture, p_clean, reduction='batchmean') +
                    F.kl_div(p_mixture, p_aug1, reduction='batchmean') +
                    F.kl_div(p_mixture, p_aug2, reduction='batchmean')) / 3.

  and ``torch.nn.functional.kl_div`` itself where torch is installed.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxreg as jr
from jaxreg.train import CONSISTENCY_STREAM, stream_key


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _reference_jsd(*logits):
    """The reference code's loss (batchmean KLs of the clamped log mixture), in float64 numpy."""
    probs = [_softmax(np.asarray(z, np.float64)) for z in logits]
    log_mixture = np.log(np.clip(sum(probs) / len(probs), 1e-7, 1))
    kl = [np.sum(np.where(p > 0, p * (np.log(np.where(p > 0, p, 1)) - log_mixture), 0), -1).sum() / len(p)
          for p in probs]
    return sum(kl) / len(probs)


def test_jsd_loss_matches_the_augmix_reference_code():
    rng = np.random.default_rng(0)
    for k, scale in itertools.product((2, 3, 4), (0.1, 3.0, 40.0)):  # 40: near one-hot, the clamp acts
        logits = [rng.normal(size=(16, 10)).astype(np.float32) * scale for _ in range(k)]
        np.testing.assert_allclose(jr.jsd_loss(*logits), _reference_jsd(*logits), rtol=2e-5, atol=1e-6)
        per_example = jr.jensen_shannon(*logits)
        assert per_example.shape == (16,) and float(per_example.min()) >= 0
        assert float(per_example.max()) <= math.log(k) + 1e-5
    same = rng.normal(size=(4, 5)).astype(np.float32)
    assert float(jr.jsd_loss(same, same, same)) == pytest.approx(0.0, abs=1e-7)
    # Class axis first: the same numbers.
    a, b = rng.normal(size=(2, 6, 3)).astype(np.float32)
    np.testing.assert_allclose(jr.jensen_shannon(a.T, b.T, axis=0), jr.jensen_shannon(a, b), rtol=1e-6)


def test_jsd_loss_matches_torch_kl_div():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(1)
    logits = [rng.normal(size=(8, 7)).astype(np.float32) * 4 for _ in range(3)]
    p_clean, p_aug1, p_aug2 = (F.softmax(torch.from_numpy(z), dim=1) for z in logits)
    p_mixture = torch.clamp((p_clean + p_aug1 + p_aug2) / 3.0, 1e-7, 1).log()
    expected = (F.kl_div(p_mixture, p_clean, reduction="batchmean") + F.kl_div(p_mixture, p_aug1, reduction="batchmean")
                + F.kl_div(p_mixture, p_aug2, reduction="batchmean")) / 3.0
    np.testing.assert_allclose(jr.jsd_loss(*logits), expected.item(), rtol=1e-5)


def test_jsd_bad_input():
    with pytest.raises(ValueError, match="two or more predictions"):
        jr.jsd_loss(jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match="one shape"):
        jr.jsd_loss(jnp.zeros((2, 3)), jnp.zeros((2, 4)))
    with pytest.raises(TypeError, match=r"logits\[1\] must be a float array"):
        jr.jsd_loss(jnp.zeros((2, 3)), jnp.zeros((2, 3), jnp.int32))
    with pytest.raises(ValueError, match="num_views"):
        jr.augmix_views(0)


# ------------------------------------------------------------------------------------ the engine's hook

N, H = 8, 6
IMAGES = jax.random.uniform(jax.random.key(2), (N, H, H, 3))
LABELS = jnp.arange(N) % 4


def _apply(params, model_state, x, *, key, training):
    return x.reshape(x.shape[0], -1) @ params["w"] + params["b"], model_state


def _params():
    return {"w": jax.random.normal(jax.random.key(3), (H * H * 3, 4)) * 0.3, "b": jnp.zeros(4)}


def test_consistency_step_equals_the_reference_loss_and_its_gradient():
    """The step's loss, penalty and update against the reference's objective written out by hand: cross-entropy
    on the clean logits + 12 * JSD of (clean, view 1, view 2), the views from the step's consistency stream."""
    tx = optax.sgd(0.1)
    def views(key, x):  # any views function: a cheap one (jr.augmix_views is tested below)
        return tuple(jnp.clip(x + 0.2 * jax.random.normal(k, x.shape), 0, 1) for k in jax.random.split(key, 2))

    step = jr.make_train_step(_apply, optax.softmax_cross_entropy_with_integer_labels, tx,
                              consistency=(views, 12.0))
    state = jr.create_train_state(_params(), tx, jax.random.key(4))
    v1, v2 = views(stream_key(state.key, CONSISTENCY_STREAM, 0), IMAGES)

    def objective(params):
        clean, a1, a2 = (_apply(params, None, v, key=None, training=True)[0] for v in (IMAGES, v1, v2))
        task = optax.softmax_cross_entropy_with_integer_labels(clean, LABELS).mean()
        return task + 12.0 * jr.jsd_loss(clean, a1, a2), task

    (total, task), grads = jax.value_and_grad(objective, has_aux=True)(_params())
    new_state, metrics = step(state, IMAGES, LABELS)
    np.testing.assert_allclose(metrics["loss"], task, rtol=1e-5)
    np.testing.assert_allclose(metrics["penalty"], total - task, rtol=1e-4, atol=1e-7)
    assert float(metrics["penalty"]) > 0
    expected = jax.tree.map(lambda p, g: p - 0.1 * g, _params(), grads)
    for a, b in zip(jax.tree.leaves(new_state.params), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # Same key, same bits; another step, other views.
    again, _ = step(jr.create_train_state(_params(), tx, jax.random.key(4)), IMAGES, LABELS)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(again.params), jax.tree.leaves(new_state.params)))


def test_consistency_bad_arguments_are_named_errors():
    tx = optax.sgd(0.1)
    ce = optax.softmax_cross_entropy_with_integer_labels
    with pytest.raises(TypeError, match=r"consistency must be a \(views_fn, coefficient\) pair"):
        jr.make_train_step(_apply, ce, tx, consistency=jr.augmix_views())
    with pytest.raises(ValueError, match="consistency coefficient"):
        jr.make_train_step(_apply, ce, tx, consistency=(jr.augmix_views(), -1.0))
    with pytest.raises(ValueError, match="cannot be combined with rdrop"):
        jr.make_train_step(_apply, ce, tx, consistency=(jr.augmix_views(), 1.0), rdrop=1.0)
    step = jr.make_train_step(_apply, ce, tx, consistency=(lambda key, x: (x[:, :-1],), 1.0), jit=False)
    with pytest.raises(ValueError, match="view 0 has shape"):
        step(jr.create_train_state(_params(), tx, jax.random.key(0)), IMAGES, LABELS)


# --------------------------------------------------------------------------------- jr.augmix_views

def test_augmix_views_calls_augmix_once_per_view_with_its_own_key(monkeypatch):
    """Reference: the reference's ``AugMixDataset`` returns ``(x, augmix(x), augmix(x))``, independent draws.
    ``jr.augmix`` itself is tested against torchvision's ops and bins in tests/test_contract.py."""
    import importlib

    augmix_module = importlib.import_module("jaxreg.augment.augmix")  # jaxreg.augment.augmix is the function

    calls = []
    monkeypatch.setattr(augmix_module, "augmix", lambda key, x, **options: calls.append((key, options)) or x + 1)
    key = jax.random.key(9)
    views = jr.augmix_views(3, severity=2, width=1)(key, jnp.zeros((2, 4, 4, 3)))
    assert len(views) == 3 and all(float(v.min()) == 1.0 for v in views)
    assert [jax.random.key_data(k).tolist() for k, _ in calls] == jax.random.key_data(jax.random.split(key, 3)).tolist()
    assert all(options == {"severity": 2, "width": 1} for _, options in calls)
