"""Tests for jaxreg.flax.linen.

References: the functional core (``jaxreg.noise`` functions called with the key that ``make_rng`` yields,
obtained from a probe module that returns ``self.make_rng(...)``; :func:`jaxreg.batch_norm`) and flax itself
(``flax.linen.Dropout`` masks bit for bit; ``flax.linen.BatchNorm`` variables, outputs, updated
``batch_stats``, gradients and ``axis_name`` behaviour; a whole model with flax's layers trained one
``jax.jit`` step side by side with the same model built from ours).
"""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxreg as jr
from jaxreg.flax import linen as jrl

X = jax.random.normal(jax.random.key(42), (4, 3, 5))


class _KeyProbe(nn.Module):
    """Returns the key a layer would draw: ``make_rng`` at the same (top-level) path."""

    rng_collection: str = "dropout"

    def __call__(self) -> jax.Array:
        return self.make_rng(self.rng_collection)


def _probe_key(rngs: dict[str, jax.Array], collection: str = "dropout") -> jax.Array:
    return _KeyProbe(collection).apply({}, rngs=rngs)


NOISE_CASES = {
    "dropout": (jrl.Dropout(0.3, broadcast_dims=(1,)), lambda k, x: jr.dropout(k, x, 0.3, broadcast_dims=(1,))),
    "spatial_dropout": (
        jrl.SpatialDropout(0.3, channel_axis=1),
        lambda k, x: jr.spatial_dropout(k, x, 0.3, channel_axis=1),
    ),
    "gaussian_dropout": (jrl.GaussianDropout(0.3), lambda k, x: jr.gaussian_dropout(k, x, 0.3)),
    "alpha_dropout": (
        jrl.AlphaDropout(0.3, mask_impl="hash"),
        lambda k, x: jr.alpha_dropout(k, x, 0.3, mask_impl="hash"),
    ),
    "gaussian_noise": (jrl.GaussianNoise(0.5), lambda k, x: jr.gaussian_noise(k, x, 0.5)),
    "drop_path": (jrl.DropPath(0.3), lambda k, x: jr.drop_path(k, x, 0.3)),
}


@pytest.mark.parametrize("name", list(NOISE_CASES))
def test_noise_layer_equals_functional_call_with_make_rng_key(name):
    """Reference: the jaxreg function with the key ``make_rng('dropout')`` yields, and with ``rng=``."""
    layer, fn = NOISE_CASES[name]
    rngs = {"dropout": jax.random.key(7)}
    y = layer.apply({}, X, deterministic=False, rngs=rngs)
    np.testing.assert_array_equal(y, fn(_probe_key(rngs), X))
    assert not np.array_equal(y, X)
    # An explicit key bypasses make_rng.
    key = jax.random.key(3)
    np.testing.assert_array_equal(layer.apply({}, X, False, key), fn(key, X))


def test_custom_rng_collection_and_example_ids():
    """Reference: jr.dropout with the key of the 'noise' stream and the same example_ids."""
    layer = jrl.Dropout(0.5, rng_collection="noise", deterministic=False)
    rngs = {"noise": jax.random.key(1)}
    ids = jnp.arange(10, 14)
    y = layer.apply({}, X, rngs=rngs, example_ids=ids)
    np.testing.assert_array_equal(y, jr.dropout(_probe_key(rngs, "noise"), X, 0.5, example_ids=ids))


def test_dropout_mask_is_flax_linen_dropouts_bit_for_bit():
    """Reference: flax.linen.Dropout with the same rng and broadcast_dims."""
    rngs = {"dropout": jax.random.key(11)}
    ours = jrl.Dropout(0.4, broadcast_dims=(2,)).apply({}, X, deterministic=False, rngs=rngs)
    ref = nn.Dropout(0.4, broadcast_dims=(2,)).apply({}, X, deterministic=False, rngs=rngs)
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("name", list(NOISE_CASES))
def test_deterministic_returns_input_and_merges_like_flax(name):
    """flax.linen.Dropout semantics: deterministic via field or call (merge_param), no rng needed."""
    layer, _ = NOISE_CASES[name]
    np.testing.assert_array_equal(layer.apply({}, X, deterministic=True), X)
    np.testing.assert_array_equal(layer.clone(deterministic=True).apply({}, X), X)
    with pytest.raises(ValueError, match="deterministic"):
        layer.clone(deterministic=True).apply({}, X, deterministic=True)  # set twice
    with pytest.raises(ValueError, match="deterministic"):
        layer.apply({}, X)  # never set


