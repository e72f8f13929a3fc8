"""Keyed, batched image augmentations (floor 2): flips, crops, affine resampling, color ops, policies, mixing.

Every function takes a batch of images ``x`` in NHWC layout ``(batch, height, width, channels)``, returns
an array of the same dtype, and is pure and ``jax.jit``-able. The random ones take a ``jax.random`` key as
their first argument and one key drives the whole batch: flips, crops, rotations, zooms and translations
split it once per example inside, so every example gets its own transform; mixup and cutmix draw a batch
permutation and Beta weights from it. The same key always gives the same bits. Hyperparameters such as
``prob``, ``max_degrees`` or ``alpha`` may be traced (swept under ``jax.vmap``); shapes (``size``,
``padding``) and ``fill_value``/``order`` are static Python values.

Conventions, stated once for all functions:

* **Rows and columns.** Height is axis 1 (row 0 at the top), width is axis 2. A *horizontal* flip reverses
  the width axis (left-right mirror); a *vertical* flip reverses the height axis.
* **Rotation.** Positive degrees rotate the content counter-clockwise as the image is displayed (row 0 at
  the top), about the pixel-grid center ``((H - 1) / 2, (W - 1) / 2)``. So ``rotate(x, 90)`` equals
  ``jnp.rot90(x, k=1, axes=(1, 2))`` on square images; this is Keras' ``RandomRotation`` convention (a
  positive factor rotates counter-clockwise) and ``scipy.ndimage.rotate``'s (the tests compare with it).
* **Zoom.** A factor ``s > 1`` magnifies the content (zooms in: the output shows the central ``1/s`` of the
  input), ``s < 1`` shrinks it (zooms out, borders filled with ``fill_value``), always isotropic about the
  center. This is torchvision ``RandomAffine(scale=...)``'s convention; Keras' ``RandomZoom(f)`` with a
  fixed factor ``f`` corresponds to ``s = 1 / (1 + f)`` (a positive Keras factor zooms out). A float
  ``zoom_range=z`` means ``(1 - z, 1 + z)`` as in Keras' ``ImageDataGenerator``.
* **Translation.** A shift ``(dy, dx)`` in pixels moves the content down and right (Keras'
  ``RandomTranslation`` sign convention). Fractions are of the image height and width.
* **Resampling.** Rotation, zoom and translation build the inverse affine map of every output pixel about
  the image center and sample the input with ``jax.scipy.ndimage.map_coordinates`` (``order=0`` nearest,
  ``order=1`` bilinear), per channel and per example under ``jax.vmap``. Samples that fall outside the
  image blend towards ``fill_value`` (JAX's ``'constant'`` mode, which is SciPy's ``'grid-constant'``).
  Low-precision floats and 8/16-bit integer images (uint8 above all) are resampled in float32 and cast
  back (integers are rounded and clipped to their dtype's range); wider integers and bool are a TypeError
  naming ``x``. Every image op takes NHWC batches and refuses an obvious NCHW one (a channel-sized axis 1).

Label smoothing is optax's: ``smooth_labels`` here *is* ``optax.smooth_labels``, re-exported.

The functions live in one module per idea and are re-exported here, so ``jaxreg.augment.random_crop`` and
``jaxreg.random_crop`` are the same function: ``jaxreg.augment.flips_crops`` (exact flips and crops),
``jaxreg.augment.affine`` (rotation, zoom, translation and shear by resampling), ``jaxreg.augment.color``
(point and color ops with PIL's semantics on uint8: invert, solarize, posterize, equalize, autocontrast,
brightness, contrast, saturation, sharpness), ``jaxreg.augment.erasing`` (random erasing),
``jaxreg.augment.policies`` (RandAugment and TrivialAugment with torchvision's op tables),
``jaxreg.augment.augmix`` (AugMix, on the same ops) and
``jaxreg.augment.mixing`` (mixup, cutmix and label smoothing).
"""

from __future__ import annotations

from jaxreg.augment.affine import (
    random_rotation,
    random_translation,
    random_zoom,
    rotate,
    shear_x,
    shear_y,
    translate,
    zoom,
)
from jaxreg.augment.color import (
    adjust_brightness,
    adjust_contrast,
    adjust_saturation,
    adjust_sharpness,
    autocontrast,
    equalize,
    invert,
    posterize,
    solarize,
)
from jaxreg.augment.augmix import augmix
from jaxreg.augment.erasing import random_erasing
from jaxreg.augment.flips_crops import flip, random_crop, random_flip
from jaxreg.augment.mixing import cutmix, mixup, smooth_labels
from jaxreg.augment.policies import rand_augment, trivial_augment

__all__ = [
    "flip",
    "rotate",
    "zoom",
    "translate",
    "shear_x",
    "shear_y",
    "invert",
    "solarize",
    "posterize",
    "equalize",
    "autocontrast",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_saturation",
    "adjust_sharpness",
    "random_flip",
    "random_crop",
    "random_rotation",
    "random_zoom",
    "random_translation",
    "random_erasing",
    "rand_augment",
    "trivial_augment",
    "augmix",
    "mixup",
    "cutmix",
    "smooth_labels",
]
