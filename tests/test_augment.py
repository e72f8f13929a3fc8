"""Tests for jaxreg.augment.

References: numpy (``np.flip``, ``np.rot90``, ``np.pad`` + window search, the mixup/cutmix formulas),
``scipy.ndimage`` (``rotate``, ``affine_transform``, ``shift`` with ``mode='grid-constant'``, which is the
boundary rule of ``jax.scipy.ndimage.map_coordinates``'s ``'constant'`` mode), ``scipy.stats`` (Beta law of
mixup's lambda) and optax (label smoothing). Random parameters are recovered from the outputs themselves
(bilinear resampling of a linear ramp is exact, so the drawn angle, factor or shift can be read back), so
no test depends on how the key is split internally. Shapes are small (batch 16, 8x8x3) and reused so that
the few XLA compilations are shared between tests.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.ndimage as ndi
import scipy.stats

import jaxreg as jr

KEY = jax.random.key(0)
RNG = np.random.default_rng(0)
B = 16  # one batch shape for (almost) every call, so tests share their compilations
X = RNG.random((B, 8, 8, 3)).astype(np.float32)  # continuous values: every pixel identifies its source
SAME = np.broadcast_to(X[:1], X.shape)  # identical examples: any difference comes from per-example draws
Y = np.eye(B, dtype=np.float32)  # distinct one-hot rows: the partner and weights can be read off y_mixed


def many_keys(n: int) -> list[jax.Array]:
    """Distinct keys for statistical tests: n calls of one cached compilation instead of one huge batch."""
    return [jax.random.key(1000 + i) for i in range(n)]


def ramp_images() -> np.ndarray:
    """Channel 0 = column offset from the image center, channel 1 = row offset, channel 2 = 0.

    Bilinear resampling of a linear function is exact at interior points, so the transform drawn for each
    example can be read back from its output.
    """
    offsets = np.arange(8, dtype=np.float32) - 3.5
    rows, cols = np.meshgrid(offsets, offsets, indexing="ij")
    return np.broadcast_to(np.stack([cols, rows, np.zeros_like(rows)], -1), X.shape).copy()


RAMP = ramp_images()


# ------------------------------------------------------------------------------------------------- flips


def test_flip_matches_numpy_and_is_an_involution():
    np.testing.assert_array_equal(jr.flip(X), np.flip(X, 2))
    np.testing.assert_array_equal(jr.flip(X, horizontal=False, vertical=True), np.flip(X, 1))
    np.testing.assert_array_equal(jr.flip(X, vertical=True), np.flip(X, (1, 2)))
    np.testing.assert_array_equal(jr.flip(jr.flip(X)), X)


def test_random_flip_is_np_flip_where_flipped_and_per_example():
    y = np.asarray(jr.random_flip(KEY, SAME))
    flipped = np.array([np.array_equal(yi, np.flip(xi, 1)) for yi, xi in zip(y, SAME)])
    kept = np.array([np.array_equal(yi, xi) for yi, xi in zip(y, SAME)])
    assert np.all(flipped ^ kept)  # each example is exactly the numpy flip or the original
    assert 0 < flipped.sum() < B
    np.testing.assert_array_equal(jr.random_flip(KEY, X, prob=0.0), X)
    np.testing.assert_array_equal(jr.random_flip(KEY, X, vertical=True, prob=1.0), np.flip(X, (1, 2)))


def test_random_flip_both_axes_draws_independently():
    y = np.asarray(jr.random_flip(KEY, SAME, horizontal=True, vertical=True))
    x0 = SAME[0]
    variants = [x0, np.flip(x0, 1), np.flip(x0, 0), np.flip(x0, (0, 1))]
    which = [[np.array_equal(yi, v) for v in variants].index(True) for yi in y]
    assert len(set(which)) >= 3  # P(only <= 2 of 4 equally likely variants in 16 draws) is negligible


def test_random_flip_rate():
    # Bernoulli(prob) per example: the flipped fraction is within 4 binomial sigmas of prob.
    prob, first_column = 0.3, SAME[0, :, 0]
    y = np.concatenate([np.asarray(jr.random_flip(k, SAME, prob=prob)) for k in many_keys(250)])
    flipped = np.all(y[:, :, -1] == first_column, axis=(1, 2))
    n = len(flipped)
    assert abs(flipped.mean() - prob) < 4 * np.sqrt(prob * (1 - prob) / n)


# ------------------------------------------------------------------------------------------------- crops


def crop_offsets(crops: np.ndarray, padded: np.ndarray) -> np.ndarray:
    """(batch, 2) top-left corners where each crop occurs in its padded image (numpy window search)."""
    h, w = crops.shape[1:3]
    windows = np.lib.stride_tricks.sliding_window_view(padded, (h, w), axis=(1, 2))  # (b, r, c, ch, h, w)
    windows = np.moveaxis(windows, 3, -1)  # (b, r, c, h, w, ch)
    match = np.all(windows == crops[:, None, None], axis=(3, 4, 5))
    assert np.all(match.reshape(len(crops), -1).sum(-1) == 1), "every crop is exactly one padded sub-window"
    return np.argwhere(match)[:, 1:]


def test_crop_without_padding_is_identity():
    np.testing.assert_array_equal(jr.random_crop(KEY, X), X)


@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
def test_crops_are_windows_of_the_numpy_padded_image(pad_mode):
    crops = np.asarray(jr.random_crop(KEY, SAME, padding=2, pad_mode=pad_mode))
    assert crops.shape == X.shape
    offsets = crop_offsets(crops, np.pad(SAME, ((0, 0), (2, 2), (2, 2), (0, 0)), mode=pad_mode))
    assert offsets.min() >= 0 and offsets.max() <= 4
    assert len({tuple(o) for o in offsets}) > 1  # per-example offsets


def test_crop_size_smaller_than_image():
    crops = np.asarray(jr.random_crop(KEY, X, size=(5, 6)))
    assert crops.shape == (B, 5, 6, 3)
    crop_offsets(crops, X)


def test_crop_offsets_are_uniform():
    # Padding 2: 25 possible corners, each with probability 1/25 (4-sigma binomial bounds).
    padded = np.pad(X, ((0, 0), (2, 2), (2, 2), (0, 0)))
    crops = [np.asarray(jr.random_crop(k, X, padding=2)) for k in many_keys(100)]
    offsets = np.concatenate([crop_offsets(c, padded) for c in crops])
    counts = np.bincount(offsets[:, 0] * 5 + offsets[:, 1], minlength=25)
    n, p = len(offsets), 1 / 25
    assert np.all(np.abs(counts - n * p) < 4 * np.sqrt(n * p * (1 - p))), counts


# ------------------------------------------------------------------------------- affine (deterministic)


@pytest.mark.parametrize("order", [0, 1])
def test_identity_transforms_are_exact(order):
    np.testing.assert_array_equal(jr.rotate(X, 0.0, order=order), X)
    np.testing.assert_array_equal(jr.zoom(X, 1.0, order=order), X)
    np.testing.assert_array_equal(jr.translate(X, (0.0, 0.0), order=order), X)


@pytest.mark.parametrize("order", [0, 1])
def test_quarter_turns_equal_rot90(order):
    # Positive degrees turn counter-clockwise as displayed: jnp.rot90(x, k=1, axes=(1, 2)).
    for degrees, k in [(90.0, 1), (180.0, 2), (-90.0, -1), (270.0, 3)]:
        np.testing.assert_array_equal(jr.rotate(X, degrees, order=order), jnp.rot90(X, k=k, axes=(1, 2)))
    # Exact for integer images too (no interpolation weight leaks at quarter turns).
    x8 = (X * 255).astype(np.uint8)
    y8 = jr.rotate(x8, 90.0, order=order)
    assert y8.dtype == jnp.uint8
    np.testing.assert_array_equal(y8, np.rot90(x8, 1, axes=(1, 2)))


def test_rotate_matches_scipy_per_example():
    # scipy.ndimage.rotate(reshape=False) rotates about the same center with the same direction.
    degrees = np.linspace(-180.0, 180.0, B, dtype=np.float32)
    got = np.asarray(jr.rotate(X, degrees, fill_value=0.25))
    for i, d in enumerate(degrees):
        ref = ndi.rotate(X[i].astype(np.float64), d, reshape=False, order=1, mode="grid-constant", cval=0.25)
        np.testing.assert_allclose(got[i], ref, atol=2e-6)


def test_zoom_matches_scipy_affine_transform():
    # Output p samples the input at c + (p - c) / s; scipy's affine_transform maps output -> input alike.
    factors = np.geomspace(0.5, 2.0, B).astype(np.float32)
    got = np.asarray(jr.zoom(X, factors))
    center = np.array([3.5, 3.5, 0.0])
    for i, s in enumerate(factors):
        matrix = np.diag([1 / s, 1 / s, 1.0])
        offset = center - matrix @ center
        ref = ndi.affine_transform(X[i].astype(np.float64), matrix, offset, order=1, mode="grid-constant")
        np.testing.assert_allclose(got[i], ref, atol=2e-6)


def test_translate_matches_scipy_shift():
    shifts = np.random.default_rng(1).uniform(-3.0, 3.0, (B, 2)).astype(np.float32)
    got = np.asarray(jr.translate(X, shifts))
    for i, (dy, dx) in enumerate(shifts):
        ref = ndi.shift(X[i].astype(np.float64), (dy, dx, 0.0), order=1, mode="grid-constant")
        np.testing.assert_allclose(got[i], ref, atol=2e-6)


def test_affine_dtypes():
    xb = jnp.asarray(X, jnp.bfloat16)
    for fn in (
        lambda x: jr.rotate(x, 30.0),
        lambda x: jr.zoom(x, 1.5),
        lambda x: jr.translate(x, (0.5, 1.0)),
    ):
        yb = fn(xb)
        assert yb.dtype == jnp.bfloat16
        # bf16 in, float32 compute, one final rounding: within a bf16 ulp of the float32 result.
        ref = fn(np.asarray(xb, np.float32))
        np.testing.assert_allclose(np.asarray(yb, np.float32), ref, rtol=2**-8, atol=1e-3)


# ------------------------------------------------------------------------------ affine (random draws)

N_CALLS = 32  # x 16 examples = 512 draws


def drawn(fn) -> np.ndarray:
    """Outputs of ``fn(key, RAMP)`` over N_CALLS keys, stacked: (512, 8, 8, 3)."""
    return np.concatenate([np.asarray(fn(k, RAMP)) for k in many_keys(N_CALLS)])


def test_random_rotation_draws_uniform_angles_per_example():
    # One column to the right turns the rotated ramp by (cos t, sin t) in channels (0, 1): the drawn angle.
    for limits, low, high in ((30.0, -30.0, 30.0), ((10.0, 20.0), 10.0, 20.0)):
        y = drawn(lambda k, x: jr.random_rotation(k, x, limits))
        step = y[:, 3, 4] - y[:, 3, 3]
        angles = np.degrees(np.arctan2(step[:, 1], step[:, 0]))
        assert np.all((angles >= low - 1e-3) & (angles <= high + 1e-3))
        width = high - low  # U[low, high]: sd width / sqrt(12)
        assert abs(angles.mean() - (low + high) / 2) < 4 * width / np.sqrt(12 * len(angles))
        assert angles.min() < low + 0.05 * width and angles.max() > high - 0.05 * width


def test_random_zoom_draws_uniform_factors_per_example():
    # One column to the right moves the zoomed ramp by 1 / factor.
    y = drawn(lambda k, x: jr.random_zoom(k, x, 0.5))  # float z -> (1 - z, 1 + z)
    factors = 1 / (y[:, 3, 4, 0] - y[:, 3, 3, 0])
    assert np.all((factors >= 0.5 - 1e-5) & (factors <= 1.5 + 1e-5))
    assert abs(factors.mean() - 1.0) < 4 * 1.0 / np.sqrt(12 * len(factors))  # U[0.5, 1.5]: sd 1/sqrt(12)
    assert factors.min() < 0.55 and factors.max() > 1.45
    np.testing.assert_array_equal(jr.random_zoom(KEY, X, (1.0, 1.0)), X)


def test_random_translation_draws_uniform_shifts_per_example():
    # The translated ramp at pixel (3, 3) reads the input coordinate (3 - dy, 3 - dx) minus the center 3.5.
    y = drawn(lambda k, x: jr.random_translation(k, x, (0.25, 0.125)))
    dy, dx = -0.5 - y[:, 3, 3, 1], -0.5 - y[:, 3, 3, 0]
    for d, limit in ((dy, 0.25 * 8), (dx, 0.125 * 8)):
        assert np.all(np.abs(d) <= limit + 1e-5)
        assert abs(d.mean()) < 4 * limit / np.sqrt(3 * len(d))  # U[-limit, limit]: sd limit / sqrt(3)
        assert d.min() < -0.9 * limit and d.max() > 0.9 * limit
    assert abs(np.corrcoef(dy, dx)[0, 1]) < 4 / np.sqrt(len(dy))  # independent axes


def test_random_affine_zero_range_is_identity_and_quarter_turn_is_rot90():
    np.testing.assert_array_equal(jr.random_rotation(KEY, X, 0.0), X)
    np.testing.assert_array_equal(jr.random_translation(KEY, X, 0.0), X)
    np.testing.assert_array_equal(jr.random_rotation(KEY, X, (90.0, 90.0)), np.rot90(X, 1, axes=(1, 2)))


# ------------------------------------------------------------------------------------------------ mixing


def partners(y_mixed: np.ndarray) -> np.ndarray:
    """perm[i] read off mixed one-hot rows of eye(n): the other nonzero column, or i itself."""
    off = y_mixed * (1 - np.eye(len(y_mixed), dtype=y_mixed.dtype))
    return np.where(off.max(1) > 0, off.argmax(1), np.arange(len(y_mixed)))


@pytest.mark.parametrize("per_example_lambda", [False, True])
def test_mixup_matches_numpy_formula(per_example_lambda):
    xm, ym = map(np.asarray, jr.mixup(KEY, X, Y, 1.0, per_example_lambda=per_example_lambda))
    np.testing.assert_allclose(ym.sum(-1), 1.0, atol=1e-6)
    perm = partners(ym)
    assert sorted(perm) == list(range(B)) and np.any(perm != np.arange(B))  # a permutation of the batch
    lam = np.where(perm != np.arange(B), np.diag(ym), 1.0).astype(np.float64)
    ref_y = lam[:, None] * Y + (1 - lam[:, None]) * Y[perm]
    ref_x = lam[:, None, None, None] * X + (1 - lam[:, None, None, None]) * X[perm]
    np.testing.assert_allclose(ym, ref_y, atol=1e-6)
    np.testing.assert_allclose(xm, ref_x, atol=1e-6)
    moved = perm != np.arange(B)
    if per_example_lambda:
        assert len(set(lam[moved])) == moved.sum()
    else:
        assert len(set(lam[moved])) == 1  # one lambda per batch, as in the paper's code


def test_mixup_lambda_is_beta_distributed():
    # Per-example lambdas against scipy.stats.beta(alpha, alpha): KS test plus 4-sigma mean/variance bounds.
    alpha, lams = 0.4, []
    for k in many_keys(125):  # 2000 draws, minus the fixed points of the permutations
        ym = np.asarray(jr.mixup(k, X, Y, alpha, per_example_lambda=True)[1])
        lams.append(np.diag(ym)[partners(ym) != np.arange(B)])
    lam = np.concatenate(lams).astype(np.float64)
    dist = scipy.stats.beta(alpha, alpha)
    assert scipy.stats.kstest(lam, dist.cdf).pvalue > 1e-4
    assert abs(lam.mean() - 0.5) < 4 * dist.std() / np.sqrt(len(lam))
    fourth = dist.moment(4) - 4 * 0.5 * dist.moment(3) + 6 * 0.25 * dist.moment(2) - 3 * 0.5**4
    assert abs(lam.var() - dist.var()) < 4 * np.sqrt((fourth - dist.var() ** 2) / len(lam))


@pytest.mark.parametrize("per_example_lambda", [False, True])
def test_cutmix_pastes_a_box_and_mixes_labels_by_its_area(per_example_lambda):
    x, y = X, Y
    xm, ym = map(np.asarray, jr.cutmix(jax.random.key(1), x, y, 1.0, per_example_lambda=per_example_lambda))
    np.testing.assert_allclose(ym.sum(-1), 1.0, atol=1e-6)
    perm = partners(ym)
    boxes = []
    for i in range(B):
        from_x, from_partner = xm[i] == x[i], xm[i] == x[perm[i]]
        assert np.all(from_x | from_partner)  # every pixel comes from x or x[perm]
        if perm[i] == i:
            continue
        pasted = np.all(from_partner, -1)
        rows, cols = np.flatnonzero(pasted.any(1)), np.flatnonzero(pasted.any(0))
        box = np.zeros_like(pasted)
        if len(rows):
            box[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = True
        np.testing.assert_array_equal(pasted, box)  # the pasted region is one rectangle
        area = pasted.mean()
        np.testing.assert_allclose(ym[i, i], 1 - area, atol=1e-6)  # label weight = kept area fraction
        np.testing.assert_allclose(ym[i, perm[i]], area, atol=1e-6)
        boxes.append(pasted)
    assert len(boxes) >= 2
    same = all(np.array_equal(b, boxes[0]) for b in boxes)
    assert same != per_example_lambda  # one box per batch (reference code) or one per example


def test_mixing_dtypes_and_label_smoothing():
    xb, yb = jnp.asarray(X, jnp.bfloat16), jnp.asarray(Y, jnp.bfloat16)
    for fn in (jr.mixup, jr.cutmix):
        xm, ym = fn(KEY, xb, yb, 0.4)
        assert xm.dtype == jnp.bfloat16 and ym.dtype == jnp.bfloat16
    x8 = (X * 255).astype(np.uint8)
    xm, _ = jr.mixup(KEY, x8, Y, 0.4)
    xf, _ = jr.mixup(KEY, x8.astype(np.float32), Y, 0.4)
    assert xm.dtype == jnp.uint8
    np.testing.assert_array_equal(xm, np.round(np.asarray(xf)).astype(np.uint8))
    # Label smoothing is optax's, re-exported: (1 - a) * y + a / classes (optax docstring formula).
    assert jr.smooth_labels is optax.smooth_labels
    _, ym = jr.mixup(KEY, X, Y, 0.4)
    np.testing.assert_allclose(jr.smooth_labels(ym, 0.1), 0.9 * np.asarray(ym) + 0.1 / B, atol=1e-7)


# ------------------------------------------------------------------------------------ keys, jit, errors

RANDOM_AUGMENTATIONS = {
    "flip": lambda k, x: jr.random_flip(k, x, vertical=True),
    "crop": lambda k, x: jr.random_crop(k, x, padding=2),
    "rotation": lambda k, x: jr.random_rotation(k, x, 30.0),
    "zoom": lambda k, x: jr.random_zoom(k, x, 0.2),
    "translation": lambda k, x: jr.random_translation(k, x, 0.2),
    "mixup": lambda k, x: jr.mixup(k, x, Y, 0.4)[0],
    "cutmix": lambda k, x: jr.cutmix(k, x, Y, 1.0)[0],
}


@pytest.mark.parametrize("name", list(RANDOM_AUGMENTATIONS))
def test_keys_determine_outputs(name):
    fn = RANDOM_AUGMENTATIONS[name]
    a, b, c = fn(KEY, X), fn(KEY, X), fn(jax.random.key(1), X)
    assert a.dtype == X.dtype and a.shape == X.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    if name not in ("mixup", "cutmix"):  # per-example draws: identical inputs get different transforms
        same = np.asarray(fn(KEY, SAME))
        assert not all(np.array_equal(s, same[0]) for s in same[1:])


def pipeline(key, x, y, max_degrees, alpha):
    keys = jax.random.split(key, 7)
    x = jr.random_flip(keys[0], x)
    x = jr.random_crop(keys[1], x, padding=2)
    x = jr.random_rotation(keys[2], x, max_degrees)
    x = jr.random_zoom(keys[3], x, 0.2)
    x = jr.random_translation(keys[4], x, 0.2)
    x, y = jr.mixup(keys[5], x, y, alpha)
    return jr.cutmix(keys[6], x, y, alpha)


def test_everything_traces_under_jit_with_traced_hyperparameters():
    # Lowering traces every function with a traced key, images and hyperparameters (no host syncs, no
    # concretization errors) without paying XLA's compile time for two Gamma rejection samplers.
    lowered = jax.jit(pipeline).lower(KEY, X, Y, 15.0, 0.4)
    out_x, out_y = lowered.out_info
    assert out_x.shape == X.shape and out_x.dtype == X.dtype and out_y.shape == Y.shape


def test_jit_and_vmap_sweep_of_a_traced_hyperparameter():
    # One compiled program: a vmapped sweep over max_degrees, traced, inside jit.
    sweep = jax.jit(jax.vmap(lambda m: jr.random_rotation(KEY, X, m)))(jnp.array([0.0, 20.0]))
    np.testing.assert_array_equal(sweep[0], X)  # max_degrees = 0: identity
    np.testing.assert_allclose(sweep[1], jr.random_rotation(KEY, X, 20.0), atol=1e-6)  # = eager, same key


BAD_ARGS = [
    (lambda: jr.flip(X[0]), ValueError, "NHWC"),
    (lambda: jr.random_flip(KEY, X, prob=1.5), ValueError, "prob"),
    (lambda: jr.random_flip(KEY, X, horizontal=False), ValueError, "horizontal"),
    (lambda: jr.random_crop(KEY, X, padding=-1), ValueError, "padding"),
    (lambda: jr.random_crop(KEY, X, padding=1.5), TypeError, "padding"),
    (lambda: jr.random_crop(KEY, X, size=9), ValueError, "size"),
    (lambda: jr.random_crop(KEY, X, pad_mode="mirror"), ValueError, "pad_mode"),
    (lambda: jr.random_crop(KEY, X[0]), ValueError, "NHWC"),
    (lambda: jr.random_rotation(KEY, X, -1.0), ValueError, "max_degrees"),
    (lambda: jr.random_rotation(KEY, X, (20.0, 10.0)), ValueError, "max_degrees"),
    (lambda: jr.random_rotation(KEY, X, (float("nan"), 10.0)), ValueError, "max_degrees"),  # not NaN images
    (lambda: jr.random_rotation(KEY, X, 10.0, order=3), ValueError, "order"),
    (lambda: jr.random_rotation(KEY, X, 10.0, fill_value=jnp.ones(3)), TypeError, "fill_value"),
    (lambda: jr.rotate(X, 10.0, fill_value=True), TypeError, "fill_value"),
    (lambda: jr.random_zoom(KEY, X, (0.0, 1.2)), ValueError, "zoom_range"),
    (lambda: jr.random_zoom(KEY, X, (1.5, 1.2)), ValueError, "zoom_range"),
    (lambda: jr.random_zoom(KEY, X, 1.0), ValueError, "zoom_range"),
    (lambda: jr.random_translation(KEY, X, 1.5), ValueError, "max_fraction"),
    (lambda: jr.random_translation(KEY, X, (0.1, 0.2, 0.3)), ValueError, "max_fraction"),
    (lambda: jr.zoom(X, -2.0), ValueError, "factor"),
    (lambda: jr.rotate(X, jnp.ones(3)), ValueError, "degrees"),
    (lambda: jr.translate(X, (1.0, 2.0, 3.0)), ValueError, "shift"),
    (lambda: jr.mixup(KEY, X, Y, 0.0), ValueError, "alpha"),
    (lambda: jr.mixup(KEY, X, Y[:3], 0.4), ValueError, "y_onehot"),
    (lambda: jr.mixup(KEY, X, np.arange(B), 0.4), ValueError, "y_onehot"),
    (lambda: jr.cutmix(KEY, X, Y.astype(np.int32), 1.0), TypeError, "y_onehot"),
    (lambda: jr.cutmix(KEY, X, Y, -1.0), ValueError, "alpha"),
    (lambda: jr.cutmix(KEY, X[..., 0], Y, 1.0), ValueError, "NHWC"),
    (lambda: jr.random_flip(None, X), ValueError, "key"),
    (lambda: jr.mixup(None, X, Y, 0.4), ValueError, "key"),
]


@pytest.mark.parametrize("call, error, name", BAD_ARGS)
def test_bad_arguments_raise_naming_the_argument(call, error, name):
    with pytest.raises(error, match=name):
        call()


# ------------------------------------------------------------------------------ layout and dtypes (issue 15)

NCHW = np.ascontiguousarray(np.moveaxis(X[:2], -1, 1))  # (2, 3, 8, 8): the obvious channels-first batch
SPATIAL_OPS = {
    "flip": lambda x: jr.flip(x),
    "random_flip": lambda x: jr.random_flip(KEY, x),
    "random_crop": lambda x: jr.random_crop(KEY, x, padding=1),
    "rotate": lambda x: jr.rotate(x, 10.0),
    "zoom": lambda x: jr.zoom(x, 1.2),
    "translate": lambda x: jr.translate(x, (1.0, 0.0)),
    "random_rotation": lambda x: jr.random_rotation(KEY, x, 10.0),
    "random_zoom": lambda x: jr.random_zoom(KEY, x, 0.1),
    "random_translation": lambda x: jr.random_translation(KEY, x, 0.1),
    "cutmix": lambda x: jr.cutmix(KEY, x, Y[:2, :2], 1.0),
}


@pytest.mark.parametrize("name", sorted(SPATIAL_OPS))
def test_nchw_batch_is_refused_naming_x_and_the_fix(name):
    """Before: flipped/cropped/rotated the channel and height axes instead, silently."""
    nchw_message = r"x must be in NHWC .*\(2, 3, 8, 8\).*NCHW.*jnp\.moveaxis\(x, 1, -1\)"
    with pytest.raises(ValueError, match=nchw_message) as info:
        SPATIAL_OPS[name](NCHW)
    assert info.traceback[-1].path.name == "_common.py"
    with pytest.raises(ValueError, match=r"x must be a 4-d batch .*NHWC.*3-d array.*x\[None\]"):
        SPATIAL_OPS[name](X[0])


def test_layout_check_spares_nhwc_lookalikes_and_mixup():
    """Tiny NHWC images (4 rows and 4 columns of 8 channels) are not mistaken for NCHW; mixup blends whole
    examples, so an NCHW batch is fine there."""
    tiny = np.ones((2, 4, 4, 8), np.float32)
    for op in SPATIAL_OPS.values():
        op(tiny)
    xm, _ = jr.mixup(KEY, NCHW, Y[:2, :2], 0.4)
    assert xm.shape == NCHW.shape


def test_affine_integer_images_uint8_supported_wide_integers_refused():
    """uint8 (and other 8/16-bit integers, exact in float32) are interpolated in float32, rounded and clipped
    back; int32 (not exact in float32) and bool are a TypeError naming x; a NaN fill for integer images is a
    ValueError (a NaN cannot be stored in them)."""
    x8 = (X * 255).astype(np.uint8)
    ref = np.clip(np.round(np.asarray(jr.rotate(x8.astype(np.float32), 30.0))), 0, 255)
    y8 = jr.rotate(x8, 30.0)
    assert y8.dtype == jnp.uint8
    np.testing.assert_allclose(np.asarray(y8, np.float32), ref, atol=1)  # a .5 may round either way
    x16 = (X * 30000 - 15000).astype(np.int16)
    assert jr.zoom(x16, 1.5).dtype == jnp.int16
    for bad in (x8.astype(np.int32), x8 > 128):
        for op in (lambda x: jr.rotate(x, 30.0), lambda x: jr.random_translation(KEY, x, 0.1)):
            with pytest.raises(TypeError, match=r"x must be a floating or an 8/16-bit integer image batch"):
                op(bad)
    with pytest.raises(ValueError, match="fill_value"):
        jr.rotate(x8, 30.0, fill_value=float("nan"))
    assert np.isnan(np.asarray(jr.zoom(X, 0.5, fill_value=float("nan")))[:, 0, 0]).all()  # float: a NaN marker


def test_nan_angles_and_shifts_are_refused():
    """Before: a NaN angle or shift returned an all-fill (or NaN) batch without a word."""
    with pytest.raises(ValueError, match=r"degrees must be in the range .*got degrees = an array holding nan"):
        jr.rotate(X, float("nan"))
    with pytest.raises(ValueError, match=r"shift must be in the range .*got shift = an array holding inf"):
        jr.translate(X, (0.0, float("inf")))
