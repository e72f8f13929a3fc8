"""Tests for jaxreg.transforms: optax GradientTransformations for penalties, prox steps, constraints, decay.

References: scikit-learn ``Lasso``/``ElasticNet`` (convergence of the proximal steps, zero pattern included),
``keras.constraints.MaxNorm/UnitNorm/NonNeg`` (constraints), ``optax.adamw`` (decoupled decay, bit for bit),
numpy closed forms (soft and block soft thresholding), ``jax.grad`` of the ``jaxreg.penalties`` and numpy
closed forms of their gradients (``add_penalty``), ``optax.contrib.reduce_on_plateau`` alone (plateau scale).

optax 0.2.8's ``adam`` (``b1 ** count``) and ``reduce_on_plateau`` (``count * avg``) mix float and int32,
which the suite's strict dtype promotion rejects; the steps that use them are traced under
``jax.numpy_dtype_promotion("standard")`` (``_optax_promotion``). Our own transforms run under strict.
"""

from __future__ import annotations

import functools
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.linear_model import ElasticNet, Lasso

import jaxreg as jr


def _optax_promotion():
    return jax.numpy_dtype_promotion("standard")


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras as keras_module

    assert keras_module.backend.backend() == "jax"
    return keras_module


def _params(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "dense": {
            "kernel": jnp.asarray(2.0 * rng.normal(size=(5, 4)), jnp.float32),
            "bias": jnp.asarray(rng.normal(size=(4,)), jnp.float32),
        }
    }


def _updates(seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "dense": {
            "kernel": jnp.asarray(0.3 * rng.normal(size=(5, 4)), jnp.float32),
            "bias": jnp.asarray(0.3 * rng.normal(size=(4,)), jnp.float32),
        }
    }


# Every factory, with hyperparameters that make it act on _params() (so masking is observable).
FACTORIES = {
    "add_penalty": lambda mask: jr.add_penalty(jr.l2, 0.1, mask=mask),
    "proximal_l1": lambda mask: jr.proximal_l1(0.5, learning_rate=0.5, mask=mask),
    "proximal_elastic_net": lambda mask: jr.proximal_elastic_net(0.5, l1_ratio=0.5, learning_rate=0.5, mask=mask),
    "proximal_group_lasso": lambda mask: jr.proximal_group_lasso(0.5, learning_rate=0.5, mask=mask),
    "max_norm": lambda mask: jr.max_norm(1.0, mask=mask),
    "unit_norm": lambda mask: jr.unit_norm(mask=mask),
    "non_negative": lambda mask: jr.non_negative(mask=mask),
    "weight_decay": lambda mask: jr.weight_decay(0.1, mask=mask),
}


def _soft_threshold_np(x, t):
    return np.sign(x) * np.maximum(np.abs(x) - t, 0.0)


def _block_soft_threshold_np(x, t, axis):
    norms = np.sqrt(np.sum(x**2, axis=axis, keepdims=True))
    return x * np.maximum(1.0 - t / np.maximum(norms, 1e-30), 0.0)


# ---------------------------------------------------------------------------------------------------------
# Proximal steps


def _lasso_problem():
    rng = np.random.default_rng(0)
    n, d = 50, 10
    x = rng.normal(size=(n, d))
    w_true = np.array([2.0, -1.5, 0, 0, 1.0, 0, 0, 0.5, 0, 0])
    y = x @ w_true + 0.3 * rng.normal(size=n)
    lipschitz = np.linalg.eigvalsh(x.T @ x / n).max()
    return x, y, float(1.0 / lipschitz)


def _fit_proximal_gradient(tx: optax.GradientTransformation, x, y, steps: int = 3000) -> np.ndarray:
    """``steps`` updates of ``tx`` on (1/2n)||Xw - y||^2 from w = 0, in one jit (a fori_loop)."""
    xj, yj = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)

    def loss(w):
        return 0.5 * jnp.mean(jnp.square(xj @ w - yj))

    @jax.jit
    def fit():
        w = jnp.zeros(x.shape[1], jnp.float32)

        def body(_, carry):
            w, state = carry
            updates, state = tx.update(jax.grad(loss)(w), state, w)
            return optax.apply_updates(w, updates), state

        return jax.lax.fori_loop(0, steps, body, (w, tx.init(w)))[0]

    return np.asarray(fit())


