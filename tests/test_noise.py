"""Tests for jaxreg.noise.

References: flax.linen.Dropout (masks, zero fraction, scaling, broadcast_dims); Keras' documented formulas
for GaussianDropout (multiplier N(1, rate/(1-rate))), AlphaDropout (a, b, alpha' from keras/src/layers/
regularization/alpha_dropout.py) and GaussianNoise; timm's DropPath and PyTorch Dropout1d/2d/3d semantics;
numpy formulas for every mean/variance. Statistical checks use fixed keys, large samples and 4-sigma bounds.
The contract shared by every noise function (jit, vmap over keys and traced rates, grad, dtypes, same key same
bits, identity at rate 0 and deterministic=True, argument validation) is in tests/test_contract.py.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxreg as jr

KEY = jax.random.key(0)
ALPHA_P = -1.6732632423543772848170429916717 * 1.0507009873554804934193349852946  # Keras: -alpha * scale
SIGMAS = 4.0


def _randn(seed: int, shape: tuple[int, ...]) -> jax.Array:
    """Test inputs from numpy: jax.random would compile a Threefry program per shape (~1 s of CPU each)."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _within(observed: float, expected: float, std: float) -> bool:
    return abs(observed - expected) <= SIGMAS * std


X_SMALL = _randn(7, (8, 4, 16))
X_FLAX = _randn(1, (64, 16, 256))  # one shape for every flax comparison: flax compiles Threefry per shape


# ----------------------------------------------------------------------------------------------------------
# dtypes and mask_impl (the contract every noise function keeps, jit/vmap/grad/dtype/keys/validation, is
# tests/test_contract.py::test_noise_contract)


