"""Tests for jaxreg.augment.erasing (random_erasing) and jaxreg.augment.policies (rand_augment, trivial_augment).

References, from torchvision's source (transforms/transforms.py and transforms/autoaugment.py):

* ``RandomErasing.get_params``, quoted and re-implemented in numpy below (``_torchvision_erase_shape``)::

      for _ in range(10):
          erase_area = area * torch.empty(1).uniform_(scale[0], scale[1]).item()
          aspect_ratio = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1])).item()
          h = int(round(math.sqrt(erase_area * aspect_ratio)))
          w = int(round(math.sqrt(erase_area / aspect_ratio)))
          if not (h < img_h and w < img_w):
              continue
          i = torch.randint(0, img_h - h + 1, size=(1,)).item()
          j = torch.randint(0, img_w - w + 1, size=(1,)).item()
          return i, j, h, w, v
      return 0, 0, img_h, img_w, img

  Erased rectangles are read back from the outputs; their sizes must be shapes that procedure can produce,
  and their mean area must match its Monte-Carlo mean within 5 standard errors (fixed keys and seeds).
* ``RandAugment._augmentation_space`` / ``TrivialAugmentWide._augmentation_space``: the tables are quoted in
  ``RAND_AUGMENT_SPACE`` / ``TRIVIAL_AUGMENT_SPACE`` (torch.linspace written as np.linspace) and compared with
  ``jaxreg.augment.policies.magnitude_table``. Each output image of a one-op RandAugment must equal one of the
  27 candidates computed with jaxreg's public single ops (which tests/test_augment_color.py checks against
  PIL), and the ops must be drawn uniformly (counts within 5 sigma of n / 14).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxreg as jr
from jaxreg.augment.policies import OPS, magnitude_table

KEY = jax.random.key(0)


# ------------------------------------------------------------------------------------------- random erasing


def _torchvision_erase_shape(rng: np.random.Generator, h: int, w: int, scale, ratio) -> tuple[int, int] | None:
    area, log_ratio = h * w, (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        erase_area = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        eh, ew = int(round(math.sqrt(erase_area * aspect))), int(round(math.sqrt(erase_area / aspect)))
        if eh < h and ew < w:
            return eh, ew
    return None


def _rectangles(erased: np.ndarray) -> list[tuple[int, int] | None]:
    """(height, width) of each image's erased region, asserting it is one axis-aligned rectangle."""
    shapes = []
    for mask in erased:
        if not mask.any():
            shapes.append(None)
            continue
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        box = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        assert box.all() and mask.sum() == box.size  # a full rectangle, nothing outside it
        shapes.append((len(rows), len(cols)))
    return shapes


def test_random_erasing_draws_torchvisions_rectangles():
    n, h, w = 512, 24, 32
    scale, ratio = (0.02, 0.33), (0.3, 3.3)
    x = jnp.ones((n, h, w, 1))
    y = np.asarray(jr.random_erasing(KEY, x, probability=1.0, scale=scale, ratio=ratio))
    shapes = [s for s in _rectangles(y[..., 0] == 0) if s is not None]
    rng = np.random.default_rng(0)
    reference = [_torchvision_erase_shape(rng, h, w, scale, ratio) for _ in range(20_000)]
    reference = [s for s in reference if s is not None]
    # Every rectangle is one torchvision can draw: area and aspect within range up to the rounding of h and w.
    for eh, ew in shapes:
        assert eh < h and ew < w
        assert scale[0] * h * w - (eh + ew + 1) <= eh * ew <= scale[1] * h * w + (eh + ew + 1)
        assert ratio[0] * (ew + 1) / ew - 1 / ew <= (eh + 0.5) / max(ew - 0.5, 0.5)
        assert (eh - 0.5) / (ew + 0.5) <= ratio[1]
    # Mean erased area: ours vs the Monte-Carlo mean of torchvision's procedure, within 5 standard errors.
    ours, ref = np.array([a * b for a, b in shapes]), np.array([a * b for a, b in reference])
    stderr = math.sqrt(ours.var() / ours.size + ref.var() / ref.size)
    assert abs(ours.mean() - ref.mean()) < 5 * stderr
    assert len(shapes) / n > 0.97  # with these ranges, nearly every image finds a fitting rectangle