@pytest.mark.parametrize("l1_ratio", [1.0, 0.7])
def test_proximal_sgd_converges_to_sklearn(l1_ratio):
    """sgd(lr) + proximal_l1 is ISTA: it reaches sklearn Lasso's coefficients and zero pattern;
    proximal_elastic_net reaches sklearn ElasticNet's (both fit_intercept=False, loss ||Xw-y||^2/(2n))."""
    x, y, lr = _lasso_problem()
    alpha = 0.1
    if l1_ratio == 1.0:
        prox = jr.proximal_l1(alpha, learning_rate=lr)
        ref = Lasso(alpha=alpha, fit_intercept=False, tol=1e-12, max_iter=100_000).fit(x, y).coef_
    else:
        prox = jr.proximal_elastic_net(alpha, l1_ratio=l1_ratio, learning_rate=lr)
        ref = ElasticNet(alpha=alpha, l1_ratio=l1_ratio, fit_intercept=False, tol=1e-12, max_iter=100_000)
        ref = ref.fit(x, y).coef_
    w = _fit_proximal_gradient(optax.chain(optax.sgd(lr), prox), x, y)
    assert 0 < np.sum(ref == 0) < ref.size  # the problem has both zero and non-zero coefficients
    np.testing.assert_array_equal(w == 0.0, ref == 0.0)  # exact zeros where sklearn has them
    np.testing.assert_allclose(w, ref, atol=1e-5)


def test_proximal_l1_is_soft_threshold():
    """params + updates' == numpy soft threshold of (params + updates) at lr * strength; exact zeros."""
    params, updates = _params(), _updates()
    tx = jr.proximal_l1(0.8, learning_rate=0.5)
    new, state = tx.update(updates, tx.init(params), params)
    for p, u, n in zip(jax.tree.leaves(params), jax.tree.leaves(updates), jax.tree.leaves(new)):
        expected = _soft_threshold_np(np.asarray(p) + np.asarray(u), 0.4)
        got = np.asarray(optax.apply_updates(p, n))
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(got == 0.0, expected == 0.0)
    assert int(state.count) == 1