def test_missing_rng_raises_flax_error_naming_the_stream():
    """Like flax.linen.Dropout: apply without a 'dropout' rng raises InvalidRngError."""
    with pytest.raises(flax.errors.InvalidRngError, match='needs PRNG for "dropout"'):
        jrl.Dropout(0.5).apply({}, X, deterministic=False)
    with pytest.raises(flax.errors.InvalidRngError, match='needs PRNG for "dropout"'):
        nn.Dropout(0.5).apply({}, X, deterministic=False)


def test_zero_rate_needs_no_rng_and_bad_rate_is_rejected():
    """As flax, rate 0 is the identity without an rng; rates outside [0, 1) raise a ValueError naming rate."""
    np.testing.assert_array_equal(jrl.Dropout(0.0).apply({}, X, deterministic=False), X)
    with pytest.raises(ValueError, match="rate"):
        jrl.Dropout(1.0).apply({}, X, deterministic=True)
    with pytest.raises(ValueError, match="mask_impl"):
        jrl.Dropout(0.5, mask_impl="bogus").apply({}, X, deterministic=False, rngs={"dropout": jax.random.key(0)})


# ----------------------------------------------------------------------------------------------------------
# BatchNorm


def _perturbed(variables: dict, seed: int) -> dict:
    """Non-trivial params and statistics (var > 0), same tree."""
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = jax.tree_util.keystr(path)
        if "var" in name:
            return jnp.asarray(rng.uniform(0.5, 2.0, leaf.shape), leaf.dtype)
        if "scale" in name:
            return jnp.asarray(rng.uniform(0.5, 1.5, leaf.shape), leaf.dtype)
        return jnp.asarray(rng.normal(size=leaf.shape), leaf.dtype)

    return jax.tree_util.tree_map_with_path(draw, variables)


BN_CASES = [((8, 3), -1), ((4, 3, 2, 2), 1)]


def _train_then_eval(module: nn.Module):
    """One compiled program: a training-mode apply, then an eval-mode apply with the updated statistics."""

    @jax.jit
    def run(variables, x):
        y, upd = module.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
        return y, upd, module.apply({**variables, **upd}, x, use_running_average=True)

    return run


@pytest.mark.parametrize("shape,axis", BN_CASES)
def test_batch_norm_is_interchangeable_with_flax_linen_batch_norm(shape, axis):
    """Reference: flax.linen.BatchNorm on the same variables, in both directions, train and eval."""
    x = jax.random.normal(jax.random.key(0), shape) * 2.0 + 1.0
    kw = dict(axis=axis, momentum=0.9, epsilon=1e-3)
    ours, theirs = jrl.BatchNorm(**kw), nn.BatchNorm(**kw)
    v_ours = ours.init(jax.random.key(1), x, use_running_average=False)
    v_theirs = theirs.init(jax.random.key(1), x, use_running_average=False)
    # Same tree, same initial values, statistics untouched by init (flax's is_initializing rule).
    assert jax.tree.structure(v_ours) == jax.tree.structure(v_theirs)
    jax.tree.map(np.testing.assert_array_equal, v_ours, v_theirs)
    np.testing.assert_array_equal(v_ours["batch_stats"]["mean"], np.zeros(3))
    np.testing.assert_array_equal(v_ours["batch_stats"]["var"], np.ones(3))

    run_ours, run_theirs = _train_then_eval(ours), _train_then_eval(theirs)
    # flax's variables into ours, and ours into flax's.
    for variables in (_perturbed(v_theirs, 2), _perturbed(v_ours, 3)):
        out_ours, out_theirs = run_ours(variables, x), run_theirs(variables, x)
        assert jax.tree.structure(out_ours) == jax.tree.structure(out_theirs)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), out_ours, out_theirs)
        assert not np.allclose(out_ours[1]["batch_stats"]["mean"], variables["batch_stats"]["mean"])


