"""The contract every jaxreg regularizer keeps (like optax's ``contrib/_common_test.py``).

Noise functions ``fn(key, x, rate_or_stddev, *, deterministic=False)``: run under ``jax.jit``, ``jax.vmap``
(over keys and over a traced rate) and ``jax.grad`` (finite gradient); keep the input dtype (float32,
bfloat16); the same key gives identical bits and a different key different output; a concrete strength of 0
and ``deterministic=True`` (with ``key=None``) return ``x`` itself; bad hyperparameters raise a
``ValueError`` quoting the argument and the value, a missing key a ``ValueError``, integer input a
``TypeError``. References: the eager call of the same function (for jit and for each vmap member), the
input itself (identity), and the other executions of the same program (bits).

Penalties ``fn(tree, **hyperparameters)``: run under ``jax.jit``, ``jax.vmap`` over stacked trees (checked
against a Python loop) and ``jax.grad`` (finite, even at all-zero weights); return a scalar float32 for
float32 and bfloat16 leaves, with gradients in the leaves' dtype.

Optax transforms (``jr.add_penalty``, the ``proximal_*`` steps, the constraints, ``jr.weight_decay``): are
``optax.GradientTransformation``s whose ``init``/``update`` run under ``jax.jit`` and inside ``optax.chain``;
``update`` is pure (same inputs, same output bits; the input state is left as it was); float32 and bfloat16
params/updates keep their dtype; with a ``mask`` the deselected leaves' updates come back bit for bit; bad
hyperparameters raise a ``ValueError`` naming the argument, and so do an ``update`` without params and an
``axis`` too large for a leaf. Reference: a one-line numpy formula per transform (soft thresholding,
clipping, ...), and the same formula composed with ``optax.sgd`` for the chain.

Keyed augmentations (``jr.random_flip``, ``random_crop``, ``random_rotation``, ``random_zoom``,
``random_translation``, ``mixup``, ``cutmix``): run under ``jax.jit`` and ``jax.vmap`` over keys (with a
traced hyperparameter); the same key gives identical bits and a different key a different output on a
non-constant batch; float32 and uint8 images keep their dtype and NHWC shape; bad hyperparameters and shapes
raise ``ValueError``/``TypeError`` naming the argument. References: the unbatched jitted call with the same
key (for each vmap member), the input itself (a member with a zero-strength hyperparameter), other
executions of the same program (bits), and for uint8 the float32 result on the same pixel values, rounded.

Shapes are small and each function compiles a handful of programs, to keep XLA compile time down.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxreg as jr

RATE = 0.5


def _bits(a: jax.Array) -> bytes:
    return np.asarray(a).tobytes()


def _finite(a: jax.Array) -> bool:
    # numpy, not jnp: an eager jnp op is one more XLA compile per shape and dtype.
    return bool(np.all(np.isfinite(np.asarray(a, np.float32))))


def _bad_value(name: str, bad: float) -> str:
    """The optax-style message of jaxreg._validate: names the argument, the range and the value."""
    return rf"{name} must be .*got {name} = {re.escape(str(bad))}"


# --- noise --------------------------------------------------------------------------------------------------

# (fn, input shape, name of the strength argument). spatial_dropout needs (batch, *spatial, channels).
NOISE = [
    pytest.param(jr.dropout, (8, 16), "rate", id="dropout"),
    pytest.param(functools.partial(jr.dropout, mask_impl="hash"), (8, 16), "rate", id="dropout_hash"),
    pytest.param(jr.spatial_dropout, (2, 4, 16), "rate", id="spatial_dropout"),
    pytest.param(jr.gaussian_dropout, (8, 16), "rate", id="gaussian_dropout"),
    pytest.param(jr.alpha_dropout, (8, 16), "rate", id="alpha_dropout"),
    pytest.param(jr.gaussian_noise, (8, 16), "stddev", id="gaussian_noise"),
    # drop_path draws one decision per example: 32 examples so two keys cannot plausibly share a mask.
    pytest.param(jr.drop_path, (32, 4), "rate", id="drop_path"),
    pytest.param(jr.drop_connect, (8, 16), "rate", id="drop_connect"),
    # drop_block needs NHWC feature maps; 3x3 blocks on 6x6 maps, 16 seed positions per (example, channel).
    pytest.param(functools.partial(jr.drop_block, block_size=3), (2, 6, 6, 4), "rate", id="drop_block"),
]

BAD_STRENGTHS = {"rate": [1.0, -0.1, float("nan"), 1.5], "stddev": [-1.0, -0.1, float("nan")]}


def _input(shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(42).normal(size=shape).astype(np.float32)


@pytest.mark.parametrize("fn,shape,arg", NOISE)
def test_noise_contract(fn: Callable, shape, arg):
    """References: the eager concrete-strength call per key (jit, each vmap member), x itself (strength 0,
    deterministic), other executions of the same program (same key: same bits; other key: other bits)."""

    # One compiled program per function (XLA compile time dominates): the float32 and bfloat16 calls, a vmap
    # over (key, traced strength) and a gradient.
    @jax.jit
    def program(key, keys, strengths, x32, x16):
        return (
            fn(key, x32, RATE),
            fn(key, x16, RATE),
            jax.vmap(lambda k, r: fn(k, x32, r))(keys, strengths),
            jax.grad(lambda x: jnp.sum(jnp.sin(fn(key, x, RATE))))(x32),
        )

    x32 = _input(shape)
    x16 = x32.astype(jnp.bfloat16)
    k0, k1, k2 = jax.random.key(0), jax.random.key(1), jax.random.key(2)
    # Members: (k0, RATE) = the unbatched call, (k1, RATE) another key, (k0, 0.0) the traced-zero identity,
    # (k2, 0.1) another key and strength.
    member_keys, member_strengths = (k0, k1, k0, k2), (RATE, RATE, 0.0, 0.1)
    keys = jnp.stack(member_keys)
    strengths = jnp.array(member_strengths, jnp.float32)
    y32, y16, batched, grad = program(k0, keys, strengths, x32, x16)
    again = program(k0, keys, strengths, x32, x16)
    other = program(k1, keys, strengths, x32, x16)

    # dtype and shape kept; same key -> identical bits (a second execution); another key -> different.
    for y, x, y_again, y_other in [(y32, x32, again[0], other[0]), (y16, x16, again[1], other[1])]:
        assert y.dtype == x.dtype and y.shape == x.shape
        assert _finite(y)
        assert _bits(y_again) == _bits(y)
        assert _bits(y_other) != _bits(y)
        assert _bits(y) != _bits(x)  # rate/stddev 0.5 does change the input

    # Eager: the same key twice gives the same bits, float32 in and out; jit agrees with it (one compiled
    # program vs another: fusion may reorder float ops, so 1e-6 rather than bit equality).
    eager = fn(k0, x32, RATE)
    assert eager.shape == x32.shape and eager.dtype == x32.dtype
    np.testing.assert_array_equal(fn(k0, x32, RATE), eager)
    np.testing.assert_allclose(y32, eager, rtol=1e-6, atol=1e-6)

    # vmap over (key, traced strength): each member is the eager call with that key and concrete strength
    # (up to fusion-dependent rounding), two keys differ, and a traced strength of 0 is the identity.
    assert batched.shape == (len(member_keys), *shape) and batched.dtype == jnp.float32
    batched = np.asarray(batched)
    for member, key, strength in zip(batched, member_keys, member_strengths):
        np.testing.assert_allclose(member, fn(key, x32, strength), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(batched[0], y32, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(batched[1], other[0], rtol=1e-6, atol=1e-6)
    assert _bits(batched[0]) != _bits(batched[1])
    assert not np.allclose(batched[0], batched[1])
    np.testing.assert_array_equal(batched[2], x32)

    # grad: finite, not identically zero, in x's dtype.
    assert grad.shape == x32.shape and grad.dtype == x32.dtype
    assert _finite(grad) and np.any(np.asarray(grad) != 0)

    # Bad hyperparameters, a missing key and integer input raise, naming the problem, before tracing.
    for bad in BAD_STRENGTHS[arg]:
        with pytest.raises(ValueError, match=rf"{arg} must be in the range .*got {arg} = {re.escape(str(bad))}"):
            fn(k0, x32, bad)
    with pytest.raises(ValueError, match="requires a key"):
        fn(None, x32, RATE)
    with pytest.raises(TypeError, match="floating dtype"):
        fn(k0, np.ones(shape, np.int32), RATE)

    # deterministic=True (no key needed) and a concrete strength of 0: x itself back, for both dtypes.
    for x in (x32, x16):
        y = fn(None, x, RATE, deterministic=True)
        assert y.dtype == x.dtype and _bits(y) == _bits(x)
        xj = jnp.asarray(x)
        assert fn(None, xj, RATE, deterministic=True) is xj
        assert fn(k0, xj, 0.0) is xj


# --- penalties ----------------------------------------------------------------------------------------------

PENALTIES = [
    pytest.param(jr.l1, id="l1"),
    pytest.param(jr.l2, id="l2"),
    pytest.param(lambda t: jr.elastic_net(t, alpha=0.1, l1_ratio=0.3), id="elastic_net"),
    pytest.param(jr.group_lasso, id="group_lasso"),
    pytest.param(lambda t: jr.orthogonal(t, factor=0.1, mode="columns"), id="orthogonal"),
    pytest.param(jr.activity_l1, id="activity_l1"),
    pytest.param(lambda t: jr.activity_l2(t, batch_mean=True), id="activity_l2"),
]
def _params(seed: int) -> dict:
    """kernel and bias, plus an all-zero kernel: where |w| and ||w|| have kinks."""
    rng = np.random.default_rng(seed)
    return {
        "dense": {
            "kernel": rng.normal(size=(8, 16)).astype(np.float32),
            "bias": rng.normal(size=16).astype(np.float32),
        },
        "dead": {"kernel": np.zeros((4, 4), np.float32)},
    }


@pytest.mark.parametrize("penalty", PENALTIES)
def test_penalty_contract(penalty: Callable):
    # One compiled program per penalty: jit, vmap over stacked trees, grad, and the bfloat16 variants.
    @jax.jit
    def program(params, stacked, params16):
        return (
            penalty(params),
            jax.vmap(penalty)(stacked),
            jax.grad(penalty)(params),
            penalty(params16),
            jax.grad(penalty)(params16),
        )

    params = _params(0)
    members = [_params(s) for s in range(3)]
    stacked = jax.tree.map(lambda *xs: np.stack(xs), *members)
    params16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), params)
    value, per_member, grads, value16, grads16 = program(params, stacked, params16)

    # A float32 scalar, the same under jit as eagerly.
    eager = penalty(params)
    assert eager.shape == () and eager.dtype == jnp.float32 and float(eager) > 0
    np.testing.assert_allclose(value, eager, rtol=1e-6)

    # vmap over stacked trees: one penalty per member, as a Python loop gives.
    np.testing.assert_allclose(per_member, [penalty(m) for m in members], rtol=1e-6)

    # grad: finite everywhere, including the all-zero kernel where |w| and ||w|| have kinks.
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    assert all(_finite(g) for g in jax.tree.leaves(grads))
    assert np.any(np.asarray(grads["dense"]["kernel"]) != 0)

    # bfloat16 leaves: a float32 result equal to the float32 penalty of the same (rounded) values;
    # gradients in bfloat16.
    assert value16.dtype == jnp.float32
    rounded = jax.tree.map(lambda x: x.astype(np.float32), params16)
    np.testing.assert_allclose(value16, penalty(rounded), rtol=1e-5)
    assert all(g.dtype == jnp.bfloat16 and _finite(g) for g in jax.tree.leaves(grads16))


@pytest.mark.parametrize(
    "call,name",
    [
        (lambda t, v: jr.elastic_net(t, alpha=v), "alpha"),
        (lambda t, v: jr.elastic_net(t, l1_ratio=v), "l1_ratio"),
        (lambda t, v: jr.orthogonal(t, factor=v), "factor"),
    ],
)
def test_penalty_hyperparameters_bad_concrete_and_traced(call: Callable, name: str):
    """Concrete bad values raise ValueError naming the argument; traced values under vmap are allowed."""
    params = _params(1)
    for bad in (-0.1, float("nan")):
        with pytest.raises(ValueError, match=name):
            call(params, bad)
    values = jnp.array([0.0, 0.25, 1.0], jnp.float32)
    swept = jax.jit(jax.vmap(lambda v: call(params, v)))(values)
    np.testing.assert_allclose(swept, [call(params, float(v)) for v in values], rtol=1e-6)


def test_orthogonal_mode_is_checked():
    with pytest.raises(ValueError, match="mode"):
        jr.orthogonal(_params(0), mode="cols")


# --- optax transforms ---------------------------------------------------------------------------------------

LR = 0.5  # the learning rate of the proximal steps, and of the optax.sgd they are chained with
KERAS_EPSILON = 1e-7  # keras.backend.epsilon(), in Keras' MaxNorm / UnitNorm


def _transform_tree(seed: int, scale: float) -> dict:
    """A (4, 16) kernel whose column norms range from ~0.1 to ~3 (so thresholds and norm bounds cut some units
    and not others), and a (16,) bias."""
    rng = np.random.default_rng(seed)
    return {
        "dense": {
            "kernel": (scale * rng.normal(size=(4, 16)) * np.linspace(0.05, 1.5, 16)).astype(np.float32),
            "bias": (scale * rng.normal(size=16)).astype(np.float32),
        }
    }


def _soft_threshold(x, t):
    return np.sign(x) * np.maximum(np.abs(x) - t, 0.0)


def _unit_norms(x):
    """L2 norm over axis 0 (keepdims): one per column of the kernel; the whole bias is one unit."""
    return np.sqrt(np.sum(x**2, axis=0, keepdims=True))


# Reference formulas, numpy, per leaf: (params p, updates u) -> updates out, with x = p + u for the steps that
# act on the new params. These are the docstrings' one-liners (and Keras' constraint formulas).
TRANSFORMS = [
    # (make(mask), reference(p, u), where it goes in a chain, bad hyperparameters: [(make, argument, value)])
    pytest.param(
        lambda mask: jr.add_penalty(jr.l2, 0.1, mask=mask),
        lambda p, u: u + 0.1 * 2 * p,  # d/dw sum(w**2) = 2 w
        "first",
        [(lambda v: jr.add_penalty(jr.l2, v), "strength", v) for v in (-1.0, float("nan"))],
        id="add_penalty",
    ),
    pytest.param(
        lambda mask: jr.proximal_l1(0.5, learning_rate=LR, mask=mask),
        lambda p, u: _soft_threshold(p + u, LR * 0.5) - p,
        "last",
        [(lambda v: jr.proximal_l1(v, learning_rate=LR), "strength", -0.1),
         (lambda v: jr.proximal_l1(0.5, learning_rate=v), "learning_rate", 0.0)],
        id="proximal_l1",
    ),
    pytest.param(
        lambda mask: jr.proximal_elastic_net(0.5, l1_ratio=0.5, learning_rate=LR, mask=mask),
        lambda p, u: _soft_threshold(p + u, LR * 0.5 * 0.5) / (1 + LR * 0.5 * 0.5) - p,
        "last",
        [(lambda v: jr.proximal_elastic_net(v, learning_rate=LR), "strength", -0.1),
         (lambda v: jr.proximal_elastic_net(0.5, l1_ratio=v, learning_rate=LR), "l1_ratio", 1.5),
         (lambda v: jr.proximal_elastic_net(0.5, l1_ratio=v, learning_rate=LR), "l1_ratio", -0.1),
         (lambda v: jr.proximal_elastic_net(0.5, learning_rate=v), "learning_rate", -1.0)],
        id="proximal_elastic_net",
    ),
    pytest.param(
        lambda mask: jr.proximal_group_lasso(0.5, learning_rate=LR, mask=mask),
        lambda p, u: (p + u) * np.maximum(1 - LR * 0.5 / _unit_norms(p + u), 0.0) - p,
        "last",
        [(lambda v: jr.proximal_group_lasso(v, learning_rate=LR), "strength", float("nan")),
         (lambda v: jr.proximal_group_lasso(0.5, learning_rate=v), "learning_rate", 0.0)],
        id="proximal_group_lasso",
    ),
    pytest.param(
        lambda mask: jr.max_norm(1.0, mask=mask),
        lambda p, u: (p + u) * np.clip(_unit_norms(p + u), 0, 1.0) / (KERAS_EPSILON + _unit_norms(p + u)) - p,
        "last",
        [(lambda v: jr.max_norm(v), "max_value", v) for v in (0.0, -1.0, float("nan"))],
        id="max_norm",
    ),
    pytest.param(
        lambda mask: jr.unit_norm(mask=mask),
        lambda p, u: (p + u) / (KERAS_EPSILON + _unit_norms(p + u)) - p,
        "last",
        [],  # no numeric hyperparameter; a bad axis is checked below (a ValueError at update time)
        id="unit_norm",
    ),
    pytest.param(
        lambda mask: jr.non_negative(mask=mask),
        lambda p, u: np.maximum(p + u, 0.0) - p,
        "last",
        [],  # no hyperparameter
        id="non_negative",
    ),
    pytest.param(
        lambda mask: jr.weight_decay(0.1, mask=mask),
        lambda p, u: u + 0.1 * p,  # optax.add_decayed_weights
        "first",
        [(lambda v: jr.weight_decay(v), "rate", v) for v in (-1e-4, float("nan"))],
        id="weight_decay",
    ),
]

MASK = {"dense": {"kernel": True, "bias": False}}


def _reference(formula: Callable, params: dict, updates: dict) -> dict:
    return jax.tree.map(lambda p, u: formula(p.astype(np.float64), u.astype(np.float64)), params, updates)


def _assert_tree_close(actual, expected, **tol) -> None:
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    jax.tree.map(lambda a, e: np.testing.assert_allclose(np.asarray(a, np.float64), e, **tol), actual, expected)


@pytest.mark.parametrize("make,formula,position,bad", TRANSFORMS)
def test_transform_contract(make: Callable, formula: Callable, position: str, bad: list):
    """References: the numpy formula of each transform (float32 to 1e-6; bfloat16 to a few bf16 ulps of the
    formula on the rounded inputs), composed with ``optax.sgd(LR)``'s ``-LR * g`` inside ``optax.chain``."""
    tx, masked = make(None), make(MASK)
    # "first" transforms act on gradients, before the optimizer; "last" ones on the step, after it.
    chain = optax.chain(tx, optax.sgd(LR)) if position == "first" else optax.chain(optax.sgd(LR), tx)
    for t in (tx, masked, chain):
        assert isinstance(t, optax.GradientTransformation)

    # One compiled program per transform: init and update, unmasked, masked, bfloat16 and chained.
    @jax.jit
    def program(params, updates, params16, updates16):
        out, _ = tx.update(updates, tx.init(params), params)
        out_masked, _ = masked.update(updates, masked.init(params), params)
        out16, _ = tx.update(updates16, tx.init(params16), params16)
        out_chain, _ = chain.update(updates, chain.init(params), params)
        return out, out_masked, out16, out_chain

    params, updates = _transform_tree(0, 1.0), _transform_tree(1, 0.3)
    params16, updates16 = (jax.tree.map(lambda a: a.astype(jnp.bfloat16), t) for t in (params, updates))
    inputs = jax.tree.map(np.copy, (params, updates, params16, updates16))
    out, out_masked, out16, out_chain = program(params, updates, params16, updates16)
    jax.tree.map(np.testing.assert_array_equal, inputs, (params, updates, params16, updates16))  # not mutated

    # The numpy formula; where it puts a parameter on exactly 0 (thresholds, clipping), it lands on 0.0.
    expected = _reference(formula, params, updates)
    _assert_tree_close(out, expected, rtol=1e-5, atol=1e-6)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(out))
    for p, o, e in zip(jax.tree.leaves(params), jax.tree.leaves(out), jax.tree.leaves(expected)):
        np.testing.assert_array_equal(np.asarray(optax.apply_updates(p, o))[p + e == 0], 0.0)

    # mask: the deselected bias comes back bit for bit; the selected kernel follows the formula.
    assert _bits(out_masked["dense"]["bias"]) == _bits(updates["dense"]["bias"])
    np.testing.assert_allclose(out_masked["dense"]["kernel"], expected["dense"]["kernel"], rtol=1e-5, atol=1e-6)
    assert not np.array_equal(out_masked["dense"]["kernel"], updates["dense"]["kernel"])

    # bfloat16 params and updates: bfloat16 out, the formula on the rounded inputs to a few bf16 ulps.
    assert all(leaf.dtype == jnp.bfloat16 for leaf in jax.tree.leaves(out16))
    assert jax.tree.map(np.shape, out16) == jax.tree.map(np.shape, updates)
    _assert_tree_close(out16, _reference(formula, params16, updates16), rtol=2e-2, atol=2e-2)

    # optax.chain with optax.sgd(LR) (updates -LR * g): the transform before or after it.
    if position == "first":
        expected_chain = jax.tree.map(lambda e: -LR * e, expected)
    else:
        expected_chain = _reference(formula, params, jax.tree.map(lambda u: -LR * u, updates))
    _assert_tree_close(out_chain, expected_chain, rtol=1e-5, atol=1e-6)

    # update is pure: two eager calls on the same inputs give the same bits (and the jitted values); the
    # state passed in is left as it was (count 0), the one returned counts one update.
    state = tx.init(params)
    state_bits = [_bits(leaf) for leaf in jax.tree.leaves(state)]
    first, new_state = tx.update(updates, state, params)
    second, new_state_again = tx.update(updates, state, params)
    assert jax.tree.map(_bits, first) == jax.tree.map(_bits, second)
    assert jax.tree.map(_bits, new_state) == jax.tree.map(_bits, new_state_again)
    assert [_bits(leaf) for leaf in jax.tree.leaves(state)] == state_bits
    if "count" in getattr(state, "_fields", ()):  # AddPenaltyState, ProximalState (not optax.EmptyState)
        assert int(state.count) == 0 and int(new_state.count) == 1
    _assert_tree_close(first, jax.tree.map(lambda a: np.asarray(a, np.float64), out), rtol=1e-6, atol=1e-7)

    # Bad hyperparameters raise at construction, quoting the argument and the value; update without params
    # raises (optax's message); an axis too large for a leaf raises when the update is traced.
    for make_bad, name, value in bad:
        with pytest.raises(ValueError, match=_bad_value(name, value)):
            make_bad(value)
    with pytest.raises(ValueError, match="params"):
        tx.update(updates, tx.init(params), None)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: jr.proximal_group_lasso(0.5, learning_rate=LR, axis=2), id="proximal_group_lasso"),
        pytest.param(lambda: jr.max_norm(1.0, axis=2), id="max_norm"),
        pytest.param(lambda: jr.unit_norm(axis=2), id="unit_norm"),
    ],
)
def test_transform_axis_out_of_range_for_a_leaf(make: Callable):
    """The per-unit transforms name ``axis`` (a ValueError, when the update is traced) for a leaf too small
    for it; ``jax.eval_shape`` traces without compiling."""
    tx, params = make(), _transform_tree(0, 1.0)
    with pytest.raises(ValueError, match="axis must index the dimensions"):
        jax.eval_shape(tx.update, params, tx.init(params), params)