def test_proximal_elastic_net_closed_form():
    """numpy: soft threshold at lr*s*r, then divide by 1 + lr*s*(1-r)."""
    params, updates = _params(), _updates()
    s, r, lr = 0.8, 0.3, 0.5
    tx = jr.proximal_elastic_net(s, l1_ratio=r, learning_rate=lr)
    new, _ = tx.update(updates, tx.init(params), params)
    for p, u, n in zip(jax.tree.leaves(params), jax.tree.leaves(updates), jax.tree.leaves(new)):
        expected = _soft_threshold_np(np.asarray(p) + np.asarray(u), lr * s * r) / (1 + lr * s * (1 - r))
        np.testing.assert_allclose(np.asarray(p + n), expected, rtol=1e-6, atol=1e-6)
    # l1_ratio=1 is proximal_l1 exactly.
    a, _ = jr.proximal_elastic_net(s, l1_ratio=1.0, learning_rate=lr).update(updates, tx.init(params), params)
    b, _ = jr.proximal_l1(s, learning_rate=lr).update(updates, tx.init(params), params)
    jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.mark.parametrize(
    "shapes, axis",
    [
        ({"kernel": (6, 4), "bias": (5,)}, 0),  # columns (output units); a 1-D leaf is one unit
        ({"kernel": (6, 4)}, -1),  # rows (input features)
        ({"kernel": (3, 3, 2, 4)}, (0, 1, 2)),  # output channels of a conv kernel
    ],
)
def test_proximal_group_lasso_block_soft_threshold(shapes, axis):
    """numpy block soft threshold per unit; whole units at exactly zero; and the prox optimality condition
    (x - prox) / t == jax.grad(jr.group_lasso) at every non-zero unit (same axis convention, unweighted)."""
    rng = np.random.default_rng(3)
    t = 0.6
    x = {}
    for name, shape in shapes.items():
        # Unit scales spread across the threshold so that some units vanish and some survive.
        unit_shape = [1] * len(shape)
        unit_axis = 0 if axis == -1 else len(shape) - 1
        unit_shape[unit_axis] = shape[unit_axis]
        unit_scale = np.linspace(0.05, 1.2, shape[unit_axis]).reshape(unit_shape)
        x[name] = jnp.asarray(rng.normal(size=shape) * (unit_scale if len(shape) > 1 else 0.5), jnp.float32)
    tx = jr.proximal_group_lasso(t / 0.5, learning_rate=0.5, axis=axis)
    # One jit: these shapes are this test's own, so eager op-by-op dispatch would compile ~20 tiny programs.
    updates, _ = jax.jit(tx.update)(jax.tree.map(jnp.zeros_like, x), tx.init(x), x)
    got = jax.tree.map(lambda p, u: np.asarray(p + u), x, updates)
    grads = jax.grad(functools.partial(jr.group_lasso, axis=axis))(jax.tree.map(jnp.asarray, got))
    for name in shapes:
        xn, gn = np.asarray(x[name]), got[name]
        expected = _block_soft_threshold_np(xn, t, axis)
        np.testing.assert_allclose(gn, expected, rtol=1e-5, atol=1e-6)
        unit_zero = np.all(gn == 0.0, axis=axis, keepdims=True)
        np.testing.assert_array_equal(unit_zero, np.all(expected == 0.0, axis=axis, keepdims=True))
        if name == "kernel":
            assert unit_zero.any() and not unit_zero.all()
        alive = np.broadcast_to(~unit_zero, gn.shape)
        optimality = (xn - gn) / t
        np.testing.assert_allclose(optimality[alive], np.asarray(grads[name])[alive], rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------
# Constraints


@pytest.mark.parametrize(
    "shape, axis",
    [((6, 4), 0), ((6, 4), 1), ((3, 3, 2, 4), (0, 1, 2)), ((4,), 0)],
)
@pytest.mark.parametrize("name", ["max_norm", "unit_norm", "non_negative"])
def test_constraints_match_keras(keras, name, shape, axis):
    """params + updates' == keras.constraints.{MaxNorm, UnitNorm, NonNeg}(params + updates)."""
    rng = np.random.default_rng(4)
    p = jnp.asarray(rng.normal(size=shape), jnp.float32)
    u = jnp.asarray(rng.normal(size=shape), jnp.float32)
    if name == "max_norm":
        tx, ref = jr.max_norm(1.5, axis=axis), keras.constraints.MaxNorm(1.5, axis=axis)
    elif name == "unit_norm":
        tx, ref = jr.unit_norm(axis=axis), keras.constraints.UnitNorm(axis=axis)
    else:
        tx, ref = jr.non_negative(), keras.constraints.NonNeg()
    updates, state = tx.update(u, tx.init(p), p)
    assert state == optax.EmptyState()
    expected = np.asarray(ref(np.asarray(p + u)))
    np.testing.assert_allclose(np.asarray(p + updates), expected, rtol=1e-6, atol=1e-6)
    if name == "max_norm":  # the bound is active for some unit, so the check is not vacuous
        assert np.any(np.sqrt(np.sum(np.square(np.asarray(p + u)), axis=axis)) > 1.5)


@pytest.mark.parametrize("name", ["max_norm", "unit_norm"])
def test_constraints_on_large_weights_are_keras_to_one_ulp_of_the_params(keras, name):
    """The documented precision (issue 15: the docstrings said "exactly"): optax adds the updates to the params,
    so ``params + (project(w) - params)`` is Keras' projection to about 1 ulp of |params| per entry, which on
    weights of magnitude 50 is far above Keras' own float32 rounding."""
    rng = np.random.default_rng(5)
    p = jnp.asarray(rng.uniform(-50.0, 50.0, size=(64, 32)), jnp.float32)
    u = jnp.asarray(0.1 * rng.normal(size=(64, 32)), jnp.float32)
    tx, ref = (jr.max_norm(1.5), keras.constraints.MaxNorm(1.5)) if name == "max_norm" else (
        jr.unit_norm(), keras.constraints.UnitNorm())
    updates, _ = tx.update(u, tx.init(p), p)
    ours, expected = np.asarray(p + updates), np.asarray(ref(np.asarray(p + u)))
    error = np.abs(ours - expected)
    assert np.all(error <= np.spacing(np.abs(np.asarray(p))))  # within 1 ulp of |params|
    assert error.max() > 1e-6  # ... and not exact, so the docstrings must say so:
    doc = " ".join((getattr(jr, name).__doc__ or "").split())
    assert "to float rounding" in doc and "1 ulp of ``|params|``" in doc and "exactly ``keras" not in doc
    target = 1.5 if name == "max_norm" else 1.0
    np.testing.assert_allclose(np.linalg.norm(ours, axis=0), target, rtol=0, atol=1e-5)


def test_constraint_axis_too_large_for_leaf_raises():
    """A rank-1 bias cannot be normalized over axis 1: the error names axis and the leaf's shape."""
    params = _params()
    tx = jr.unit_norm(axis=1)
    with pytest.raises(ValueError, match=r"axis.*\(4,\)"):
        tx.update(params, tx.init(params), params)
    masked = jr.unit_norm(axis=1, mask=jr.kernel_mask)  # the documented way out
    updates, _ = masked.update(params, masked.init(params), params)
    np.testing.assert_array_equal(updates["dense"]["bias"], params["dense"]["bias"])


# ---------------------------------------------------------------------------------------------------------
# add_penalty


@pytest.mark.parametrize(
    "penalty, closed_form",
    [
        (jr.l1, lambda w: np.sign(w)),
        (jr.l2, lambda w: 2.0 * w),
        (
            functools.partial(jr.elastic_net, alpha=0.3, l1_ratio=0.25),
            lambda w: 0.3 * 0.25 * np.sign(w) + 0.3 * 0.75 * w,
        ),
        (jr.group_lasso, lambda w: w / np.linalg.norm(w, axis=0, keepdims=True)),
        (functools.partial(jr.orthogonal, factor=1.0), None),
    ],
    ids=["l1", "l2", "elastic_net", "group_lasso", "orthogonal"],
)
def test_add_penalty_adds_strength_times_penalty_gradient(penalty, closed_form):
    """updates' - updates == strength * jax.grad(penalty)(params); also the numpy closed-form gradient."""
    params, updates = _params(), _updates()
    kernel = {"kernel": params["dense"]["kernel"]}
    grads = {"kernel": updates["dense"]["kernel"]}
    tx = jr.add_penalty(penalty, 0.25)
    new, state = tx.update(grads, tx.init(kernel), kernel)
    added = np.asarray(new["kernel"] - grads["kernel"])
    by_grad = 0.25 * np.asarray(jax.grad(penalty)(kernel)["kernel"])
    np.testing.assert_allclose(added, by_grad, rtol=1e-6, atol=1e-7)
    if closed_form is not None:
        by_formula = 0.25 * closed_form(np.asarray(kernel["kernel"]))
        np.testing.assert_allclose(added, by_formula, rtol=1e-5, atol=1e-6)
    assert np.abs(added).max() > 0
    assert int(state.count) == 1


def test_add_penalty_before_sgd_equals_sgd_on_penalized_loss():
    """Reference: optax.sgd on grad(loss + s * l2(kernels)).
    Ours: chain(add_penalty(l2, s, mask=kernel_mask), sgd) on grad(loss)."""
    params, x = _params(), jnp.asarray(np.random.default_rng(5).normal(size=(7, 5)), jnp.float32)

    def loss(p):
        return jnp.mean(jnp.square(x @ p["dense"]["kernel"] + p["dense"]["bias"]))

    def penalized(p):
        return loss(p) + 0.05 * jr.l2(p, mask=jr.kernel_mask)

    ours = optax.chain(jr.add_penalty(jr.l2, 0.05, mask=jr.kernel_mask), optax.sgd(0.1))
    ref = optax.sgd(0.1)
    p_ours, s_ours, p_ref, s_ref = params, ours.init(params), params, ref.init(params)
    for _ in range(3):
        u, s_ours = ours.update(jax.grad(loss)(p_ours), s_ours, p_ours)
        p_ours = optax.apply_updates(p_ours, u)
        u, s_ref = ref.update(jax.grad(penalized)(p_ref), s_ref, p_ref)
        p_ref = optax.apply_updates(p_ref, u)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), p_ours, p_ref)


