"""The contract every jaxreg regularizer keeps (like optax's ``contrib/_common_test.py``).

Noise functions ``fn(key, x, rate_or_stddev, *, deterministic=False)``: run under ``jax.jit``, ``jax.vmap``
(over keys and over a traced rate) and ``jax.grad`` (finite gradient); keep the input dtype (float32,
bfloat16); the same key gives identical bits and a different key different output; bad hyperparameters raise
a ``ValueError`` naming the argument; ``deterministic=True`` returns ``x`` with ``key=None``.

Penalties ``fn(tree, **hyperparameters)``: run under ``jax.jit``, ``jax.vmap`` over stacked trees (checked
against a Python loop) and ``jax.grad`` (finite, even at all-zero weights); return a scalar float32 for
float32 and bfloat16 leaves, with gradients in the leaves' dtype.

Shapes are small and each function compiles a handful of programs, to keep XLA compile time down.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxreg as jr

RATE = 0.5

# (fn, input shape, name of the strength argument). spatial_dropout needs (batch, *spatial, channels).
NOISE = [
    pytest.param(jr.dropout, (8, 16), "rate", id="dropout"),
    pytest.param(jr.spatial_dropout, (2, 4, 16), "rate", id="spatial_dropout"),
    pytest.param(jr.gaussian_dropout, (8, 16), "rate", id="gaussian_dropout"),
    pytest.param(jr.alpha_dropout, (8, 16), "rate", id="alpha_dropout"),
    pytest.param(jr.gaussian_noise, (8, 16), "stddev", id="gaussian_noise"),
    # drop_path draws one decision per example: 32 examples so two keys cannot plausibly share a mask.
    pytest.param(jr.drop_path, (32, 4), "rate", id="drop_path"),
    pytest.param(jr.drop_connect, (8, 16), "rate", id="drop_connect"),
]

BAD_STRENGTHS = {"rate": [1.0, -0.1, float("nan"), 1.5], "stddev": [-1.0, float("nan")]}


def _input(shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(42).normal(size=shape).astype(np.float32)


def _bits(a: jax.Array) -> bytes:
    return np.asarray(a).tobytes()


def _finite(a: jax.Array) -> bool:
    # numpy, not jnp: an eager jnp op is one more XLA compile per shape and dtype.
    return bool(np.all(np.isfinite(np.asarray(a))))


@pytest.mark.parametrize("fn,shape,arg", NOISE)
def test_noise_contract(fn: Callable, shape, arg):
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
    k0, k1 = jax.random.key(0), jax.random.key(1)
    keys = jnp.stack([k0, k1, k0])
    strengths = jnp.array([RATE, RATE, 0.0], jnp.float32)
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

    # vmap over (key, traced strength): member 0 is the unbatched concrete-strength call for the same key
    # (up to fusion-dependent rounding), member 1 (another key) differs, and a traced strength of 0 is the
    # identity.
    assert batched.shape == (3, *shape) and batched.dtype == jnp.float32
    batched = np.asarray(batched)
    np.testing.assert_allclose(batched[0], y32, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(batched[1], other[0], rtol=1e-6, atol=1e-6)
    assert _bits(batched[0]) != _bits(batched[1])
    np.testing.assert_array_equal(batched[2], x32)

    # grad: finite, not identically zero, in x's dtype.
    assert grad.shape == x32.shape and grad.dtype == x32.dtype
    assert _finite(grad) and np.any(np.asarray(grad) != 0)

    # Bad hyperparameters and a missing key raise ValueError naming the problem, before tracing.
    for bad in BAD_STRENGTHS[arg]:
        with pytest.raises(ValueError, match=arg):
            fn(k0, x32, bad)
    with pytest.raises(ValueError, match="requires a key"):
        fn(None, x32, RATE)

    # deterministic=True: x back unchanged, no key needed.
    for x in (x32, x16):
        y = fn(None, x, RATE, deterministic=True)
        assert y.dtype == x.dtype and _bits(y) == _bits(x)


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
