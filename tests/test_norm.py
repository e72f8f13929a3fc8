"""Tests for jaxreg.norm.

References: ``flax.linen.BatchNorm`` (outputs, running statistics, gradients, the ``batch_stats`` layout,
``axis_name`` under ``jax.vmap``), numpy formulas in float64 (ghost batches, evaluation with running
statistics, Ioffe 2017's batch renormalization algorithm), and ``jax.grad`` of the plain ``jax.numpy``
formulas (autodiff through the statistics) for the hand-written backward pass.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxreg as jr

MOMENTUM, EPS = 0.99, 1e-5


def _data(shape, seed, offset=0.0, dtype=jnp.float32):
    """Features with distinct means and scales (plus ``offset``) so that every statistic matters."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape) * rng.uniform(0.5, 3.0) + rng.normal() + offset
    return jnp.asarray(x, dtype)


def _params(features, seed=1):
    rng = np.random.default_rng(seed)
    return {
        "scale": jnp.asarray(rng.uniform(0.5, 1.5, features), jnp.float32),
        "bias": jnp.asarray(rng.normal(size=features), jnp.float32),
    }


def _flax_apply(x, params, batch_stats, *, training, axis=-1, axis_name=None, dtype=None, **kw):
    """flax.linen.BatchNorm with the same hyperparameters; returns (y, new batch_stats)."""
    module = nn.BatchNorm(
        use_running_average=not training, momentum=MOMENTUM, epsilon=EPS, axis=axis, axis_name=axis_name,
        dtype=dtype, **kw,
    )
    variables = {"batch_stats": batch_stats}
    if params:
        variables["params"] = params
    # flax mixes bfloat16 inputs with float32 statistics implicitly; our suite runs with strict promotion.
    with jax.numpy_dtype_promotion("standard"):
        y, updates = module.apply(variables, x, mutable=["batch_stats"])
    return y, updates["batch_stats"]


def _assert_tree_close(a, b, rtol=1e-5, atol=1e-5):
    jax.tree.map(lambda p, q: np.testing.assert_allclose(np.asarray(p), np.asarray(q), rtol=rtol, atol=atol), a, b)


# ----------------------------------------------------------------------------------------------------------
# Forward pass and running statistics against flax.linen.BatchNorm


@pytest.mark.parametrize(
    "shape, axis",
    [((16, 6), -1), ((4, 3, 3, 5), -1), ((4, 5, 3, 3), 1), ((6, 16), 0)],
    ids=["2d", "nhwc", "nchw", "2d-axis0"],
)
def test_train_steps_then_eval_match_flax(shape, axis):
    """3 training steps (fresh batch each) then evaluation, in one jitted program: y and running statistics
    equal flax's at every step."""
    features = shape[axis]
    params = _params(features)
    xs = jnp.stack([_data(shape, seed=10 + i) for i in range(4)])

    @jax.jit
    def run(xs, params):
        _, state = jr.batch_norm_init(features)
        flax_stats = jr.to_flax_batch_stats(state)
        out = []
        for i in range(3):
            y, state = jr.batch_norm(xs[i], params, state, training=True, axis=axis)
            y_ref, flax_stats = _flax_apply(xs[i], params, flax_stats, training=True, axis=axis)
            out.append((y, y_ref, jr.to_flax_batch_stats(state), flax_stats))
        y, new_state = jr.batch_norm(xs[3], params, state, training=False, axis=axis)
        y_ref, _ = _flax_apply(xs[3], params, flax_stats, training=False, axis=axis)
        out.append((y, y_ref, jr.to_flax_batch_stats(new_state), jr.to_flax_batch_stats(state)))
        return out

    for y, y_ref, stats, stats_ref in run(xs, params):
        assert y.shape == shape and y.dtype == jnp.float32
        np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
        _assert_tree_close(stats, stats_ref, rtol=1e-6, atol=1e-6)