@pytest.mark.parametrize("mask_impl", ["prng", "hash"])
def test_dropout_float16_and_bfloat16_keep_the_float32_mask(mask_impl):
    """The mask does not depend on x's dtype (as in flax, whose bernoulli draws in float32)."""
    x = np.asarray(X_SMALL)
    y32 = np.asarray(jr.dropout(KEY, x, 0.5, mask_impl=mask_impl))
    for dtype in (jnp.float16, jnp.bfloat16):
        y = jr.dropout(KEY, x.astype(dtype), 0.5, mask_impl=mask_impl)
        assert y.dtype == dtype
        y = np.asarray(y, np.float32)
        np.testing.assert_array_equal(y == 0, y32 == 0)
        np.testing.assert_allclose(y, y32, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("mask_impl", ["prng", "hash", "bogus"])
def test_mask_impl_choice(mask_impl):
    if mask_impl == "bogus":
        for fn in (jr.dropout, jr.spatial_dropout, jr.alpha_dropout, jr.drop_path, jr.drop_connect):
            with pytest.raises(ValueError, match="mask_impl must be one of"):
                fn(KEY, X_SMALL, 0.5, mask_impl=mask_impl)
    else:
        y = np.asarray(jr.dropout(KEY, X_SMALL, 0.5, mask_impl=mask_impl))
        assert set(np.unique(y / np.asarray(X_SMALL))) == {0.0, 2.0}


# ----------------------------------------------------------------------------------------------------------
# Dropout against flax.linen.Dropout


def _flax_dropout(key, x, rate, broadcast_dims=()):
    return nn.Dropout(rate, broadcast_dims=broadcast_dims, deterministic=False).apply({}, x, rng=key)


@pytest.mark.parametrize("broadcast_dims", [(), (1,)])
def test_prng_reproduces_flax_linen_dropout_bit_for_bit(broadcast_dims):
    """mask_impl="prng": the same zeros as flax.linen.Dropout for the same key, values to 1 ulp."""
    x = X_FLAX
    rates = (0.1, 0.5, 0.9)
    ours = jax.jit(jax.vmap(lambda r: jr.dropout(KEY, x, r, broadcast_dims=broadcast_dims)))(jnp.array(rates))
    for y, rate in zip(np.asarray(ours), rates):
        ref = np.asarray(_flax_dropout(KEY, x, rate, broadcast_dims))
        np.testing.assert_array_equal(y == 0, ref == 0)
        np.testing.assert_allclose(y, ref, rtol=1e-6)


def test_gaussian_noise_draws_exactly_jax_random_normal():
    """The fused Threefry path reproduces jax.random.normal, also per example (fold_in(key, id))."""
    zeros = jnp.zeros((6, 50), jnp.float32)
    np.testing.assert_allclose(jr.gaussian_noise(KEY, zeros, 1.0), jax.random.normal(KEY, (6, 50)), rtol=1e-6,
                               atol=1e-7)
    ids = jnp.array([3, -1, 7, 0, 2**31 - 1, 5], jnp.int32)
    ref = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(KEY, i), (50,)))(ids)
    np.testing.assert_allclose(jr.gaussian_noise(KEY, zeros, 1.0, example_ids=ids), ref, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("mask_impl", ["prng", "hash"])
def test_dropout_keep_fraction_and_scaling_match_flax(mask_impl):
    """Zero fraction ~ rate (binomial 4 sigma), survivors x / (1 - rate), as flax.linen.Dropout does."""
    x = jnp.ones(X_FLAX.shape, jnp.float32)
    n = x.size
    rates = jnp.array([0.05, 0.3, 0.5, 0.9], jnp.float32)
    ys = np.asarray(jax.jit(jax.vmap(lambda r: jr.dropout(KEY, x, r, mask_impl=mask_impl)))(rates))
    flax_y = np.asarray(_flax_dropout(KEY, x, 0.3))
    for y, rate in zip(ys, [0.05, 0.3, 0.5, 0.9]):
        zero_frac = float(np.mean(y == 0))
        assert _within(zero_frac, rate, np.sqrt(rate * (1 - rate) / n)), (rate, zero_frac)
        np.testing.assert_allclose(np.unique(y[y != 0]), [1.0 / (1.0 - rate)], rtol=1e-6)
    assert _within(float(np.mean(flax_y == 0)), 0.3, np.sqrt(0.21 / n))
    np.testing.assert_allclose(np.unique(flax_y[flax_y != 0]), np.unique(ys[1][ys[1] != 0]), rtol=1e-6)


@pytest.mark.parametrize("mask_impl", ["prng", "hash"])
def test_dropout_broadcast_dims_share_the_mask_like_flax(mask_impl):
    """broadcast_dims=(1,) (locked dropout over time): the mask is constant along axis 1 in flax and here."""
    x = jnp.ones(X_FLAX.shape, jnp.float32)
    ours = np.asarray(jr.dropout(KEY, x, 0.5, broadcast_dims=(1,), mask_impl=mask_impl))
    ref = np.asarray(_flax_dropout(KEY, x, 0.5, (1,)))
    for y in (ours, ref):
        np.testing.assert_array_equal(y, np.broadcast_to(y[:, :1, :], y.shape))
        assert _within(float(np.mean(y[:, 0, :] == 0)), 0.5, np.sqrt(0.25 / (64 * 256)))
    np.testing.assert_array_equal(jr.dropout(KEY, x, 0.5, broadcast_dims=(-2,), mask_impl=mask_impl), ours)
    with pytest.raises(ValueError, match="broadcast_dims"):
        jr.dropout(KEY, x, 0.5, broadcast_dims=(3,))


def test_prng_respects_the_key_implementation():
    """Typed and legacy threefry keys give the same masks; rbg / unsafe_rbg keys go through their own
    ``jax.random.bits``: every kind of key gives flax.linen.Dropout's mask, with the right keep fraction."""
    x = jnp.ones(X_FLAX.shape, jnp.float32)
    typed = np.asarray(jr.dropout(jax.random.key(5), x, 0.5))
    legacy = np.asarray(jr.dropout(jax.random.PRNGKey(5), x, 0.5))
    np.testing.assert_array_equal(typed, legacy)
    np.testing.assert_array_equal(typed == 0, np.asarray(_flax_dropout(jax.random.PRNGKey(5), x, 0.5)) == 0)
    for impl in ("rbg", "unsafe_rbg"):
        key = jax.random.key(5, impl=impl)
        y = np.asarray(jr.dropout(key, x, 0.5))
        np.testing.assert_array_equal(y == 0, np.asarray(_flax_dropout(key, x, 0.5)) == 0)
        assert _within(float(np.mean(y == 0)), 0.5, np.sqrt(0.25 / x.size))
        assert not np.array_equal(y, typed)


@pytest.mark.parametrize("mask_impl", ["prng", "hash"])
def test_mask_bits_independent_of_neighbours_and_of_keys(mask_impl):
    """Correlations of keep bits between horizontal and vertical neighbours, between two keys and between a
    key and fold_in(key, 1) are 0 within 4 sigma (sigma = 1/sqrt(n) for independent bits)."""
    x = jnp.ones((512, 512), jnp.float32)
    key2 = jax.random.fold_in(KEY, 1)
    masks = [np.asarray(jr.dropout(k, x, 0.5, mask_impl=mask_impl) != 0, np.float64) for k in
             (KEY, key2, jax.random.key(1))]

    def corr(a, b):
        a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
        return float(a @ b / np.sqrt((a @ a) * (b @ b))), a.size

    pairs = [
        (masks[0][:, :-1], masks[0][:, 1:]),  # adjacent elements
        (masks[0][:-1, :], masks[0][1:, :]),  # adjacent rows (index distance 512)
        (masks[0].ravel()[:-2], masks[0].ravel()[2:]),
        (masks[0], masks[1]),  # key vs fold_in(key, 1)
        (masks[0], masks[2]),  # two seeds
        (masks[1], masks[2]),
    ]
    for a, b in pairs:
        c, n = corr(a, b)
        assert abs(c) <= SIGMAS / np.sqrt(n), c


# ----------------------------------------------------------------------------------------------------------
# Gradients and residual memory


@pytest.mark.parametrize("mask_impl", ["prng", "hash"])
def test_dropout_gradient_is_mask_over_keep_prob(mask_impl):
    """d sum(dropout(x)) / dx = mask / (1 - rate), also with broadcast_dims; the backward pass keeps no
    float array of x's size (the bool mask for the PRNG paths, only the seed for the hash)."""
    x = _randn(2, (16, 6, 32)) + 10.0
    for dims in ((), (1,)):
        f = lambda x: jr.dropout(KEY, x, 0.25, broadcast_dims=dims, mask_impl=mask_impl)  # noqa: E731
        y, vjp_fn = jax.vjp(f, x)
        mask = (np.asarray(y) != 0).astype(np.float32)
        np.testing.assert_allclose(vjp_fn(jnp.ones_like(y))[0], mask / 0.75, rtol=1e-6)  # = grad of sum
        residuals = [leaf for leaf in jax.tree.leaves(vjp_fn) if hasattr(leaf, "dtype")]
        assert not any(jnp.issubdtype(r.dtype, jnp.floating) and r.size > 1 for r in residuals)
        mask_elems = x.size if not dims else x.size // x.shape[1]
        stored = sum(r.size for r in residuals if r.dtype == jnp.bool_)
        assert stored == (0 if mask_impl == "hash" else mask_elems)
    # per-example gradients: grad under vmap over keys (and inputs)
    keys = jax.random.wrap_key_data(np.array([[0, 0], [0, 4]], np.uint32))
    grads = jax.vmap(jax.grad(lambda x, k: jnp.sum(jr.dropout(k, x, 0.25, mask_impl=mask_impl))))(
        jnp.stack([x, x]), keys
    )
    for i, seed in enumerate((0, 4)):
        y = np.asarray(jr.dropout(jax.random.key(seed), x, 0.25, mask_impl=mask_impl))
        mask = (y != 0).astype(np.float32)
        np.testing.assert_allclose(grads[i], mask / 0.75, rtol=1e-6)


def test_alpha_dropout_and_drop_path_gradients():
    x = _randn(2, (32, 40))
    rate = 0.2
    a = ((1 - rate) * (1 + rate * ALPHA_P**2)) ** -0.5
    for mask_impl in ("prng", "hash"):
        b = -a * ALPHA_P * rate
        y, vjp_fn = jax.vjp(lambda x: jr.alpha_dropout(KEY, x, rate, mask_impl=mask_impl), x)
        kept = np.isclose(np.asarray(y), a * np.asarray(x) + b, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(vjp_fn(jnp.ones_like(y))[0], kept * a, rtol=1e-5)
    y, vjp_fn = jax.vjp(lambda x: jr.drop_path(KEY, x, 0.5), x)
    kept_rows = (np.asarray(y)[:, 0] != 0).astype(np.float32)
    np.testing.assert_allclose(vjp_fn(jnp.ones_like(y))[0], np.repeat(kept_rows[:, None] * 2.0, 40, axis=1))


# ----------------------------------------------------------------------------------------------------------
# example_ids: masks follow the example, not its position in the batch


IDS_FUNCS = {
    "dropout_prng": functools.partial(jr.dropout, rate=0.5),
    "dropout_hash": functools.partial(jr.dropout, rate=0.5, mask_impl="hash"),
    "spatial_dropout_hash": functools.partial(jr.spatial_dropout, rate=0.5, mask_impl="hash"),
    "alpha_dropout": functools.partial(jr.alpha_dropout, rate=0.5),
    "gaussian_dropout": functools.partial(jr.gaussian_dropout, rate=0.5),
    "gaussian_noise": functools.partial(jr.gaussian_noise, stddev=0.5),
    "drop_path": functools.partial(jr.drop_path, rate=0.5),
}


@pytest.mark.parametrize("name", IDS_FUNCS)
def test_example_ids_make_noise_independent_of_batch_layout(name):
    """Permuting rows and ids permutes the output; two half batches concatenate to the whole batch."""
    fn = IDS_FUNCS[name]
    x = np.asarray(_randn(4, (12, 6, 8)))
    ids = np.arange(100, 112, dtype=np.int32)
    whole = np.asarray(fn(KEY, x, example_ids=ids))
    perm = np.random.default_rng(9).permutation(12)
    np.testing.assert_array_equal(fn(KEY, x[perm], example_ids=ids[perm]), whole[perm])
    halves = [np.asarray(fn(KEY, x[s], example_ids=ids[s])) for s in (slice(0, 6), slice(6, 12))]
    np.testing.assert_array_equal(np.concatenate(halves), whole)
    other = np.asarray(fn(KEY, x, example_ids=ids + 12))
    assert not np.array_equal(other, whole)
    rows_equal = [np.array_equal(whole[i], whole[i + 1]) for i in range(11)]
    assert not all(rows_equal)


def test_example_ids_validation():
    with pytest.raises(ValueError, match="example_ids must have shape"):
        jr.dropout(KEY, X_SMALL, 0.5, example_ids=jnp.arange(3))
    with pytest.raises(TypeError, match="example_ids must be an integer"):
        jr.dropout(KEY, X_SMALL, 0.5, example_ids=jnp.ones(8, jnp.float32))
    with pytest.raises(ValueError, match="axis 0 is in broadcast_dims"):
        jr.dropout(KEY, X_SMALL, 0.5, broadcast_dims=(0,), example_ids=jnp.arange(8))


# ----------------------------------------------------------------------------------------------------------
# Function-specific semantics against Keras / timm / PyTorch formulas


def test_gaussian_dropout_multiplier_moments_keras_formula():
    """Keras GaussianDropout: x * N(1, stddev**2) with stddev = sqrt(rate / (1 - rate))."""
    n = 1 << 18
    for rate in (0.2, 0.5):
        m = np.asarray(jr.gaussian_dropout(KEY, np.ones(n, np.float32), rate), np.float64)
        var = rate / (1 - rate)
        assert _within(m.mean(), 1.0, np.sqrt(var / n))
        assert _within(m.var(), var, var * np.sqrt(2.0 / n))
        assert m.min() < 0.0 < 1.0 < m.max()  # not a Bernoulli mask


def test_gaussian_noise_moments_keras_formula():
    """Keras GaussianNoise: x + N(0, stddev**2)."""
    n = 1 << 18
    x = np.full((n,), 3.0, np.float32)
    d = np.asarray(jr.gaussian_noise(KEY, x, 0.7), np.float64) - 3.0
    assert _within(d.mean(), 0.0, 0.7 / np.sqrt(n))
    assert _within(d.var(), 0.49, 0.49 * np.sqrt(2.0 / n))
    # stddev is differentiable (pathwise): d sum(x + s * z) / ds = sum(z)
    g = jax.grad(lambda s: jnp.sum(jr.gaussian_noise(KEY, x, s)))(jnp.float32(0.7))
    np.testing.assert_allclose(float(g), d.sum() / 0.7, rtol=1e-3)
    with pytest.raises(ValueError, match="stddev must be in the range"):
        jr.gaussian_noise(KEY, x, -1.0)


@pytest.mark.parametrize("mask_impl", ["prng", "hash"])
def test_alpha_dropout_keras_formula_and_selu_fixed_point(mask_impl):
    """Keras AlphaDropout: dropped -> a * alpha' + b, kept -> a * x + b; on N(0, 1) input the output keeps
    mean 0 and variance 1 (Klambauer et al. 2017), within 4 sigma."""
    n = 1 << 18
    x = _randn(11, (n,))
    x64 = np.asarray(x, np.float64)
    for rate in (0.1, 0.3):
        y = np.asarray(jr.alpha_dropout(KEY, x, rate, mask_impl=mask_impl), np.float64)
        a = ((1 - rate) * (1 + rate * ALPHA_P**2)) ** -0.5
        b = -a * ALPHA_P * rate
        dropped = np.isclose(y, a * ALPHA_P + b, rtol=0, atol=1e-6)
        np.testing.assert_allclose(y[~dropped], a * x64[~dropped] + b, rtol=1e-5, atol=1e-6)
        assert _within(dropped.mean(), rate, np.sqrt(rate * (1 - rate) / n))
        # The moments of y are sums of n iid terms; 4th moment of y bounded by that of a*(x or alpha')+b.
        assert _within(y.mean(), 0.0, np.sqrt(1.0 / n))
        assert _within(y.var(), 1.0, np.sqrt(np.var(y**2) / n))


@pytest.mark.parametrize(
    "shape, channel_axis",
    [((64, 7, 16), -1), ((64, 5, 5, 16), -1), ((32, 3, 4, 4, 16), -1), ((64, 16, 5, 5), 1)],
    ids=["1d", "2d", "3d", "2d_channels_first"],
)
def test_spatial_dropout_constant_per_example_and_channel(shape, channel_axis):
    """Keras SpatialDropout1D/2D/3D, PyTorch Dropout2d: y / x is 0 or 1/(1-rate) per (example, channel)."""
    x = np.asarray(_randn(3, shape)) + np.float32(5.0)
    y = np.asarray(jr.spatial_dropout(KEY, x, 0.5, channel_axis=channel_axis))
    ratio = np.moveaxis(y / x, channel_axis, -1).reshape(shape[0], -1, 16)
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio[:, :1, :], ratio.shape), rtol=1e-6)
    assert set(np.unique(np.round(ratio, 5))) == {0.0, 2.0}
    n = shape[0] * 16
    assert _within(float((ratio[:, 0, :] == 0).mean()), 0.5, np.sqrt(0.25 / n))