def test_random_erasing_probability_values_and_giving_up():
    x = jnp.ones((400, 8, 8, 3))
    y = np.asarray(jr.random_erasing(KEY, x, probability=0.5, value=(0.25, 0.5, 0.75)))
    erased = (y != 1).any(axis=(1, 2, 3))
    assert abs(erased.mean() - 0.5) < 5 * math.sqrt(0.25 / erased.size)  # binomial: 5 sigma
    assert set(np.unique(y[..., 1])) <= {0.5, 1.0} and set(np.unique(y[..., 2])) <= {0.75, 1.0}
    # No candidate can fit (h >= H always): torchvision returns the image unchanged. (probability, scale and
    # ratio are traced arguments: this reuses the compiled program above.)
    np.testing.assert_array_equal(
        jr.random_erasing(KEY, x, probability=1.0, scale=(0.9, 1.0), ratio=(3.0, 3.3), value=(0.25, 0.5, 0.75)), x
    )
    # uint8 with "random": uniform levels; same key, same bits; another key, another output.
    x8 = jnp.full((16, 8, 8, 3), 7, jnp.uint8)
    y8 = jr.random_erasing(KEY, x8, probability=1.0, value="random")
    assert y8.dtype == jnp.uint8 and len(np.unique(np.asarray(y8))) > 100
    assert np.asarray(jr.random_erasing(KEY, x8, probability=1.0, value="random")).tobytes() == np.asarray(y8).tobytes()
    assert not np.array_equal(jr.random_erasing(jax.random.key(1), x8, probability=1.0, value="random"), y8)


def test_random_erasing_bad_input():
    x = jnp.ones((2, 8, 8, 3))
    with pytest.raises(ValueError, match=r"probability must be in the range \[0, 1\], got probability = 1.5"):
        jr.random_erasing(KEY, x, probability=1.5)
    with pytest.raises(ValueError, match=r"scale must be ordered as \(min, max\)"):
        jr.random_erasing(KEY, x, scale=(0.4, 0.1))
    with pytest.raises(ValueError, match=r"ratio must be ordered as \(min, max\)"):
        jr.random_erasing(KEY, x, ratio=(3.3, 0.3))
    with pytest.raises(ValueError, match="ratio must be in the range"):
        jr.random_erasing(KEY, x, ratio=(0.0, 1.0))
    with pytest.raises(ValueError, match="scale must be in the range"):
        jr.random_erasing(KEY, x, scale=(0.1, 1.5))
    with pytest.raises(ValueError, match=r"one number per channel \(3\)"):
        jr.random_erasing(KEY, x, value=(0.1, 0.2))
    with pytest.raises(ValueError, match="value must be in the range"):
        jr.random_erasing(KEY, x.astype(jnp.uint8), value=300)
    with pytest.raises(ValueError, match="value must be a number"):
        jr.random_erasing(KEY, x, value="noise")


# ------------------------------------------------------------------------------------ RandAugment tables

# torchvision's _augmentation_space(num_bins, image_size) with image_size = [width, height] (F.get_image_size),
# torch.linspace -> np.linspace; (magnitudes or None, signed).
def RAND_AUGMENT_SPACE(num_bins, h, w):  # noqa: N802
    return {
        "Identity": (None, False),
        "ShearX": (np.linspace(0.0, 0.3, num_bins), True),
        "ShearY": (np.linspace(0.0, 0.3, num_bins), True),
        "TranslateX": (np.linspace(0.0, 150.0 / 331.0 * w, num_bins), True),
        "TranslateY": (np.linspace(0.0, 150.0 / 331.0 * h, num_bins), True),
        "Rotate": (np.linspace(0.0, 30.0, num_bins), True),
        "Brightness": (np.linspace(0.0, 0.9, num_bins), True),
        "Color": (np.linspace(0.0, 0.9, num_bins), True),
        "Contrast": (np.linspace(0.0, 0.9, num_bins), True),
        "Sharpness": (np.linspace(0.0, 0.9, num_bins), True),
        "Posterize": (8 - np.round(np.arange(num_bins) / ((num_bins - 1) / 4)).astype(int), False),
        "Solarize": (np.linspace(255.0, 0.0, num_bins), False),
        "AutoContrast": (None, False),
        "Equalize": (None, False),
    }