def test_eval_returns_state_and_matches_numpy():
    """Evaluation uses the running statistics (numpy formula) and hands back the very same state object."""
    x = _data((5, 3), seed=3)
    params = _params(3)
    state = jr.BatchNormState(mean=jnp.array([0.5, -1.0, 2.0]), var=jnp.array([0.25, 4.0, 1.0]))
    y, new_state = jr.batch_norm(x, params, state, training=False)
    assert new_state is state
    xs, m, v = (np.asarray(a, np.float64) for a in (x, state.mean, state.var))
    expected = (xs - m) / np.sqrt(v + EPS) * np.asarray(params["scale"]) + np.asarray(params["bias"])
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_optional_affine_matches_flax_use_scale_use_bias():
    """Leaving 'scale'/'bias' out of params (or params=None) equals flax's use_scale/use_bias=False, and
    gradients exist for exactly the parameters given."""
    x = _data((12, 4), seed=4)
    full = _params(4)
    _, state = jr.batch_norm_init(4)
    variants = [(), ("scale",), ("bias",)]

    @jax.jit
    def run(x):
        out = []
        for keys in variants:
            params = {k: full[k] for k in keys} or None
            y, new_state = jr.batch_norm(x, params, state, training=True)
            y_ref, stats = _flax_apply(
                x, params, jr.to_flax_batch_stats(state), training=True,
                use_scale="scale" in keys, use_bias="bias" in keys,
            )
            grads = None
            if params is not None:
                grads = jax.grad(lambda p: jnp.sum(jr.batch_norm(x, p, state, training=True)[0] ** 2))(params)
            out.append((y, y_ref, jr.to_flax_batch_stats(new_state), stats, grads))
        return out

    for keys, (y, y_ref, stats, stats_ref, grads) in zip(variants, run(x)):
        np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
        _assert_tree_close(stats, stats_ref, rtol=1e-6, atol=1e-6)
        assert grads is None if not keys else set(grads) == set(keys)