def test_spatial_dropout_validation():
    with pytest.raises(ValueError, match="rank >= 3"):
        jr.spatial_dropout(KEY, jnp.ones((4, 3)), 0.5)
    with pytest.raises(ValueError, match="channel_axis must not be 0"):
        jr.spatial_dropout(KEY, jnp.ones((4, 3, 3)), 0.5, channel_axis=0)
    with pytest.raises(ValueError, match="channel_axis"):
        jr.spatial_dropout(KEY, jnp.ones((4, 3, 3)), 0.5, channel_axis=3)
    # Non-integer axes are rejected naming the argument (a float axis used to slip through the range check).
    with pytest.raises(TypeError, match="channel_axis must be an integer"):
        jr.spatial_dropout(KEY, jnp.ones((4, 3, 3)), 0.5, channel_axis=1.0)
    for bad in (1.0, (1.5,), "1"):
        with pytest.raises(TypeError, match="broadcast_dims must be an int or a sequence of ints"):
            jr.dropout(KEY, jnp.ones((4, 3)), 0.5, broadcast_dims=bad)


def test_drop_path_per_example_timm():
    """timm DropPath: each example kept whole (scaled by 1/(1-rate)) or zeroed, with probability rate."""
    n = 4096
    x = np.ones((n, 3, 4), np.float32)
    y = np.asarray(jr.drop_path(KEY, x, 0.25)).reshape(n, -1)
    np.testing.assert_array_equal(y, np.broadcast_to(y[:, :1], y.shape))
    assert set(np.unique(y)) == {0.0, np.float32(1 / 0.75)}
    assert _within(float((y[:, 0] == 0).mean()), 0.25, np.sqrt(0.25 * 0.75 / n))
    with pytest.raises(ValueError, match="rank >= 1"):
        jr.drop_path(KEY, jnp.float32(1.0), 0.5)


