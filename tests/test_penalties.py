"""Tests for jaxreg.penalties.

References: numpy formulas written here from the definitions (l1, l2, elastic net, group lasso, the
orthogonality penalty), scikit-learn's ElasticNet (its documented objective and the optimality conditions at
its fitted solution), and Keras 3 (``keras.regularizers.L1/L2/L1L2/OrthogonalRegularizer`` and the
``ActivityRegularization`` layer's ``losses``) run with the JAX backend.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxreg as jr

RTOL = 1e-6


def _tree(seed: int = 0) -> dict:
    """A small params-like tree: dense and conv kernels, biases, a norm scale and a list of kernels."""
    rng = np.random.default_rng(seed)
    f = lambda *s: rng.normal(size=s).astype(np.float32)  # noqa: E731
    return {
        "dense": {"kernel": f(3, 4), "bias": f(4)},
        "conv": {"kernel": f(2, 2, 3, 4), "bias": f(4)},
        "norm": {"scale": f(4)},
        "blocks": [{"kernel": f(4, 2)}, {"kernel": f(2, 2)}],
    }


def _np_selected(tree, names_selected):
    """Leaves of the numpy tree whose '/'-joined path is in ``names_selected`` (independent of jaxreg)."""
    flat = {}

    def walk(node, prefix):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}/")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{prefix}{i}/")
        else:
            flat[prefix[:-1]] = np.asarray(node, np.float64)

    walk(tree, "")
    return [v for k, v in flat.items() if k in names_selected]


ALL = {
    "dense/kernel", "dense/bias", "conv/kernel", "conv/bias", "norm/scale", "blocks/0/kernel", "blocks/1/kernel"
}
KERNELS = {"dense/kernel", "conv/kernel", "blocks/0/kernel", "blocks/1/kernel"}

# (mask argument, paths it selects): full bool trees, prefixes, callables and None.
MASKS = [
    pytest.param(None, ALL, id="none"),
    pytest.param(jr.kernel_mask, KERNELS, id="kernel_mask"),
    pytest.param(
        lambda p: jr.path_mask(p, include="^blocks/"), {"blocks/0/kernel", "blocks/1/kernel"}, id="callable"
    ),
    pytest.param(
        {"dense": True, "conv": False, "norm": True, "blocks": False},
        {"dense/kernel", "dense/bias", "norm/scale"},
        id="prefix",
    ),
    pytest.param(
        {"dense": {"kernel": True, "bias": False}, "conv": False, "norm": False, "blocks": [True, False]},
        {"dense/kernel", "blocks/0/kernel"},
        id="mixed-prefix",
    ),
    pytest.param(False, set(), id="empty"),
]


@pytest.mark.parametrize("mask,selected", MASKS)
def test_l1_l2_match_numpy(mask, selected):
    """l1 = sum|w| and l2 = sum w^2 over exactly the selected leaves (numpy formula)."""
    tree = _tree()
    leaves = _np_selected(tree, selected)
    np.testing.assert_allclose(jr.l1(tree, mask=mask), sum(np.abs(w).sum() for w in leaves), rtol=RTOL)
    np.testing.assert_allclose(jr.l2(tree, mask=mask), sum((w**2).sum() for w in leaves), rtol=RTOL)


@pytest.mark.parametrize("mask,selected", MASKS)
def test_group_lasso_matches_numpy(mask, selected):
    """group_lasso(axis=-1) = sum of norms of the last-axis fibres of every selected leaf (numpy)."""
    tree = _tree()
    expected = sum(np.linalg.norm(w, axis=-1).sum() for w in _np_selected(tree, selected))
    np.testing.assert_allclose(jr.group_lasso(tree, axis=-1, mask=mask), expected, rtol=RTOL)


def test_empty_selection_is_float32_zero():
    tree = _tree()
    for value in [
        jr.l1(tree, mask=False),
        jr.l2(tree, mask=False),
        jr.elastic_net(tree, mask=False),
        jr.group_lasso(tree, mask=False),
        jr.orthogonal(tree, mask=False),
        jr.l2({}),
    ]:
        assert value.shape == () and value.dtype == jnp.float32 and float(value) == 0.0


def test_group_lasso_axis_convention():
    """axis=0 on a dense (in, out) kernel: one norm per output unit (column); tuples group conv channels."""
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(5, 3)).astype(np.float32)
    conv = rng.normal(size=(2, 2, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(jr.group_lasso(kernel), np.linalg.norm(kernel, axis=0).sum(), rtol=RTOL)
    np.testing.assert_allclose(jr.group_lasso(kernel, axis=1), np.linalg.norm(kernel, axis=1).sum(), rtol=RTOL)
    per_channel = np.sqrt((conv**2).sum(axis=(0, 1, 2))).sum()
    np.testing.assert_allclose(jr.group_lasso(conv, axis=(0, 1, 2)), per_channel, rtol=RTOL)
    with pytest.raises(ValueError, match="axis"):
        jr.group_lasso({"kernel": kernel, "bias": kernel[0]}, axis=1)
    # numpy integers are axes; an empty tuple (no reduction: every entry its own "group", i.e. l1) and
    # non-integers are rejected naming the argument, as jr.max_norm / jr.proximal_group_lasso do.
    np.testing.assert_allclose(jr.group_lasso(kernel, axis=np.int64(1)), jr.group_lasso(kernel, axis=1))
    for bad in [(), 1.5, True, "0"]:
        with pytest.raises(TypeError, match="axis"):
            jr.group_lasso(kernel, axis=bad)


def test_elastic_net_formula_and_limits():
    """scikit-learn's documented penalty: alpha*r*||w||_1 + 0.5*alpha*(1-r)*||w||_2^2."""
    tree = _tree(2)
    leaves = _np_selected(tree, KERNELS)
    n1 = sum(np.abs(w).sum() for w in leaves)
    n2 = sum((w**2).sum() for w in leaves)
    for alpha, r in [(1.0, 0.5), (0.3, 0.0), (0.3, 1.0), (2.5, 0.15), (0.0, 0.7)]:
        got = jr.elastic_net(tree, alpha=alpha, l1_ratio=r, mask=jr.kernel_mask)
        np.testing.assert_allclose(got, alpha * r * n1 + 0.5 * alpha * (1 - r) * n2, rtol=RTOL, atol=1e-7)
    np.testing.assert_allclose(jr.elastic_net(tree, alpha=0.3, l1_ratio=1.0), 0.3 * jr.l1(tree), rtol=RTOL)
    np.testing.assert_allclose(jr.elastic_net(tree, alpha=0.3, l1_ratio=0.0), 0.15 * jr.l2(tree), rtol=RTOL)