# ---------------------------------------------------------------------------------------------------------
# weight_decay


def test_weight_decay_matches_adamw_bit_for_bit():
    """chain(scale_by_adam, jr.weight_decay(wd), scale(-lr)) == optax.adamw(lr, weight_decay=wd,
    mask=kernel_mask): identical bits over 4 steps; biases undecayed by default."""
    params = _params()
    lr, wd = 1e-2, 0.1
    ours = optax.chain(optax.scale_by_adam(), jr.weight_decay(wd), optax.scale(-lr))
    ref = optax.adamw(lr, weight_decay=wd, mask=jr.kernel_mask)
    p_ours, s_ours, p_ref, s_ref = params, ours.init(params), params, ref.init(params)
    with _optax_promotion():
        for step in range(4):
            grads = _updates(seed=10 + step)
            u, s_ours = ours.update(grads, s_ours, p_ours)
            p_ours = optax.apply_updates(p_ours, u)
            u, s_ref = ref.update(grads, s_ref, p_ref)
            p_ref = optax.apply_updates(p_ref, u)
    jax.tree.map(np.testing.assert_array_equal, p_ours, p_ref)


# ---------------------------------------------------------------------------------------------------------
# Contract: masks, schedules, validation, missing params, jit/vmap, dtypes


@pytest.mark.parametrize("name", FACTORIES)
@pytest.mark.parametrize("mask_kind", ["tree", "callable"])
def test_masked_leaves_pass_through(name, mask_kind):
    """Deselected leaves' updates come back unchanged (bit for bit); selected leaves are transformed."""
    params, updates = _params(), _updates()
    mask = {"dense": {"kernel": True, "bias": False}} if mask_kind == "tree" else jr.kernel_mask
    tx = FACTORIES[name](mask)
    new, _ = tx.update(updates, tx.init(params), params)
    np.testing.assert_array_equal(new["dense"]["bias"], updates["dense"]["bias"])
    assert not np.array_equal(new["dense"]["kernel"], updates["dense"]["kernel"])