# --- keyed augmentations ------------------------------------------------------------------------------------

B = 4  # images (B, 8, 8, 3): enough examples that two keys cannot plausibly draw the same flips
IMAGES = np.random.default_rng(3).random((B, 8, 8, 3)).astype(np.float32)  # non-constant: every pixel differs
IMAGES_U8 = (IMAGES * 255).astype(np.uint8)
LABELS = np.eye(B, dtype=np.float32)
KEY = jax.random.key(0)

# name -> fn(key, images, h) -> (images, labels or None), h the hyperparameter that may be traced.
AUGMENT_FNS = {
    "random_flip": lambda k, x, h: (jr.random_flip(k, x, vertical=True, prob=h), None),
    # size and padding are static (shapes depend on them): h is not used, there is nothing to trace.
    "random_crop": lambda k, x, h: (jr.random_crop(k, x, padding=2), None),
    "random_rotation": lambda k, x, h: (jr.random_rotation(k, x, h), None),
    "random_zoom": lambda k, x, h: (jr.random_zoom(k, x, h), None),
    "random_translation": lambda k, x, h: (jr.random_translation(k, x, h), None),
    "mixup": lambda k, x, h: jr.mixup(k, x, LABELS, h),
    "cutmix": lambda k, x, h: jr.cutmix(k, x, LABELS, h),
    "random_erasing": lambda k, x, h: (jr.random_erasing(k, x, probability=h), None),
}