def test_bfloat16_input_float32_statistics():
    """bf16 in, bf16 out; statistics in float32 equal flax's (flax with dtype=bfloat16 for a bf16 output)."""
    x = _data((32, 8), seed=5, dtype=jnp.bfloat16)
    params = _params(8)
    _, state = jr.batch_norm_init(8)

    @jax.jit
    def run(x):
        y, new_state = jr.batch_norm(x, params, state, training=True)
        y_ref, stats = _flax_apply(x, params, jr.to_flax_batch_stats(state), training=True, dtype=jnp.bfloat16)
        dx = jax.grad(lambda x: jnp.sum(jr.batch_norm(x, params, state, training=True)[0].astype(jnp.float32)))(x)
        return y, new_state, y_ref, stats, dx

    y, new_state, y_ref, stats, dx = run(x)
    assert y.dtype == jnp.bfloat16 and new_state.mean.dtype == jnp.float32 and dx.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(y_ref, np.float32), rtol=1e-2, atol=1e-2)
    _assert_tree_close(jr.to_flax_batch_stats(new_state), stats, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------------------------------------
# Gradients: hand-written backward pass against flax (autodiff) and against autodiff of the plain formula


def _plain_batch_norm(x, params, axes):
    """Textbook batch norm in jax.numpy; jax.grad differentiates through mean and variance."""
    mean = jnp.mean(x, axes, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axes, keepdims=True)
    shape = [1] * x.ndim
    shape[[a for a in range(x.ndim) if a not in axes][0]] = -1
    return (x - mean) / jnp.sqrt(var + EPS) * params["scale"].reshape(shape) + params["bias"].reshape(shape)


@pytest.mark.parametrize(
    "shape, axis, offset", [((16, 6), -1, 0.0), ((4, 5, 3, 3), 1, 0.0), ((32, 4), -1, 20.0)],
    ids=["2d", "nchw", "2d-offset-mean"],
)
def test_gradients_match_flax_and_autodiff(shape, axis, offset):
    """d/d(x, scale, bias) of sum(y * g) + <u, new mean> + <v, new var>: ours == flax == plain autodiff."""
    features = shape[axis]
    x, g = _data(shape, seed=6, offset=offset), _data(shape, seed=7)
    params = _params(features)
    u, v = _data((features,), seed=8), _data((features,), seed=9)
    _, state = jr.batch_norm_init(features)

    def ours(x, p):
        y, s = jr.batch_norm(x, p, state, training=True, axis=axis)
        return jnp.sum(y * g) + jnp.sum(s.mean * u) + jnp.sum(s.var * v)

    def flax_loss(x, p):
        y, s = _flax_apply(x, p, jr.to_flax_batch_stats(state), training=True, axis=axis)
        return jnp.sum(y * g) + jnp.sum(s["mean"] * u) + jnp.sum(s["var"] * v)

    axes = tuple(a for a in range(len(shape)) if a != axis % len(shape))

    def no_stats(x, p):
        return jnp.sum(jr.batch_norm(x, p, state, training=True, axis=axis)[0] * g)

    def plain(x, p):
        return jnp.sum(_plain_batch_norm(x, p, axes) * g)

    @jax.jit
    def all_grads(x, p):
        return [jax.grad(f, argnums=(0, 1))(x, p) for f in (ours, flax_loss, no_stats, plain)]

    grads, grads_flax, grads_no_stats, grads_plain = all_grads(x, params)
    _assert_tree_close(grads, grads_flax, rtol=2e-4, atol=2e-4)
    _assert_tree_close(grads_no_stats, grads_plain, rtol=2e-4, atol=2e-4)


def test_second_order_matches_autodiff():
    """Reverse-over-reverse and forward-over-reverse (Hessian-vector product) through the custom VJP equal
    the same derivatives of the plain formula; pure forward mode is documented to raise."""
    x, g, v = _data((8, 3), seed=11), _data((8, 3), seed=12), _data((8, 3), seed=10)
    params = _params(3)
    _, state = jr.batch_norm_init(3)

    def ours(x):
        return jr.batch_norm(x, params, state, training=True)[0]

    def plain(x):
        return _plain_batch_norm(x, params, (0,))

    def derivatives(fn, x):
        inner = jax.grad(lambda x: jnp.sum(fn(x) * g))
        return jax.grad(lambda x: jnp.sum(inner(x) ** 2))(x), jax.jvp(inner, (x,), (v,))[1]

    got, ref = jax.jit(lambda x: (derivatives(ours, x), derivatives(plain, x)))(x)
    _assert_tree_close(got, ref, rtol=1e-3, atol=1e-3)
    with pytest.raises(TypeError, match="forward-mode"):
        jax.jvp(ours, (x,), (v,))


# ----------------------------------------------------------------------------------------------------------
# Distributed statistics, ghost batches


def test_axis_name_under_vmap_equals_whole_batch_and_flax():
    """vmap(axis_name='b') over 4 shards == one batch of all examples; gradients == flax's in both places."""
    k, b, c = 4, 6, 5
    x, g = _data((k, b, c), seed=13), _data((k, b, c), seed=14)
    params = _params(c)
    _, state = jr.batch_norm_init(c)

    def ours(x, p, g):
        y, s = jr.batch_norm(x, p, state, training=True, axis_name="b")
        return jnp.sum(y * g), (y, s)

    def flax_loss(a, p, b):
        return jnp.sum(_flax_apply(a, p, jr.to_flax_batch_stats(state), training=True, axis_name="b")[0] * b)

    @jax.jit
    def run(x, p, g):
        _, (y, s) = jax.vmap(ours, in_axes=(0, None, 0), axis_name="b")(x, p, g)
        y_full, s_full = jr.batch_norm(x.reshape(k * b, c), p, state, training=True)
        # Gradient of the total loss (grad outside vmap) and of the single batch.
        total = jax.grad(
            lambda x, p: jnp.sum(jax.vmap(lambda a, b: ours(a, p, b)[0], axis_name="b")(x, g)), argnums=(0, 1)
        )(x, p)
        single = jax.grad(
            lambda x, p: jnp.sum(jr.batch_norm(x, p, state, training=True)[0] * g.reshape(k * b, c)),
            argnums=(0, 1),
        )(x.reshape(k * b, c), p)
        # Per-member gradients (grad inside vmap) follow JAX's pmean transpose, for us and for flax.
        inside = jax.vmap(jax.grad(lambda a, p, b: ours(a, p, b)[0], (0, 1)), in_axes=(0, None, 0), axis_name="b")
        flax_inside = jax.vmap(jax.grad(flax_loss, (0, 1)), in_axes=(0, None, 0), axis_name="b")
        return y, s, y_full, s_full, total, single, inside(x, p, g), flax_inside(x, p, g)

    y, s, y_full, s_full, total, single, inside, flax_inside = run(x, params, g)
    np.testing.assert_allclose(y.reshape(k * b, c), y_full, rtol=1e-5, atol=1e-5)
    for i in range(k):  # every member ends with the whole batch's running statistics
        _assert_tree_close(jax.tree.map(lambda a, i=i: a[i], s), s_full, rtol=1e-6, atol=1e-6)
    _assert_tree_close((total[0].reshape(k * b, c), total[1]), single, rtol=1e-4, atol=1e-4)
    _assert_tree_close(inside, flax_inside, rtol=1e-4, atol=1e-4)


def _numpy_ghost_reference(x, params, state, ghost, momentum=MOMENTUM):
    """Each chunk of ``ghost`` examples normalized with its own statistics (float64); running stats updated
    with the average of the chunks' means and biased variances."""
    x = np.asarray(x, np.float64)
    chunks = x.reshape(x.shape[0] // ghost, ghost, *x.shape[1:])
    axes = tuple(range(1, chunks.ndim - 1))
    mean = chunks.mean(axes, keepdims=True)
    var = chunks.var(axes, keepdims=True)
    y = (chunks - mean) / np.sqrt(var + EPS) * np.asarray(params["scale"]) + np.asarray(params["bias"])
    c = x.shape[-1]
    new_mean = momentum * np.asarray(state.mean) + (1 - momentum) * mean.reshape(-1, c).mean(0)
    new_var = momentum * np.asarray(state.var) + (1 - momentum) * var.reshape(-1, c).mean(0)
    return y.reshape(x.shape), new_mean, new_var


@pytest.mark.parametrize("shape", [(12, 5), (8, 3, 3, 4)], ids=["2d", "nhwc"])
def test_ghost_batches_match_numpy_chunks(shape):
    params = _params(shape[-1])
    state = jr.BatchNormState(mean=jnp.full(shape[-1], 0.3), var=jnp.full(shape[-1], 2.0))
    x = _data(shape, seed=15)
    g = _data(shape, seed=16)
    axes = tuple(range(1, len(shape)))[:-1]

    def ours(x):
        return jr.batch_norm(x, params, state, training=True, ghost_batch_size=4)

    def chunked(x):  # autodiff of the plain formula on each chunk separately
        parts = [_plain_batch_norm(x[i : i + 4], params, (0, *axes)) for i in range(0, shape[0], 4)]
        return jnp.sum(jnp.concatenate(parts) * g)

    @jax.jit
    def run(x):
        return ours(x), jax.grad(lambda x: jnp.sum(ours(x)[0] * g))(x), jax.grad(chunked)(x)

    (y, new_state), grad, grad_ref = run(x)
    y_ref, mean_ref, var_ref = _numpy_ghost_reference(x, params, state, 4)
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(new_state.mean, mean_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_state.var, var_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad, grad_ref, rtol=1e-4, atol=1e-4)


def test_ghost_batch_of_whole_batch_is_batch_norm():
    x = _data((8, 3), seed=17)
    params, state = jr.batch_norm_init(3)
    ghost, plain = jax.jit(
        lambda x: (
            jr.batch_norm(x, params, state, training=True, ghost_batch_size=8),
            jr.batch_norm(x, params, state, training=True),
        )
    )(x)
    _assert_tree_close(ghost, plain, rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------------------
# Conversions, traced hyperparameters


def test_flax_batch_stats_round_trip_and_drop_in():
    """A linen model's batch_stats become our state and back; ours in eval == linen in eval with them; the
    initial values equal linen's init."""
    x = _data((10, 4), seed=18)

    @jax.jit
    def run(x):
        module = nn.BatchNorm(use_running_average=False, momentum=MOMENTUM, epsilon=EPS)
        variables = module.init(jax.random.key(0), x)
        _, updates = module.apply(variables, x, mutable=["batch_stats"])
        state = jr.from_flax_batch_stats(updates["batch_stats"])
        y, _ = jr.batch_norm(x, variables["params"], state, training=False)
        y_ref, _ = _flax_apply(x, variables["params"], jr.to_flax_batch_stats(state), training=False)
        return variables, updates["batch_stats"], state, y, y_ref

    variables, batch_stats, state, y, y_ref = run(x)
    assert isinstance(state, jr.BatchNormState)
    assert jr.to_flax_batch_stats(state).keys() == {"mean", "var"}
    _assert_tree_close(jr.to_flax_batch_stats(state), batch_stats, rtol=0, atol=0)
    _assert_tree_close(jr.from_flax_batch_stats(jr.to_flax_batch_stats(state)), state, rtol=0, atol=0)
    np.testing.assert_allclose(y, y_ref, rtol=1e-6, atol=1e-6)
    params, init_state = jr.batch_norm_init(4)
    _assert_tree_close(params, variables["params"], rtol=0, atol=0)
    _assert_tree_close(jr.to_flax_batch_stats(init_state), variables["batch_stats"], rtol=0, atol=0)
    params16, state16 = jr.batch_norm_init(5, jnp.bfloat16)
    assert params16["scale"].dtype == jnp.bfloat16 and state16.var.dtype == jnp.float32
    with pytest.raises(ValueError, match="var"):
        jr.from_flax_batch_stats({"mean": jnp.zeros(3)})
    with pytest.raises(ValueError, match="same shape"):
        jr.from_flax_batch_stats({"mean": jnp.zeros(3), "var": jnp.ones(2)})


def test_traced_momentum_swept_by_vmap():
    """momentum may be traced: vmap over two momenta gives the numpy EMA for each."""
    x = _data((8, 3), seed=19)
    params, state = jr.batch_norm_init(3)
    momenta = jnp.array([0.9, 0.5])
    _, states = jax.jit(jax.vmap(lambda m: jr.batch_norm(x, params, state, training=True, momentum=m)))(momenta)
    batch_mean = np.asarray(x, np.float64).mean(0)
    for i, m in enumerate([0.9, 0.5]):
        np.testing.assert_allclose(states.mean[i], (1 - m) * batch_mean, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------------------------
# Batch renormalization against a numpy implementation of Ioffe (2017), Algorithm 1


def _numpy_batch_renorm(x, params, mean, var, r_max, d_max, momentum=MOMENTUM):
    x = np.asarray(x, np.float64)
    mu_b, var_b = x.mean(0), x.var(0)
    sigma_b = np.sqrt(var_b + EPS)
    sigma = np.sqrt(var + EPS)  # running std derived from the running variance (documented convention)
    r = np.clip(sigma_b / sigma, 1 / r_max, r_max)
    d = np.clip((mu_b - mean) / sigma, -d_max, d_max)
    y = ((x - mu_b) / sigma_b * r + d) * np.asarray(params["scale"]) + np.asarray(params["bias"])
    return y, momentum * mean + (1 - momentum) * mu_b, momentum * var + (1 - momentum) * var_b


def test_batch_renorm_matches_numpy_paper_algorithm():
    """Running statistics far from the batch ones, so both clips bind for some features and not others."""
    params = _params(6)
    state = jr.BatchNormState(
        mean=jnp.array([0.0, 1.0, -2.0, 5.0, 0.3, 0.0]), var=jnp.array([1.0, 0.1, 9.0, 1.0, 0.5, 30.0])
    )
    mean, var = np.asarray(state.mean, np.float64), np.asarray(state.var, np.float64)
    step = jax.jit(lambda x, s: jr.batch_renorm(x, params, s, training=True, r_max=1.5, d_max=0.5))
    for i in range(3):
        x = _data((32, 6), seed=30 + i)
        y, state = step(x, state)
        y_ref, mean, var = _numpy_batch_renorm(x, params, mean, var, 1.5, 0.5)
        np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(state.mean, mean, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(state.var, var, rtol=1e-5, atol=1e-5)
    x = _data((32, 6), seed=40)
    y, same = jr.batch_renorm(x, params, state, training=False)
    assert same is state
    np.testing.assert_allclose(y, jr.batch_norm(x, params, state, training=False)[0], rtol=1e-7, atol=1e-7)


def test_batch_renorm_gradient_and_batch_norm_limit():
    """Gradient == autodiff of the plain formula with stop_gradient(r, d); r_max=1, d_max=0 is batch norm."""
    x, g = _data((16, 4), seed=41), _data((16, 4), seed=42)
    params = _params(4)
    state = jr.BatchNormState(mean=jnp.array([0.5, -0.5, 1.0, 0.0]), var=jnp.array([2.0, 0.5, 1.0, 4.0]))

    def plain(x, p):
        mu_b, var_b = jnp.mean(x, 0), jnp.var(x, 0)
        sigma_b, sigma = jnp.sqrt(var_b + EPS), jnp.sqrt(state.var + EPS)
        r = jax.lax.stop_gradient(jnp.clip(sigma_b / sigma, 1 / 2.0, 2.0))
        d = jax.lax.stop_gradient(jnp.clip((mu_b - state.mean) / sigma, -1.0, 1.0))
        return jnp.sum((((x - mu_b) / sigma_b * r + d) * p["scale"] + p["bias"]) * g)

    @jax.jit
    def run(x, p):
        ours = jax.grad(
            lambda x, p: jnp.sum(jr.batch_renorm(x, p, state, training=True, r_max=2.0, d_max=1.0)[0] * g), (0, 1)
        )(x, p)
        limit = jr.batch_renorm(x, p, state, training=True, r_max=1.0, d_max=0.0)
        return ours, jax.grad(plain, (0, 1))(x, p), limit, jr.batch_norm(x, p, state, training=True)

    ours, ref, limit, batch_norm = run(x, params)
    _assert_tree_close(ours, ref, rtol=1e-4, atol=1e-4)
    _assert_tree_close(limit, batch_norm, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------------------------------------
# Argument validation (before tracing, errors name the argument)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"momentum": -0.1}, ValueError, "momentum"),
        ({"momentum": 1.5}, ValueError, "momentum"),
        ({"epsilon": 0.0}, ValueError, "epsilon"),
        ({"epsilon": -1e-5}, ValueError, "epsilon"),
        ({"axis": 2}, ValueError, "axis"),
        ({"axis": -3}, ValueError, "axis"),
        ({"axis": 1.0}, TypeError, "axis"),
        ({"ghost_batch_size": 0}, ValueError, "ghost_batch_size"),
        ({"ghost_batch_size": 5}, ValueError, "ghost_batch_size"),
        ({"ghost_batch_size": 2.0}, TypeError, "ghost_batch_size"),
        ({"ghost_batch_size": 2, "axis": 0}, ValueError, "ghost_batch_size"),
        ({"training": "yes"}, TypeError, "training"),
    ],
)
def test_bad_arguments_raise(kwargs, error, match):
    x = jnp.ones((8, 3))
    params, state = jr.batch_norm_init(3 if kwargs.get("axis") != 0 else 8)
    kwargs = {"training": True, **kwargs}
    with pytest.raises(error, match=match):
        jr.batch_norm(x, params, state, **kwargs)


def test_bad_shapes_params_and_renorm_bounds_raise():
    x = jnp.ones((8, 3))
    params, state = jr.batch_norm_init(3)
    with pytest.raises(ValueError, match="state.mean"):
        jr.batch_norm(x, params, jr.batch_norm_init(4)[1], training=True)
    with pytest.raises(ValueError, match="scale"):
        jr.batch_norm(x, {"scale": jnp.ones(4)}, state, training=True)
    with pytest.raises(ValueError, match="unexpected keys"):
        jr.batch_norm(x, {"params": params}, state, training=True)
    with pytest.raises(ValueError, match="r_max"):
        jr.batch_renorm(x, params, state, training=True, r_max=0.5)
    with pytest.raises(ValueError, match="d_max"):
        jr.batch_renorm(x, params, state, training=True, d_max=-1.0)
    with pytest.raises(ValueError, match="num_features"):
        jr.batch_norm_init(0)
