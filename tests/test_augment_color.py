"""Tests for jaxreg.augment.color (point and color ops) and the shears of jaxreg.augment.affine.

Reference: Pillow itself, ``PIL.ImageOps`` (invert, solarize, posterize, equalize, autocontrast) and
``PIL.ImageEnhance`` (Brightness, Contrast, Color, Sharpness), and ``Image.transform(..., Image.AFFINE,
(1, m, 0, 0, 1, 0), Image.NEAREST)`` for the shears, on the two photographs of scikit-learn's
``load_sample_images()`` (downsampled to 48x64) and two random images, one of them low-contrast. ``uint8``
results are compared bit for bit, except for the two stated tolerances:

* ``autocontrast``: we compute ``floor((v - lo) * 255 / (hi - lo))`` exactly; PIL evaluates it in float64 and
  lands one level below when the exact value is an integer in 0.43% of the (lo, hi, v) triples. The test
  requires equality with the exact formula everywhere, and with PIL except at those points, where PIL is one
  less.
* shears: the source column ``c + m (r + 1/2)`` is computed in float32 here and in float64 by PIL, so a pixel
  whose source lies within 1e-4 of a rounding tie may take the neighbouring pixel; the test excludes those
  pixels (none occur for the magnitudes used).

Float images in [0, 1] are checked against the float formulas written in numpy (float64).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps
from sklearn.datasets import load_sample_images

import jax.numpy as jnp
import jaxreg as jr


def _images() -> np.ndarray:
    photos = [img[::8, ::8][:48, :64] for img in load_sample_images().images]
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    low_contrast = rng.integers(40, 190, (48, 64, 3)).astype(np.uint8)
    return np.stack([*photos, noise, low_contrast])


X8 = _images()  # (4, 48, 64, 3) uint8
XF = X8.astype(np.float32) / 255
PIL_IMAGES = [Image.fromarray(img) for img in X8]


def _pil(fn, magnitudes=None) -> np.ndarray:
    if magnitudes is None:
        return np.stack([np.asarray(fn(img)) for img in PIL_IMAGES])
    return np.stack([np.asarray(fn(img, m)) for img, m in zip(PIL_IMAGES, magnitudes)])


# Per-example magnitudes: one compiled program per op covers four magnitudes.
FACTORS = [np.array([0.0, 0.3, 1.7, 0.99], np.float32), np.array([1.0, 1.3, 0.01, 1.9], np.float32)]

ENHANCERS = [
    (jr.adjust_brightness, ImageEnhance.Brightness),
    (jr.adjust_contrast, ImageEnhance.Contrast),
    (jr.adjust_saturation, ImageEnhance.Color),
    (jr.adjust_sharpness, ImageEnhance.Sharpness),
]


@pytest.mark.parametrize("ours,enhancer", ENHANCERS, ids=lambda v: getattr(v, "__name__", ""))
def test_enhancers_equal_pil_bit_for_bit_on_uint8(ours, enhancer):
    for factors in FACTORS:
        expected = _pil(lambda img, f: enhancer(img).enhance(float(f)), factors)
        np.testing.assert_array_equal(ours(X8, factors), expected)
    # A shared (scalar) factor is the same as a per-example array of it.
    np.testing.assert_array_equal(ours(X8, 0.3), ours(X8, np.full(4, 0.3, np.float32)))


def test_enhancers_on_gray_images_equal_pil_mode_l():
    gray = X8[..., :1]
    images = [Image.fromarray(img[..., 0]) for img in gray]
    for ours, enhancer in ENHANCERS:
        expected = np.stack([np.asarray(enhancer(img).enhance(1.6)) for img in images])[..., None]
        np.testing.assert_array_equal(ours(gray, 1.6), expected)


def test_imageops_equal_pil_bit_for_bit_on_uint8():
    np.testing.assert_array_equal(jr.invert(X8), _pil(ImageOps.invert))
    np.testing.assert_array_equal(jr.equalize(X8), _pil(ImageOps.equalize))
    thresholds = np.array([0, 64, 128, 255], np.float32)
    np.testing.assert_array_equal(jr.solarize(X8, thresholds), _pil(lambda img, t: ImageOps.solarize(img, int(t)),
                                                                     thresholds))
    for bits in (np.array([1, 2, 3, 4]), np.array([5, 6, 7, 8])):
        np.testing.assert_array_equal(jr.posterize(X8, bits), _pil(lambda img, b: ImageOps.posterize(img, int(b)),
                                                                   bits))


def test_equalize_of_a_constant_or_tiny_channel_is_the_identity_as_pil():
    """PIL's step = (pixels - count of the top level) // 255 is 0 for fewer than 256 other pixels."""
    x = np.full((1, 8, 8, 3), 77, np.uint8)
    x[0, 0, 0] = 200
    np.testing.assert_array_equal(jr.equalize(x), x)
    np.testing.assert_array_equal(np.asarray(ImageOps.equalize(Image.fromarray(x[0]))), x[0])


