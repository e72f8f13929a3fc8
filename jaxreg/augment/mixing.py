"""Batch mixing and label smoothing: :func:`mixup`, :func:`cutmix` and ``smooth_labels`` (optax's).

Both mixers pair each example with a partner from a random permutation of the batch and draw Beta weights
from the same key; the layout conventions are those of :mod:`jaxreg.augment`.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from jaxreg._typing import KeyArray
from jaxreg._validate import check_bool, check_in_range, check_key, check_scalar
from jaxreg.augment._common import _cast_back, _check_images, _check_labels, _compute_dtype

__all__ = ["mixup", "cutmix", "smooth_labels"]

smooth_labels = optax.smooth_labels
"""``optax.smooth_labels(labels, alpha)``: ``(1 - alpha) * labels + alpha / num_classes``, re-exported."""


# ------------------------------------------------------------------------------------------------ mixing


def _mixing_weights(key: KeyArray, alpha: Any, batch: int, per_example_lambda: bool) -> jax.Array:
    """``lam ~ Beta(alpha, alpha)``, shape ``(batch,)`` (one shared draw unless ``per_example_lambda``).

    Drawn outside the jitted mixing cores: ``jax.random.loggamma`` is itself jit-cached by shape, so its
    rejection loop (the slow part to compile) is compiled once per batch size and shared by mixup and
    cutmix in both modes (the shared mode uses the first example's draw).

    Beta(a, a) is ``G1 / (G1 + G2)`` for independent ``Gi ~ Gamma(a)``; drawing both log-gammas in one
    ``loggamma`` call and taking ``sigmoid(log G1 - log G2)`` is what ``jax.random.beta`` computes (in log
    space, so small ``alpha`` cannot give 0/0) with one rejection loop to compile instead of two.
    """
    log_gammas = jax.random.loggamma(key, alpha, (2, batch), jnp.float32)
    lam = jax.nn.sigmoid(log_gammas[0] - log_gammas[1])
    return lam if per_example_lambda else jnp.broadcast_to(lam[0], (batch,))


def _mix(a: jax.Array, b: jax.Array, weight: jax.Array) -> jax.Array:
    """``weight * a + (1 - weight) * b`` with ``weight`` of shape ``(batch,)``, computed in >= float32."""
    cdt = _compute_dtype(a.dtype)
    wt = weight.astype(cdt).reshape((-1,) + (1,) * (a.ndim - 1))
    return _cast_back(wt * a.astype(cdt) + (1 - wt) * b.astype(cdt), a.dtype)


def mixup(
    key: KeyArray, x: ArrayLike, y_onehot: ArrayLike, alpha: float, *, per_example_lambda: bool = False
) -> tuple[jax.Array, jax.Array]:
    """Mixup (Zhang et al., 2018): blend each example with a partner from a permutation of the batch.

    ``lam ~ Beta(alpha, alpha)``, ``perm`` a random permutation of the batch, and
    ``x_mixed = lam * x + (1 - lam) * x[perm]``, ``y_mixed = lam * y + (1 - lam) * y[perm]``. One ``lam``
    for the whole batch as in the paper's reference code, or one per example with
    ``per_example_lambda=True``. Mixing is computed in float32 (float64 for float64 inputs) and cast back.

    Args:
      key: a ``jax.random`` key.
      x: a batch of shape ``(batch, ...)``: images in any layout (NHWC, NCHW), feature vectors, sequences;
        examples are blended whole.
      y_onehot: floating one-hot or soft labels, shape ``(batch, classes)``.
      alpha: Beta concentration, > 0; may be traced.
      per_example_lambda: draw one ``lam`` per example instead of one per batch.

    Returns:
      ``(x_mixed, y_mixed)`` with the shapes and dtypes of ``x`` and ``y_onehot``; label rows still sum
      to 1 when the inputs' do.

    Raises:
      ValueError: if ``x`` has no batch axis, ``y_onehot`` is not ``(batch, classes)``, or ``alpha`` is not a
        scalar > 0.
      TypeError: if ``y_onehot`` is not floating or ``per_example_lambda`` is not a bool.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxreg as jr
      >>> x, y = jnp.ones((16, 8, 8, 3)), jax.nn.one_hot(jnp.arange(16), 16)
      >>> xm, ym = jr.mixup(jax.random.key(0), x, y, 0.2)
      >>> xm.shape, ym.shape, bool(jnp.allclose(ym.sum(axis=-1), 1.0))  # label rows still sum to 1
      ((16, 8, 8, 3), (16, 16), True)
    """
    check_key(key, "mixup")
    x = jnp.asarray(x)
    if x.ndim < 1:  # blends whole examples: any layout and rank works
        raise ValueError(f"mixup: x must be a batch (batch, ...), got a scalar x of shape {x.shape}.")
    y = _check_labels(y_onehot, x, "mixup")
    check_in_range("alpha", alpha, 0.0, None, low_inclusive=False)
    check_scalar("alpha", alpha, "mixup")
    check_bool("per_example_lambda", per_example_lambda, "mixup")
    k_perm, k_lam, _ = jax.random.split(key, 3)  # the same split as cutmix's: one compilation for both
    return _mixup(k_perm, x, y, _mixing_weights(k_lam, alpha, x.shape[0], per_example_lambda))


@jax.jit
def _mixup(k_perm: KeyArray, x: jax.Array, y: jax.Array, lam: jax.Array) -> tuple[jax.Array, jax.Array]:
    perm = jax.random.permutation(k_perm, x.shape[0])
    return _mix(x, x[perm], lam), _mix(y, y[perm], lam)


def cutmix(
    key: KeyArray, x: ArrayLike, y_onehot: ArrayLike, alpha: float, *, per_example_lambda: bool = False
) -> tuple[jax.Array, jax.Array]:
    """CutMix (Yun et al., 2019): paste a random box from a partner image; mix labels by the pasted area.

    ``lam ~ Beta(alpha, alpha)`` sets the box to ``floor(H * sqrt(1 - lam))`` by
    ``floor(W * sqrt(1 - lam))`` pixels, centered at a uniformly drawn pixel and clipped to the image, as in
    the reference code. Inside the box, pixels come from ``x[perm]`` (``perm`` a random permutation of the
    batch), elsewhere from ``x``.
    Labels are mixed by the *actual* (clipped) area: ``y_mixed = w * y + (1 - w) * y[perm]`` with
    ``w = 1 - box_area / (H * W)``. One box for the whole batch (reference code) or one per example with
    ``per_example_lambda=True``.

    Args:
      key: a ``jax.random`` key.
      x: images, shape ``(batch, height, width, channels)`` (NHWC), any dtype (pixels are copied, not
        blended).
      y_onehot: floating one-hot or soft labels, shape ``(batch, classes)``.
      alpha: Beta concentration, > 0; may be traced.
      per_example_lambda: draw a box size and position per example instead of one per batch.

    Returns:
      ``(x_mixed, y_mixed)`` with the shapes and dtypes of ``x`` and ``y_onehot``.

    Raises:
      ValueError: if ``x`` is not NHWC (or is obviously NCHW), ``y_onehot`` is not ``(batch, classes)``, or
        ``alpha`` is not a scalar > 0.
      TypeError: if ``y_onehot`` is not floating or ``per_example_lambda`` is not a bool.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxreg as jr
      >>> x, y = jnp.ones((16, 8, 8, 3)), jax.nn.one_hot(jnp.arange(16), 16)
      >>> xm, ym = jr.cutmix(jax.random.key(0), x, y, 1.0)
      >>> xm.dtype, bool(jnp.allclose(ym.sum(axis=-1), 1.0))  # label rows still sum to 1
      (dtype('float32'), True)
    """
    check_key(key, "cutmix")
    x = _check_images(x, "cutmix")
    y = _check_labels(y_onehot, x, "cutmix")
    check_in_range("alpha", alpha, 0.0, None, low_inclusive=False)
    check_scalar("alpha", alpha, "cutmix")
    check_bool("per_example_lambda", per_example_lambda, "cutmix")
    k_perm, k_lam, k_box = jax.random.split(key, 3)
    lam = _mixing_weights(k_lam, alpha, x.shape[0], per_example_lambda)
    return _cutmix(k_perm, k_box, x, y, lam, per_example_lambda)


@functools.partial(jax.jit, static_argnums=(5,))
def _cutmix(
    k_perm: KeyArray, k_box: KeyArray, x: jax.Array, y: jax.Array, lam: jax.Array, per_example_lambda: bool
) -> tuple[jax.Array, jax.Array]:
    batch, h, w, _ = x.shape
    k_row, k_col = jax.random.split(k_box)
    perm = jax.random.permutation(k_perm, batch)
    draws = (batch,) if per_example_lambda else ()
    cut_ratio = jnp.sqrt(1 - lam)
    cut_h = jnp.floor(h * cut_ratio).astype(jnp.int32)
    cut_w = jnp.floor(w * cut_ratio).astype(jnp.int32)
    center_r = jnp.broadcast_to(jax.random.randint(k_row, draws, 0, h), (batch,))
    center_c = jnp.broadcast_to(jax.random.randint(k_col, draws, 0, w), (batch,))
    top, left = center_r - cut_h // 2, center_c - cut_w // 2
    r0, r1 = jnp.clip(top, 0, h), jnp.clip(top + cut_h, 0, h)
    c0, c1 = jnp.clip(left, 0, w), jnp.clip(left + cut_w, 0, w)
    rows, cols = jnp.arange(h), jnp.arange(w)
    in_rows = (rows >= r0[:, None]) & (rows < r1[:, None])  # (batch, h)
    in_cols = (cols >= c0[:, None]) & (cols < c1[:, None])  # (batch, w)
    box = in_rows[:, :, None, None] & in_cols[:, None, :, None]
    x_mixed = jnp.where(box, x[perm], x)
    keep = 1 - ((r1 - r0) * (c1 - c0)).astype(jnp.float32) / (h * w)
    return x_mixed, _mix(y, y[perm], keep)