def test_batch_norm_without_scale_or_bias_and_custom_init_match_flax():
    """Reference: flax.linen.BatchNorm's variable tree and init values (initializer keys drawn in order)."""
    x = jnp.ones((2, 3))
    init = nn.initializers.normal(1.0)
    for kw in (dict(use_scale=False), dict(use_bias=False), dict(scale_init=init, bias_init=init)):
        v_ours = jrl.BatchNorm(**kw).init(jax.random.key(5), x, use_running_average=True)
        v_theirs = nn.BatchNorm(**kw).init(jax.random.key(5), x, use_running_average=True)
        assert jax.tree.structure(v_ours) == jax.tree.structure(v_theirs), kw
        jax.tree.map(np.testing.assert_array_equal, v_ours, v_theirs)


def test_batch_norm_gradients_match_flax():
    """Reference: jax.grad through flax.linen.BatchNorm in training mode (params and input)."""
    x = jax.random.normal(jax.random.key(0), (6, 3)) + 2.0
    w = jax.random.normal(jax.random.key(1), (6, 3))
    variables = _perturbed(nn.BatchNorm().init(jax.random.key(1), x, use_running_average=True), 4)

    def grads(module):
        def loss(params, x):
            y, _ = module.apply(
                {"params": params, "batch_stats": variables["batch_stats"]}, x,
                use_running_average=False, mutable=["batch_stats"],
            )
            return jnp.sum(y * w)

        return jax.jit(jax.grad(loss, argnums=(0, 1)))(variables["params"], x)

    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
        grads(jrl.BatchNorm()),
        grads(nn.BatchNorm()),
    )


def test_batch_norm_axis_name_under_vmap_matches_flax():
    """Reference: flax.linen.BatchNorm(axis_name=...) under jax.vmap; init outside the map ignores the name."""
    x = jax.random.normal(jax.random.key(0), (2, 4, 3)) * 3.0
    kw = dict(use_running_average=False, axis_name="member")
    variables = jrl.BatchNorm(**kw).init(jax.random.key(0), x[0])  # no 'member' axis here: allowed at init

    def run(module):
        fn = lambda xi: module.apply(variables, xi, mutable=["batch_stats"])  # noqa: E731
        return jax.jit(jax.vmap(fn, axis_name="member"))(x)

    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
        run(jrl.BatchNorm(**kw)),
        run(nn.BatchNorm(**kw)),
    )


def test_batch_norm_ghost_batches_equal_functional_core():
    """Reference: jr.batch_norm with ghost_batch_size on the same variables."""
    x = jax.random.normal(jax.random.key(0), (8, 3, 2)) + 1.0
    module = jrl.BatchNorm(use_running_average=False, axis=1, ghost_batch_size=4, momentum=0.8)
    variables = _perturbed(module.init(jax.random.key(0), x), 6)
    y, upd = module.apply(variables, x, mutable=["batch_stats"])
    y_ref, state = jr.batch_norm(
        x, variables["params"], jr.from_flax_batch_stats(variables["batch_stats"]),
        training=True, axis=1, ghost_batch_size=4, momentum=0.8,
    )
    np.testing.assert_array_equal(y, y_ref)
    jax.tree.map(np.testing.assert_array_equal, upd["batch_stats"], jr.to_flax_batch_stats(state))


def test_batch_norm_training_needs_mutable_and_rejects_bad_axis():
    """flax semantics: updating batch_stats outside ``mutable`` raises; a bad axis raises naming it."""
    x = jnp.ones((2, 3))
    module = jrl.BatchNorm(use_running_average=False)
    variables = module.init(jax.random.key(0), x)
    with pytest.raises(flax.errors.ModifyScopeVariableError):
        module.apply(variables, x)
    with pytest.raises(ValueError, match=r"axis must be in the range \[-2, 2\)"):
        jrl.BatchNorm(axis=2).init(jax.random.key(0), x, use_running_average=True)
    with pytest.raises(TypeError, match="axis must be an int or a sequence of ints"):
        jrl.BatchNorm(axis=True).init(jax.random.key(0), x, use_running_average=True)
    with pytest.raises(ValueError, match="momentum"):
        jrl.BatchNorm(momentum=1.5).init(jax.random.key(0), x, use_running_average=True)


# ----------------------------------------------------------------------------------------------------------
# A whole model, one jitted training step, flax layers vs ours


class _Net(nn.Module):
    dropout_cls: Any
    batch_norm_cls: Any

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = nn.Dense(8)(x)
        x = self.batch_norm_cls(use_running_average=not train)(x)
        x = self.dropout_cls(0.5, deterministic=not train)(nn.relu(x))
        return nn.Dense(1)(x)