# Functions compiled into one program. mixup and cutmix split their key the same way and draw the same Beta
# weights, so XLA compiles their Gamma rejection sampler (the slowest compile here, ~2 s) once for both.
PROGRAM_GROUPS = {"mixup": ("mixup", "cutmix"), "cutmix": ("mixup", "cutmix")}


@functools.cache
def _augment_program(names: tuple[str, ...]) -> Callable:
    """One jitted program per group: the unbatched float32 and uint8 calls and a vmap over (key, traced h)."""

    @jax.jit
    def program(key, keys, h, hs, x32, x8):
        out = {}
        for name in names:
            fn = AUGMENT_FNS[name]
            out[name] = (fn(key, x32, h), fn(key, x8, h), jax.vmap(lambda k, v: fn(k, x32, v))(keys, hs))
        return out

    return program


# (name, h, the h that is the identity or None, exact: uint8 output equals the float32 output on the same
#  pixels (pixels copied, not interpolated), bad calls: [(call, error, what the message names)]).
AUGMENTATIONS = [
    pytest.param(
        "random_flip", 0.5, 0.0, True,
        [(lambda: jr.random_flip(KEY, IMAGES, prob=1.5), ValueError, _bad_value("prob", 1.5)),
         (lambda: jr.random_flip(KEY, IMAGES, prob=float("nan")), ValueError, _bad_value("prob", float("nan"))),
         (lambda: jr.random_flip(KEY, IMAGES, horizontal=False), ValueError, "horizontal")],
        id="random_flip",
    ),
    pytest.param(
        "random_crop", 0.0, None, True,
        [(lambda: jr.random_crop(KEY, IMAGES, padding=-1), ValueError, "padding"),
         (lambda: jr.random_crop(KEY, IMAGES, padding=1.5), TypeError, "padding"),
         (lambda: jr.random_crop(KEY, IMAGES, size=9), ValueError, "size"),
         (lambda: jr.random_crop(KEY, IMAGES, size=0), ValueError, "size"),
         (lambda: jr.random_crop(KEY, IMAGES, pad_mode="mirror"), ValueError, "pad_mode")],
        id="random_crop",
    ),
    pytest.param(
        "random_rotation", 30.0, 0.0, False,
        [(lambda: jr.random_rotation(KEY, IMAGES, -1.0), ValueError, _bad_value("max_degrees", -1.0)),
         (lambda: jr.random_rotation(KEY, IMAGES, (20.0, 10.0)), ValueError, "max_degrees"),
         (lambda: jr.random_rotation(KEY, IMAGES, (float("nan"), 10.0)), ValueError, "max_degrees"),
         (lambda: jr.random_rotation(KEY, IMAGES, 10.0, order=3), ValueError, "order"),
         (lambda: jr.random_rotation(KEY, IMAGES, 10.0, fill_value=jnp.ones(3)), TypeError, "fill_value")],
        id="random_rotation",
    ),
    pytest.param(
        "random_zoom", 0.3, 0.0, False,
        [(lambda: jr.random_zoom(KEY, IMAGES, 1.0), ValueError, _bad_value("zoom_range", 1.0)),
         (lambda: jr.random_zoom(KEY, IMAGES, -0.1), ValueError, _bad_value("zoom_range", -0.1)),
         (lambda: jr.random_zoom(KEY, IMAGES, (0.0, 1.2)), ValueError, "zoom_range"),
         (lambda: jr.random_zoom(KEY, IMAGES, (1.5, 1.2)), ValueError, "zoom_range")],
        id="random_zoom",
    ),
    pytest.param(
        "random_translation", 0.25, 0.0, False,
        [(lambda: jr.random_translation(KEY, IMAGES, 1.5), ValueError, _bad_value("max_fraction", 1.5)),
         (lambda: jr.random_translation(KEY, IMAGES, (0.1, -0.2)), ValueError, _bad_value("max_fraction", -0.2)),
         (lambda: jr.random_translation(KEY, IMAGES, (0.1, 0.2, 0.3)), ValueError, "max_fraction")],
        id="random_translation",
    ),
    pytest.param(
        "mixup", 0.4, None, False,
        [(lambda: jr.mixup(KEY, IMAGES, LABELS, 0.0), ValueError, _bad_value("alpha", 0.0)),
         (lambda: jr.mixup(KEY, IMAGES, LABELS, float("nan")), ValueError, _bad_value("alpha", float("nan"))),
         (lambda: jr.mixup(KEY, IMAGES, LABELS[:3], 0.4), ValueError, "y_onehot"),
         (lambda: jr.mixup(KEY, IMAGES, LABELS.astype(np.int32), 0.4), TypeError, "y_onehot")],
        id="mixup",
    ),
    pytest.param(
        "cutmix", 1.0, None, True,
        [(lambda: jr.cutmix(KEY, IMAGES, LABELS, -1.0), ValueError, _bad_value("alpha", -1.0)),
         (lambda: jr.cutmix(KEY, IMAGES, np.arange(B), 1.0), ValueError, "y_onehot"),
         (lambda: jr.cutmix(KEY, IMAGES, LABELS.astype(np.int32), 1.0), TypeError, "y_onehot")],
        id="cutmix",
    ),
    pytest.param(
        "random_erasing", 1.0, 0.0, True,
        [(lambda: jr.random_erasing(KEY, IMAGES, probability=1.5), ValueError, _bad_value("probability", 1.5)),
         (lambda: jr.random_erasing(KEY, IMAGES, scale=(0.5, 0.1)), ValueError, "scale"),
         (lambda: jr.random_erasing(KEY, IMAGES, ratio=(2.0, 0.5)), ValueError, "ratio"),
         (lambda: jr.random_erasing(KEY, IMAGES, value=(1.0, 2.0)), ValueError, "value"),
         (lambda: jr.random_erasing(KEY, IMAGES.astype(np.int16)), TypeError, "x must be uint8")],
        id="random_erasing",
    ),
]


