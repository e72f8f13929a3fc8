"""``jaxreg compare``: train one model per regularization technique and compare how each generalizes.

Every technique trains the same architecture from the same initial parameters, on the same batches, with the
same optimizer, and differs only in its regularizer. Each run records its per-epoch curves and its final
accuracy and loss on train, validation and test; the generalization gap is train minus test accuracy.

Techniques (``--techniques``: comma-separated items; ``+`` combines techniques, ``=`` sets a strength)::

    none                no regularization (the baseline)
    l1, l2, elastic_net coupled penalties on the kernels: loss + c * jr.l1 / jr.l2 / jr.elastic_net(alpha=c)
    proximal_l1         jr.proximal_l1 last in the optax chain: soft-thresholding, exact zeros
    dropout             jr.dropout after every hidden activation (transformer: all its dropout layers)
    gaussian_dropout    jr.gaussian_dropout in the same places
    spatial_dropout     jr.spatial_dropout of whole channels (CNN feature maps, transformer embeddings)
    batchnorm           jr.batch_norm after every hidden layer (MLP, CNN)
    max_norm            jr.max_norm on the kernel units, last in the optax chain
    weight_decay        jr.weight_decay between the optimizer's scaling and the learning rate (decoupled)
    early_stopping      jr.EarlyStopping on the validation loss (patience), best weights restored
    augment             random shifts of up to one pixel (jr.random_crop with padding 1) of image batches

e.g. ``--techniques none,l2=1e-3,dropout+batchnorm``.

**The default setup** makes overfitting, and what each regularizer does about it, plain to see in about a
minute on two CPU cores: digits (449 training images), a 256-256 MLP trained for 60 epochs with SGD and
momentum, and 20% of the *training* labels replaced by a random other class (``--label-noise 0.2``;
validation and test labels are untouched). Without regularization the network memorizes the noise (100%
training accuracy against the noisy labels) and its test accuracy drops; regularizers keep it from
memorizing and test accuracy goes up, so the gap shrinks and can turn negative (a model that ignores the
noise agrees with only about 80% of the noisy training labels). This is the memorization experiment of
Zhang et al. (2017) and Arpit et al. (2017). On the clean labels (``--label-noise 0``) the same MLP reaches
about 96% test accuracy unregularized; dropout and batch norm still add about a point, while the weight
penalties mainly lower the test loss, not the error. The strengths of :data:`DEFAULT_STRENGTHS` were tuned
on the default setup over seeds 0-2.

**Runtime**: compare is a story like the others: a technique's program
(:func:`jaxreg.experiments.programs.build_program`, augmentation inside the step) is built once per
(technique, model, optimizer) and cached, and :func:`jaxreg.experiments.runner.train_run` trains and records
it. **Devices**: the state is replicated and the data split over every visible device (:mod:`jaxreg.parallel`)
when the device count divides the split sizes (else replicated); the batch size must be a multiple of the
device count. **Checkpoints**: with ``--checkpoint-dir`` each technique checkpoints every epoch and a killed
run, started again with the same arguments, resumes to the identical results. **Reproducibility**: every key
comes from ``--seed`` (:mod:`jaxreg.experiments.keys`): equal arguments give a byte-identical
``results.json``; timings go to ``timing.json`` only.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import re
import sys
import time
from pathlib import Path
from typing import Any

import jax
import optax

from jaxreg import parallel
from jaxreg.augment import random_crop
from jaxreg.early_stopping import EarlyStopping
from jaxreg.experiments import Experiment, UsageError, arguments, plots, programs, register, report, runner
from jaxreg.experiments import data as _data
from jaxreg.experiments import models as _models
from jaxreg.penalties import elastic_net, l1, l2
from jaxreg.select import kernel_mask
from jaxreg.train import Penalty
from jaxreg.transforms import max_norm, proximal_l1, weight_decay

__all__ = [
    "TECHNIQUES",
    "DEFAULT_TECHNIQUES",
    "DEFAULT_STRENGTHS",
    "Recipe",
    "CompareConfig",
    "parse_techniques",
    "run_compare",
    "add_arguments",
    "config_from_args",
    "run",
    "EXPERIMENT",
]

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
}

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
}
"""Default strength of each technique, tuned on the default setup (see the module docstring)."""

DEFAULT_TECHNIQUES = ("none", "l1", "l2", "elastic_net", "proximal_l1", "dropout", "batchnorm",
                      "dropout+batchnorm", "early_stopping")
DEFAULT_EPOCHS = 60
DEFAULT_BATCH_SIZE = 32
DEFAULT_LEARNING_RATES = {"sgd": 0.05, "adam": 1e-3}
DEFAULT_LABEL_NOISE = 0.2
DEFAULT_HIDDEN_SIZES = (256, 256)
DEFAULT_OUT = "runs/compare"
OPTIMIZERS = ("sgd", "adam")



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

    Example:
      >>> from jaxreg.experiments.compare import parse_techniques
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

    def settings(self) -> dict[str, Any]:
        """The fields that differ from the neutral recipe (a run record's ``settings``)."""
        neutral = Recipe()
        return {k: v for k, v in dataclasses.asdict(self).items() if v != getattr(neutral, k)}


def _component(recipe: Recipe, name: str, value: float | None) -> Recipe:
    strength = DEFAULT_STRENGTHS.get(name) if value is None else value
    if name in ("batchnorm", "augment"):
        if value is not None:
            raise UsageError(f"technique {name!r} takes no value, got {name}={value:g}")
        return dataclasses.replace(recipe, **{"batch_norm" if name == "batchnorm" else "augment": True})
    if not math.isfinite(strength):
        raise UsageError(f"the value of {name!r} must be a finite number, got {strength:g}")
    if name in ("dropout", "gaussian_dropout", "spatial_dropout"):
        if not 0.0 < strength < 1.0:
            raise UsageError(f"the rate of {name!r} must be in (0, 1), got {strength:g}")
        if name == "spatial_dropout":
            return dataclasses.replace(recipe, spatial_dropout=strength)
        kind = "dropout" if name == "dropout" else "gaussian"
        if recipe.dropout and recipe.dropout_kind != kind:
            raise UsageError("'dropout' and 'gaussian_dropout' cannot be combined (they use the same layers)")
        return dataclasses.replace(recipe, dropout=strength, dropout_kind=kind)
    if name == "early_stopping":
        if strength != int(strength) or strength < 1:
            raise UsageError(f"the patience of 'early_stopping' must be an integer >= 1, got {strength:g}")
        return dataclasses.replace(recipe, early_stopping=int(strength))
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
      >>> from jaxreg.experiments.compare import parse_techniques
      >>> [(label, recipe.l2, recipe.dropout) for label, recipe in parse_techniques("none, l2=1e-3+dropout")]
      [('none', 0.0, 0.0), ('l2=1e-3+dropout', 0.001, 0.5)]
    """
    items = [item.replace(" ", "") for item in str(text).split(",")]
    if not any(items):
        raise UsageError("--techniques is empty; give a comma-separated list such as none,l2,dropout")
    out: list[tuple[str, Recipe]] = []
    for item in items:
        if not item:
            raise UsageError(f"--techniques has an empty item in {text!r}")
        parts = item.split("+")
        recipe = Recipe()
        seen: set[str] = set()
        for part in parts:
            name, equals, raw = part.partition("=")
            if name not in TECHNIQUES:
                raise UsageError(f"unknown technique {name!r}; available techniques: {', '.join(TECHNIQUES)}")
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
        if any(label == item for label, _ in out):
            raise UsageError(f"technique {item!r} is listed twice")
        out.append((item, recipe))
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class CompareConfig:
    """What a comparison computes: everything in ``results.json``'s ``config`` (plus ``data_dir``).

    Attributes:
      dataset: a classification dataset of :mod:`jaxreg.experiments.data`.
      model: ``"mlp"``, ``"cnn"`` or ``"transformer"``.
      techniques: the ``--techniques`` items, e.g. ``("none", "l2", "dropout+batchnorm")``.
      epochs: epochs per technique (early stopping may stop sooner).
      batch_size: global batch size (a multiple of the device count).
      seed: seed of the data split, the label noise, the initialization and the training noise.
      optimizer: ``"sgd"`` (momentum 0.9) or ``"adam"``.
      learning_rate: the optimizer's learning rate; None for its default (0.05 for SGD, 1e-3 for Adam).
      label_noise: fraction of training labels replaced by a random other class, in ``[0, 1)``.
      hidden_sizes: hidden widths of the MLP.
      data_dir: TFDS data directory (None: ``$TFDS_DATA_DIR``); says where, not what, so it stays out of
        the results.

    Example:
      >>> from jaxreg.experiments.compare import CompareConfig
      >>> config = CompareConfig()
      >>> config.techniques[:3], config.resolved_learning_rate
      (('none', 'l1', 'l2'), 0.05)
    """

    dataset: str = _data.DEFAULT_DATASET
    model: str = "mlp"
    techniques: tuple[str, ...] = DEFAULT_TECHNIQUES
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = DEFAULT_BATCH_SIZE
    seed: int = 0
    optimizer: str = "sgd"
    learning_rate: float | None = None
    label_noise: float = DEFAULT_LABEL_NOISE
    hidden_sizes: tuple[int, ...] = DEFAULT_HIDDEN_SIZES
    data_dir: str | None = None

    @property
    def resolved_learning_rate(self) -> float:
        """``learning_rate``, or the optimizer's default when it is None."""
        return DEFAULT_LEARNING_RATES[self.optimizer] if self.learning_rate is None else float(self.learning_rate)

    def to_json(self) -> dict[str, Any]:
        """The config as JSON data, with the learning rate resolved and ``data_dir`` left out."""
        out = dataclasses.asdict(self)
        del out["data_dir"]
        out["learning_rate"] = self.resolved_learning_rate
        out["techniques"] = list(self.techniques)
        out["hidden_sizes"] = list(self.hidden_sizes)
        if self.model != "mlp":
            del out["hidden_sizes"]
        return out


def _check_combination(label: str, recipe: Recipe, config: CompareConfig, info: _data.DatasetInfo) -> None:
    if recipe.spatial_dropout and config.model == "mlp":
        raise UsageError(f"technique {label!r}: spatial_dropout needs feature maps; use --model cnn or transformer")
    if recipe.batch_norm and config.model == "transformer":
        raise UsageError(f"technique {label!r}: batchnorm is not used in the transformer (it has LayerNorm)")
    if recipe.augment and len(info.input_shape) != 3:
        raise UsageError(f"technique {label!r}: augment needs images, {info.name!r} has inputs {info.input_shape}")


def _check_config(config: CompareConfig) -> tuple[tuple[tuple[str, Recipe], ...], _data.DatasetInfo]:
    """Every check that needs no data: raise UsageError before anything is loaded or trained."""
    techniques = parse_techniques(",".join(config.techniques))
    if config.model not in _models.MODELS:
        raise UsageError(f"unknown model {config.model!r}; available models: {', '.join(_models.MODELS)}")
    if config.optimizer not in OPTIMIZERS:
        raise UsageError(f"unknown optimizer {config.optimizer!r}; available: {', '.join(OPTIMIZERS)}")
    lr = config.resolved_learning_rate
    if not (lr > 0 and math.isfinite(lr)):
        raise UsageError(f"--learning-rate must be a finite number > 0, got {lr:g}")
    if not 0.0 <= config.label_noise < 1.0:
        raise UsageError(f"--label-noise must be in [0, 1), got {config.label_noise:g}")
    if config.epochs < 1 or config.batch_size < 1:
        raise UsageError(f"--epochs and --batch-size must be >= 1, got {config.epochs} and {config.batch_size}")
    if config.batch_size % jax.device_count():
        raise UsageError(f"--batch-size must be a multiple of the {jax.device_count()} devices, "
                         f"got {config.batch_size}")
    try:
        info = _data.info(config.dataset, data_dir=config.data_dir)
    except ValueError as err:
        raise UsageError(str(err)) from None
    if info.task != "classification":
        raise UsageError(f"compare needs a classification dataset, {config.dataset!r} is {info.task}")
    if config.model == "cnn" and len(info.input_shape) != 3:
        raise UsageError(f"model 'cnn' needs images, {config.dataset!r} has inputs {info.input_shape}")
    for label, recipe in techniques:
        _check_combination(label, recipe, config, info)
    return techniques, info


def _model_options(recipe: Recipe, config: CompareConfig) -> dict[str, Any]:
    if config.model == "mlp":
        return {"hidden_sizes": tuple(config.hidden_sizes), "dropout_rate": recipe.dropout,
                "dropout_kind": recipe.dropout_kind, "batch_norm": recipe.batch_norm}
    if config.model == "cnn":
        return {"dropout_rate": recipe.dropout, "dropout_kind": recipe.dropout_kind,
                "spatial_dropout_rate": recipe.spatial_dropout, "batch_norm": recipe.batch_norm}
    if recipe.dropout_kind != "dropout":
        raise UsageError("gaussian_dropout is not available in the transformer; use dropout")
    return {"dropout_rate": recipe.dropout, "embedding_dropout_rate": recipe.spatial_dropout}


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
    return out


def _shift_images(key: jax.Array, x: jax.Array) -> jax.Array:
    return random_crop(key, x, padding=1)


@programs.cached
def _cached_program(recipe: Recipe, model: str, optimizer: str, learning_rate: float,
                    hidden_sizes: tuple[int, ...], info: _data.DatasetInfo) -> programs.Program:
    config = CompareConfig(model=model, hidden_sizes=hidden_sizes)
    build = functools.partial(_models.build_model, model, num_outputs=info.num_outputs, input_dtype=info.input_dtype,
                              vocab_size=info.vocab_size)
    # Noise rates create no variables: every technique with the same layers shares one compiled initializer.
    init_module = build(**_model_options(Recipe(batch_norm=recipe.batch_norm), config))
    return programs.build_program(build(**_model_options(recipe, config)), _optimizer(recipe, optimizer, learning_rate),
                                  penalties=_penalties(recipe), augment_fn=_shift_images if recipe.augment else None,
                                  init_module=init_module)


def _program(recipe: Recipe, config: CompareConfig, info: _data.DatasetInfo) -> programs.Program:
    # Early stopping acts between epochs, not in the step: "none" and "early_stopping" share one compilation.
    return _cached_program(dataclasses.replace(recipe, early_stopping=0), config.model, config.optimizer,
                           config.resolved_learning_rate, tuple(config.hidden_sizes), info)


def _slug(index: int, label: str) -> str:
    return f"{index:02d}-" + re.sub(r"[^A-Za-z0-9_.=+-]", "_", label)


def _prepare_checkpoint_dir(directory: str, config: CompareConfig) -> Path:
    """Create the directory and pin the run's arguments there: resuming with other arguments is refused."""
    path = arguments.prepare_directory("--checkpoint-dir", directory)
    pinned = {k: v for k, v in config.to_json().items() if k != "epochs"}  # more epochs continue, fewer restore
    marker = path / "compare_config.json"
    if marker.exists():
        if marker.read_text(encoding="utf-8") != report.canonical_json(pinned):
            raise UsageError(f"--checkpoint-dir {directory} holds a run with other arguments; "
                             "use the same arguments or another directory")
    else:
        report.write_json(marker, pinned)
    return path


def run_compare(
    config: CompareConfig,
    *,
    progress: bool = False,
    checkpoint_dir: str | None = None,
    timings: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Train every technique of ``config`` and return ``{"config": ..., "runs": [...]}``.

    Args:
      config: the :class:`CompareConfig`.
      progress: show fit's progress bar on stderr (only when stderr is a terminal).
      checkpoint_dir: checkpoint every epoch there and resume from the checkpoints found.
      timings: if given, filled with the wall-clock seconds of each technique (never part of the result).

    Returns:
      JSON-ready results: ``config`` (:meth:`CompareConfig.to_json`) and one run record per technique with
      ``technique``; ``train_accuracy`` and ``train_loss`` (against the training labels the model saw, noisy
      ones included), ``train_clean_accuracy`` (against the original labels, with label noise only),
      ``val_accuracy``, ``val_loss``, ``test_accuracy``, ``test_loss``; ``generalization_gap`` (train -
      test accuracy); ``epochs_run`` and ``best_epoch`` (early stopping); ``sparsity`` (fraction of exactly
      zero kernel weights), ``near_zero_fraction`` (``|w| < 1e-3``), ``kernel_l2_norm``, ``num_params``,
      ``skipped_steps``; ``settings`` (the technique's recipe); ``weight_histogram`` (``edges``/``counts`` of
      the final kernel weights); ``history`` (:func:`jaxreg.fit`'s per-epoch lists, with the training set
      also measured in evaluation mode when it has at most 10000 examples).

    Raises:
      UsageError: an unknown technique, model, optimizer or dataset, a combination the model or data cannot
        use, a regression dataset, bad sizes or rates, a checkpoint directory of another run.
      jaxreg.experiments.data.DatasetUnavailableError: a TFDS dataset that is not prepared offline.

    Example:
      >>> from jaxreg.experiments.compare import CompareConfig, run_compare
      >>> config = CompareConfig(techniques=("none",), epochs=1, hidden_sizes=(16,))
      >>> run = run_compare(config)["runs"][0]
      >>> run["technique"], run["epochs_run"], 0.0 < run["test_accuracy"] <= 1.0
      ('none', 1, True)
    """
    techniques, info = _check_config(config)
    mesh = parallel.data_mesh()
    splits = runner.load_splits(config.dataset, seed=config.seed, data_dir=config.data_dir,
                                batch_size=config.batch_size, label_noise=config.label_noise, mesh=mesh)
    root = None if checkpoint_dir is None else _prepare_checkpoint_dir(checkpoint_dir, config)
    records = []
    for index, (label, recipe) in enumerate(techniques):
        if progress and sys.stderr.isatty():
            print(f"[{index + 1}/{len(techniques)}] {label}", file=sys.stderr)
        start = time.perf_counter()
        directory = None if root is None else root / _slug(index, label)
        stopper = EarlyStopping(recipe.early_stopping) if recipe.early_stopping else None
        records.append(runner.train_run(
            label, _program(recipe, config, info), splits, seed=config.seed, epochs=config.epochs,
            batch_size=config.batch_size, early_stopping=stopper, progress=progress, settings=recipe.settings(),
            mesh=mesh, checkpoint_dir=directory))
        if timings is not None:
            timings[label] = time.perf_counter() - start
    return {"config": config.to_json(), "runs": records}


# ----------------------------------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``jaxreg compare`` (also ``jaxreg experiment compare``) to ``parser``.

    Example:
      >>> import argparse
      >>> from jaxreg.experiments.compare import add_arguments
      >>> parser = argparse.ArgumentParser()
      >>> add_arguments(parser)
      >>> args = parser.parse_args(["--techniques", "none,l2", "--epochs", "3"])
      >>> args.techniques, args.epochs, args.model, args.label_noise
      ('none,l2', 3, 'mlp', 0.2)
    """
    arguments.add_common_arguments(parser, epochs=DEFAULT_EPOCHS, batch_size=DEFAULT_BATCH_SIZE, out=DEFAULT_OUT)
    parser.add_argument("--model", default="mlp", help=f"architecture: {', '.join(_models.MODELS)} (default: mlp)")
    parser.add_argument(
        "--techniques", default=",".join(DEFAULT_TECHNIQUES),
        help="comma-separated techniques; join with + (dropout+batchnorm), set a strength with = (l2=1e-3). "
             f"Known: {', '.join(TECHNIQUES)}. Default: {','.join(DEFAULT_TECHNIQUES)}",
    )
    parser.add_argument("--optimizer", default="sgd", help="sgd (momentum 0.9) or adam (default: sgd)")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="learning rate (default: 0.05 for sgd, 0.001 for adam)")
    parser.add_argument("--label-noise", type=arguments.fraction, default=DEFAULT_LABEL_NOISE,
                        help="fraction of training labels replaced by a random other class, so that an "
                             f"unregularized model visibly memorizes (default: {DEFAULT_LABEL_NOISE}; 0 for clean)")


def config_from_args(args: argparse.Namespace) -> CompareConfig:
    """The checked :class:`CompareConfig` of parsed ``jaxreg compare`` arguments.

    Raises:
      UsageError: for any bad argument (see :func:`run_compare`).

    Example:
      >>> import argparse
      >>> from jaxreg.experiments.compare import add_arguments, config_from_args
      >>> parser = argparse.ArgumentParser()
      >>> add_arguments(parser)
      >>> config_from_args(parser.parse_args(["--techniques", "none, l2"])).techniques
      ('none', 'l2')
    """
    arguments.check_common_arguments(args)
    config = CompareConfig(
        dataset=args.dataset, model=args.model,
        techniques=tuple(label for label, _ in parse_techniques(args.techniques)),
        epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, optimizer=args.optimizer,
        learning_rate=args.learning_rate, label_noise=args.label_noise, data_dir=args.data_dir,
    )
    _check_config(config)
    return config


def _notes(config: CompareConfig) -> list[str]:
    notes = [
        f"`{config.dataset}`, `{config.model}` model, {config.epochs} epochs, batch size {config.batch_size}, "
        f"{config.optimizer} (learning rate {config.resolved_learning_rate:g}), seed {config.seed}. "
        "Every technique starts from the same initial weights and sees the same batches. Gap = train - test "
        "accuracy, in points; sparsity = exactly-zero kernel weights.",
    ]
    if config.label_noise:
        notes.append(
            f"{config.label_noise:.0%} of the training labels were replaced by a random other class "
            "(validation and test labels are clean): train accuracy is measured against the labels the "
            "model was trained on, so 100% means it memorized the noise, and a model that ignores the noise "
            f"scores about {1 - config.label_noise:.0%} there (a negative gap). Run with `--label-noise 0` "
            "for clean labels."
        )
    return notes


def run(args: argparse.Namespace) -> int:
    """Entry point of ``jaxreg compare``: train, print the table, write results, timing, figures and report.

    Returns:
      0 (errors are raised: :class:`UsageError`, :class:`jaxreg.experiments.data.DatasetUnavailableError`).
    """
    config = config_from_args(args)
    per_technique: dict[str, float] = {}
    start = time.perf_counter()
    result = run_compare(config, progress=not args.quiet, checkpoint_dir=args.checkpoint_dir,
                         timings=per_technique)
    train_seconds = time.perf_counter() - start
    out = Path(args.out)
    figures = plots.comparison_figures(result["runs"], out)
    body = [*_notes(config), report.format_table(result["runs"]), "## Configuration",
            report.config_markdown(result["config"]), "## Figures"]
    body += [f"### {name.replace('_', ' ')}\n\n![{name}]({path.name})" for name, path in figures.items()]
    written = [*figures.values(), *report.write_outputs(out, result, title="Regularization comparison",
                                                        report="\n\n".join(body))]
    timing = {"train_seconds": train_seconds, "total_seconds": time.perf_counter() - start,
              "per_technique_seconds": per_technique, "devices": [str(d) for d in jax.devices()]}
    report.write_json(Path(args.out) / "timing.json", timing)
    print(report.format_table(result["runs"]))
    if not args.quiet:
        print(f"jaxreg: wrote {len(written) + 1} files to {args.out}/ in {timing['total_seconds']:.1f} s",
              file=sys.stderr)
    return 0


EXPERIMENT = register(Experiment(
    "compare",
    "Train one model per regularization technique and compare train/test accuracy and the gap.",
    add_arguments,
    run,
))
