"""Tests for jaxreg.drop_block.

Reference: torchvision's ``ops.drop_block2d`` (torchvision/ops/drop_block.py), quoted::

    gamma = (p * H * W) / ((block_size**2) * ((H - block_size + 1) * (W - block_size + 1)))
    noise = torch.empty((N, C, H - block_size + 1, W - block_size + 1)).bernoulli_(gamma)
    noise = F.pad(noise, [block_size // 2] * 4, value=0)
    noise = F.max_pool2d(noise, stride=(1, 1), kernel_size=(block_size, block_size), padding=block_size // 2)
    noise = 1 - noise
    normalize_scale = noise.numel() / (eps + noise.sum())
    input = input * noise * normalize_scale

The mask's structure is checked directly (a union of whole block_size squares: an opening by the block gives it
back), the dropped fraction against its expectation under that gamma (each pixel is dropped unless none of the
k(p) seed positions whose block covers it fires: 1 - (1 - gamma)**k(p), averaged over the map) within 5 standard
errors of the per-map fractions, with fixed keys, and the rescale against numel / kept count.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

import jaxreg as jr

KEY = jax.random.key(0)
N, H, W, C = 16, 16, 16, 8
ONES = jnp.ones((N, H, W, C))


def _expected_drop_fraction(rate: float, block: int, h: int, w: int) -> float:
    gamma = rate * h * w / (block**2 * (h - block + 1) * (w - block + 1))
    seeds = np.zeros((h, w))
    seeds[: h - block + 1, : w - block + 1] = 1
    # k(p): seed positions s with s <= p < s + block, in each direction.
    covering = ndimage.convolve(seeds, np.ones((block, block)), mode="constant", origin=-(block // 2))
    return float(np.mean(1 - (1 - gamma) ** covering))


@pytest.mark.parametrize("rate,block", [(0.1, 3), (0.3, 5), (0.2, 1)])
def test_dropped_fraction_and_rescale_follow_torchvisions_gamma(rate, block):
    y = np.asarray(jr.drop_block(KEY, ONES, rate, block_size=block))
    dropped = y == 0
    per_map = dropped.mean(axis=(1, 2)).ravel()  # N * C maps
    expected = _expected_drop_fraction(rate, block, H, W)
    stderr = per_map.std() / np.sqrt(per_map.size)
    assert abs(per_map.mean() - expected) < 5 * stderr + 1e-3
    assert abs(expected - rate) < 0.35 * rate  # torchvision's gamma aims at rate (overlaps and borders aside)
    # Survivors: x * numel / kept, one scale for the whole batch.
    np.testing.assert_allclose(y[~dropped], y.size / (~dropped).sum(), rtol=1e-6)


def test_mask_is_a_union_of_whole_blocks_drawn_per_example_and_channel():
    block = 5
    y = np.asarray(jr.drop_block(KEY, ONES, 0.3, block_size=block))
    dropped = y == 0
    square = np.ones((block, block), bool)
    for n in range(N):
        for c in range(C):
            m = dropped[n, :, :, c]
            # Opening (erosion then dilation) by the block keeps exactly the union of whole blocks inside m;
            # border_value=0 keeps the blocks inside the map.
            opened = ndimage.binary_dilation(ndimage.binary_erosion(m, square, border_value=0), square)
            np.testing.assert_array_equal(opened, m)
    # Channels and examples draw their own blocks.
    assert not np.array_equal(dropped[0, :, :, 0], dropped[0, :, :, 1])
    assert not np.array_equal(dropped[0], dropped[1])


def test_jit_vmap_grad_dtype_and_same_key_same_bits():
    x = jax.random.normal(jax.random.key(1), (4, 8, 8, 3))

    @jax.jit
    def program(key, keys, rates):
        return (
            jr.drop_block(key, x, 0.3, block_size=3),
            jr.drop_block(key, x.astype(jnp.bfloat16), 0.3, block_size=3),
            jax.vmap(lambda k, r: jr.drop_block(k, x, r, block_size=3))(keys, rates),
            jax.grad(lambda v: jnp.sum(jr.drop_block(key, v, 0.3, block_size=3) ** 2))(x),
        )

    keys = jnp.stack([KEY, jax.random.key(2), KEY])
    y, y16, batched, grad = program(KEY, keys, jnp.array([0.3, 0.3, 0.0]))
    again = program(KEY, keys, jnp.array([0.3, 0.3, 0.0]))
    assert np.asarray(y).tobytes() == np.asarray(again[0]).tobytes()
    assert y16.dtype == jnp.bfloat16 and y.dtype == x.dtype
    np.testing.assert_allclose(batched[0], y, rtol=1e-6)
    assert not np.array_equal(batched[0], batched[1])
    np.testing.assert_array_equal(batched[2], x)  # a traced rate of 0: scale numel / (1e-6 + numel) is 1.0f
    np.testing.assert_allclose(grad, 2 * y * np.where(np.asarray(y) == 0, 0, y.size / np.sum(np.asarray(y) != 0)),
                               rtol=1e-5)


def test_example_ids_make_each_rows_blocks_a_function_of_its_id():
    x = jnp.ones((4, 8, 8, 2))
    ids = jnp.array([10, 11, 12, 13])
    y = jr.drop_block(KEY, x, 0.3, block_size=3, example_ids=ids)
    perm = jnp.array([2, 0, 3, 1])
    y_perm = jr.drop_block(KEY, x[perm], 0.3, block_size=3, example_ids=ids[perm])
    np.testing.assert_array_equal(np.asarray(y_perm) == 0, np.asarray(y)[np.asarray(perm)] == 0)


def test_identity_cases_and_bad_input():
    assert jr.drop_block(None, ONES, 0.5, deterministic=True) is ONES
    assert jr.drop_block(KEY, ONES, 0.0) is ONES
    with pytest.raises(ValueError, match="block_size must be odd"):
        jr.drop_block(KEY, ONES, 0.1, block_size=4)
    with pytest.raises(ValueError, match=r"block_size must be at most the feature map's height and width \(16, 16\)"):
        jr.drop_block(KEY, ONES, 0.1, block_size=17)
    with pytest.raises(ValueError, match="block_size must be an integer >= 1"):
        jr.drop_block(KEY, ONES, 0.1, block_size=0)
    with pytest.raises(ValueError, match=r"rate must be in the range \[0, 1\), got rate = 1.0"):
        jr.drop_block(KEY, ONES, 1.0)
    with pytest.raises(ValueError, match="NHWC"):
        jr.drop_block(KEY, ONES[0], 0.1, block_size=3)
    with pytest.raises(TypeError, match="floating dtype"):
        jr.drop_block(KEY, jnp.ones((2, 8, 8, 3), jnp.uint8), 0.1, block_size=3)
    with pytest.raises(ValueError, match="requires a key"):
        jr.drop_block(None, ONES, 0.1)


@pytest.mark.parametrize("block", [1, 2, 7, 9])
def test_block_dilation_equals_a_b_by_b_reduce_window(block):
    """Reference: ``lax.reduce_window`` of OR over the b x b window (the formulation before the separable one);
    blocks up to 8 take shifted slices, larger ones 1-D reduce_windows."""
    from jax import lax

    from jaxreg.drop_block import _dilate

    seeds = jax.random.bernoulli(jax.random.key(block), 0.05, (2, 12, 10, 3))
    pad = block - 1
    expected = lax.reduce_window(seeds, False, lax.bitwise_or, (1, block, block, 1), (1, 1, 1, 1),
                                 ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    np.testing.assert_array_equal(_dilate(_dilate(seeds, block, 1), block, 2), expected)