@pytest.mark.parametrize("name,h,identity,exact,bad", AUGMENTATIONS)
def test_augmentation_contract(name: str, h: float, identity, exact: bool, bad: list):
    """References: the unbatched jitted call with the same key (each vmap member), the input itself (a member
    with the identity hyperparameter), other executions of the same program (bits), and for uint8 the float32
    output on the same pixel values, rounded and clipped (the module docstring: integer images are resampled
    in float32 and cast back)."""
    program = _augment_program(PROGRAM_GROUPS.get(name, (name,)))
    k0, k1 = KEY, jax.random.key(1)
    # Members: (k0, h) = the unbatched call, (k1, h) another key, (k0, identity) the identity, or (k0, h) again.
    member_keys = (k0, k1, k0)
    member_hs = (h, h, h if identity is None else identity)
    keys, hs = jnp.stack(member_keys), jnp.array(member_hs, jnp.float32)

    def run(key, x32):
        return program(key, keys, jnp.float32(h), hs, x32, IMAGES_U8)[name]

    (y32, labels), (y8, labels8), (batched, batched_labels) = run(k0, IMAGES)
    again, other = run(k0, IMAGES), run(k1, IMAGES)

    # NHWC shape and dtype kept; the same key gives identical bits (another execution), another key a different
    # output.
    for i, (y, x) in enumerate([(y32, IMAGES), (y8, IMAGES_U8)]):
        assert y.shape == x.shape and y.dtype == x.dtype
        assert _bits(again[i][0]) == _bits(y)
        assert _bits(other[i][0]) != _bits(y)
        assert _bits(y) != _bits(x)

    # uint8: the float32 result on the same pixel values, rounded and clipped (exact for pixel copies; an
    # interpolated value that lands on a .5 may round either way in another compiled computation, so one level
    # off is allowed there).
    ref8 = np.clip(np.round(np.asarray(run(k0, IMAGES_U8.astype(np.float32))[0][0])), 0, 255)
    if exact:
        np.testing.assert_array_equal(y8, ref8)
    else:
        np.testing.assert_allclose(np.asarray(y8, np.float32), ref8, rtol=0, atol=1)

    # vmap over (key, traced h): members are the unbatched calls with those keys (up to fusion-dependent
    # rounding); two keys differ; the identity h returns the input, or k0 with the same h repeats member 0.
    assert batched.shape == (len(member_keys), *IMAGES.shape) and batched.dtype == jnp.float32
    batched = np.asarray(batched)
    np.testing.assert_allclose(batched[0], y32, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(batched[1], other[0][0], rtol=1e-6, atol=1e-6)
    assert not np.allclose(batched[0], batched[1])
    np.testing.assert_array_equal(batched[2], IMAGES if identity is not None else batched[0])

    # mixup/cutmix labels: the labels' shape and dtype, rows still summing to 1 (a convex mix of one-hots),
    # the same for the same key, whatever the images' dtype, in and out of vmap.
    if labels is not None:
        for ls in (labels, labels8, *batched_labels):
            assert ls.shape == LABELS.shape and ls.dtype == LABELS.dtype
            np.testing.assert_allclose(np.sum(ls, axis=-1), 1.0, rtol=1e-6)
        assert _bits(again[0][1]) == _bits(labels) and _bits(labels8) == _bits(labels)
        np.testing.assert_allclose(batched_labels[0], labels, rtol=1e-6, atol=1e-6)
        assert not np.allclose(batched_labels[0], batched_labels[1])

    # Bad hyperparameters and shapes raise, naming the argument, before tracing; so do a missing key and
    # images that are not NHWC.
    fn = AUGMENT_FNS[name]
    for call, error, match in bad:
        with pytest.raises(error, match=match):
            call()
    with pytest.raises(ValueError, match="requires a key"):
        fn(None, IMAGES, h)
    if name != "mixup":  # mixup blends whole examples of any rank (images, feature vectors, sequences)
        with pytest.raises(ValueError, match="NHWC"):
            fn(k0, IMAGES[0], h)


@functools.cache
def _augmix_program() -> Callable:
    """float32, uint8 and bfloat16 calls with a traced alpha and a vmap over (key, alpha), compiled together
    (at XLA's backend optimization level 0: the big graph compiles in a third of the time, same semantics)."""

    @functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0,
                                                  "xla_llvm_disable_expensive_passes": True})
    def program(key, keys, alpha, alphas, x32, x8):
        vmapped = jax.vmap(lambda k, a: jr.augmix(k, x32, alpha=a))(keys, alphas)
        return (jr.augmix(key, x32, alpha=alpha), jr.augmix(key, x8, alpha=alpha),
                jr.augmix(key, x32.astype(jnp.bfloat16), alpha=alpha), vmapped)

    return program


