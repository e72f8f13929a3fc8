"""Augmentation policies: RandAugment and TrivialAugment (wide) with torchvision's op lists and magnitude bins.

Both draw, for every image of an NHWC batch and from one key, an op from the same 14-op list as
``torchvision.transforms.RandAugment`` / ``TrivialAugmentWide``, a magnitude from the op's bins and a random
sign for the signed ops, then apply it with the ops of :mod:`jaxreg.augment.color` (PIL's semantics on
``uint8``) and :mod:`jaxreg.augment.affine` (nearest-neighbour resampling by default, as torchvision).
Each op runs on a bucket of the images that drew it, not on the whole batch (:func:`_apply_ops`; 4-6x faster
than computing every op for every image and keeping one); RandAugment's ``num_ops`` rounds are a ``lax.scan``
over one compiled round.

The op tables, ``(op, magnitudes over num_bins bins, signed)``, from torchvision's ``autoaugment.py``:

=============  ====================================  ====================================  ======
op             RandAugment                           TrivialAugmentWide                    signed
=============  ====================================  ====================================  ======
Identity       --                                    --                                    no
ShearX/Y       ``linspace(0, 0.3)``                  ``linspace(0, 0.99)``                 yes
TranslateX     ``linspace(0, 150 / 331 * width)``    ``linspace(0, 32)``                   yes
TranslateY     ``linspace(0, 150 / 331 * height)``   ``linspace(0, 32)``                   yes
Rotate         ``linspace(0, 30)`` degrees           ``linspace(0, 135)``                  yes
Brightness,    ``linspace(0, 0.9)``, factor ``1+m``  ``linspace(0, 0.99)``                 yes
Color,
Contrast,
Sharpness
Posterize      ``8 - round(arange(n) / ((n-1)/4))``  ``8 - round(arange(n) / ((n-1)/6))``  no
Solarize       ``linspace(255, 0)`` (``uint8``)      the same                              no
AutoContrast   --                                    --                                    no
Equalize       --                                    --                                    no
=============  ====================================  ====================================  ======

Translations are truncated to whole pixels (torchvision's ``int(magnitude)``); shears are about the top-left
corner (:func:`jaxreg.shear_x`); floating images use the solarize threshold as a fraction of 1 (torchvision
v2's ``bound * magnitude``).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxreg._typing import KeyArray
from jaxreg._validate import check_choice, check_in_range, check_key, check_positive_int
from jaxreg.augment import affine, color
from jaxreg.augment._common import _check_fill, _check_images, _check_pixel_dtype, _pixel_max

__all__ = ["rand_augment", "trivial_augment"]

OPS = (
    "Identity",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
    "Posterize",
    "Solarize",
    "AutoContrast",
    "Equalize",
)
_ORDERS = (0, 1)


def magnitude_table(policy: str, num_bins: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The bins of every op of ``OPS``: ``(magnitudes, signed)`` of shapes ``(14, num_bins)`` and ``(14,)``.

    Ops without a magnitude have zeros. Solarize's bins are fractions of the brightest level (1 = 255 on
    ``uint8``), torchvision's ``linspace(255, 0)`` divided by 255.
    """
    wide = policy == "trivial_augment"
    linspace = lambda top: np.linspace(0.0, top, num_bins, dtype=np.float32)  # noqa: E731
    posterize_span = 6 if wide else 4
    table = {
        "ShearX": linspace(0.99 if wide else 0.3),
        "ShearY": linspace(0.99 if wide else 0.3),
        "TranslateX": linspace(32.0 if wide else np.float32(150.0 / 331.0 * width)),
        "TranslateY": linspace(32.0 if wide else np.float32(150.0 / 331.0 * height)),
        "Rotate": linspace(135.0 if wide else 30.0),
        "Posterize": 8 - np.round(np.arange(num_bins) / ((num_bins - 1) / posterize_span)),
        "Solarize": np.linspace(1.0, 0.0, num_bins, dtype=np.float32),
    }
    for enhancer in ("Brightness", "Color", "Contrast", "Sharpness"):
        table[enhancer] = linspace(0.99 if wide else 0.9)
    magnitudes = np.stack([table.get(op, np.zeros(num_bins)) for op in OPS]).astype(np.float32)
    signed = np.array([op in table and op not in ("Posterize", "Solarize") for op in OPS])
    return magnitudes, signed