@pytest.mark.parametrize("name", FACTORIES)
def test_jit_vmap_over_members_and_bfloat16(name):
    """jax.jit(jax.vmap(update)) over two stacked parameter sets (e.g. K folds) == the eager update of each;
    bfloat16 params and updates give bfloat16 updates (checked by tracing, under strict promotion)."""
    members = [(_params(seed), _updates(seed + 1)) for seed in (0, 7)]
    tx = FACTORIES[name](None)
    stack = lambda *trees: jax.tree.map(lambda *a: jnp.stack(a), *trees)  # noqa: E731
    params, updates = stack(*(m[0] for m in members)), stack(*(m[1] for m in members))
    states = jax.vmap(tx.init)(params)
    batched, _ = jax.jit(jax.vmap(tx.update))(updates, states, params)
    for i, (p, u) in enumerate(members):
        one, _ = tx.update(u, tx.init(p), p)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a[i], b, rtol=1e-6, atol=1e-6), batched, one)
    p16, u16 = (jax.tree.map(lambda a: a.astype(jnp.bfloat16), t) for t in members[0])
    out16, _ = jax.eval_shape(tx.update, u16, tx.init(p16), p16)
    assert all(leaf.dtype == jnp.bfloat16 for leaf in jax.tree.leaves(out16))


SWEEPABLE = {
    "add_penalty": lambda s: jr.add_penalty(jr.l2, s),
    "proximal_l1": lambda s: jr.proximal_l1(s, learning_rate=0.5),
    "proximal_elastic_net": lambda s: jr.proximal_elastic_net(s, l1_ratio=0.5, learning_rate=0.5),
    "proximal_group_lasso": lambda s: jr.proximal_group_lasso(s, learning_rate=0.5),
    "max_norm": lambda s: jr.max_norm(s + 0.5),
    "weight_decay": lambda s: jr.weight_decay(s),
}


@pytest.mark.parametrize("name", SWEEPABLE)
def test_strength_sweep_under_vmap(name):
    """A strength traced by jax.vmap over the whole update == the update at each concrete jnp scalar."""
    params, updates = _params(), _updates()
    strengths = jnp.asarray([0.0, 1.2], jnp.float32)

    def update(s):
        tx = SWEEPABLE[name](s)
        return tx.update(updates, tx.init(params), params)[0]

    swept = jax.jit(jax.vmap(update))(strengths)
    for i, s in enumerate(strengths):
        one = update(s)  # a concrete jnp scalar: validated, then used
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a[i], b, rtol=1e-6, atol=1e-6), swept, one)