def test_augmix_contract():
    """AugMix under jax.jit and jax.vmap over (key, traced alpha); dtypes kept; same key same bits. References:
    the unbatched call with the same key (each vmap member), other executions of the same program (bits), the
    convex blend's bound (float images stay in [0, 1]), and a black image, which every AugMix op maps to black
    (geometric ops fill 0, the point ops keep 0)."""
    program = _augmix_program()
    keys = jnp.stack([KEY, jax.random.key(1)])
    alphas = jnp.array([1.0, 0.5], jnp.float32)
    y32, y8, ybf, batched = program(KEY, keys, jnp.float32(1.0), alphas, IMAGES, IMAGES_U8)
    again = program(KEY, keys, jnp.float32(1.0), alphas, IMAGES, IMAGES_U8)
    for y, x in ((y32, IMAGES), (y8, IMAGES_U8), (ybf, IMAGES)):
        assert y.shape == x.shape
    assert (y32.dtype, y8.dtype, ybf.dtype) == (jnp.float32, jnp.uint8, jnp.bfloat16)
    assert all(_bits(a) == _bits(b) for a, b in zip(again[:3], (y32, y8, ybf)))
    assert _bits(y32) != _bits(IMAGES) and 0.0 <= float(np.min(y32)) and float(np.max(y32)) <= 1.0
    np.testing.assert_allclose(batched[0], y32, rtol=1e-6, atol=1e-6)
    assert not np.allclose(batched[0], batched[1])
    black = program(KEY, keys, jnp.float32(1.0), alphas, np.zeros_like(IMAGES), np.zeros_like(IMAGES_U8))
    assert not np.any(np.asarray(black[0])) and not np.any(np.asarray(black[1]))
    for call, error, match in [
        (lambda: jr.augmix(KEY, IMAGES, severity=11), ValueError, "severity"),
        (lambda: jr.augmix(KEY, IMAGES, depth=0), ValueError, "depth"),
        (lambda: jr.augmix(KEY, IMAGES, alpha=0.0), ValueError, _bad_value("alpha", 0.0)),
        (lambda: jr.augmix(KEY, IMAGES[..., :2]), ValueError, "channels"),
        (lambda: jr.augmix(KEY, IMAGES_U8.astype(np.int16)), TypeError, "uint8"),
        (lambda: jr.augmix(None, IMAGES), ValueError, "requires a key"),
        (lambda: jr.augmix(KEY, IMAGES[0]), ValueError, "NHWC"),
    ]:
        with pytest.raises(error, match=match):
            call()


