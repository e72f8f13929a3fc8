"""The programs of ``jaxreg compare``'s techniques: a :class:`Recipe` becomes a model, an optimizer chain,
penalties and in-step hooks, compiled once (the lab's stories that train techniques build them here too).

* the model's options (:func:`jaxreg.experiments.models.build_model`): dropout kinds and rates, batch norm or
  renorm, DropConnect, DropBlock, stochastic depth;
* the optax chain: SGD with momentum or Adam, decoupled weight decay between the scaling and the learning
  rate, then the projections (proximal L1, max-norm), optionally inside SAM;
* the coupled penalties (L1, L2, elastic net, group lasso, orthogonality) and the engine's hooks (image ops,
  then mixup/cutmix/label smoothing; confidence, R-Drop, activity penalties);
* one traced program for every technique made of penalties, dropout, batch norm and early stopping on the
  MLP (:func:`traced`), so a table of them compiles once.

:func:`check_combination` refuses what a model or dataset cannot use before anything is built.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxreg.consistency import augmix_views
from jaxreg.augment import cutmix, mixup, rand_augment, random_crop, random_erasing, trivial_augment
from jaxreg.experiments import data as _data
from jaxreg.experiments import models as _models
from jaxreg.experiments import programs
from jaxreg.experiments.arguments import UsageError
from jaxreg.flax.linen import linen_apply
from jaxreg.experiments.techniques import Recipe, extra_model_options, extra_penalties, rotation_zoom
from jaxreg.output_penalties import confidence_penalty
from jaxreg.penalties import activity_l2, elastic_net, l1, l2
from jaxreg.select import kernel_mask
from jaxreg.train import Penalty
from jaxreg.transforms import max_norm, proximal_l1, weight_decay

__all__ = ["DROP_BLOCK_SIZE", "check_combination", "traced", "build_program"]

DROP_BLOCK_SIZE = 3
"""DropBlock's square side: small enough for 8x8 digits."""


def check_combination(label: str, recipe: Recipe, model: str, info: _data.DatasetInfo) -> None:
    """Refuse a technique the model or the data cannot use, with a one-line :class:`UsageError` naming both.

    Args:
      label: the ``--techniques`` item, for the message.
      recipe: its :class:`Recipe`.
      model: ``"mlp"``, ``"cnn"`` or ``"transformer"``.
      info: the dataset's :class:`jaxreg.experiments.data.DatasetInfo`.

    Raises:
      UsageError: e.g. ``drop_block`` on the MLP, ``augment`` on token ids, ``rotation_zoom`` without images.

    Example:
      >>> from jaxreg.experiments import data, technique_programs
      >>> from jaxreg.experiments.techniques import parse_techniques
      >>> (label, recipe), = parse_techniques("drop_block")
      >>> try:
      ...     technique_programs.check_combination(label, recipe, "mlp", data.info("digits"))
      ... except ValueError as err:
      ...     print(str(err)[:52])
      technique 'drop_block': drop_block drops squares of
    """
    if recipe.spatial_dropout and model == "mlp":
        raise UsageError(f"technique {label!r}: spatial_dropout needs feature maps; use --model cnn or transformer")
    if recipe.batch_norm and model == "transformer":
        raise UsageError(f"technique {label!r}: batchnorm is not used in the transformer (it has LayerNorm)")
    if recipe.augment and len(info.input_shape) != 3:
        raise UsageError(f"technique {label!r}: augment needs images, {info.name!r} has inputs {info.input_shape}")
    if recipe.cutmix and len(info.input_shape) != 3:
        raise UsageError(f"technique {label!r}: cutmix needs images, {info.name!r} has inputs {info.input_shape}")
    if recipe.mixup and info.vocab_size is not None:
        raise UsageError(f"technique {label!r}: mixup blends inputs, but {info.name!r} has token ids")
    image_ops = [name for name in ("random_erasing", "rand_augment", "trivial_augment", "augmix")
                 if getattr(recipe, name)]
    if image_ops and len(info.input_shape) != 3:
        raise UsageError(f"technique {label!r}: {image_ops[0]} needs images, {info.name!r} has inputs "
                         f"{info.input_shape}")
    if recipe.augmix and (recipe.rdrop or recipe.activity_l2):
        raise UsageError(f"technique {label!r}: augmix's views share the forward pass; it cannot be combined with "
                         "rdrop or activity_l2")
    if (recipe.rand_augment or recipe.trivial_augment or recipe.augmix) and info.input_shape[-1] not in (1, 3):
        raise UsageError(f"technique {label!r}: the policies' color ops need 1 or 3 channels, {info.name!r} has "
                         f"{info.input_shape[-1]}")
    if recipe.activity_l2 and model != "mlp":
        raise UsageError(f"technique {label!r}: activity_l2 penalizes the MLP's hidden activations; use --model mlp")
    if recipe.drop_path and model != "transformer":
        raise UsageError(f"technique {label!r}: drop_path drops residual branches; only --model transformer has them")
    if recipe.drop_block and model != "cnn":
        raise UsageError(f"technique {label!r}: drop_block drops squares of convolutional feature maps; the "
                         f"{model} model has none, use --model cnn")
    if (recipe.batch_renorm or recipe.drop_connect) and model != "mlp":
        which = "batch_renorm" if recipe.batch_renorm else "drop_connect"
        raise UsageError(f"technique {label!r}: {which} is built into the MLP's hidden layers; use --model mlp")
    if (recipe.group_lasso or recipe.orthogonal) and model == "cnn":
        which = "group_lasso" if recipe.group_lasso else "orthogonal"
        raise UsageError(f"technique {label!r}: {which} groups dense kernels by unit; use --model mlp or transformer")
    if recipe.rotation_zoom and len(info.input_shape) != 3:
        raise UsageError(f"technique {label!r}: rotation_zoom needs images, {info.name!r} has inputs "
                         f"{info.input_shape}")
    if recipe.drop_block and min(info.input_shape[:2]) < DROP_BLOCK_SIZE:
        raise UsageError(f"technique {label!r}: drop_block's {DROP_BLOCK_SIZE}x{DROP_BLOCK_SIZE} blocks do not "
                         f"fit {info.name!r}'s {info.input_shape[0]}x{info.input_shape[1]} feature maps")



