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
    mixup, cutmix       jr.mixup / jr.cutmix of each training batch in the step (augment= hook), soft labels
    label_smoothing     optax.smooth_labels of the training labels in the step (alpha)
    confidence          jr.confidence_penalty of the training outputs (output_penalties=, beta)
    rdrop               R-Drop: two dropout passes, alpha * jr.rdrop_loss (make_train_step(rdrop=); with dropout)
    ema                 evaluate the exponential moving average of the weights (create_train_state(ema_decay=))
    swa                 evaluate the mean of the weights over the last 25% of the epochs (swa_start=), with
                        batch-norm statistics recomputed for them (jr.update_bn)
    activity_l2         Keras activity_regularizer=L2(c) on the MLP's hidden activations (activity_penalties=)
    drop_path           jaxreg.flax.linen.DropPath on the transformer's residual branches (stochastic depth)
    sam                 optax.contrib.sam in opaque mode around the optimizer (adversarial radius rho)
    drop_block          jr.drop_block of 3x3 squares after each convolution block (CNN only; rate)
    random_erasing      jr.random_erasing of the training images in the step (augment= hook; probability)
    rand_augment        jr.rand_augment of the training images in the step, 2 ops (magnitude bin, 1..30)
    trivial_augment     jr.trivial_augment of the training images in the step (no value)
    rotation_zoom       jr.random_rotation (max degrees) then jr.random_zoom (factors 0.9-1.1) of the training
                        images in the step (seed 004's augmentation)
    group_lasso         c * jr.group_lasso of the dense kernels' output units (whole units to zero)
    orthogonal          Keras OrthogonalRegularizer(c, mode="columns") on the dense kernels (jr.orthogonal)
    batch_renorm        jr.batch_renorm after every hidden layer of the MLP (r_max 3, d_max 5)
    drop_connect        jr.drop_connect of the MLP's hidden kernels, one mask per step (rate)
    augmix              two jr.augmix views of each training batch in one forward pass with it, the task loss
                        on the clean part + c * jr.jsd_loss (make_train_step(consistency=); c 12 as the paper)

e.g. ``--techniques none,l2=1e-3,dropout+batchnorm``.

The image ops of the step hook run before the label ops (e.g. ``rand_augment+random_erasing+mixup``: the
policy, then erasing, then mixup); they need image datasets, and ``drop_block`` needs ``--model cnn``.

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

**Runtime**: compare is a story like the others: :func:`jaxreg.experiments.runner.train_run` trains and
records each technique's program. On the MLP, every technique made only of penalties (``l1``, ``l2``,
``elastic_net``, ``proximal_l1``), ``dropout``, ``batchnorm`` and ``early_stopping`` runs through ONE compiled
program (:func:`jaxreg.experiments.programs.sweep_program`'s ``SweepMLP``: the coefficients, the dropout rate
and the proximal strength are traced hyperparameters passed to :func:`jaxreg.fit`, batch norm a switch in the
model state), so the default table compiles twice (with and without an early stopper) instead of nine times,
and the two programs compile and train on two threads at once; each run is still trained alone, from its own
key, so a row does not depend on which other techniques are listed or on the threads. Any other
technique gets its own program, built once per (technique, model, optimizer) and cached; both are built by
:mod:`jaxreg.experiments.technique_programs`. **Devices**: the state is replicated and the data split over
every visible device (:mod:`jaxreg.parallel`) when the device count divides the split sizes (else replicated);
the batch size must be a multiple of the device count. **Checkpoints**: with ``--checkpoint-dir`` each
technique checkpoints every epoch and a killed run, started again with the same arguments, resumes to the
identical results. **Reproducibility**: every key comes from ``--seed`` (:mod:`jaxreg.experiments.keys`):
equal arguments give a byte-identical ``results.json``; timings go to ``timing.json`` only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import jax

from jaxreg import parallel
from jaxreg.early_stopping import EarlyStopping
from jaxreg.experiments import Experiment, UsageError, arguments, plots, programs, records, register, report, runner
from jaxreg.experiments import data as _data
from jaxreg.experiments import models as _models
from jaxreg.experiments import technique_programs
from jaxreg.experiments.techniques import DEFAULT_STRENGTHS, TECHNIQUES, Recipe, parse_techniques

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
        technique_programs.check_combination(label, recipe, config.model, info)
    return techniques, info


def _program(recipe: Recipe, config: CompareConfig, info: _data.DatasetInfo) -> programs.Program:
    return technique_programs.build_program(
        recipe, model=config.model, optimizer=config.optimizer, learning_rate=config.resolved_learning_rate,
        hidden_sizes=tuple(config.hidden_sizes), info=info)


def _slug(index: int, label: str) -> str:
    return f"{index:02d}-" + re.sub(r"[^A-Za-z0-9_.=+-]", "_", label)