def test_drop_connect_is_inverted_dropout_on_weights():
    w = np.asarray(_randn(6, (256, 128)))
    y = np.asarray(jr.drop_connect(KEY, w, 0.4))
    np.testing.assert_array_equal(y, jr.dropout(KEY, w, 0.4))
    kept = y != 0
    np.testing.assert_allclose(y[kept], w[kept] / np.float32(0.6), rtol=1e-6)
    assert _within(1 - kept.mean(), 0.4, np.sqrt(0.24 / w.size))


# ----------------------------------------------------------------------------------------------------------
# A traced rate of 1 (issue 15): finite, documented outputs


@pytest.mark.parametrize("mask_impl", ["prng", "hash"])
def test_traced_rate_one_is_finite_for_every_bernoulli_function(mask_impl):
    """Every unit dropped: dropout, drop_path and spatial dropout return zeros, and so does alpha dropout (the
    limit of its dropped value a * alpha' + b as the rate tends to 1; before, a and b were inf and the output
    NaN). Gradients are finite zeros. A concrete rate of 1 is refused (tests/test_contract.py)."""
    x = X_SMALL
    for fn in (jr.dropout, jr.alpha_dropout, jr.drop_path, jr.spatial_dropout):
        run = jax.jit(lambda r, x, fn=fn: fn(KEY, x, r, mask_impl=mask_impl))
        y = np.asarray(run(jnp.float32(1.0), x))
        np.testing.assert_array_equal(y, np.zeros_like(y))
        grad = np.asarray(jax.grad(lambda x, run=run: jnp.sum(run(jnp.float32(1.0), x)))(x))
        np.testing.assert_array_equal(grad, np.zeros_like(grad))
    # Near 1 the alpha-dropout fill tends to 0 (Keras' formula, float64): the rate-1 output is its limit.
    fills = []
    for rate in (0.9, 0.999, 0.999999):
        a = ((1 - rate) * (1 + rate * ALPHA_P**2)) ** -0.5
        fills.append(abs(a * ALPHA_P + (-a * ALPHA_P * rate)))  # |a * alpha' + b|, ~0.87 * sqrt(1 - rate)
    assert fills[0] > fills[1] > fills[2] and fills[2] < 1e-3