def _check_common(
    key: Any, x: ArrayLike, fill: Any, order: int, num_bins: Any, fn_name: str
) -> tuple[jax.Array, float, int]:
    check_key(key, fn_name)
    x = _check_images(x, fn_name)
    _check_pixel_dtype(x, fn_name)
    if x.shape[-1] not in (1, 3):
        raise ValueError(
            f"{fn_name}: x must have 1 (gray) or 3 (RGB) channels (the Color and Contrast ops use the luma image), "
            f"got x.shape = {x.shape}."
        )
    fill_value = _check_fill(fill, x)
    if x.dtype == jnp.uint8:
        check_in_range("fill", fill_value, 0.0, 255.0)
    check_choice("order", order, _ORDERS)
    num_bins = check_positive_int("num_magnitude_bins", num_bins, minimum=2)
    return x, fill_value, num_bins


def _op_fns(fill: float, order: int) -> tuple[Any, ...]:
    """``OPS[1:]`` as functions of ``(images, signed magnitudes)``, each image with its own magnitude."""

    def shift(m: jax.Array, axis: int) -> jax.Array:
        zeros = jnp.zeros_like(m)
        return jnp.stack([zeros, jnp.trunc(m)] if axis == 1 else [jnp.trunc(m), zeros], -1)

    return (
        lambda x, m: affine._shear_jit(x, m, fill, order, "x"),
        lambda x, m: affine._shear_jit(x, m, fill, order, "y"),
        lambda x, m: affine._translate(x, shift(m, 1), fill, order),
        lambda x, m: affine._translate(x, shift(m, 0), fill, order),
        lambda x, m: affine._rotate(x, m, fill, order),
        lambda x, m: color._adjust_brightness(x, 1 + m),
        lambda x, m: color._adjust_saturation(x, 1 + m),
        lambda x, m: color._adjust_contrast(x, 1 + m),
        lambda x, m: color._adjust_sharpness(x, 1 + m),
        lambda x, m: color._posterize(x, jnp.clip(m, 1, 8).astype(jnp.int32)),
        lambda x, m: color._solarize(x, m * _pixel_max(x.dtype)),
        lambda x, m: color._autocontrast(x),
        lambda x, m: color._equalize(x),
    )


def bucket_capacity(batch: int, probability: float) -> int:
    """Images per op bucket for a batch whose images each draw one op, none with more than ``probability``.

    The expected count plus 6 standard deviations (plus 2), at most ``batch``: a bucket overflows with
    probability below ~1e-8 per op, and then takes a second round (:func:`_apply_ops`), so the capacity only
    sets the speed.
    """
    mean = batch * probability
    return min(batch, int(np.ceil(mean + 6.0 * np.sqrt(mean * (1.0 - probability)) + 2.0)))


