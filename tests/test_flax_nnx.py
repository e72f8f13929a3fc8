"""Tests for jaxreg.flax.nnx.

References: the functional core (``jaxreg.noise`` functions called with the keys drawn from a clone of the
layer's ``nnx.Rngs``, forked and drawn the way ``nnx.Dropout`` does; :func:`jaxreg.batch_norm`) and flax
itself (``nnx.Dropout`` masks bit for bit and its ``rngs`` conventions; ``nnx.BatchNorm`` state, outputs,
updated statistics and train/eval switching; a model built from nnx's layers trained one ``nnx.jit`` step
side by side with the same model built from ours).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxreg as jr
from jaxreg.flax import nnx as jrn

X = jax.random.normal(jax.random.key(42), (4, 3, 5))

NOISE_CASES = {
    "dropout": (
        lambda rngs: jrn.Dropout(0.3, broadcast_dims=(1,), rngs=rngs),
        lambda k, x: jr.dropout(k, x, 0.3, broadcast_dims=(1,)),
    ),
    "spatial_dropout": (
        lambda rngs: jrn.SpatialDropout(0.3, channel_axis=1, rngs=rngs),
        lambda k, x: jr.spatial_dropout(k, x, 0.3, channel_axis=1),
    ),
    "gaussian_dropout": (lambda rngs: jrn.GaussianDropout(0.3, rngs=rngs), lambda k, x: jr.gaussian_dropout(k, x, 0.3)),
    "alpha_dropout": (
        lambda rngs: jrn.AlphaDropout(0.3, mask_impl="hash", rngs=rngs),
        lambda k, x: jr.alpha_dropout(k, x, 0.3, mask_impl="hash"),
    ),
    "gaussian_noise": (lambda rngs: jrn.GaussianNoise(0.5, rngs=rngs), lambda k, x: jr.gaussian_noise(k, x, 0.5)),
    "drop_path": (lambda rngs: jrn.DropPath(0.3, rngs=rngs), lambda k, x: jr.drop_path(k, x, 0.3)),
}


@pytest.mark.parametrize("name", list(NOISE_CASES))
def test_noise_layer_equals_functional_call_with_the_forked_stream_keys(name):
    """Reference: the jaxreg function with the keys of a clone of the Rngs, forked and drawn as nnx.Dropout."""
    make, fn = NOISE_CASES[name]
    rngs = nnx.Rngs(dropout=3)
    stream = nnx.clone(rngs)["dropout"].fork()
    layer = make(rngs)
    for _ in range(2):  # one fresh key per call
        np.testing.assert_array_equal(layer(X), fn(stream(), X))
    # Keys given at call time: an Rngs, an RngStream, or a key.
    other = nnx.Rngs(dropout=5)
    ref_stream = nnx.clone(other)["dropout"]
    np.testing.assert_array_equal(layer(X, rngs=other), fn(ref_stream(), X))
    np.testing.assert_array_equal(layer(X, rngs=other["dropout"]), fn(ref_stream(), X))
    key = jax.random.key(9)
    np.testing.assert_array_equal(layer(X, rngs=key), fn(key, X))


def test_dropout_masks_are_nnx_dropouts_bit_for_bit():
    """Reference: nnx.Dropout built from the same Rngs (same fork, same keys, same masks), call after call."""
    ours = jrn.Dropout(0.4, broadcast_dims=(2,), rngs=nnx.Rngs(dropout=1, params=2))
    theirs = nnx.Dropout(0.4, broadcast_dims=(2,), rngs=nnx.Rngs(dropout=1, params=2))
    assert jax.tree.structure(nnx.state(ours)) == jax.tree.structure(nnx.state(theirs))
    for _ in range(2):
        np.testing.assert_array_equal(ours(X), theirs(X))
    # A default stream serves 'dropout' when there is no stream of that name, for both.
    np.testing.assert_array_equal(jrn.Dropout(0.4, rngs=nnx.Rngs(7))(X), nnx.Dropout(0.4, rngs=nnx.Rngs(7))(X))


@pytest.mark.parametrize("name", list(NOISE_CASES))
def test_train_eval_and_view_toggle_deterministic(name):
    """nnx conventions: eval() makes the layer the identity, train() restores noise, the call argument and
    nnx.view override; a None deterministic everywhere, or missing rngs, raises a ValueError."""
    make, _ = NOISE_CASES[name]
    layer = make(nnx.Rngs(0))
    layer.eval()
    assert layer.deterministic is True
    np.testing.assert_array_equal(layer(X), X)
    assert not np.array_equal(layer(X, deterministic=False), X)
    layer.train()
    assert layer.deterministic is False
    assert not np.array_equal(layer(X), X)
    np.testing.assert_array_equal(nnx.view(layer, deterministic=True)(X), X)
    layer.deterministic = None
    with pytest.raises(ValueError, match="deterministic"):
        layer(X)
    with pytest.raises(ValueError, match="no `rngs` argument was provided"):
        make(None)(X)


def test_missing_rngs_error_carries_nnx_dropouts_message():
    """Reference: the ValueError nnx.Dropout raises when not deterministic and without rngs: jaxreg's Dropout
    raises the same type with flax's message verbatim at its start; the other layers put their name in it."""
    with pytest.raises(ValueError) as theirs:
        nnx.Dropout(0.5)(X)
    flax_message = str(theirs.value)
    assert flax_message.startswith("`deterministic` is False, but no `rngs` argument was provided to Dropout")
    for name, (make, _) in NOISE_CASES.items():
        with pytest.raises(ValueError) as ours:
            make(None)(X)
        owner = type(make(None)).__name__
        assert str(ours.value).startswith(flax_message.replace("Dropout", owner)), name
        assert "jaxreg:" in str(ours.value)  # then jaxreg's own advice