def test_elastic_net_traced_hyperparameters_under_vmap():
    """A sweep of (alpha, l1_ratio) as traced arrays under vmap gives the numpy formula per member."""
    w = np.random.default_rng(3).normal(size=(4, 3)).astype(np.float32)
    alphas = np.array([0.0, 0.1, 1.0, 3.0], np.float32)
    ratios = np.array([0.0, 0.5, 0.9, 1.0], np.float32)
    got = jax.jit(jax.vmap(lambda a, r: jr.elastic_net(w, alpha=a, l1_ratio=r)))(alphas, ratios)
    want = alphas * ratios * np.abs(w).sum() + 0.5 * alphas * (1 - ratios) * (w.astype(np.float64) ** 2).sum()
    np.testing.assert_allclose(got, want, rtol=RTOL)


def test_elastic_net_stationary_at_sklearn_solution():
    """At sklearn.linear_model.ElasticNet's fitted w, the subgradient of sklearn's documented objective
    (1/(2n))||y - Xw||^2 + elastic_net(w) contains 0, with the penalty's gradient taken by jax.grad."""
    from sklearn.linear_model import ElasticNet

    rng = np.random.default_rng(4)
    n, d = 60, 8
    X = rng.normal(size=(n, d))
    y = X @ np.array([2.0, -1.5, 0, 0, 0.8, 0, 0, 0]) + 0.1 * rng.normal(size=n)
    alpha, ratio = 0.2, 0.6
    w = ElasticNet(alpha=alpha, l1_ratio=ratio, fit_intercept=False, tol=1e-12, max_iter=100_000).fit(X, y).coef_
    assert 0 < np.sum(w == 0) < d  # both the smooth and the kinked optimality conditions are exercised
    data_grad = -X.T @ (y - X @ w) / n
    penalty = lambda v: jr.elastic_net(v, alpha=alpha, l1_ratio=ratio)  # noqa: E731
    pen_grad = np.asarray(jax.grad(penalty)(jnp.asarray(w, jnp.float32)))
    active = w != 0
    np.testing.assert_allclose(data_grad[active] + pen_grad[active], 0.0, atol=2e-5)
    # Zero coordinates: |data gradient| <= alpha * l1_ratio (jax.grad of |w| at 0 is 0, the L2 part is 0).
    assert np.all(np.abs(data_grad[~active] + pen_grad[~active]) <= alpha * ratio + 1e-6)