def _apply_ops(
    x: jax.Array,
    op: jax.Array,
    magnitude: jax.Array,
    fill: float,
    order: int,
    probability: float = 1 / len(OPS),
    capacity: int | None = None,
) -> jax.Array:
    """Apply ``OPS[op[i]]`` with signed magnitude ``magnitude[i]`` to image ``i``.

    Each op runs on a bucket of the images that drew it (``capacity`` of them, by default
    ``bucket_capacity(n, probability)``, padded with zeros) and every image is gathered back from its op's
    bucket: about ``13 * capacity`` image-ops instead of the ``13 * n`` of computing every op for every image
    and keeping one (what ``lax.switch`` becomes under ``vmap``). A bucket that overflows takes further rounds
    (a while loop, almost always of one round). Batches too small for buckets of at most half their size take
    the plain path. Each image's result is the op's on that image alone: the same bits as the op on the whole
    batch for ``uint8``, within one rounding for floats (a mean's summation order;
    ``tests/test_augment_policies.py``).
    """
    n = x.shape[0]
    fns = _op_fns(fill, order)
    capacity = bucket_capacity(n, probability) if capacity is None else capacity
    if 2 * capacity > n:  # small batches: buckets would save less than half the work, and compile slower
        return jnp.stack([x] + [fn(x, magnitude) for fn in fns])[op, jnp.arange(n)]
    rank = jnp.cumsum(op[:, None] == jnp.arange(len(OPS)), axis=0)[jnp.arange(n), op] - 1  # place among its op's
    round_of = jnp.where(op == 0, -1, rank // capacity)  # Identity has no bucket
    slot = (jnp.clip(op - 1, 0) * capacity + rank % capacity)

    def one_round(carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        r, out = carry
        results = []
        for j, fn in enumerate(fns, start=1):
            members = jnp.nonzero((op == j) & (round_of == r), size=capacity, fill_value=n)[0]  # n: padding
            results.append(fn(x.at[members].get(mode="fill", fill_value=0),
                              magnitude.at[members].get(mode="fill", fill_value=0)))
        stacked = jnp.concatenate(results)  # (13 * capacity, h, w, c): op j's bucket at (j - 1) * capacity
        return r + 1, jnp.where((round_of == r)[:, None, None, None], stacked[slot], out)

    rounds = jnp.max(round_of) + 1
    _, out = jax.lax.while_loop(lambda carry: carry[0] < rounds, one_round, (jnp.zeros((), rounds.dtype), x))
    return out


def _signed(key: jax.Array, values: jax.Array, signed: jax.Array, op: jax.Array) -> jax.Array:
    """torchvision's ``if signed and torch.randint(2, (1,)): magnitude *= -1``, per image."""
    flip = jax.random.bernoulli(key, 0.5, values.shape) & signed[op]
    return jnp.where(flip, -values, values)


def rand_augment(
    key: KeyArray,
    x: ArrayLike,
    *,
    num_ops: int = 2,
    magnitude: int | jax.Array = 9,
    num_magnitude_bins: int = 31,
    fill: float = 0.0,
    order: int = 0,
) -> jax.Array:
    """RandAugment (Cubuk et al. 2020) with ``torchvision.transforms.RandAugment``'s ops and bins, per image.

    Each image, independently, goes through ``num_ops`` rounds; each round draws one of the 14 ops of the
    module table uniformly, takes its magnitude from bin ``magnitude`` of ``num_magnitude_bins``, flips its
    sign with probability 1/2 for the signed ops, and applies it. The same key gives the same bits.

    Args:
      key: a ``jax.random`` key.
      x: images, shape ``(batch, height, width, channels)`` (NHWC) with 1 or 3 channels, ``uint8`` or
        floating in [0, 1].
      num_ops: rounds per image, an integer >= 0 (static).
      magnitude: the bin index, an integer in ``[0, num_magnitude_bins)``; may be traced.
      num_magnitude_bins: the number of bins, an integer >= 2 (static).
      fill: value of the pixels that geometric ops uncover (a concrete number; in [0, 255] for ``uint8``).
      order: resampling of the geometric ops: 0 nearest (torchvision's default), 1 bilinear.

    Returns:
      Augmented images, same shape and dtype.

    Raises:
      ValueError: if ``x`` is not NHWC or has other than 1 or 3 channels, ``magnitude`` is outside the bins,
        ``num_ops`` < 0, ``num_magnitude_bins`` < 2, ``fill`` is outside [0, 255] for ``uint8``, or ``order``
        is not 0 or 1.
      TypeError: if ``x`` is an integer type other than ``uint8``, or ``num_ops``, ``magnitude`` or
        ``num_magnitude_bins`` is not an integer.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxreg as jr
      >>> x = jax.random.randint(jax.random.key(1), (4, 16, 16, 3), 0, 256).astype(jnp.uint8)
      >>> y = jr.rand_augment(jax.random.key(0), x, num_ops=2, magnitude=9)
      >>> y.shape, y.dtype, bool((y == jr.rand_augment(jax.random.key(0), x)).all())
      ((4, 16, 16, 3), dtype('uint8'), True)
    """
    x, fill_value, num_bins = _check_common(key, x, fill, order, num_magnitude_bins, "rand_augment")
    num_ops = check_positive_int("num_ops", num_ops, minimum=0)
    if not isinstance(magnitude, jax.core.Tracer):
        if getattr(magnitude, "dtype", None) is not None and np.ndim(magnitude) == 0 and jnp.issubdtype(
            magnitude.dtype, jnp.integer
        ):
            magnitude = int(magnitude)
        magnitude = check_positive_int("magnitude", magnitude, minimum=0)
        if magnitude >= num_bins:
            raise ValueError(
                f"rand_augment: magnitude must be a bin index in [0, num_magnitude_bins) = [0, {num_bins}), got "
                f"magnitude = {magnitude}."
            )
    elif np.ndim(magnitude) != 0 or not jnp.issubdtype(magnitude.dtype, jnp.integer):
        raise TypeError(f"rand_augment: magnitude must be an integer scalar, got a traced {magnitude.dtype} of "
                        f"shape {np.shape(magnitude)}.")
    if num_ops == 0:
        return x
    return _rand_augment(key, x, magnitude, num_ops, num_bins, fill_value, order)


@functools.partial(jax.jit, static_argnums=(3, 4, 5, 6))
def _rand_augment(
    key: KeyArray, x: jax.Array, magnitude: Any, num_ops: int, num_bins: int, fill: float, order: int
) -> jax.Array:
    n, h, w, _ = x.shape
    table, signed = magnitude_table("rand_augment", num_bins, h, w)
    values = jnp.asarray(table)[:, jnp.clip(magnitude, 0, num_bins - 1)]  # (14,): one magnitude per op

    def one_round(images: jax.Array, round_key: jax.Array) -> tuple[jax.Array, None]:
        k_op, k_sign = jax.random.split(round_key)
        op = jax.random.randint(k_op, (n,), 0, len(OPS))
        m = _signed(k_sign, values[op], jnp.asarray(signed), op)
        return _apply_ops(images, op, m, fill, order), None

    out, _ = jax.lax.scan(one_round, x, jax.random.split(key, num_ops))
    return out


def trivial_augment(
    key: KeyArray,
    x: ArrayLike,
    *,
    num_magnitude_bins: int = 31,
    fill: float = 0.0,
    order: int = 0,
) -> jax.Array:
    """TrivialAugment (Müller & Hutter 2021), ``torchvision.transforms.TrivialAugmentWide``'s ops, per image.

    Each image, independently, draws one of the 14 ops of the module table uniformly, a bin uniformly among
    ``num_magnitude_bins`` (the wide ranges), a sign with probability 1/2 for the signed ops, and applies it.
    No hyperparameter to tune: that is the method's point.

    Args:
      key: a ``jax.random`` key.
      x: images, shape ``(batch, height, width, channels)`` (NHWC) with 1 or 3 channels, ``uint8`` or
        floating in [0, 1].
      num_magnitude_bins: the number of bins, an integer >= 2 (static).
      fill: value of the pixels that geometric ops uncover (a concrete number; in [0, 255] for ``uint8``).
      order: resampling of the geometric ops: 0 nearest (torchvision's default), 1 bilinear.

    Returns:
      Augmented images, same shape and dtype.

    Raises:
      ValueError: if ``x`` is not NHWC or has other than 1 or 3 channels, ``num_magnitude_bins`` < 2,
        ``fill`` is outside [0, 255] for ``uint8``, or ``order`` is not 0 or 1.
      TypeError: if ``x`` is an integer type other than ``uint8``, or ``num_magnitude_bins`` is not an
        integer.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxreg as jr
      >>> x = jax.random.uniform(jax.random.key(1), (4, 16, 16, 3))
      >>> y = jr.trivial_augment(jax.random.key(0), x)
      >>> y.shape, y.dtype, bool(((y >= 0) & (y <= 1)).all())
      ((4, 16, 16, 3), dtype('float32'), True)
    """
    x, fill_value, num_bins = _check_common(key, x, fill, order, num_magnitude_bins, "trivial_augment")
    return _trivial_augment(key, x, num_bins, fill_value, order)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _trivial_augment(key: KeyArray, x: jax.Array, num_bins: int, fill: float, order: int) -> jax.Array:
    n, h, w, _ = x.shape
    table, signed = magnitude_table("trivial_augment", num_bins, h, w)
    k_op, k_bin, k_sign = jax.random.split(key, 3)
    op = jax.random.randint(k_op, (n,), 0, len(OPS))
    bins = jax.random.randint(k_bin, (n,), 0, num_bins)
    m = _signed(k_sign, jnp.asarray(table)[op, bins], jnp.asarray(signed), op)
    return _apply_ops(x, op, m, fill, order)