def _model_options(recipe: Recipe, model: str, hidden_sizes: tuple[int, ...] = ()) -> dict[str, Any]:
    if model == "mlp":
        return {"hidden_sizes": tuple(hidden_sizes), "dropout_rate": recipe.dropout,
                "dropout_kind": recipe.dropout_kind, "batch_norm": recipe.batch_norm, **extra_model_options(recipe)}
    if model == "cnn":
        return {"dropout_rate": recipe.dropout, "dropout_kind": recipe.dropout_kind,
                "spatial_dropout_rate": recipe.spatial_dropout, "batch_norm": recipe.batch_norm,
                "drop_block_rate": recipe.drop_block, "drop_block_size": DROP_BLOCK_SIZE}
    if recipe.dropout_kind != "dropout":
        raise UsageError("gaussian_dropout is not available in the transformer; use dropout")
    return {"dropout_rate": recipe.dropout, "embedding_dropout_rate": recipe.spatial_dropout,
            "drop_path_rate": recipe.drop_path}


def _dense_kernels(params: Any) -> Any:
    return jax.tree.map(lambda keep, leaf: keep and leaf.ndim == 2, kernel_mask(params), params)


def _conv_kernels(params: Any) -> Any:
    return jax.tree.map(lambda keep, leaf: keep and leaf.ndim == 4, kernel_mask(params), params)


def _optimizer(recipe: Recipe, optimizer: str, learning_rate: float) -> optax.GradientTransformation:
    # optax.sgd(lr, momentum=0.9) / optax.adam(lr), written out so that weight decay can sit between the
    # scaling and the learning rate (decoupled), and the projections come last.
    parts = [optax.trace(decay=0.9) if optimizer == "sgd" else optax.scale_by_adam()]
    if recipe.weight_decay:
        parts.append(weight_decay(recipe.weight_decay))
    parts.append(optax.scale_by_learning_rate(learning_rate))
    if recipe.proximal_l1:
        parts.append(proximal_l1(recipe.proximal_l1, learning_rate=learning_rate, mask=kernel_mask))
    if recipe.max_norm:
        # Keras MaxNorm units: columns of dense kernels, output channels of conv kernels.
        parts.append(max_norm(recipe.max_norm, axis=0, mask=_dense_kernels))
        parts.append(max_norm(recipe.max_norm, axis=(0, 1, 2), mask=_conv_kernels))
    return optax.chain(*parts)


def _penalties(recipe: Recipe) -> list[Penalty]:
    out = []
    if recipe.l1:
        out.append(Penalty(l1, recipe.l1, kernel_mask))
    if recipe.l2:
        out.append(Penalty(l2, recipe.l2, kernel_mask))
    if recipe.elastic_net:
        out.append(Penalty(functools.partial(elastic_net, alpha=recipe.elastic_net, l1_ratio=0.5), 1.0, kernel_mask))
    return out + extra_penalties(recipe)


def _shift_images(key: jax.Array, x: jax.Array) -> jax.Array:
    return random_crop(key, x, padding=1)