def _prepare_checkpoint_dir(directory: str, config: CompareConfig) -> Path:
    """Create the directory and pin the run's arguments there: resuming with other arguments is refused."""
    path = arguments.prepare_directory("--checkpoint-dir", directory)
    pinned = {k: v for k, v in config.to_json().items() if k != "epochs"}  # more epochs continue, fewer restore
    marker = path / "compare_config.json"
    if not marker.exists():
        report.write_json(marker, pinned)  # atomic: a run killed here leaves no half-written marker
        return path
    try:
        held = json.loads(marker.read_text(encoding="utf-8"))
        if not isinstance(held, dict):
            raise ValueError("not a JSON object")
    except (ValueError, OSError) as err:
        raise UsageError(f"--checkpoint-dir {directory}: {marker.name} is corrupt ({err}), so the run's arguments "
                         f"are unknown; delete {path} to start afresh, or use another directory") from None
    differ = [name for name in sorted(set(held) | set(pinned)) if held.get(name) != pinned.get(name)]
    if differ:
        listed = ", ".join(f"{name} ({held.get(name)!r} there, {pinned.get(name)!r} now)" for name in differ[:4])
        raise UsageError(f"--checkpoint-dir {directory} holds a run with other arguments: {listed}; "
                         "use the same arguments or another directory")
    return path


def _compilation_groups(techniques: Any, programs_: list[programs.Program], *, concurrent: bool) -> list[list[int]]:
    """The techniques' indices grouped by the compiled epoch program they train with, in order of first use.

    With ``concurrent`` (no checkpoints, one process, more than one core), groups are trained on two threads;
    else everything is one group, trained in order.
    """
    if not concurrent or jax.process_count() > 1 or (os.cpu_count() or 1) < 2:
        return [list(range(len(techniques)))]
    groups: dict[Any, list[int]] = {}
    for index, ((_, recipe), program) in enumerate(zip(techniques, programs_)):
        groups.setdefault((program.train_step, recipe.early_stopping), []).append(index)
    return list(groups.values())


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
    programs_ = [_program(recipe, config, info) for _, recipe in techniques]
    groups = _compilation_groups(techniques, programs_, concurrent=root is None)
    records: list[Any] = [None] * len(techniques)

    def train_group(indices: list[int], show: bool) -> None:
        for index in indices:
            label, recipe = techniques[index]
            if show:  # which technique the bar or the log lines that follow belong to
                if sys.stderr.isatty():
                    print(f"[{index + 1}/{len(techniques)}] {label}", file=sys.stderr)
                else:
                    logging.getLogger("jaxreg").info("[%d/%d] %s", index + 1, len(techniques), label)
            start = time.perf_counter()
            directory = None if root is None else root / _slug(index, label)
            stopper = EarlyStopping(recipe.early_stopping) if recipe.early_stopping else None
            records[index] = runner.train_run(
                label, programs_[index], splits, seed=config.seed, epochs=config.epochs,
                batch_size=config.batch_size, early_stopping=stopper, progress=show, settings=recipe.settings(),
                mesh=mesh, checkpoint_dir=directory)
            if timings is not None:
                timings[label] = time.perf_counter() - start

    if len(groups) == 1:
        train_group(groups[0], progress)
    else:
        # Two compiled programs at a time, one thread each: XLA compiles and runs one while the other does
        # (the default table: the traced program and its early-stopping variant). Every run depends only on
        # its own key and data, so the records are the same as in one thread; the second thread's progress is
        # not shown (its lines would interleave).
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="jaxreg-compare") as pool:
            futures = [pool.submit(train_group, indices, progress and g == 0) for g, indices in enumerate(groups)]
            for future in futures:
                future.result()
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
    parser.add_argument("--keep-going", action="store_true",
                        help="exit 0 even when a run diverged (every step skipped, or a non-finite final loss)")
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
      0 (errors are raised: :class:`UsageError`, :class:`jaxreg.experiments.data.DatasetUnavailableError`,
      :class:`jaxreg.experiments.records.DivergedError` after writing the results, unless ``--keep-going``).
    """
    config = config_from_args(args)
    per_technique: dict[str, float] = {}
    start = time.perf_counter()
    result = run_compare(config, progress=not args.quiet, checkpoint_dir=args.checkpoint_dir,
                         timings=per_technique)
    train_seconds = time.perf_counter() - start
    out = Path(args.out)
    figures = plots.comparison_figures(result["runs"], out, label_noise=config.label_noise)
    if args.tensorboard:  # history.csv is written with results.json (report.write_outputs)
        report.write_tensorboard(out, result["runs"])
    columns = report.COMPARE_COLUMNS
    if any(run["skipped_steps"] for run in result["runs"]):  # say it where the numbers are read
        columns = (*columns, report.Column("skipped steps", "skipped_steps", str))
    body = [*_notes(config), report.format_table(result["runs"], columns), "## Configuration",
            report.config_markdown(result["config"]), "## Figures"]
    body += [f"### {name.replace('_', ' ')}\n\n![{name}]({path.name})" for name, path in figures.items()]
    written = [*figures.values(), *report.write_outputs(out, result, title="Regularization comparison",
                                                        report="\n\n".join(body))]
    timing = {"train_seconds": train_seconds, "total_seconds": time.perf_counter() - start,
              "per_technique_seconds": per_technique, "devices": [str(d) for d in jax.devices()]}
    report.write_json(Path(args.out) / "timing.json", timing)
    print(report.format_table(result["runs"], columns))
    if not args.quiet:
        print(f"jaxreg: wrote {len(written) + 1} files to {args.out}/ in {timing['total_seconds']:.1f} s",
              file=sys.stderr)
    if not args.keep_going:  # results are written either way, to be inspected
        records.check_diverged(result["runs"])
    return 0


EXPERIMENT = register(Experiment(
    "compare",
    "Train one model per regularization technique and compare train/test accuracy and the gap.",
    add_arguments,
    run,
))