def TRIVIAL_AUGMENT_SPACE(num_bins):  # noqa: N802
    return {
        "Identity": (None, False),
        "ShearX": (np.linspace(0.0, 0.99, num_bins), True),
        "ShearY": (np.linspace(0.0, 0.99, num_bins), True),
        "TranslateX": (np.linspace(0.0, 32.0, num_bins), True),
        "TranslateY": (np.linspace(0.0, 32.0, num_bins), True),
        "Rotate": (np.linspace(0.0, 135.0, num_bins), True),
        "Brightness": (np.linspace(0.0, 0.99, num_bins), True),
        "Color": (np.linspace(0.0, 0.99, num_bins), True),
        "Contrast": (np.linspace(0.0, 0.99, num_bins), True),
        "Sharpness": (np.linspace(0.0, 0.99, num_bins), True),
        "Posterize": (8 - np.round(np.arange(num_bins) / ((num_bins - 1) / 6)).astype(int), False),
        "Solarize": (np.linspace(255.0, 0.0, num_bins), False),
        "AutoContrast": (None, False),
        "Equalize": (None, False),
    }


@pytest.mark.parametrize("num_bins", [31, 10])
def test_op_tables_are_torchvisions(num_bins):
    for policy, space in [("rand_augment", RAND_AUGMENT_SPACE(num_bins, 24, 40)),
                          ("trivial_augment", TRIVIAL_AUGMENT_SPACE(num_bins))]:
        magnitudes, signed = magnitude_table(policy, num_bins, 24, 40)
        assert list(space) == list(OPS)
        for k, (op, (values, is_signed)) in enumerate(space.items()):
            assert signed[k] == is_signed, op
            if values is None:
                np.testing.assert_array_equal(magnitudes[k], 0)
            elif op == "Solarize":
                np.testing.assert_allclose(magnitudes[k] * 255, values, rtol=1e-6, atol=1e-4)
            else:
                np.testing.assert_allclose(magnitudes[k], values, rtol=1e-6, atol=1e-6, err_msg=op)


# --------------------------------------------------------------------------------------- policies at work

N_IMAGES = 112
X8 = np.asarray(jax.random.randint(jax.random.key(5), (N_IMAGES, 12, 12, 3), 0, 256), np.uint8)


def _candidates(x: np.ndarray, magnitude: int) -> np.ndarray:
    """Every image through each op of the table at bin ``magnitude``, both signs: (27, n, h, w, c)."""
    mags, signed = magnitude_table("rand_augment", 31, *x.shape[1:3])
    m = dict(zip(OPS, mags[:, magnitude]))
    out = [x, jr.autocontrast(x), jr.equalize(x), jr.posterize(x, int(m["Posterize"])),
           jr.solarize(x, float(m["Solarize"]) * 255)]
    for s in (1.0, -1.0):
        out += [
            jr.shear_x(x, s * m["ShearX"]), jr.shear_y(x, s * m["ShearY"]),
            jr.translate(x, (0.0, math.trunc(float(s * m["TranslateX"]))), order=0),
            jr.translate(x, (math.trunc(float(s * m["TranslateY"])), 0.0), order=0),
            jr.rotate(x, s * m["Rotate"], order=0),
            jr.adjust_brightness(x, 1 + s * m["Brightness"]), jr.adjust_saturation(x, 1 + s * m["Color"]),
            jr.adjust_contrast(x, 1 + s * m["Contrast"]), jr.adjust_sharpness(x, 1 + s * m["Sharpness"]),
        ]
    return np.stack([np.asarray(c) for c in out])


def test_rand_augment_applies_one_table_op_per_image_drawn_uniformly():
    y = np.asarray(jr.rand_augment(KEY, X8, num_ops=1, magnitude=9))
    candidates = _candidates(X8, 9)
    matches = np.all(candidates == y[None], axis=(2, 3, 4))  # (27, n)
    assert matches.any(axis=0).all()
    # Ops identified without ambiguity (exactly one candidate matches) are spread evenly over the table.
    chosen = np.argmax(matches, axis=0)[matches.sum(axis=0) == 1]
    counts = np.bincount(chosen, minlength=27)
    assert len(np.unique(chosen)) >= 20
    assert counts.max() < N_IMAGES / 14 + 5 * math.sqrt(N_IMAGES / 14)