def _image_hook(recipe: Recipe):
    """``augment_images(key, x) -> x`` for the image techniques (policy, then erasing), or None."""
    ops = []
    if recipe.rotation_zoom:
        ops.append(functools.partial(rotation_zoom, max_degrees=recipe.rotation_zoom))
    if recipe.rand_augment:
        ops.append(functools.partial(rand_augment, magnitude=recipe.rand_augment))
    if recipe.trivial_augment:
        ops.append(trivial_augment)
    if recipe.random_erasing:
        ops.append(functools.partial(random_erasing, probability=recipe.random_erasing))
    if not ops:
        return None

    def augment_images(key, x):
        for op_key, op in zip(jax.random.split(key, len(ops)), ops):
            x = op(op_key, x)
        return x

    return augment_images


def _label_hook(recipe: Recipe, num_classes: int):
    """The engine's ``augment(key, x, y)`` for the label-changing techniques, or None."""
    if not (recipe.mixup or recipe.cutmix or recipe.label_smoothing):
        return None

    def augment(key, x, y):
        soft = jax.nn.one_hot(y, num_classes, dtype=jnp.float32)
        if recipe.label_smoothing:
            soft = optax.smooth_labels(soft, recipe.label_smoothing)
        if recipe.mixup:
            return mixup(key, x, soft, recipe.mixup)
        if recipe.cutmix:
            return cutmix(key, x, soft, recipe.cutmix)
        return x, soft

    return augment


def _augment_hook(recipe: Recipe, num_classes: int):
    """The engine's one ``augment(key, x, y)``: the image ops, then the label ops; None without either."""
    images, labels = _image_hook(recipe), _label_hook(recipe, num_classes)
    if images is None:
        return labels  # the label ops alone keep the whole key, as before the image ops existed

    def augment(key, x, y):
        image_key, label_key = jax.random.split(key)
        x = images(image_key, x)
        return (x, y) if labels is None else labels(label_key, x, y)

    return augment


def _step_options(recipe: Recipe, num_classes: int) -> dict[str, Any]:
    options: dict[str, Any] = {}
    hook = _augment_hook(recipe, num_classes)
    if hook is not None:
        options["augment"] = hook
    if recipe.confidence:
        options["output_penalties"] = [(lambda outputs, y: confidence_penalty(outputs), recipe.confidence)]
    if recipe.rdrop:
        options["rdrop"] = recipe.rdrop
    if recipe.augmix:
        options["consistency"] = (augmix_views(2), recipe.augmix)
    if recipe.activity_l2:
        # Keras' activity_regularizer=L2(c) on each hidden layer: c * sum(a**2) / batch, from what the MLP sows.
        options["activity_penalties"] = [(functools.partial(activity_l2, batch_mean=True), recipe.activity_l2)]
    return options


def _with_sam(recipe: Recipe, optimizer: optax.GradientTransformation) -> optax.GradientTransformation:
    if not recipe.sam:
        return optimizer
    # SAM (Foret et al. 2021): ascend to params + rho * g / ||g||, take the optimizer's step with the gradient
    # there; opaque mode runs both in one engine step (the engine hands optax its grad_fn).
    return optax.contrib.sam(optimizer, optax.chain(optax.contrib.normalize(), optax.sgd(recipe.sam)),
                             opaque_mode=True)


@programs.cached
def _cached_program(recipe: Recipe, model: str, optimizer: str, learning_rate: float,
                    hidden_sizes: tuple[int, ...], info: _data.DatasetInfo) -> programs.Program:
    build = functools.partial(_models.build_model, model, num_outputs=info.num_outputs, input_dtype=info.input_dtype,
                              vocab_size=info.vocab_size)
    # Noise rates create no variables: every technique with the same layers shares one compiled initializer.
    init_module = build(**_model_options(Recipe(batch_norm=recipe.batch_norm), model, hidden_sizes))
    return programs.build_program(
        build(**_model_options(recipe, model, hidden_sizes)),
        _with_sam(recipe, _optimizer(recipe, optimizer, learning_rate)),
        penalties=_penalties(recipe), augment_fn=_shift_images if recipe.augment else None, init_module=init_module,
        step_options=_step_options(recipe, info.num_outputs),
        loss_fn=programs.soft_cross_entropy if _label_hook(recipe, info.num_outputs) else None,
        ema_decay=recipe.ema or None, swa_fraction=recipe.swa or None)


# The recipe fields one traced program covers (programs.sweep_program's SweepMLP): any mix of these trains
# through the same compilation, with the values as traced hyperparameters.
_TRACED_FIELDS = {"l1": 0.0, "l2": 0.0, "elastic_net": 0.0, "proximal_l1": 0.0, "dropout": 0.0, "batch_norm": False,
                  "early_stopping": 0}