def test_flax_stochastic_test_dropout_arg_override():
    """Port of flax tests/nnx/nn/stochastic_test.py TestStochastic.test_dropout_arg_override (nnx.Dropout ->
    jrn.Dropout; same inputs and assertions, the error matched on flax's wording)."""
    m = jrn.Dropout(rate=0.5, deterministic=False)
    x = jnp.ones((1, 10))

    # deterministic call arg provided
    m(x, deterministic=True)
    # deterministic constructor arg provided
    m.set_attributes(deterministic=True)
    y = m(x)
    # both deterministic call and constructor arg provided
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(y, m(x, deterministic=False, rngs=nnx.Rngs(dropout=0)))
    # no rng arg provided
    m.set_attributes(deterministic=False)
    with pytest.raises(ValueError, match="`deterministic` is False, but no `rngs` argument was provided to Dropout"):
        m(x)


def test_flax_stochastic_test_dropout_arg_override_view():
    """Port of flax tests/nnx/nn/stochastic_test.py TestStochastic.test_dropout_arg_override_view (nnx.Dropout
    -> jrn.Dropout; same inputs and assertions)."""
    m = jrn.Dropout(rate=0.5, deterministic=False)
    x = jnp.ones((1, 10))

    # deterministic call arg provided
    m(x, deterministic=True)
    # deterministic constructor arg provided
    new_m = nnx.view(m, deterministic=True)
    y = new_m(x)
    # both deterministic call and constructor arg provided
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(y, new_m(x, deterministic=False, rngs=nnx.Rngs(dropout=0)))
    # no rng arg provided
    new_m = nnx.view(m, deterministic=False)
    with pytest.raises(ValueError, match="`deterministic` is False, but no `rngs` argument was provided to Dropout"):
        new_m(x)


def test_zero_rate_needs_no_rngs_and_bad_arguments_raise():
    """As nnx.Dropout, rate 0 is the identity without rngs; bad rates and rngs types are rejected."""
    np.testing.assert_array_equal(jrn.Dropout(0.0)(X), X)
    with pytest.raises(ValueError, match="rate"):
        jrn.Dropout(1.0, deterministic=True)(X)
    with pytest.raises(TypeError, match="rngs"):
        jrn.Dropout(0.5, rngs=0)
    with pytest.raises(TypeError, match="rngs"):
        jrn.Dropout(0.5)(X, rngs=0)


# ----------------------------------------------------------------------------------------------------------
# BatchNorm


def _perturb(layer: nnx.Module, seed: int) -> None:
    """Non-trivial scale, bias and statistics (var > 0)."""
    rng = np.random.default_rng(seed)
    layer.scale[...] = jnp.asarray(rng.uniform(0.5, 1.5, layer.scale.shape), jnp.float32)
    layer.bias[...] = jnp.asarray(rng.normal(size=layer.bias.shape), jnp.float32)
    layer.mean[...] = jnp.asarray(rng.normal(size=layer.mean.shape), jnp.float32)
    layer.var[...] = jnp.asarray(rng.uniform(0.5, 2.0, layer.var.shape), jnp.float32)


def _assert_same_state(a: nnx.Module, b: nnx.Module, rtol: float = 1e-6) -> None:
    sa, sb = nnx.state(a), nnx.state(b)
    assert jax.tree.structure(sa) == jax.tree.structure(sb)

    def check(u, v):
        if jax.dtypes.issubdtype(u.dtype, jax.dtypes.prng_key):  # the rng streams (same key data, same count)
            u, v = jax.random.key_data(u), jax.random.key_data(v)
        np.testing.assert_allclose(u, v, rtol=rtol, atol=1e-6)

    jax.tree.map(check, sa, sb)


