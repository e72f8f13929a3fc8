"""AugMix (Hendrycks et al. 2020) of NHWC image batches, with ``torchvision.transforms.AugMix``'s ops and bins.

AugMix mixes ``width`` chains of 1 to 3 random ops (a Dirichlet mixture), then blends the mixture with the
original image (a Beta weight), so the augmented image stays close to the data while its statistics vary.
The ops are those of :mod:`jaxreg.augment.policies` (one code path for RandAugment, TrivialAugment and
AugMix), with AugMix's own magnitude bins, from torchvision's ``AugMix._augmentation_space`` (10 bins, the
magnitude drawn uniformly from the first ``severity`` of them):

=============  ===========================================  ======
op             magnitudes over 10 bins                      signed
=============  ===========================================  ======
ShearX/Y       ``linspace(0, 0.3)``                         yes
TranslateX     ``linspace(0, width / 3)``                   yes
TranslateY     ``linspace(0, height / 3)``                  yes
Rotate         ``linspace(0, 30)`` degrees                  yes
Posterize      ``4 - round(arange(10) / (9 / 4))`` bits     no
               (0 bits, bins 8-9: a black image)
Solarize       ``linspace(255, 0)`` (``uint8``)             no
AutoContrast,  --                                           no
Equalize
Brightness,    ``linspace(0, 0.9)``, factor ``1 + m``       yes
Color,         (only with ``all_ops=True``, torchvision's
Contrast,      default; the paper leaves them out, as they
Sharpness      overlap the ImageNet-C corruptions)
=============  ===========================================  ======
"""

from __future__ import annotations

import functools
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxreg._typing import KeyArray
from jaxreg._validate import check_bool, check_in_range, check_positive_int
from jaxreg.augment.policies import OPS, _apply_ops, _check_common

__all__ = ["augmix"]

_NUM_BINS = 10  # torchvision's AugMix._PARAMETER_MAX
_MAX_DEPTH = 3  # a random chain depth is uniform in 1..3
_AUGMIX_OPS = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Posterize", "Solarize", "AutoContrast",
               "Equalize")
_COLOR_OPS = ("Brightness", "Color", "Contrast", "Sharpness")