def test_bucketed_ops_equal_every_op_on_the_whole_batch():
    """Reference: every op on the whole batch, one kept per image (``lax.switch`` under ``vmap``, the policies'
    former path), on the same draws: bit for bit on ``uint8``. Small buckets (capacity 3 for 24 images) make
    ops overflow into further rounds; one op drawn by every image takes 8 rounds."""
    from jaxreg.augment import policies

    assert policies.bucket_capacity(256, 1 / 14) == 46 and policies.bucket_capacity(4, 1 / 14) == 4
    x = X8[:24]
    k_op, k_sign = jax.random.split(jax.random.key(11))
    op = jax.random.randint(k_op, (24,), 0, 14)
    mags, signed = magnitude_table("trivial_augment", 31, 12, 12)
    m = policies._signed(k_sign, jnp.asarray(mags)[op, 17], jnp.asarray(signed), op)
    bucketed = jax.jit(lambda x, op, m: policies._apply_ops(x, op, m, 0.0, 0, capacity=3))
    every = jax.jit(lambda x, op, m: jnp.stack([x] + [f(x, m) for f in policies._op_fns(0.0, 0)])[
        op, jnp.arange(x.shape[0])])
    assert int(jnp.max(jnp.bincount(op, length=14)[1:])) > 3  # some bucket overflows
    assert np.asarray(bucketed(x, op, m)).tobytes() == np.asarray(every(x, op, m)).tobytes()
    all_equalize = jnp.full((24,), OPS.index("Equalize"))
    np.testing.assert_array_equal(bucketed(x, all_equalize, m), jr.equalize(x))


def test_policies_under_jit_and_vmap_float_and_uint8():
    """References: the eager call with the same key (vmap member 0), another execution (bits)."""
    xf = X8[:4].astype(np.float32) / 255

    @jax.jit
    def program(keys, magnitudes):
        return (
            jax.vmap(lambda k, m: jr.rand_augment(k, xf, magnitude=m))(keys, magnitudes),
            jr.trivial_augment(keys[0], X8[:4]),
        )

    keys = jnp.stack([KEY, jax.random.key(1)])
    batched, ta8 = program(keys, jnp.array([9, 9]))
    again = program(keys, jnp.array([9, 9]))
    assert np.asarray(batched).tobytes() == np.asarray(again[0]).tobytes()
    assert np.asarray(ta8).tobytes() == np.asarray(again[1]).tobytes()
    assert batched.dtype == jnp.float32 and ta8.dtype == jnp.uint8 and ta8.shape == X8[:4].shape
    assert float(jnp.min(batched)) >= 0 and float(jnp.max(batched)) <= 1
    np.testing.assert_allclose(batched[0], jr.rand_augment(KEY, xf, magnitude=9), atol=1e-6)
    assert not np.array_equal(batched[0], batched[1])
    assert not np.array_equal(ta8, X8[:4])


def test_policies_bad_input():
    with pytest.raises(ValueError, match=r"magnitude must be a bin index in \[0, num_magnitude_bins\) = \[0, 31\)"):
        jr.rand_augment(KEY, X8, magnitude=31)
    with pytest.raises(ValueError, match="magnitude must be an integer >= 0"):
        jr.rand_augment(KEY, X8, magnitude=-1)
    with pytest.raises(TypeError, match="magnitude must be an integer"):
        jr.rand_augment(KEY, X8, magnitude=9.5)
    with pytest.raises(ValueError, match="num_ops must be an integer >= 0"):
        jr.rand_augment(KEY, X8, num_ops=-1)
    with pytest.raises(ValueError, match="num_magnitude_bins must be an integer >= 2"):
        jr.trivial_augment(KEY, X8, num_magnitude_bins=1)
    with pytest.raises(ValueError, match="fill must be in the range"):
        jr.trivial_augment(KEY, X8, fill=300)
    with pytest.raises(TypeError, match="x must be uint8 images"):
        jr.trivial_augment(KEY, X8.astype(np.int32))
    with pytest.raises(ValueError, match="NCHW"):
        jr.rand_augment(KEY, np.zeros((2, 3, 16, 16), np.uint8))
    with pytest.raises(ValueError, match="4-d batch"):
        jr.trivial_augment(KEY, X8[0])
    assert jr.rand_augment(KEY, X8, num_ops=0) is not None