def test_augmix_applies_torchvisions_ops_and_bins():
    """Reference: torchvision's ``AugMix._augmentation_space(10, (16, 16))``, quoted below, applied with the
    public point and affine ops. With one chain of one op and ``alpha`` so large that the Beta blend is 1/2
    (sd 0.0035), ``2 * augmix(x) - x`` is the op's output: each image must match one of the candidates, an op
    of the AugMix list at one of the first ``severity`` bins, either sign for the signed ops."""
    x = np.random.default_rng(5).random((8, 16, 16, 3)).astype(np.float32)
    shear = np.linspace(0.0, 0.3, 10)[:3]  # torch.linspace(0.0, 0.3, num_bins)
    shift = np.trunc(np.linspace(0.0, 16 / 3.0, 10)[:3])  # linspace(0, width / 3), then int(magnitude)
    degrees = np.linspace(0.0, 30.0, 10)[:3]
    bits = (4 - np.round(np.arange(10) / ((10 - 1) / 4)))[:3].astype(int)  # 4 - (arange / ((n - 1) / 4)).round()
    threshold = np.linspace(255.0, 0.0, 10)[:3] / 255.0  # of the brightest level, 1.0 for floats
    enhance = np.linspace(0.0, 0.9, 10)[:3]
    candidates = [jr.autocontrast(x), jr.equalize(x)]
    for sign in (1.0, -1.0):
        for i in range(3):
            candidates += [jr.shear_x(x, sign * shear[i]), jr.shear_y(x, sign * shear[i]),
                           jr.translate(x, (0.0, sign * shift[i]), order=0),
                           jr.translate(x, (sign * shift[i], 0.0), order=0), jr.rotate(x, sign * degrees[i], order=0),
                           *(op(x, 1.0 + sign * enhance[i]) for op in (jr.adjust_brightness, jr.adjust_saturation,
                                                                       jr.adjust_contrast, jr.adjust_sharpness))]
    candidates += [jr.posterize(x, int(b)) for b in bits] + [jr.solarize(x, float(t)) for t in threshold]
    candidates = np.stack([np.asarray(c) for c in candidates])  # (candidates, 8, 16, 16, 3)
    for seed in (0, 1):
        out = np.asarray(jr.augmix(jax.random.key(seed), x, width=1, depth=1, alpha=1e4))
        op_output = 2.0 * out - x
        distance = np.abs(candidates - op_output).max(axis=(2, 3, 4))  # (candidates, 8)
        assert distance.min(axis=0).max() < 0.03, distance.min(axis=0)