def augmix_table(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """AugMix's bins for every op of ``OPS``: ``(magnitudes, signed)`` of shapes ``(14, 10)`` and ``(14,)``.

    Solarize's bins are fractions of the brightest level (1 = 255 on ``uint8``).
    """
    linspace = lambda top: np.linspace(0.0, top, _NUM_BINS, dtype=np.float32)  # noqa: E731
    table = {
        "ShearX": linspace(0.3),
        "ShearY": linspace(0.3),
        "TranslateX": linspace(np.float32(width / 3.0)),
        "TranslateY": linspace(np.float32(height / 3.0)),
        "Rotate": linspace(30.0),
        "Posterize": 4 - np.round(np.arange(_NUM_BINS) / ((_NUM_BINS - 1) / 4)),
        "Solarize": np.linspace(1.0, 0.0, _NUM_BINS, dtype=np.float32),
    }
    for enhancer in _COLOR_OPS:
        table[enhancer] = linspace(0.9)
    magnitudes = np.stack([table.get(op, np.zeros(_NUM_BINS)) for op in OPS]).astype(np.float32)
    signed = np.array([op in table and op not in ("Posterize", "Solarize") for op in OPS])
    return magnitudes, signed


def augmix(
    key: KeyArray,
    x: ArrayLike,
    *,
    severity: int = 3,
    width: int = 3,
    depth: int = -1,
    alpha: float | jax.Array = 1.0,
    all_ops: bool = True,
    fill: float = 0.0,
    order: int = 0,
) -> jax.Array:
    """AugMix: a Beta blend of each image with a Dirichlet mixture of ``width`` random op chains, per image.

    For every image, independently (``torchvision.transforms.AugMix`` semantics): ``m ~ Beta(alpha, alpha)``
    and ``w ~ Dirichlet(alpha, ..., alpha)`` (``width`` weights); each of the ``width`` chains applies
    ``depth`` ops (``depth=-1``: a depth drawn uniformly in 1..3 per chain) to the original image, each op
    drawn uniformly from the module table with a magnitude from a bin drawn uniformly in ``[0, severity)``
    and a random sign for the signed ops; the output is ``m * x + (1 - m) * sum_i w_i * chain_i(x)``,
    computed in float32 and cast back (``uint8`` truncated, as torchvision's ``.to(uint8)``).

    The paper pairs AugMix with a Jensen-Shannon consistency loss between the predictions on the clean
    image and two AugMix views; this function makes one view (call it twice with two keys for two).

    Args:
      key: a ``jax.random`` key.
      x: images, shape ``(batch, height, width, channels)`` (NHWC) with 1 or 3 channels, ``uint8`` or
        floating in [0, 1].
      severity: the number of magnitude bins drawn from, an integer in 1..10 (static).
      width: chains per image, an integer >= 1 (static).
      depth: ops per chain, an integer >= 1, or -1 for a random depth in 1..3 (static).
      alpha: concentration of the Beta and Dirichlet draws, > 0; may be traced.
      all_ops: include the color ops (brightness, color, contrast, sharpness), as torchvision's default.
      fill: value of the pixels that geometric ops uncover (a concrete number; in [0, 255] for ``uint8``).
      order: resampling of the geometric ops: 0 nearest (torchvision's default), 1 bilinear.

    Returns:
      Augmented images, same shape and dtype.

    Raises:
      ValueError: if ``x`` is not NHWC or has other than 1 or 3 channels, ``severity`` is outside 1..10,
        ``width`` < 1, ``depth`` is neither -1 nor >= 1, ``alpha`` <= 0 or not finite, ``fill`` is outside
        [0, 255] for ``uint8``, or ``order`` is not 0 or 1.
      TypeError: if ``x`` is an integer type other than ``uint8``; ``severity``, ``width`` or ``depth`` not
        an integer; ``all_ops`` not a bool.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxreg as jr
      >>> x = jax.random.randint(jax.random.key(1), (4, 16, 16, 3), 0, 256).astype(jnp.uint8)
      >>> y = jr.augmix(jax.random.key(0), x)
      >>> y.shape, y.dtype, bool((y == jr.augmix(jax.random.key(0), x)).all())
      ((4, 16, 16, 3), dtype('uint8'), True)
    """
    fn_name = "augmix"
    x, fill_value, _ = _check_common(key, x, fill, order, _NUM_BINS, fn_name)
    severity = check_positive_int("severity", severity)
    if severity > _NUM_BINS:
        raise ValueError(f"{fn_name}: severity must be an integer in 1..{_NUM_BINS} (the magnitude bins drawn "
                         f"from), got severity = {severity}.")
    width = check_positive_int("width", width)
    depth_error = f"{fn_name}: depth must be an integer >= 1, or -1 for a random depth in 1..3, got depth = {depth!r}."
    if isinstance(depth, (bool, np.bool_)) or not isinstance(depth, (numbers.Integral, np.integer)):
        raise TypeError(depth_error)
    if depth != -1 and depth < 1:
        raise ValueError(depth_error)
    depth = int(depth)
    check_in_range("alpha", alpha, 0.0, None, low_inclusive=False, scalar=True)
    all_ops = check_bool("all_ops", all_ops, fn_name)
    return _augmix(key, x, alpha, severity, width, depth, all_ops, fill_value, order)


@functools.partial(jax.jit, static_argnums=(3, 4, 5, 6, 7, 8))
def _augmix(key: KeyArray, x: jax.Array, alpha: Any, severity: int, width: int, depth: int, all_ops: bool,
            fill: float, order: int) -> jax.Array:
    n, h, w, _ = x.shape
    table, signed = augmix_table(h, w)
    table, signed = jnp.asarray(table), jnp.asarray(signed)
    allowed = jnp.asarray([OPS.index(op) for op in _AUGMIX_OPS + (_COLOR_OPS if all_ops else ())])
    alpha = jnp.asarray(alpha, jnp.float32)
    k_blend, k_mixture, k_depth, k_chains = jax.random.split(key, 4)
    blend = jax.random.beta(k_blend, alpha, alpha, (n,))  # the original image's weight
    mixture = jax.random.dirichlet(k_mixture, jnp.full((width,), alpha), (n,))  # (n, width)
    steps = depth if depth > 0 else _MAX_DEPTH
    depths = jnp.full((n, width), depth) if depth > 0 else jax.random.randint(k_depth, (n, width), 1, _MAX_DEPTH + 1)

    # Every draw up front, from the keys the chains and their steps have always used: (width, steps, n) each.
    def step_draws(step_key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        k_op, k_bin, k_sign = jax.random.split(step_key, 3)
        return (allowed[jax.random.randint(k_op, (n,), 0, allowed.shape[0])],
                jax.random.randint(k_bin, (n,), 0, severity), jax.random.bernoulli(k_sign, 0.5, (n,)))

    chain_keys = jax.random.split(k_chains, width)
    ops, bins, flips = jax.vmap(jax.vmap(step_draws))(jax.vmap(lambda k: jax.random.split(k, steps))(chain_keys))
    ops = jnp.where(jnp.arange(steps)[None, :, None] < depths.T[:, None, :], ops, OPS.index("Identity"))
    values = table[ops, bins]
    magnitudes = jnp.where(flips & signed[ops], -values, values)

    # The width chains of all images advance together: one batch of width * n images per step.
    def step(images: jax.Array, inputs: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
        op, m = inputs
        out = _apply_ops(images, op, m, fill, order, probability=1.0 / allowed.shape[0])
        # Posterize to 0 bits (bins 8 and 9) keeps no bit: a black image, in torchvision and in the paper's
        # code (PIL's posterize); _apply_ops clips bits to 1..8, as jr.posterize requires.
        black = (op == OPS.index("Posterize")) & (m < 0.5)
        return jnp.where(black[:, None, None, None], jnp.zeros((), out.dtype), out), None

    flat = lambda a: jnp.swapaxes(a, 0, 1).reshape(steps, width * n)  # noqa: E731  (steps, chain-major images)
    chains = jnp.broadcast_to(x, (width, *x.shape)).reshape(width * n, *x.shape[1:])
    augmented, _ = jax.lax.scan(step, chains, (flat(ops), flat(magnitudes)))
    augmented = augmented.reshape(width, *x.shape)
    mixed = jnp.zeros(x.shape, jnp.float32)
    for c in range(width):  # the chains' order of summation, as before
        mixed = mixed + mixture[:, c, None, None, None] * augmented[c].astype(jnp.float32)
    blend = blend[:, None, None, None]
    out = blend * x.astype(jnp.float32) + (1.0 - blend) * mixed
    if x.dtype == jnp.uint8:
        return jnp.clip(jnp.floor(out), 0, 255).astype(jnp.uint8)
    return out.astype(x.dtype)