def test_autocontrast_is_the_exact_formula_and_pil_up_to_its_float64_rounding():
    ours = np.asarray(jr.autocontrast(X8)).astype(np.int64)
    pil = _pil(ImageOps.autocontrast).astype(np.int64)
    v = X8.astype(np.int64)
    lo, hi = v.min(axis=(1, 2), keepdims=True), v.max(axis=(1, 2), keepdims=True)
    exact = np.where(hi > lo, (v - lo) * 255 // np.maximum(hi - lo, 1), v)
    np.testing.assert_array_equal(ours, exact)
    differs = ours != pil
    on_integer = (v - lo) * 255 % np.maximum(hi - lo, 1) == 0
    assert np.all(pil[differs] == ours[differs] - 1) and np.all(on_integer[differs])
    # A channel spanning 0..25: PIL maps 25 to 254 (25 * 10.2 - 0 lands below 255 in float64), we to 255.
    ramp = np.arange(26, dtype=np.uint8).reshape(1, 1, 26, 1)
    assert int(jr.autocontrast(ramp)[0, 0, -1, 0]) == 255
    assert np.asarray(ImageOps.autocontrast(Image.fromarray(ramp[0, :, :, 0])))[0, -1] == 254


@pytest.mark.parametrize("axis", ["x", "y"])
def test_shears_equal_pil_affine_transform_nearest(axis):
    h, w = X8.shape[1:3]
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    fn = jr.shear_x if axis == "x" else jr.shear_y
    for factors in (np.array([0.3, -0.3, 0.1, 0.99], np.float32), np.array([-0.5, 0.17, 0.0, -0.99], np.float32)):
        ours = np.asarray(fn(X8, factors))
        for img, out, m in zip(PIL_IMAGES, ours, factors):
            coeffs = (1, float(m), 0, 0, 1, 0) if axis == "x" else (1, 0, 0, float(m), 1, 0)
            expected = np.asarray(img.transform((w, h), Image.AFFINE, coeffs, Image.NEAREST))
            source = (cols + float(m) * (rows + 0.5)) if axis == "x" else (rows + float(m) * (cols + 0.5))
            near_tie = np.abs((source + 0.5) - np.round(source + 0.5)) < 1e-4
            np.testing.assert_array_equal(out[~near_tie], expected[~near_tie])


def test_float_images_follow_the_float_formulas():
    x = XF.astype(np.float64)
    gray = x @ np.array([0.299, 0.587, 0.114])
    f = FACTORS[0][:, None, None, None].astype(np.float64)

    def blend(d, f):
        return np.clip(d + f * (x - d), 0, 1)

    smooth = x.copy()
    kernel = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]]) / 13
    smooth[:, 1:-1, 1:-1] = sum(
        kernel[i, j] * x[:, i : i + 46, j : j + 62] for i in range(3) for j in range(3)
    )
    cases = [
        (jr.adjust_brightness(XF, FACTORS[0]), blend(0.0, f)),
        (jr.adjust_contrast(XF, FACTORS[0]), blend(gray.mean(axis=(1, 2))[:, None, None, None], f)),
        (jr.adjust_saturation(XF, FACTORS[0]), blend(gray[..., None], f)),
        (jr.adjust_sharpness(XF, FACTORS[0]), blend(smooth, f)),
        (jr.solarize(XF, 0.5), np.where(x >= 0.5, 1 - x, x)),
        (jr.posterize(XF, 3), np.clip(np.floor(x * 8), 0, 7) / 8),
        (jr.invert(XF), 1 - x),
    ]
    lo, hi = x.min(axis=(1, 2), keepdims=True), x.max(axis=(1, 2), keepdims=True)
    cases.append((jr.autocontrast(XF), (x - lo) / (hi - lo)))
    for ours, expected in cases:
        assert ours.dtype == jnp.float32
        np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)
    # equalize on floats: PIL's equalize of the levels round(x * 255), divided by 255.
    np.testing.assert_allclose(jr.equalize(XF), _pil(ImageOps.equalize) / 255, rtol=1e-6)


def test_low_precision_floats_keep_their_dtype():
    x16 = jnp.asarray(XF[:2], jnp.bfloat16)
    for y in (jr.adjust_contrast(x16, 1.5), jr.equalize(x16), jr.posterize(x16, 4), jr.shear_x(x16, 0.2)):
        assert y.dtype == jnp.bfloat16 and y.shape == x16.shape


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="bits must be in the range"):
        jr.posterize(X8, 0)
    with pytest.raises(ValueError, match="bits must be in the range"):
        jr.posterize(X8, np.array([1, 2, 9, 4]))
    with pytest.raises(TypeError, match="bits must be an integer"):
        jr.posterize(X8, 3.0)
    with pytest.raises(ValueError, match="threshold must be in the range"):
        jr.solarize(XF, 2.0)  # float images: a fraction in [0, 1]
    with pytest.raises(ValueError, match="factor must be in the range"):
        jr.adjust_contrast(X8, -0.5)
    with pytest.raises(ValueError, match=r"factor must be a scalar .* or have shape \(4,\)"):
        jr.adjust_brightness(X8, np.ones(3))
    with pytest.raises(ValueError, match="1 \\(gray\\) or 3 \\(RGB\\) channels"):
        jr.adjust_saturation(np.zeros((2, 8, 8, 4), np.uint8), 0.5)
    with pytest.raises(TypeError, match="x must be uint8 images"):
        jr.equalize(X8.astype(np.int16))
    with pytest.raises(ValueError, match="NCHW"):
        jr.invert(np.moveaxis(X8, 3, 1))
    with pytest.raises(ValueError, match="4-d batch"):
        jr.autocontrast(X8[0])