def test_schedules_evaluated_at_update_count():
    """strength and learning_rate schedules are read at count 0, 1, 2 (like optax.scale_by_schedule)."""
    p = jnp.asarray([0.05, -0.4, 1.0, -2.0], jnp.float32)
    zeros = jnp.zeros_like(p)

    def strength(count):
        return 0.1 * (count + 1).astype(jnp.float32)

    def lr(count):
        return 0.5 ** count.astype(jnp.float32)

    tx = jr.proximal_l1(strength, learning_rate=lr)
    state = tx.init(p)
    for k in range(3):
        u, state = tx.update(zeros, state, p)
        expected = _soft_threshold_np(np.asarray(p), 0.1 * (k + 1) * 0.5**k) - np.asarray(p)
        np.testing.assert_allclose(u, expected, rtol=1e-6, atol=1e-7)
    assert int(state.count) == 3

    pen = jr.add_penalty(jr.l1, optax.linear_schedule(0.0, 1.0, transition_steps=4))
    state = pen.init(p)
    for k in range(3):
        u, state = pen.update(zeros, state, p)
        np.testing.assert_allclose(u, (k / 4) * np.sign(np.asarray(p)), rtol=1e-6)


@pytest.mark.parametrize(
    "make, error, name",
    [
        (lambda: jr.add_penalty("l2", 0.1), TypeError, "penalty_fn"),
        (lambda: jr.add_penalty(jr.l2, -1.0), ValueError, "strength"),
        (lambda: jr.add_penalty(jr.l2, float("nan")), ValueError, "strength"),
        (lambda: jr.proximal_l1(jnp.asarray(-0.1), learning_rate=0.1), ValueError, "strength"),
        (lambda: jr.proximal_l1(0.1, learning_rate=0.0), ValueError, "learning_rate"),
        (lambda: jr.proximal_elastic_net(0.1, l1_ratio=1.5, learning_rate=0.1), ValueError, "l1_ratio"),
        (lambda: jr.proximal_elastic_net(0.1, l1_ratio=-0.1, learning_rate=0.1), ValueError, "l1_ratio"),
        (lambda: jr.proximal_group_lasso(0.1, learning_rate=-1.0), ValueError, "learning_rate"),
        (lambda: jr.proximal_group_lasso(0.1, learning_rate=0.1, axis=1.5), TypeError, "axis"),
        (lambda: jr.max_norm(0.0), ValueError, "max_value"),
        (lambda: jr.max_norm(1.0, axis=()), TypeError, "axis"),
        (lambda: jr.unit_norm(axis="0"), TypeError, "axis"),
        (lambda: jr.weight_decay(-1e-4), ValueError, "rate"),
        (lambda: jr.proximal_l1(0.1, 0.1), TypeError, "positional"),  # learning_rate is keyword-only
        (lambda: jr.proximal_elastic_net(0.1, 0.5, learning_rate=0.1), TypeError, "positional"),  # l1_ratio too
        (lambda: jr.max_norm(1.0, axis=True), TypeError, "axis"),
    ],
)
def test_bad_hyperparameters_raise_at_construction(make, error, name):
    with pytest.raises(error, match=name):
        make()


def test_bad_value_is_quoted():
    with pytest.raises(ValueError, match=r"strength = -2\.5"):
        jr.proximal_l1(-2.5, learning_rate=0.1)


@pytest.mark.parametrize("name", FACTORIES)
def test_update_without_params_raises(name):
    """Like optax's add_decayed_weights: a transform that needs params says so when they are missing."""
    params, updates = _params(), _updates()
    tx = FACTORIES[name](None)
    with pytest.raises(ValueError, match="params"):
        tx.update(updates, tx.init(params), None)


# ---------------------------------------------------------------------------------------------------------
# Composition with optax's own pieces, on a tiny Flax linen MLP, one jitted step each


class _MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(3)(nn.relu(nn.Dense(8)(x)))


@pytest.fixture(scope="module")
def mlp_problem():
    # numpy data and a numpy LeCun-normal init in linen's own layout (jax.eval_shape: traced, not compiled),
    # so that the only XLA compilations are the training steps under test.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=32).astype(np.int32)
    model = _MLP()
    shapes = jax.eval_shape(model.init, jax.random.key(2), x)["params"]
    params = {
        name: {
            "kernel": (rng.normal(size=layer["kernel"].shape) / np.sqrt(layer["kernel"].shape[0])).astype(np.float32),
            "bias": np.zeros(layer["bias"].shape, np.float32),
        }
        for name, layer in shapes.items()
    }

    def loss_fn(p):
        return optax.softmax_cross_entropy_with_integer_labels(model.apply({"params": p}, x), y).mean()

    return params, loss_fn


