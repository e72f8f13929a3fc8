"""jaxreg: functional regularization for JAX.

Penalties are pure functions of parameter pytrees, noise takes an explicit ``jax.random`` key, batch-norm
state is a returned pytree, and optimizer-side regularizers are ``optax.GradientTransformation``s, so all of
it composes inside one ``jax.jit``-compiled training step::

    import jaxreg as jr
    y = jr.dropout(key, x, 0.5)
    loss = task_loss + 1e-4 * jr.l2(params, mask=jr.kernel_mask)

The core needs jax, flax, optax and numpy only. Submodules load on first use: ``jr.flax``
(``jaxreg.flax.linen`` / ``jaxreg.flax.nnx``), ``jr.parallel``, ``jr.checkpoint`` (the ``checkpoint`` extra:
orbax), and the lab, ``jr.experiments`` with ``jr.data`` and ``jr.plots`` (the ``experiments`` extra).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time each name is imported on first use
    from jaxreg.augment import (
        adjust_brightness,
        adjust_contrast,
        adjust_saturation,
        adjust_sharpness,
        augmix,
        autocontrast,
        cutmix,
        equalize,
        flip,
        invert,
        mixup,
        posterize,
        rand_augment,
        random_crop,
        random_erasing,
        random_flip,
        random_rotation,
        random_translation,
        random_zoom,
        rotate,
        shear_x,
        shear_y,
        smooth_labels,
        solarize,
        translate,
        trivial_augment,
        zoom,
    )
    from jaxreg.conv import conv
    from jaxreg.cv import kfold_fit, kfold_indices, kfold_masks, sweep_fit
    from jaxreg.averaging import WeightAverages, update_bn
    from jaxreg.drop_block import drop_block
    from jaxreg.early_stopping import EarlyStopping, EarlyStoppingState
    from jaxreg.epoch import make_train_epoch, shuffle_key
    from jaxreg.loop import fit, fit_members, has_plateau
    from jaxreg.members import stack_members, unstack_members
    from jaxreg.metrics import (
        accuracy,
        generalization_gap,
        mc_predict,
        overfitting_score,
        sparsity,
        weight_norms,
    )
    from jaxreg.noise import (
        alpha_dropout,
        drop_connect,
        drop_path,
        dropout,
        gaussian_dropout,
        gaussian_noise,
        spatial_dropout,
    )
    from jaxreg.norm import (
        BatchNormState,
        batch_norm,
        batch_norm_init,
        batch_renorm,
        from_flax_batch_stats,
        to_flax_batch_stats,
    )
    from jaxreg.consistency import augmix_views, jensen_shannon, jsd_loss
    from jaxreg.output_penalties import confidence_penalty, input_gradient_penalty, jacobian_penalty, rdrop_loss
    from jaxreg.penalties import activity_l1, activity_l2, elastic_net, group_lasso, l1, l2, orthogonal
    from jaxreg.select import kernel_mask, path_mask
    from jaxreg.train import Penalty, TrainState, create_train_state, make_eval_step, make_train_step
    from jaxreg.transforms import (
        AddPenaltyState,
        ProximalState,
        add_penalty,
        max_norm,
        non_negative,
        proximal_elastic_net,
        proximal_group_lasso,
        proximal_l1,
        unit_norm,
        weight_decay,
    )

# Public names by module, imported on first use (PEP 562): `import jaxreg` itself imports nothing heavy, so
# the `jaxreg` command answers --help without importing jax (`jr.dropout` imports jax at first use).
_MODULE_NAMES: dict[str, tuple[str, ...]] = {
    "jaxreg.augment": (
        "adjust_brightness", "adjust_contrast", "adjust_saturation", "adjust_sharpness", "augmix", "autocontrast",
        "cutmix", "equalize", "flip", "invert", "mixup", "posterize", "rand_augment", "random_crop", "random_erasing",
        "random_flip", "random_rotation", "random_translation", "random_zoom", "rotate", "shear_x", "shear_y",
        "smooth_labels", "solarize", "translate", "trivial_augment", "zoom",
    ),
    "jaxreg.consistency": ("augmix_views", "jensen_shannon", "jsd_loss"),
    "jaxreg.conv": ("conv",),
    "jaxreg.cv": ("kfold_fit", "kfold_indices", "kfold_masks", "sweep_fit"),
    "jaxreg.averaging": ("WeightAverages", "update_bn"),
    "jaxreg.drop_block": ("drop_block",),
    "jaxreg.early_stopping": ("EarlyStopping", "EarlyStoppingState"),
    "jaxreg.epoch": ("make_train_epoch", "shuffle_key"),
    "jaxreg.loop": ("fit", "fit_members", "has_plateau"),
    "jaxreg.members": ("stack_members", "unstack_members"),
    "jaxreg.metrics": ("accuracy", "generalization_gap", "mc_predict", "overfitting_score", "sparsity", "weight_norms"),
    "jaxreg.noise": (
        "alpha_dropout", "drop_connect", "drop_path", "dropout", "gaussian_dropout", "gaussian_noise",
        "spatial_dropout",
    ),
    "jaxreg.norm": (
        "BatchNormState", "batch_norm", "batch_norm_init", "batch_renorm", "from_flax_batch_stats",
        "to_flax_batch_stats",
    ),
    "jaxreg.output_penalties": ("confidence_penalty", "input_gradient_penalty", "jacobian_penalty", "rdrop_loss"),
    "jaxreg.penalties": ("activity_l1", "activity_l2", "elastic_net", "group_lasso", "l1", "l2", "orthogonal"),
    "jaxreg.select": ("kernel_mask", "path_mask"),
    "jaxreg.train": ("Penalty", "TrainState", "create_train_state", "make_eval_step", "make_train_step"),
    "jaxreg.transforms": (
        "AddPenaltyState", "ProximalState", "add_penalty", "max_norm", "non_negative", "proximal_elastic_net",
        "proximal_group_lasso", "proximal_l1", "unit_norm", "weight_decay",
    ),
}

__version__ = "0.1.0"

_LAZY_NAMES = {name: module for module, names in _MODULE_NAMES.items() for name in names}
# The flax adapters' engine bridges.
_LAZY_NAMES.update({"linen_apply": "jaxreg.flax.linen", "nnx_apply": "jaxreg.flax.nnx"})
# Submodules loaded on first use: the adapters, and the floors with optional dependencies (orbax, the lab).
_LAZY_SUBMODULES = {
    "flax": "jaxreg.flax",
    "parallel": "jaxreg.parallel",
    "checkpoint": "jaxreg.checkpoint",
    "experiments": "jaxreg.experiments",
    "data": "jaxreg.experiments.data",
    "plots": "jaxreg.experiments.plots",
    "cli": "jaxreg.cli",
}

__all__ = [
    # select
    "kernel_mask",
    "path_mask",
    # penalties
    "l1",
    "l2",
    "elastic_net",
    "group_lasso",
    "orthogonal",
    "activity_l1",
    "activity_l2",
    # output and input-gradient penalties
    "confidence_penalty",
    "rdrop_loss",
    "input_gradient_penalty",
    "jacobian_penalty",
    # consistency across augmented views (AugMix's Jensen-Shannon loss)
    "jensen_shannon",
    "jsd_loss",
    "augmix_views",
    # noise
    "dropout",
    "spatial_dropout",
    "gaussian_dropout",
    "alpha_dropout",
    "gaussian_noise",
    "drop_path",
    "drop_connect",
    "drop_block",
    # normalization
    "BatchNormState",
    "batch_norm_init",
    "batch_norm",
    "batch_renorm",
    "to_flax_batch_stats",
    "from_flax_batch_stats",
    # convolution
    "conv",
    # augmentation
    "flip",
    "rotate",
    "zoom",
    "translate",
    "random_flip",
    "random_crop",
    "random_rotation",
    "random_zoom",
    "random_translation",
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
    "random_erasing",
    "rand_augment",
    "trivial_augment",
    "augmix",
    "mixup",
    "cutmix",
    "smooth_labels",
    # optax transforms
    "AddPenaltyState",
    "ProximalState",
    "add_penalty",
    "proximal_l1",
    "proximal_elastic_net",
    "proximal_group_lasso",
    "max_norm",
    "unit_norm",
    "non_negative",
    "weight_decay",
    # early stopping, metrics
    "EarlyStopping",
    "EarlyStoppingState",
    "accuracy",
    "generalization_gap",
    "overfitting_score",
    "weight_norms",
    "sparsity",
    "mc_predict",
    # the step
    "Penalty",
    "TrainState",
    "create_train_state",
    "WeightAverages",
    "update_bn",
    "make_train_step",
    "make_eval_step",
    "linen_apply",
    "nnx_apply",
    # the loop, many models
    "make_train_epoch",
    "fit",
    "fit_members",
    "stack_members",
    "unstack_members",
    "shuffle_key",
    "has_plateau",
    "kfold_indices",
    "kfold_masks",
    "kfold_fit",
    "sweep_fit",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY_NAMES:
        value = getattr(importlib.import_module(_LAZY_NAMES[name]), name)
        globals()[name] = value  # the next lookup is a plain attribute
        return value
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(_LAZY_SUBMODULES[name])
    if not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")  # jr.norm, jr.noise, ...: any submodule
    raise AttributeError(f"module 'jaxreg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_LAZY_SUBMODULES})


class _Namespace(types.ModuleType):
    """The package's module type: a public function named like its module keeps the name.

    The import system binds every imported submodule on its package (``jaxreg.conv = <module>``); ``jr.conv``
    and ``jr.drop_block`` must stay the functions, as the names ``__all__`` exports.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in _LAZY_NAMES:
            return  # the submodule stays reachable as sys.modules["jaxreg.NAME"] and by `from jaxreg.NAME import`
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Namespace