@pytest.mark.parametrize("shape,axis", [((8, 3), -1), ((4, 3, 2, 2), 1)])
def test_batch_norm_matches_nnx_batch_norm_in_train_and_eval(shape, axis):
    """Reference: nnx.BatchNorm with the same state (moved across with nnx.update): outputs and statistics
    over two training calls, then eval() (running statistics, no update), then train() again."""
    x = jax.random.normal(jax.random.key(0), shape) * 2.0 + 1.0
    kw = dict(axis=axis, momentum=0.9, epsilon=1e-3)
    ours, theirs = jrn.BatchNorm(3, rngs=nnx.Rngs(0), **kw), nnx.BatchNorm(3, rngs=nnx.Rngs(0), **kw)
    _assert_same_state(ours, theirs)
    _perturb(theirs, 1)
    nnx.update(ours, nnx.state(theirs))
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)  # noqa: E731
    for _ in range(2):
        close(ours(x), theirs(x))
        _assert_same_state(ours, theirs)
    frozen = nnx.clone(nnx.state(ours, nnx.BatchStat))
    ours.eval(), theirs.eval()
    assert ours.use_running_average is True
    close(ours(x), theirs(x))
    jax.tree.map(np.testing.assert_array_equal, nnx.state(ours, nnx.BatchStat), frozen)
    ours.train(), theirs.train()
    close(ours(x), theirs(x))
    _assert_same_state(ours, theirs)
    close(nnx.view(ours, use_running_average=True)(x), theirs(x, use_running_average=True))


def test_batch_norm_options_match_nnx_state():
    """Reference: nnx.BatchNorm's state for use_scale/use_bias off and custom initializers (keys in order)."""
    init = nnx.initializers.normal(1.0)
    for kw in (dict(use_scale=False), dict(use_bias=False), dict(scale_init=init, bias_init=init)):
        _assert_same_state(jrn.BatchNorm(4, rngs=nnx.Rngs(3), **kw), nnx.BatchNorm(4, rngs=nnx.Rngs(3), **kw))
    with pytest.raises(ValueError, match="num_features"):
        jrn.BatchNorm(0, rngs=nnx.Rngs(0))


def test_batch_norm_ghost_batches_equal_functional_core():
    """Reference: jr.batch_norm with ghost_batch_size on the same parameters and statistics."""
    x = jax.random.normal(jax.random.key(0), (8, 3, 2)) + 1.0
    layer = jrn.BatchNorm(3, axis=1, ghost_batch_size=4, momentum=0.8, rngs=nnx.Rngs(0))
    _perturb(layer, 2)
    params = {"scale": layer.scale[...], "bias": layer.bias[...]}
    y_ref, state = jr.batch_norm(
        x, params, jr.BatchNormState(layer.mean[...], layer.var[...]),
        training=True, axis=1, ghost_batch_size=4, momentum=0.8,
    )
    np.testing.assert_array_equal(layer(x), y_ref)
    np.testing.assert_array_equal(layer.mean[...], state.mean)
    np.testing.assert_array_equal(layer.var[...], state.var)


# ----------------------------------------------------------------------------------------------------------
# A whole model, one nnx.jit training step, nnx layers vs ours


class _Net(nnx.Module):
    def __init__(self, layers, rngs: nnx.Rngs):
        self.linear1 = nnx.Linear(4, 8, rngs=rngs)
        self.bn = layers.BatchNorm(8, rngs=rngs)
        self.dropout = layers.Dropout(0.5, rngs=rngs)
        self.linear2 = nnx.Linear(8, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.linear2(self.dropout(nnx.relu(self.bn(self.linear1(x)))))


@nnx.jit
def _train_step(model: _Net, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array):
    def loss_fn(model):
        return jnp.mean((model(x) - y) ** 2)

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss


def test_model_trains_under_nnx_jit_exactly_like_the_nnx_layers():
    """Reference: the same network built from nnx.Dropout/nnx.BatchNorm with the same Rngs: same state tree,
    same loss, parameters, batch statistics and rng counts after one nnx.jit SGD step, same eval output."""
    x = jax.random.normal(jax.random.key(0), (16, 4))
    y = jnp.sum(x, axis=1, keepdims=True)
    models, losses = [], []
    for layers in (nnx, jrn):
        model = _Net(layers, nnx.Rngs(params=1, dropout=2))
        optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
        before = nnx.clone(nnx.state(model, nnx.Param))
        losses.append(_train_step(model, optimizer, x, y))
        models.append(model)
    theirs, ours = models
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
    _assert_same_state(ours, theirs, rtol=1e-5)
    assert not np.allclose(nnx.state(ours, nnx.Param)["linear1"]["kernel"][...], before["linear1"]["kernel"][...])
    ours.eval(), theirs.eval()
    np.testing.assert_allclose(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_drop_block_layer_equals_functional_call_with_the_forked_stream_keys():
    """Reference: jr.drop_block with the keys of a clone of the Rngs, forked and drawn as nnx.Dropout."""
    maps = jax.random.normal(jax.random.key(4), (2, 8, 8, 3))
    rngs = nnx.Rngs(dropout=3)
    stream = nnx.clone(rngs)["dropout"].fork()
    layer = jrn.DropBlock(0.3, block_size=3, rngs=rngs)
    for _ in range(2):
        np.testing.assert_array_equal(layer(maps), jr.drop_block(stream(), maps, 0.3, block_size=3))
    layer.eval()
    np.testing.assert_array_equal(layer(maps), maps)
    with pytest.raises(ValueError, match="no `rngs` argument was provided to DropBlock"):
        jrn.DropBlock(0.3, block_size=3)(maps)