def test_gradients_match_numpy():
    """grad l1 = sign(w), grad l2 = 2w on selected leaves, 0 elsewhere; group lasso w/||w_g||."""
    tree = _tree(5)
    tree["dense"]["kernel"][0, 0] = 0.0
    mask = jr.kernel_mask(tree)
    g1 = jax.grad(lambda t: jr.l1(t, mask=jr.kernel_mask))(tree)
    g2 = jax.grad(lambda t: jr.l2(t, mask=jr.kernel_mask))(tree)
    want1 = jax.tree.map(lambda w, m: np.sign(w) if m else np.zeros_like(w), tree, mask)
    want2 = jax.tree.map(lambda w, m: 2 * w if m else np.zeros_like(w), tree, mask)
    for got, want in [(g1, want1), (g2, want2)]:
        jax.tree.map(lambda g, e: np.testing.assert_allclose(g, e, rtol=RTOL), got, want)
    assert float(g1["dense"]["kernel"][0, 0]) == 0.0  # jax's subgradient of |w| at 0

    k = tree["blocks"][0]["kernel"]
    k[:, 1] = 0.0  # an all-zero unit: gradient must be finite (0), not NaN
    gg = np.asarray(jax.grad(jr.group_lasso)(jnp.asarray(k)))
    norms = np.linalg.norm(k, axis=0)
    expected = np.where(norms > 0, k / np.where(norms > 0, norms, 1.0), 0.0)
    np.testing.assert_allclose(gg, expected, rtol=1e-5)


def _np_orthogonal(w, factor, mode):
    """Independent numpy formula: factor * mean over unordered pairs i<j of |cos(v_i, v_j)|."""
    v = np.asarray(w, np.float64)
    v = v if mode == "rows" else v.T
    u = v / np.linalg.norm(v, axis=1, keepdims=True)
    cos = np.abs(u @ u.T)
    i, j = np.triu_indices(len(v), k=1)
    return factor * cos[i, j].mean()