def _train_step(model: nn.Module, tx: optax.GradientTransformation):
    @jax.jit
    def step(params, batch_stats, opt_state, x, y, key):
        def loss_fn(params):
            pred, upd = model.apply(
                {"params": params, "batch_stats": batch_stats}, x, train=True,
                rngs={"dropout": key}, mutable=["batch_stats"],
            )
            return jnp.mean((pred - y) ** 2), upd["batch_stats"]

        (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        pred_eval = model.apply({"params": params, "batch_stats": new_stats}, x, train=False)
        return params, new_stats, loss, pred_eval

    return step


def test_model_trains_under_jit_exactly_like_the_flax_layers():
    """Reference: the same network built from flax.linen.Dropout/BatchNorm: same names and variable tree,
    same dropout masks, same loss, parameters and batch_stats after one jitted SGD step."""
    x = jax.random.normal(jax.random.key(0), (16, 4))
    y = jnp.sum(x, axis=1, keepdims=True)
    tx = optax.sgd(0.1)
    results = []
    for dropout_cls, bn_cls in [(nn.Dropout, nn.BatchNorm), (jrl.Dropout, jrl.BatchNorm)]:
        model = _Net(dropout_cls, bn_cls)
        variables = model.init(jax.random.key(1), x, train=False)
        params, stats = variables["params"], variables["batch_stats"]
        params2, stats2, loss, pred = _train_step(model, tx)(params, stats, tx.init(params), x, y, jax.random.key(2))
        results.append((variables, params2, stats2, loss, pred))
    (v_f, p_f, s_f, loss_f, pred_f), (v_o, p_o, s_o, loss_o, pred_o) = results
    assert jax.tree.structure(v_o) == jax.tree.structure(v_f)
    assert set(v_o["params"]) == {"Dense_0", "BatchNorm_0", "Dense_1"}
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # noqa: E731
    close(loss_o, loss_f)
    jax.tree.map(close, (p_o, s_o, pred_o), (p_f, s_f, pred_f))
    assert not np.allclose(p_o["Dense_0"]["kernel"], v_o["params"]["Dense_0"]["kernel"])  # it did train


def test_linen_apply_passes_traced_call_args_like_module_apply():
    """Reference: ``module.apply(..., rate=r)`` itself, for rates traced under vmap; ``train`` set from training."""

    class RateNet(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool, rate=0.0):
            x = nn.Dense(6)(x)
            return jr.dropout(self.make_rng("dropout"), x, rate) if train else x

    module, x, key = RateNet(), jnp.ones((4, 3)), jax.random.key(7)
    params = module.init(jax.random.key(0), x, train=False)["params"]

    def engine(rate):
        return jr.linen_apply(module, call_args={"rate": rate})(params, {}, x, key=key, training=True)[0]

    def reference(rate):
        return module.apply({"params": params}, x, train=True, rate=rate, rngs={"dropout": key})

    rates = jnp.array([0.0, 0.25, 0.5])
    np.testing.assert_array_equal(jax.vmap(engine)(rates), jax.vmap(reference)(rates))
    evaluated, _ = jr.linen_apply(module, call_args={"rate": 0.5})(params, {}, x, key=None, training=False)
    np.testing.assert_array_equal(evaluated, module.apply({"params": params}, x, train=False))
    with pytest.raises(ValueError, match="call_args must not hold 'train'"):
        jr.linen_apply(module, call_args={"train": True})


def test_drop_block_layer_equals_functional_call_with_make_rng_key():
    """Reference: jr.drop_block with the key make_rng('dropout') yields; deterministic and rate 0 are the identity."""
    maps = jax.random.normal(jax.random.key(4), (2, 8, 8, 3))
    layer = jrl.DropBlock(0.3, block_size=3)
    rngs = {"dropout": jax.random.key(7)}
    y = layer.apply({}, maps, deterministic=False, rngs=rngs)
    np.testing.assert_array_equal(y, jr.drop_block(_probe_key(rngs), maps, 0.3, block_size=3))
    assert not np.array_equal(y, maps)
    np.testing.assert_array_equal(layer.apply({}, maps, deterministic=True), maps)
    np.testing.assert_array_equal(jrl.DropBlock(0.0).apply({}, maps, deterministic=False), maps)
    with pytest.raises(ValueError, match="block_size must be odd"):
        jrl.DropBlock(0.3, block_size=4).apply({}, maps, deterministic=False, rngs=rngs)