def traced(recipe: Recipe, model: str, info: _data.DatasetInfo) -> bool:
    """Whether the run trains through the shared traced program (MLP on features or pixels, traced fields only).

    Example:
      >>> from jaxreg.experiments import data, technique_programs
      >>> from jaxreg.experiments.techniques import parse_techniques
      >>> [technique_programs.traced(r, "mlp", data.info("digits")) for _, r in parse_techniques("l2,max_norm")]
      [True, False]
    """
    return (model == "mlp" and info.vocab_size is None
            and dataclasses.replace(recipe, **_TRACED_FIELDS) == Recipe())


@programs.cached
def _traced_parts(optimizer: str, learning_rate: float, hidden_sizes: tuple[int, ...],
                  info: _data.DatasetInfo) -> tuple[programs.SweepProgram, Any]:
    sweep = programs.sweep_program(info.num_outputs, hidden_sizes, learning_rate=learning_rate, batch_norm=True,
                                   optimizer=optimizer)
    return sweep, jax.jit(sweep.eval_step)


def _without_batch_norm(params: Any) -> Any:
    return {name: leaf for name, leaf in params.items() if not name.startswith("BatchNorm")}


def _traced_program(recipe: Recipe, optimizer: str, learning_rate: float, hidden_sizes: tuple[int, ...],
                    info: _data.DatasetInfo) -> programs.Program:
    """The run as a member of the shared traced program: one compilation for every such technique.

    The penalty coefficients, the dropout rate and the proximal L1 strength are traced hyperparameters, batch
    norm a switch in the model state (:class:`jaxreg.experiments.models.SweepMLP`); a run without batch norm is
    recorded without the switched-off layers' parameters.
    """
    sweep, eval_step = _traced_parts(optimizer, learning_rate, hidden_sizes, info)
    hparams = {name: jnp.asarray(0.0, jnp.float32) for name in programs.SWEEP_HPARAMS}
    for name in ("l1", "l2", "elastic_net", "proximal_l1", "dropout"):
        hparams[name] = jnp.asarray(getattr(recipe, name), jnp.float32)
    batch_norm = bool(recipe.batch_norm)

    def init(key: jax.Array, x: jax.Array) -> Any:
        variables = dict(sweep.init(key, x))
        variables["switches"] = {"batch_norm": jnp.asarray(batch_norm)}
        return variables

    apply_fn = linen_apply(sweep.module, call_args={"rate": float(recipe.dropout), "input_rate": 0.0})
    return programs.Program(init, sweep.optimizer, sweep.make_step, eval_step, sweep.task, apply_fn=apply_fn,
                            hparams=hparams, params_view=None if batch_norm else _without_batch_norm)


def build_program(recipe: Recipe, *, model: str, optimizer: str, learning_rate: float,
                  hidden_sizes: tuple[int, ...] = (), info: _data.DatasetInfo) -> programs.Program:
    """The compiled program of one technique: model, optimizer chain, penalties and in-step hooks (cached).

    Techniques made of penalties, dropout, batch norm and early stopping on the MLP share ONE traced program
    (:func:`traced`); any other gets its own, built once per (recipe, model, optimizer) and cached
    (:func:`jaxreg.experiments.programs.cached`). Early stopping acts between epochs, not in the step: it adds
    nothing to the program.

    Args:
      recipe: the technique's :class:`Recipe` (checked with :func:`check_combination` first).
      model: ``"mlp"``, ``"cnn"`` or ``"transformer"``.
      optimizer: ``"sgd"`` (momentum 0.9) or ``"adam"``.
      learning_rate: the optimizer's learning rate.
      hidden_sizes: the MLP's hidden widths (ignored by the other models).
      info: the dataset's :class:`jaxreg.experiments.data.DatasetInfo`.

    Returns:
      A :class:`jaxreg.experiments.programs.Program` for :func:`jaxreg.experiments.runner.train_run`.

    Example:
      >>> from jaxreg.experiments import data, technique_programs
      >>> from jaxreg.experiments.techniques import parse_techniques
      >>> (_, recipe), = parse_techniques("rotation_zoom+group_lasso")
      >>> program = technique_programs.build_program(recipe, model="mlp", optimizer="adam", learning_rate=1e-3,
      ...                                            hidden_sizes=(16,), info=data.info("digits"))
      >>> program.task, program.hparams is None
      ('classification', True)
    """
    hidden_sizes = tuple(int(h) for h in hidden_sizes)
    if traced(recipe, model, info):
        return _traced_program(recipe, optimizer, float(learning_rate), hidden_sizes, info)
    return _cached_program(dataclasses.replace(recipe, early_stopping=0), model, optimizer, float(learning_rate),
                           hidden_sizes, info)
