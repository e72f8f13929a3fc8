"""The techniques of ``jaxreg compare``: their names, default strengths, and the ``--techniques`` parser.

A technique list such as ``none,l2=1e-3,dropout+batchnorm`` becomes ``(label, Recipe)`` pairs: a
:class:`Recipe` holds the regularizers of one run, neutral values meaning "off"; :mod:`jaxreg.experiments.compare`
turns it into a model, an optimizer chain and penalties.

The pieces of the less common techniques are built here (:mod:`jaxreg.experiments.technique_programs` builds
the rest): :func:`rotation_zoom` (the training images' random rotation and zoom), :func:`extra_penalties`
(group lasso, orthogonality) and :func:`extra_model_options` (batch renormalization, DropConnect; the MLP's
:class:`jaxreg.experiments.models.MLP` fields).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax

from jaxreg.augment import random_rotation, random_zoom
from jaxreg.experiments.arguments import UsageError
from jaxreg.penalties import group_lasso, orthogonal
from jaxreg.select import kernel_mask
from jaxreg.train import Penalty

__all__ = ["TECHNIQUES", "DEFAULT_STRENGTHS", "ROTATION_ZOOM_RANGE", "Recipe",
           "parse_techniques", "rotation_zoom", "dense_kernel_mask", "extra_penalties", "extra_model_options"]

TECHNIQUES: dict[str, str] = {
    "none": "no regularization",
    "l1": "L1 penalty on kernels (coefficient)",
    "l2": "L2 penalty on kernels (coefficient)",
    "elastic_net": "elastic-net penalty on kernels, l1_ratio 0.5 (alpha)",
    "proximal_l1": "proximal L1 step after the optimizer (strength)",
    "dropout": "dropout on hidden activations (rate)",
    "spatial_dropout": "dropout of whole channels (rate)",
    "gaussian_dropout": "multiplicative Gaussian dropout (rate)",
    "batchnorm": "batch normalization of hidden layers",
    "max_norm": "max-norm constraint on kernel units (max norm)",
    "weight_decay": "decoupled weight decay (rate)",
    "early_stopping": "early stopping on validation loss (patience)",
    "augment": "random 1-pixel shifts of training images",
    "mixup": "mixup of training examples and labels in the step (Beta alpha)",
    "cutmix": "cutmix of training images and labels in the step (Beta alpha)",
    "label_smoothing": "smoothed training labels (alpha)",
    "confidence": "confidence penalty, beta * mean negative entropy of the outputs (beta)",
    "rdrop": "R-Drop: two dropout passes, alpha * symmetric KL (alpha; needs dropout)",
    "ema": "evaluate the exponential moving average of the weights (decay)",
    "swa": "evaluate the equal-weight average of the weights of the last epochs (start fraction)",
    "sam": "sharpness-aware minimization, optax.contrib.sam (rho)",
    "activity_l2": "L2 penalty on the MLP's hidden activations, Keras activity_regularizer (coefficient)",
    "drop_path": "stochastic depth on the transformer's residual branches (rate)",
    "drop_block": "DropBlock of 3x3 squares of the CNN's feature maps (rate)",
    "random_erasing": "random erasing of one rectangle per training image in the step (probability)",
    "rand_augment": "RandAugment of the training images in the step, 2 ops (magnitude bin, 1..30)",
    "trivial_augment": "TrivialAugment (wide) of the training images in the step",
}

TECHNIQUES.update({
    "rotation_zoom": "random rotation (max degrees) and zoom (+-10%) of the training images in the step",
    "group_lasso": "group-lasso penalty on the dense kernels' output units, jr.group_lasso(axis=0) (coefficient)",
    "orthogonal": "Keras OrthogonalRegularizer on the dense kernels' output units (coefficient)",
    "batch_renorm": "batch renormalization of the MLP's hidden layers (r_max 3, d_max 5, momentum 0.9)",
    "drop_connect": "DropConnect on the MLP's hidden kernels, one mask per step (rate)",
    "augmix": "AugMix: two AugMix views of each training batch, Jensen-Shannon consistency (coefficient)",
})

ROTATION_ZOOM_RANGE = 0.1
"""The zoom range of ``rotation_zoom``: factors drawn from ``[0.9, 1.1]`` (Keras' ``zoom_range=0.1``)."""

DEFAULT_STRENGTHS: dict[str, float] = {
    "l1": 1e-3,
    "l2": 5e-3,
    "elastic_net": 5e-3,
    "proximal_l1": 1e-2,
    "dropout": 0.5,
    "spatial_dropout": 0.2,
    "gaussian_dropout": 0.5,
    "max_norm": 0.5,
    "weight_decay": 0.1,
    "early_stopping": 10,
    "mixup": 0.2,
    "cutmix": 1.0,
    "label_smoothing": 0.1,
    "confidence": 0.1,
    "rdrop": 1.0,
    "ema": 0.99,
    "swa": 0.75,
    "sam": 0.05,
    "activity_l2": 1e-4,
    "drop_path": 0.1,
    # Not tuned here: the papers' and torchvision's defaults (Ghiasi et al.'s keep probability 0.9,
    # RandomErasing's p=0.5, RandAugment's magnitude 9).
    "drop_block": 0.1,
    "random_erasing": 0.5,
    "rand_augment": 9,
    # Not tuned either: seed 004's rotation of +-15 degrees, Keras' OrthogonalRegularizer factor 0.01, Wan et
    # al.'s DropConnect rate 0.5, a group-lasso coefficient of the L1 default's order.
    "rotation_zoom": 15.0,
    "group_lasso": 1e-3,
    "orthogonal": 0.01,
    "drop_connect": 0.5,
    # AugMix's paper: lambda = 12 for the Jensen-Shannon term, two views per image.
    "augmix": 12.0,
}
"""Default strength of each technique, tuned on compare's default setup (see :mod:`jaxreg.experiments.compare`)."""


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The regularizers of one run; neutral values (0, False) mean "off". Hashable: it keys the build cache.

    Attributes:
      l1, l2, elastic_net: coefficients of the coupled penalties on the kernels.
      proximal_l1: strength of the proximal L1 step.
      dropout: rate of the hidden-unit dropout; ``dropout_kind`` is ``"dropout"`` or ``"gaussian"``.
      spatial_dropout: rate of the channel dropout.
      batch_norm: batch-normalize hidden layers.
      max_norm: largest kernel-unit norm (0: no constraint).
      weight_decay: decoupled decay rate.
      early_stopping: patience in epochs (0: off).
      augment: shift training images by up to one pixel.
      mixup, cutmix: Beta concentration of the in-step mixing (0: off).
      label_smoothing: smoothing of the training labels.
      confidence: coefficient of :func:`jaxreg.confidence_penalty`.
      rdrop: R-Drop's alpha (needs dropout).
      ema: EMA decay of the evaluated weights; swa: the fraction of the epochs after which SWA averages.
      sam: SAM's radius rho.
      activity_l2: coefficient of the L2 activity penalty (per example, as Keras) on the MLP's hidden layers.
      drop_path: stochastic-depth rate of the transformer's residual branches.
      drop_block: :func:`jaxreg.drop_block` rate after each convolution block of the CNN (3x3 blocks).
      random_erasing: :func:`jaxreg.random_erasing`'s probability per training image.
      rand_augment: :func:`jaxreg.rand_augment`'s magnitude bin (of 31; 2 ops per image, 0: off).
      trivial_augment: apply :func:`jaxreg.trivial_augment` to the training images.
      rotation_zoom: largest rotation in degrees of :func:`rotation_zoom` (0: off).
      group_lasso: coefficient of :func:`jaxreg.group_lasso` on the dense kernels' output units.
      augmix: coefficient of the Jensen-Shannon consistency between the clean batch and two
        :func:`jaxreg.augmix` views (the engine's ``consistency=``; 0: off).
      orthogonal: factor of :func:`jaxreg.orthogonal` on the dense kernels' output units.
      batch_renorm: batch-renormalize hidden layers (:func:`jaxreg.batch_renorm`; implies ``batch_norm``).
      drop_connect: :func:`jaxreg.drop_connect` rate of the MLP's hidden kernels.

    Example:
      >>> from jaxreg.experiments.techniques import parse_techniques
      >>> recipe = parse_techniques("dropout+batchnorm")[0][1]
      >>> recipe.dropout, recipe.batch_norm, recipe.l2
      (0.5, True, 0.0)
    """

    l1: float = 0.0
    l2: float = 0.0
    elastic_net: float = 0.0
    proximal_l1: float = 0.0
    dropout: float = 0.0
    dropout_kind: str = "dropout"
    spatial_dropout: float = 0.0
    batch_norm: bool = False
    max_norm: float = 0.0
    weight_decay: float = 0.0
    early_stopping: int = 0
    augment: bool = False
    mixup: float = 0.0
    cutmix: float = 0.0
    label_smoothing: float = 0.0
    confidence: float = 0.0
    rdrop: float = 0.0
    ema: float = 0.0
    swa: float = 0.0
    sam: float = 0.0
    activity_l2: float = 0.0
    drop_path: float = 0.0
    drop_block: float = 0.0
    random_erasing: float = 0.0
    rand_augment: int = 0
    trivial_augment: bool = False
    rotation_zoom: float = 0.0
    group_lasso: float = 0.0
    orthogonal: float = 0.0
    batch_renorm: bool = False
    drop_connect: float = 0.0
    augmix: float = 0.0

    def settings(self) -> dict[str, Any]:
        """The fields that differ from the neutral recipe (a run record's ``settings``)."""
        neutral = Recipe()
        return {k: v for k, v in dataclasses.asdict(self).items() if v != getattr(neutral, k)}


def _component(recipe: Recipe, name: str, value: float | None) -> Recipe:
    strength = DEFAULT_STRENGTHS.get(name) if value is None else value
    if name in ("batchnorm", "augment", "trivial_augment", "batch_renorm"):
        if value is not None:
            raise UsageError(f"technique {name!r} takes no value, got {name}={value:g}")
        if name == "batch_renorm":
            return dataclasses.replace(recipe, batch_norm=True, batch_renorm=True)
        return dataclasses.replace(recipe, **{"batch_norm" if name == "batchnorm" else name: True})
    if not math.isfinite(strength):
        raise UsageError(f"the value of {name!r} must be a finite number, got {strength:g}")
    if name == "rand_augment":
        # Bin 0 is nearly the identity (no shear, rotation, enhancement or solarization): 0 means off here.
        if strength != int(strength) or not 1 <= strength <= 30:
            raise UsageError(f"the magnitude of 'rand_augment' must be an integer bin in 1..30 (of 31), got "
                             f"{strength:g}")
        return dataclasses.replace(recipe, rand_augment=int(strength))
    if name == "rotation_zoom" and not 0.0 < strength <= 180.0:
        raise UsageError(f"the largest angle of 'rotation_zoom' must be in (0, 180] degrees, got {strength:g}")
    if name == "drop_connect" and not 0.0 < strength < 1.0:
        raise UsageError(f"the rate of 'drop_connect' must be in (0, 1), got {strength:g}")
    if name in ("dropout", "gaussian_dropout", "spatial_dropout", "drop_block"):
        if not 0.0 < strength < 1.0:
            raise UsageError(f"the rate of {name!r} must be in (0, 1), got {strength:g}")
        if name in ("spatial_dropout", "drop_block"):
            return dataclasses.replace(recipe, **{name: strength})
        kind = "dropout" if name == "dropout" else "gaussian"
        if recipe.dropout and recipe.dropout_kind != kind:
            raise UsageError("'dropout' and 'gaussian_dropout' cannot be combined (they use the same layers)")
        return dataclasses.replace(recipe, dropout=strength, dropout_kind=kind)
    if name == "early_stopping":
        if strength != int(strength) or strength < 1:
            raise UsageError(f"the patience of 'early_stopping' must be an integer >= 1, got {strength:g}")
        return dataclasses.replace(recipe, early_stopping=int(strength))
    if name in ("ema", "swa", "label_smoothing", "drop_path") and not 0.0 < strength < 1.0:
        raise UsageError(f"the value of {name!r} must be in (0, 1), got {strength:g}")
    if name == "random_erasing" and not 0.0 < strength <= 1.0:
        raise UsageError(f"the probability of 'random_erasing' must be in (0, 1], got {strength:g}")
    if name in ("mixup", "cutmix", "sam") and strength <= 0.0:
        raise UsageError(f"the value of {name!r} must be > 0, got {strength:g}")
    if strength < 0.0 or (name == "max_norm" and strength == 0.0):
        bound = "> 0" if name == "max_norm" else ">= 0"
        raise UsageError(f"the value of {name!r} must be {bound}, got {strength:g}")
    return dataclasses.replace(recipe, **{name: float(strength)})


def parse_techniques(text: str) -> tuple[tuple[str, Recipe], ...]:
    """Parse a ``--techniques`` list into ``(label, Recipe)`` pairs, in order.

    Items are comma-separated; an item joins techniques with ``+``, and each technique may carry a value
    after ``=`` (a coefficient, rate, max norm or patience) that replaces its :data:`DEFAULT_STRENGTHS` entry.

    Args:
      text: e.g. ``"none,l2,dropout+batchnorm,l1=1e-4"``.

    Returns:
      A tuple of ``(label, recipe)``; the label is the item without spaces.

    Raises:
      UsageError: an empty list or item, an unknown technique (the message lists the known ones), a bad
        value, ``none`` combined with something, a technique repeated within an item, an item listed twice.

    Example:
      >>> from jaxreg.experiments.techniques import parse_techniques
      >>> [(label, recipe.l2, recipe.dropout) for label, recipe in parse_techniques("none, l2=1e-3+dropout")]
      [('none', 0.0, 0.0), ('l2=1e-3+dropout', 0.001, 0.5)]
    """
    items = [item.replace(" ", "") for item in str(text).split(",")]
    if not any(items):
        raise UsageError("--techniques is empty; give a comma-separated list such as none,l2,dropout")
    known = TECHNIQUES
    out: list[tuple[str, Recipe]] = []
    for item in items:
        if not item:
            raise UsageError(f"--techniques has an empty item in {text!r}")
        parts = item.split("+")
        recipe = Recipe()
        seen: set[str] = set()
        for part in parts:
            name, equals, raw = part.partition("=")
            if name not in known:
                raise UsageError(f"unknown technique {name!r}; available techniques: {', '.join(known)}")
            if name in seen:
                raise UsageError(f"technique {name!r} appears twice in {item!r}")
            seen.add(name)
            if name == "none":
                if len(parts) > 1 or equals:
                    raise UsageError(f"'none' stands alone and takes no value, got {item!r}")
                continue
            value = None
            if equals:
                try:
                    value = float(raw)
                except ValueError:
                    raise UsageError(f"the value of {name!r} must be a number, got {raw!r}") from None
            recipe = _component(recipe, name, value)
        if recipe.rdrop and not recipe.dropout:
            raise UsageError(f"'rdrop' compares two dropout passes: combine it with dropout, e.g. rdrop+dropout=0.1 "
                             f"(got {item!r})")
        if recipe.mixup and recipe.cutmix:
            raise UsageError(f"'mixup' and 'cutmix' cannot be combined in one run (got {item!r})")
        if recipe.rand_augment and recipe.trivial_augment:
            raise UsageError(f"'rand_augment' and 'trivial_augment' are two policies for the same place: use one "
                             f"(got {item!r})")
        if "batchnorm" in seen and "batch_renorm" in seen:
            raise UsageError(f"'batchnorm' and 'batch_renorm' are two normalizations for the same layers: use one "
                             f"(got {item!r})")
        if any(label == item for label, _ in out):
            raise UsageError(f"technique {item!r} is listed twice")
        out.append((item, recipe))
    return tuple(out)


def rotation_zoom(key: jax.Array, x: jax.Array, max_degrees: float) -> jax.Array:
    """Rotate each image by up to ``max_degrees`` either way, then zoom it by a factor in ``[0.9, 1.1]``.

    The ``rotation_zoom`` technique: :func:`jaxreg.random_rotation` then :func:`jaxreg.random_zoom`
    (:data:`ROTATION_ZOOM_RANGE`), bilinear, uncovered pixels 0 (the digits' background).

    Args:
      key: a ``jax.random`` key.
      x: NHWC images.
      max_degrees: the largest rotation, in degrees.

    Returns:
      The augmented images, same shape and dtype.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxreg.experiments.techniques import rotation_zoom
      >>> x = jnp.zeros((2, 8, 8, 1)).at[:, 2:6, 3:5].set(1.0)
      >>> y = rotation_zoom(jax.random.key(0), x, 15.0)
      >>> y.shape, bool(jnp.any(y != x))
      ((2, 8, 8, 1), True)
    """
    rotate_key, zoom_key = jax.random.split(key)
    return random_zoom(zoom_key, random_rotation(rotate_key, x, max_degrees), ROTATION_ZOOM_RANGE)


def dense_kernel_mask(params: Any) -> Any:
    """``True`` for the 2-D kernels of :func:`jaxreg.kernel_mask` (dense layers), False elsewhere.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxreg.experiments.techniques import dense_kernel_mask
      >>> dense_kernel_mask({"Dense_0": {"kernel": jnp.ones((3, 2)), "bias": jnp.ones(2)}})
      {'Dense_0': {'bias': False, 'kernel': True}}
    """
    return jax.tree.map(lambda keep, leaf: bool(keep) and leaf.ndim == 2, kernel_mask(params), params)


def extra_penalties(recipe: Recipe) -> list[Penalty]:
    """The coupled penalties of the extra techniques: group lasso and orthogonality of the dense kernels.

    Both group a dense kernel ``(in, out)`` by output unit (a column): ``group_lasso`` is
    ``c * sum_units ||w_unit||_2`` (:func:`jaxreg.group_lasso` with ``axis=0``), which drives whole units to
    zero; ``orthogonal`` is Keras' ``OrthogonalRegularizer(factor=c, mode="columns")``
    (:func:`jaxreg.orthogonal`), the mean ``|cosine|`` between the units' weight vectors.

    Args:
      recipe: the run's :class:`Recipe`.

    Returns:
      A list of :class:`jaxreg.Penalty` (empty when neither is on).

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxreg.experiments.techniques import Recipe, extra_penalties
      >>> (penalty,) = extra_penalties(Recipe(group_lasso=0.1))
      >>> params = {"Dense_0": {"kernel": jnp.array([[3.0, 0.0], [4.0, 0.0]]), "bias": jnp.ones(2)}}
      >>> float(penalty.coefficient * penalty.fn(params, mask=penalty.mask))  # 0.1 * (5 + 0)
      0.5
    """
    out = []
    if recipe.group_lasso:
        out.append(Penalty(functools.partial(group_lasso, axis=0), recipe.group_lasso, dense_kernel_mask))
    if recipe.orthogonal:
        # The factor is Keras' and lives inside the function; the penalty's coefficient stays 1.
        out.append(Penalty(functools.partial(orthogonal, factor=recipe.orthogonal, mode="columns"), 1.0,
                           dense_kernel_mask))
    return out


def extra_model_options(recipe: Recipe) -> dict[str, Any]:
    """The :class:`jaxreg.experiments.models.MLP` fields of the extra techniques (batch renorm, DropConnect).

    Args:
      recipe: the run's :class:`Recipe`.

    Returns:
      ``{"batch_renorm": ..., "drop_connect_rate": ...}``, to add to the MLP's other options.

    Example:
      >>> from jaxreg.experiments.techniques import extra_model_options, parse_techniques
      >>> extra_model_options(parse_techniques("batch_renorm+drop_connect")[0][1])
      {'batch_renorm': True, 'drop_connect_rate': 0.5}
    """
    return {"batch_renorm": recipe.batch_renorm, "drop_connect_rate": recipe.drop_connect}