@pytest.mark.parametrize("mode", ["rows", "columns"])
def test_orthogonal_matches_numpy_and_reshapes(mode):
    rng = np.random.default_rng(6)
    w = rng.normal(size=(5, 3)).astype(np.float32)
    conv = rng.normal(size=(2, 2, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(jr.orthogonal(w, factor=0.7, mode=mode), _np_orthogonal(w, 0.7, mode), rtol=1e-5)
    # Rank > 2 kernels are reshaped to (-1, last); rank < 2 leaves and single-row/column matrices add 0.
    tree = {"conv": conv, "bias": conv[0, 0, 0], "dense": w, "thin": w[:, :1] if mode == "columns" else w[:1]}
    expected = _np_orthogonal(conv.reshape(-1, 4), 0.7, mode) + _np_orthogonal(w, 0.7, mode)
    np.testing.assert_allclose(jr.orthogonal(tree, factor=0.7, mode=mode), expected, rtol=1e-5)


def test_orthogonal_zero_row_has_zero_gradient():
    w = np.random.default_rng(7).normal(size=(4, 3)).astype(np.float32)
    w[2] = 0.0
    g = np.asarray(jax.grad(lambda v: jr.orthogonal(v, factor=1.0))(jnp.asarray(w)))
    assert np.all(np.isfinite(g)) and np.all(g[2] == 0.0)
    # The other rows see the zero row as a zero vector (cosine 0): same value and gradient as dropping it.
    kept = np.delete(w, 2, axis=0)
    scale = (3 * 2 / 2) / (4 * 3 / 2)  # mean over 3 pairs vs over 6 pairs
    np.testing.assert_allclose(jr.orthogonal(w, factor=1.0), scale * _np_orthogonal(kept, 1.0, "rows"), rtol=1e-5)


@pytest.fixture(scope="module")
def keras():
    # keras is a dev dependency; importing it (JAX backend, set above) costs seconds, so only these tests do.
    return pytest.importorskip("keras")


KERAS_KERNEL = np.random.default_rng(8).normal(size=(6, 4)).astype(np.float32)


def test_keras_l1_l2_l1l2(keras):
    """keras.regularizers.L1(c)/L2(c)/L1L2 on a kernel equal c * jr.l1 / c * jr.l2 / their sum."""
    regs = keras.regularizers
    k = jnp.asarray(KERAS_KERNEL)
    np.testing.assert_allclose(regs.L1(0.3)(k), 0.3 * jr.l1(k), rtol=RTOL)
    np.testing.assert_allclose(regs.L2(0.2)(k), 0.2 * jr.l2(k), rtol=RTOL)
    np.testing.assert_allclose(regs.L1L2(l1=0.3, l2=0.2)(k), 0.3 * jr.l1(k) + 0.2 * jr.l2(k), rtol=RTOL)
    # Elastic net is L1L2 with l1 = alpha * r, l2 = alpha * (1 - r) / 2.
    np.testing.assert_allclose(
        regs.L1L2(l1=0.5 * 0.25, l2=0.5 * 0.75 / 2)(k), jr.elastic_net(k, alpha=0.5, l1_ratio=0.25), rtol=RTOL
    )


@pytest.mark.parametrize("mode", ["rows", "columns"])
def test_keras_orthogonal_regularizer(keras, mode):
    """keras.regularizers.OrthogonalRegularizer(factor, mode)(W) == jr.orthogonal(W, factor=, mode=)."""
    k = KERAS_KERNEL.copy()
    k[1] = 0.0  # exercises keras.ops.normalize's norm floor
    ref = keras.regularizers.OrthogonalRegularizer(factor=0.05, mode=mode)(jnp.asarray(k))
    np.testing.assert_allclose(jr.orthogonal(k, factor=0.05, mode=mode), ref, rtol=RTOL)


def test_keras_activity_regularization(keras):
    """Keras 3 layers divide the activity penalty by the batch size: that is batch_mean=True."""
    a = jnp.asarray(KERAS_KERNEL)
    for kwargs, fn in [({"l1": 1.0}, jr.activity_l1), ({"l2": 1.0}, jr.activity_l2)]:
        layer = keras.layers.ActivityRegularization(**kwargs)
        layer(a)
        (loss,) = layer.losses
        np.testing.assert_allclose(fn(a, batch_mean=True), loss, rtol=RTOL)
    np.testing.assert_allclose(jr.activity_l1(a), keras.regularizers.L1(1.0)(a), rtol=RTOL)
    np.testing.assert_allclose(jr.activity_l2(a), keras.regularizers.L2(1.0)(a), rtol=RTOL)


def test_activity_pytree_and_batch_mean():
    """Each output is divided by its own leading dimension (numpy formula); 0-d outputs are not divided."""
    rng = np.random.default_rng(9)
    acts = {"h1": rng.normal(size=(4, 3)).astype(np.float32), "h2": rng.normal(size=(2, 5)).astype(np.float32),
            "s": np.float32(-2.0)}
    np.testing.assert_allclose(
        jr.activity_l1(acts, batch_mean=True),
        np.abs(acts["h1"]).sum() / 4 + np.abs(acts["h2"]).sum() / 2 + 2.0,
        rtol=RTOL,
    )
    np.testing.assert_allclose(
        jr.activity_l2(acts), (acts["h1"] ** 2).sum() + (acts["h2"] ** 2).sum() + 4.0, rtol=RTOL
    )
    assert float(jr.activity_l2(np.zeros((0, 3), np.float32), batch_mean=True)) == 0.0


def test_bfloat16_leaves_accumulate_in_float32():
    w = np.random.default_rng(10).normal(size=(8, 16)).astype(np.float32)
    wb = jnp.asarray(w, jnp.bfloat16)
    w_rounded = np.asarray(wb.astype(jnp.float32), np.float64)
    for fn, ref in [(jr.l1, np.abs(w_rounded).sum()), (jr.l2, (w_rounded**2).sum())]:
        out = fn({"k": wb, "b": jnp.ones(3, jnp.bfloat16)}, mask={"k": True, "b": False})
        assert out.dtype == jnp.float32
        np.testing.assert_allclose(out, ref, rtol=RTOL)
        assert jax.grad(fn)(wb).dtype == jnp.bfloat16


@pytest.mark.parametrize(
    "call,name",
    [
        (lambda: jr.elastic_net(jnp.ones(3), alpha=-0.1), "alpha"),
        (lambda: jr.elastic_net(jnp.ones(3), alpha=float("nan")), "alpha"),
        (lambda: jr.elastic_net(jnp.ones(3), l1_ratio=1.5), "l1_ratio"),
        (lambda: jr.elastic_net(jnp.ones(3), l1_ratio=-0.01), "l1_ratio"),
        (lambda: jr.orthogonal(jnp.ones((3, 3)), factor=-1.0), "factor"),
        (lambda: jr.orthogonal(jnp.ones((3, 3)), mode="diagonal"), "mode"),
        (lambda: jr.l2({"a": jnp.ones(2), "b": jnp.ones(2)}, mask={"a": True}), "mask"),
    ],
)
def test_bad_arguments_raise_value_error(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_traced_mask_is_rejected():
    with pytest.raises(TypeError, match="concrete"):
        jax.jit(lambda m: jr.l2(jnp.ones(2), mask=m))(True)


def test_linen_and_nnx_params():
    """On linen params and nnx State, l2 with kernel_mask = sum of the kernels' squares (numpy)."""

    class Linen(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(2)(nn.LayerNorm()(nn.Dense(3)(x)))

    # linen's own params layout (jax.eval_shape: traced, not compiled), filled with numpy values.
    rng = np.random.default_rng(11)
    shapes = jax.eval_shape(Linen().init, jax.random.key(0), jnp.ones((1, 4)))["params"]
    params = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(s.dtype), shapes)
    kernels = [params["Dense_0"]["kernel"], params["Dense_1"]["kernel"]]
    np.testing.assert_allclose(
        jr.l2(params, mask=jr.kernel_mask), sum((np.asarray(k, np.float64) ** 2).sum() for k in kernels), rtol=RTOL
    )

    model = nnx.Sequential(nnx.Linear(4, 3, rngs=nnx.Rngs(0)), nnx.LayerNorm(3, rngs=nnx.Rngs(1)))
    state = nnx.state(model, nnx.Param)
    kernel = np.asarray(model.layers[0].kernel[...], np.float64)
    np.testing.assert_allclose(jr.l2(state, mask=jr.kernel_mask), (kernel**2).sum(), rtol=RTOL)
    grads = jax.grad(lambda s: jr.l2(s, mask=jr.kernel_mask))(state)
    np.testing.assert_allclose(grads["layers"][0]["kernel"][...], 2 * kernel, rtol=RTOL)
    np.testing.assert_allclose(grads["layers"][1]["scale"][...], 0.0)