def _make_step(tx, loss_fn):
    @jax.jit
    def step(params, state, value):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = tx.update(grads, state, params, value=value)
        return optax.apply_updates(params, updates), state, loss

    return step


def test_mlp_clip_adam_max_norm_holds_after_every_step(mlp_problem):
    """chain(clip_by_global_norm, adam, jr.max_norm(3.0)): every unit norm <= 3 after each jitted step."""
    params, loss_fn = mlp_problem
    params = jax.tree.map(lambda w: np.float32(5.0) * w + np.float32(0.5), params)  # outside the ball: binds
    assert max(float(np.linalg.norm(k, axis=0).max()) for k in jax.tree.leaves(params)) > 3.0
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2), jr.max_norm(3.0))
    step, state = _make_step(tx, loss_fn), tx.init(params)
    losses = []
    with _optax_promotion():
        for _ in range(5):
            params, state, loss = step(params, state, jnp.float32(0.0))
            losses.append(float(loss))
            for leaf in jax.tree.leaves(params):  # kernels per column; biases as one unit
                assert float(np.linalg.norm(np.asarray(leaf), axis=0).max()) <= 3.0 * (1 + 1e-6)
    assert losses[-1] < losses[0]


def test_mlp_reduce_on_plateau_and_proximal_l1_last(mlp_problem):
    """chain(clip, adam, reduce_on_plateau, jr.proximal_l1(mask=kernel_mask)) in one jitted step, driven by
    value=loss: exact zeros appear in the kernels (none at init), and the plateau scale follows the same
    sequence as optax.contrib.reduce_on_plateau alone fed the same values."""
    params, loss_fn = mlp_problem
    assert not any(np.any(np.asarray(layer["kernel"]) == 0.0) for layer in params.values())
    plateau = dict(factor=0.5, patience=2)
    tx = optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.adam(1e-2),
        optax.contrib.reduce_on_plateau(**plateau),
        jr.proximal_l1(2.0, learning_rate=1e-2, mask=jr.kernel_mask),
    )
    ref = optax.contrib.reduce_on_plateau(**plateau)
    step, state = _make_step(tx, loss_fn), tx.init(params)
    ref_update, ref_state = jax.jit(functools.partial(ref.update, params)), ref.init(params)
    values = [1.0, 0.5] + [0.5] * 14  # one improvement, then a plateau
    scales = []
    with _optax_promotion():
        for v in values:
            params, state, _ = step(params, state, jnp.float32(v))
            _, ref_state = ref_update(ref_state, value=jnp.float32(v))
            scales.append(float(optax.tree_utils.tree_get(state, "scale")))
            assert scales[-1] == float(ref_state.scale)
    assert scales[0] == 1.0 and scales[-1] < 0.5  # reduced at least twice on the plateau
    zeros = {name: int(np.sum(np.asarray(layer["kernel"]) == 0.0)) for name, layer in params.items()}
    assert all(z > 0 for z in zeros.values()), zeros


@pytest.mark.parametrize("make", [
    lambda mask: jr.max_norm(1.0, mask=mask),
    lambda mask: jr.proximal_l1(1e-3, learning_rate=0.1, mask=mask),
    lambda mask: jr.weight_decay(1e-3, mask=mask),
    lambda mask: jr.add_penalty(jr.l2, 1e-3, mask=mask),
])
def test_a_mask_that_does_not_fit_the_params_names_mask(make):
    """Issue 15: optax.masked's bare pytree error did not name `mask`; the penalties' wording is the reference."""
    params = {"a": {"kernel": jnp.ones((2, 2))}, "b": jnp.ones(2)}
    with pytest.raises(ValueError, match=r"^mask must be a bool pytree with the structure of the params"):
        make({"a": True}).init(params)
    with pytest.raises(ValueError, match=r"^mask must be a bool pytree with the structure of the params"):
        jr.l2(params, mask={"a": True})
    state = make({"a": True, "b": False}).init(params)  # a fitting mask still works
    assert state is not None