def test_traced_rate_one_gaussian_dropout_is_clamped_below_one():
    """Gaussian dropout's variance rate / (1 - rate) is infinite at 1 (before: inf/NaN output). A traced rate is
    clamped to 1 - 2**-24, the largest float32 below 1: the output is the one of that rate, finite."""
    x = X_SMALL
    run = jax.jit(lambda r: jr.gaussian_dropout(KEY, x, r))
    y = np.asarray(run(jnp.float32(1.0)))
    assert np.all(np.isfinite(y))
    below_one = np.nextafter(np.float32(1), np.float32(0))
    assert below_one == np.float32(1 - 2**-24)
    np.testing.assert_allclose(y, run(below_one), rtol=0, atol=0)
    np.testing.assert_allclose(y, jr.gaussian_dropout(KEY, x, float(below_one)), rtol=1e-6, atol=1e-3)
    # The noise is really that large (stddev ~4096): the multiplier y / x has that spread.
    multiplier = (y / np.asarray(x)).ravel()
    assert 3000 < multiplier.std() < 5000
    traced = jax.jit(lambda r, x: jr.gaussian_dropout(KEY, x, r))
    grad = np.asarray(jax.grad(lambda x: jnp.sum(traced(jnp.float32(1.0), x)))(x))
    assert np.all(np.isfinite(grad))
