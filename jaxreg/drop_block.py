"""DropBlock (Ghiasi et al. 2018) on NHWC feature maps, with torchvision's ``ops.drop_block2d`` semantics (floor 2).

Dropout drops single activations, which a convolution's neighbours can fill in; DropBlock drops contiguous
``block_size x block_size`` squares of each feature map instead, so the network cannot rely on a local patch.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxreg._typing import KeyArray
from jaxreg._validate import check_bool, check_in_range, check_key, check_positive_int, check_scalar, is_concrete

__all__ = ["drop_block"]

# torchvision's drop_block2d: eps in the rescale numel / (eps + kept), so that a fully dropped map gives 0.
_EPS = 1e-6


def drop_block(
    key: KeyArray | None,
    x: jax.typing.ArrayLike,
    rate: float | jax.Array,
    *,
    block_size: int = 7,
    deterministic: bool = False,
    example_ids: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    """DropBlock: zero random ``block_size x block_size`` squares of each feature map, rescale the survivors.

    torchvision's ``ops.drop_block2d(x, p=rate, block_size)`` on NHWC input ``(batch, height, width,
    channels)``: block seeds are drawn independently per (example, channel) with probability
    ``gamma = rate * H * W / (block_size**2 * (H - block_size + 1) * (W - block_size + 1))`` on the
    ``(H - block_size + 1) x (W - block_size + 1)`` positions where a whole block fits; each seed drops the
    block whose top-left corner it is (a max-pool of the seeds), so the dropped region is a union of
    ``block_size`` squares and covers about ``rate`` of the map; the kept activations are multiplied by
    ``numel / (1e-6 + kept count)`` over the whole batch, so the mean is preserved. A block size of 1 is
    dropout with one scale for the batch.

    Args:
      key: a ``jax.random`` key; may be ``None`` when ``deterministic``.
      x: floating feature maps, shape ``(batch, height, width, channels)`` (NHWC).
      rate: the fraction of activations to drop, in ``[0, 1)``; may be traced (a traced rate is clamped to
        ``gamma <= 1``). ``0`` returns ``x``.
      block_size: the side of the dropped squares, an odd integer (torchvision's padding of ``block_size // 2``
        on both sides only gives back an ``H x W`` mask for odd sizes) no larger than ``min(H, W)``. Static.
      deterministic: return ``x`` unchanged (inference).
      example_ids: optional integer array of shape ``(batch,)``; row ``i``'s seeds then depend only on
        ``(key, example_ids[i])`` (the rescale still counts the whole batch).

    Returns:
      An array with the shape and dtype of ``x``.

    Raises:
      ValueError: ``rate`` outside ``[0, 1)``, missing key, ``x`` not 4-d, ``block_size`` even, < 1 or larger
        than the feature map, bad ``example_ids`` shape.
      TypeError: ``x`` not floating, ``block_size`` not an integer, ``example_ids`` not integer.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxreg as jr
      >>> y = jr.drop_block(jax.random.key(0), jnp.ones((8, 16, 16, 4)), 0.2, block_size=3)
      >>> print(f"{float((y == 0).mean()):.1f}")  # about rate of the activations dropped
      0.2
      >>> bool(jnp.allclose(y.mean(), 1.0, atol=1e-3))  # survivors rescaled: the mean is kept
      True
      >>> jr.drop_block(None, jnp.ones((1, 3, 3, 1)), 0.5, block_size=3, deterministic=True).ravel()
      Array([1., 1., 1., 1., 1., 1., 1., 1., 1.], dtype=float32)
    """
    fn_name = "drop_block"
    check_in_range("rate", rate, 0.0, 1.0, high_inclusive=False)
    check_scalar("rate", rate, fn_name)
    check_bool("deterministic", deterministic, fn_name)
    block_size = check_positive_int("block_size", block_size)
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{fn_name}: x must have a floating dtype, got x.dtype = {x.dtype}.")
    if x.ndim != 4:
        raise ValueError(
            f"{fn_name}: x must be a 4-d batch of feature maps in NHWC layout (batch, height, width, channels), "
            f"got x.shape = {x.shape}."
        )
    _, h, w, _ = x.shape
    if block_size % 2 == 0:
        raise ValueError(
            f"{fn_name}: block_size must be odd (torchvision's drop_block2d pads block_size // 2 on each side, which "
            f"only gives back an H x W mask for odd sizes), got block_size = {block_size}."
        )
    if block_size > min(h, w):
        raise ValueError(
            f"{fn_name}: block_size must be at most the feature map's height and width ({h}, {w}), got "
            f"block_size = {block_size}."
        )
    if example_ids is not None:
        example_ids = jnp.asarray(example_ids)
        if not jnp.issubdtype(example_ids.dtype, jnp.integer):
            raise TypeError(f"example_ids must be an integer array, got example_ids.dtype = {example_ids.dtype}.")
        if example_ids.shape != (x.shape[0],):
            raise ValueError(f"example_ids must have shape (batch,) = ({x.shape[0]},), got example_ids.shape = "
                             f"{example_ids.shape}.")
    if deterministic:
        return x
    check_key(key, fn_name, has_deterministic=True)
    if is_concrete(rate) and float(rate) == 0.0:
        return x
    return _drop_block(key, x, rate, example_ids, block_size)


def _dilate(seeds: jax.Array, block_size: int, axis: int) -> jax.Array:
    """OR of ``block_size`` consecutive seeds along ``axis``, padded by ``block_size - 1`` on each side.

    The b x b window is separable: two 1-D passes. Each pass is b - 1 ORs of shifted slices for small blocks
    (6x faster than ``lax.reduce_window`` over the b x b window on XLA:CPU, 7x7 blocks), a 1-D reduce_window for
    large ones (compile size).
    """
    pad = [(0, 0)] * seeds.ndim
    pad[axis] = (block_size - 1, block_size - 1)
    if block_size > 8:
        window = [1] * seeds.ndim
        window[axis] = block_size
        return lax.reduce_window(seeds, False, lax.bitwise_or, tuple(window), (1,) * seeds.ndim, pad)
    padded = jnp.pad(seeds, pad)
    size = seeds.shape[axis] + block_size - 1
    out = lax.slice_in_dim(padded, 0, size, axis=axis)
    for shift in range(1, block_size):
        out = out | lax.slice_in_dim(padded, shift, shift + size, axis=axis)
    return out


@functools.partial(jax.jit, static_argnums=(4,))
def _drop_block(key: KeyArray, x: jax.Array, rate: Any, example_ids: Any, block_size: int) -> jax.Array:
    n, h, w, c = x.shape
    seeds_h, seeds_w = h - block_size + 1, w - block_size + 1
    rate = lax.stop_gradient(jnp.asarray(rate, jnp.float32))
    gamma = jnp.minimum(rate * (h * w) / (block_size**2 * seeds_h * seeds_w), 1.0)
    if example_ids is None:
        seeds = jax.random.bernoulli(key, gamma, (n, seeds_h, seeds_w, c))
    else:
        seeds = jax.vmap(lambda i: jax.random.bernoulli(jax.random.fold_in(key, i), gamma, (seeds_h, seeds_w, c)))(
            example_ids
        )
    # A seed at (i, j) drops rows i..i+b-1 and columns j..j+b-1: a max-pool over b x b windows of the seeds
    # padded by b - 1 on each side (torchvision pads b // 2, then max-pools with padding b // 2).
    dropped = _dilate(_dilate(seeds, block_size, 1), block_size, 2)
    keep = jnp.logical_not(dropped)
    scale = jnp.float32(keep.size) / (_EPS + jnp.sum(keep, dtype=jnp.float32))
    return jnp.where(keep, x * scale.astype(x.dtype), jnp.zeros((), x.dtype))