# ---------------------------------------------------------------------------------------------------------
# Keys: every keyed public function rejects what is not ONE jax.random key with jaxreg's TypeError
# (issue 15: before, a string or a batch of keys reached jax internals: "too many values to unpack").
# ---------------------------------------------------------------------------------------------------------

_IMAGES = jnp.ones((2, 8, 8, 3))
_VECTORS = jnp.ones((4, 6))
_LABELS = jax.nn.one_hot(jnp.arange(2), 3)
KEYED_FUNCTIONS = {
    "dropout": lambda k: jr.dropout(k, _VECTORS, 0.5),
    "spatial_dropout": lambda k: jr.spatial_dropout(k, _IMAGES, 0.5),
    "gaussian_dropout": lambda k: jr.gaussian_dropout(k, _VECTORS, 0.5),
    "alpha_dropout": lambda k: jr.alpha_dropout(k, _VECTORS, 0.5),
    "gaussian_noise": lambda k: jr.gaussian_noise(k, _VECTORS, 0.5),
    "drop_path": lambda k: jr.drop_path(k, _VECTORS, 0.5),
    "drop_connect": lambda k: jr.drop_connect(k, _VECTORS, 0.5),
    "drop_block": lambda k: jr.drop_block(k, _IMAGES, 0.5),
    "random_flip": lambda k: jr.random_flip(k, _IMAGES),
    "random_crop": lambda k: jr.random_crop(k, _IMAGES, padding=1),
    "random_rotation": lambda k: jr.random_rotation(k, _IMAGES, 10.0),
    "random_zoom": lambda k: jr.random_zoom(k, _IMAGES, 0.1),
    "random_translation": lambda k: jr.random_translation(k, _IMAGES, 0.1),
    "mixup": lambda k: jr.mixup(k, _IMAGES, _LABELS, 0.2),
    "cutmix": lambda k: jr.cutmix(k, _IMAGES, _LABELS, 1.0),
    "random_erasing": lambda k: jr.random_erasing(k, _IMAGES),
    "rand_augment": lambda k: jr.rand_augment(k, _IMAGES),
    "trivial_augment": lambda k: jr.trivial_augment(k, _IMAGES),
    "augmix": lambda k: jr.augmix(k, _IMAGES),
    "create_train_state": lambda k: jr.create_train_state({"w": jnp.zeros(2)}, optax.sgd(0.1), k),
    "mc_predict": lambda k: jr.mc_predict(lambda params, x, key: x, {}, _VECTORS, k, 2),
    "shuffle_key": lambda k: jr.shuffle_key(k, 0),
}
BAD_KEYS = {
    "int": lambda: 0,
    "string": lambda: "abc",
    "float array": lambda: jnp.zeros(2, jnp.float32),
    "uint32 of shape (4,)": lambda: np.zeros(4, np.uint32),
    "batch of typed keys": lambda: jax.random.split(jax.random.key(0), 4),
    "batch of raw keys": lambda: jax.random.split(jax.random.PRNGKey(0), 4),
}


@pytest.mark.parametrize("bad", sorted(BAD_KEYS))
@pytest.mark.parametrize("name", sorted(KEYED_FUNCTIONS))
def test_keyed_functions_reject_what_is_not_one_key(name, bad):
    with pytest.raises(TypeError, match=rf"^{name}: key must be a single jax.random key") as info:
        KEYED_FUNCTIONS[name](BAD_KEYS[bad]())
    if bad.startswith("batch"):
        assert "jax.vmap the function over them" in str(info.value)
    # The raising frame is jaxreg's check, not JAX internals.
    assert info.traceback[-1].path.name == "_validate.py"


@pytest.mark.parametrize("name", ["dropout", "random_flip", "mixup"])
def test_one_key_of_either_kind_and_vmapped_batches_are_accepted(name):
    fn = KEYED_FUNCTIONS[name]
    typed, raw = fn(jax.random.key(0)), fn(jax.random.PRNGKey(0))
    assert jax.tree.structure(typed) == jax.tree.structure(raw)
    jax.vmap(fn)(jax.random.split(jax.random.key(0), 3))  # a batch of keys goes through vmap
