"""``jaxreg experiment cnn``: a small CNN, plain vs regularized by architecture vs the full training recipe.

The network is :class:`jaxreg.experiments.models.RegularizedCNN` (conv-conv-maxpool-dense-dense). Three runs
from the same data, batches and seed:

* ``plain``: no batch norm, no dropout, Adam;
* ``bn+dropout``: the regularizers inside the architecture: batch norm after each layer
  (:func:`jaxreg.batch_norm`), spatial dropout of whole channels after the first convolution
  (:func:`jaxreg.spatial_dropout`) and dropout before the last layer;
* ``full recipe``: ``bn+dropout`` plus every training-side regularizer, in one compiled step:
  gradient clipping (``optax.clip_by_global_norm``), Adam with decoupled weight decay
  (:func:`jaxreg.weight_decay`, AdamW), an L2 penalty on the kernels (:func:`jaxreg.l2`), learning-rate
  reduction on plateau of the validation loss (``optax.contrib.reduce_on_plateau``, patience counted in
  epochs), data augmentation (random shifts by :func:`jaxreg.random_crop`; random horizontal flips too on
  CIFAR-10) and early stopping with the best weights restored (:class:`jaxreg.EarlyStopping`).

Default data: ``digits`` (8x8x1, offline); ``--dataset cifar10`` (or mnist, fashion_mnist) when prepared.
Writes ``results.json``, ``report.md``, ``curves.png`` and prints a table.
"""

from __future__ import annotations

import argparse
import functools

import jax
import optax

from jaxreg.augment import random_crop, random_flip
from jaxreg.early_stopping import EarlyStopping
from jaxreg.experiments import Experiment, UsageError, arguments, dashboard, plots, programs, register, report, runner
from jaxreg.experiments.models import RegularizedCNN
from jaxreg.penalties import l2
from jaxreg.select import kernel_mask
from jaxreg.transforms import weight_decay

__all__ = ["VARIANTS", "add_arguments", "run", "EXPERIMENT"]

VARIANTS = ("plain", "bn+dropout", "full recipe")

_COLUMNS = report.columns(
    ("run", "technique", ""), ("epochs run", "epochs_run", ""), ("train acc", "train_accuracy", ".4f"),
    ("val acc", "val_accuracy", ".4f"), ("test acc", "test_accuracy", ".4f"), ("gap", "generalization_gap", "+.4f"),
    ("test loss", "test_loss", ".4f"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``jaxreg experiment cnn``.

    Example:
      >>> import argparse
      >>> from jaxreg.experiments import cnn
      >>> parser = argparse.ArgumentParser()
      >>> cnn.add_arguments(parser)
      >>> args = parser.parse_args(["--features", "8,16"])
      >>> args.features, args.epochs, args.weight_decay, args.variants
      ('8,16', 40, 0.0001, 'plain,bn+dropout,full recipe')
    """
    arguments.add_story_arguments(parser, epochs=40, out="runs/cnn")
    parser.add_argument("--features", default="32,64", help="channels of the two convolutions (default: 32,64)")
    parser.add_argument("--dense-size", type=int, default=128, help="width of the hidden dense layer (default: 128)")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate (default: 1e-3)")
    parser.add_argument("--dropout", type=float, default=0.5, help="dropout before the last layer (default: 0.5)")
    parser.add_argument("--spatial-dropout", type=float, default=0.1,
                        help="spatial dropout after the first convolution (default: 0.1)")
    parser.add_argument("--weight-decay", type=float, default=1e-4, help="decoupled weight decay (default: 1e-4)")
    parser.add_argument("--l2", type=float, default=1e-4, help="L2 penalty coefficient (default: 1e-4)")
    parser.add_argument("--clip-norm", type=float, default=1.0, help="global gradient-norm clip (default: 1.0)")
    parser.add_argument("--plateau-patience", type=int, default=3,
                        help="epochs without validation improvement before halving the learning rate (default: 3)")
    parser.add_argument("--patience", type=int, default=10, help="early-stopping patience in epochs (default: 10)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated subset of {', '.join(VARIANTS)} (default: all three)")


def _augmenter(dataset: str, height: int):
    padding = 4 if dataset == "cifar10" else max(1, height // 8)
    if dataset == "cifar10":
        def augment(key, x):
            flip_key, crop_key = jax.random.split(key)
            return random_crop(crop_key, random_flip(flip_key, x), padding=padding)
        return augment, f"random horizontal flip + random crop after {padding}-pixel padding"
    description = f"random shifts of up to {padding} pixel(s) (crop after padding)"
    return functools.partial(random_crop, padding=padding), description


@programs.cached
def _program(variant: str, num_outputs: int, dataset: str, height: int, features: tuple[int, int], dense_size: int,
             learning_rate: float, dropout_rate: float, spatial_rate: float, decay: float, l2_coef: float,
             clip_norm: float, plateau_patience: int, steps_per_epoch: int) -> programs.Program:
    regularized = variant != "plain"
    module = RegularizedCNN(num_outputs=num_outputs, features=features, dense_size=dense_size,
                            batch_norm=regularized, dropout_rate=dropout_rate if regularized else 0.0,
                            spatial_dropout_rate=spatial_rate if regularized else 0.0)
    # Dropout rates do not change the variables: one initializer per architecture (with or without batch norm).
    init_module = RegularizedCNN(num_outputs=num_outputs, features=features, dense_size=dense_size,
                                 batch_norm=regularized, dropout_rate=0.0, spatial_dropout_rate=0.0)
    if variant != "full recipe":
        return programs.build_program(module, optax.adam(learning_rate), init_module=init_module)
    optimizer = optax.chain(
        optax.clip_by_global_norm(clip_norm),
        optax.scale_by_adam(),
        weight_decay(decay),
        optax.scale_by_learning_rate(learning_rate),
        # jr.fit hands every step of an epoch the previous validation loss; accumulating one epoch of steps
        # makes the plateau patience count epochs.
        optax.contrib.reduce_on_plateau(factor=0.5, patience=plateau_patience, accumulation_size=steps_per_epoch),
    )
    augment, _ = _augmenter(dataset, height)
    return programs.build_program(module, optimizer, penalties=[(l2, l2_coef, kernel_mask)], augment_fn=augment,
                                 init_module=init_module)


def run(args: argparse.Namespace) -> int:
    """Train the three CNN variants, print the table, write results, report and figure."""
    info = arguments.check_story_arguments(args, image=True)
    features = arguments.parse_sizes("--features", args.features)
    if len(features) != 2:
        raise UsageError(f"--features must give two channel counts such as 32,64, got {args.features!r}")
    if args.dense_size < 1:
        raise UsageError(f"--dense-size must be >= 1, got {args.dense_size}")
    for option, value in (("--dropout", args.dropout), ("--spatial-dropout", args.spatial_dropout)):
        arguments.check_number(option, value, high=1.0, high_inclusive=False)
    for option, value in (("--weight-decay", args.weight_decay), ("--l2", args.l2)):
        arguments.check_number(option, value)
    arguments.check_number("--clip-norm", args.clip_norm, low_inclusive=False)
    for option, value in (("--plateau-patience", args.plateau_patience), ("--patience", args.patience)):
        if value < 0:
            raise UsageError(f"{option} must be >= 0, got {value}")
    variants = [v.strip() for v in args.variants.split(",")]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants or len(set(variants)) != len(variants):
        raise UsageError(f"--variants must be distinct names among {', '.join(VARIANTS)}, got {args.variants!r}")
    variants = [v for v in VARIANTS if v in variants]
    splits = runner.load_splits(args.dataset, seed=args.seed, data_dir=args.data_dir, train_size=args.train_size,
                                 eval_size=args.eval_size, batch_size=args.batch_size)
    num_train = int(splits.train[1].shape[0])
    height = info.input_shape[0]
    runs = []
    for variant in variants:
        report.log(args, f"cnn: training {variant!r} ({args.epochs} epochs)")
        program = _program(variant, info.num_outputs, args.dataset, height, features, args.dense_size,
                           args.learning_rate, args.dropout, args.spatial_dropout, args.weight_decay, args.l2,
                           args.clip_norm, args.plateau_patience, num_train // args.batch_size)
        full = variant == "full recipe"
        stopper = EarlyStopping(args.patience, restore_best=True) if full else None
        settings = {"batch_norm": variant != "plain", "dropout": 0.0 if variant == "plain" else args.dropout,
                    "spatial_dropout": 0.0 if variant == "plain" else args.spatial_dropout}
        if full:
            settings.update(weight_decay=args.weight_decay, l2=args.l2, clip_norm=args.clip_norm,
                            plateau_patience=args.plateau_patience, early_stopping_patience=args.patience,
                            augmentation=True)
        record = runner.train_run(variant, program, splits, seed=args.seed, epochs=args.epochs,
                                   batch_size=args.batch_size, early_stopping=stopper, progress=not args.quiet,
                                   settings=settings)
        if "lr_scale" in record["history"]:
            record["final_lr_scale"] = record["history"]["lr_scale"][-1]
        runs.append(record)
    config = arguments.config_of(args, num_train=num_train)
    result = {"experiment": "cnn", "config": config, "runs": runs}
    by_name = {r["technique"]: r for r in runs}
    _, augmentation = _augmenter(args.dataset, height)
    if "plain" in by_name and "full recipe" in by_name:
        plain, full_run = by_name["plain"], by_name["full recipe"]
        comparison = (
            f"The full recipe changes test accuracy by {full_run['test_accuracy'] - plain['test_accuracy']:+.4f} "
            f"and the gap by {full_run['generalization_gap'] - plain['generalization_gap']:+.4f} relative to the "
            f"plain network; its learning rate ended at x{full_run.get('final_lr_scale', 1.0):g} of the initial one.")
    else:
        comparison = "Run the `plain` and `full recipe` variants together to compare them."
    body = "\n\n".join([
        f"RegularizedCNN (conv {features[0]}, conv {features[1]}, 2x2 max-pool, dense {args.dense_size}) on "
        f"`{args.dataset}` ({num_train} training examples), batch {args.batch_size}, up to {args.epochs} epochs, "
        f"seed {args.seed}. Full recipe: clip {args.clip_norm:g}, AdamW (lr {args.learning_rate:g}, decay "
        f"{args.weight_decay:g}), L2 {args.l2:g}, reduce-on-plateau (x0.5 after {args.plateau_patience} epochs), "
        f"{augmentation}, early stopping (patience {args.patience}, best weights restored).",
        report.format_table(runs, _COLUMNS),
        comparison,
        "![curves](curves.png)\n\n![dashboard](dashboard.png)",
        f"Reproduce: `jaxreg experiment cnn --dataset {args.dataset} --epochs {args.epochs} --seed {args.seed}`",
    ])
    figures = {"dashboard.png": dashboard.dashboard(runs, title=f"CNN on {args.dataset}"),
               "curves.png": plots.plot_curves(runs, metrics=("accuracy", "loss"), mark_best=True,
                                                 title=f"CNN on {args.dataset}")}
    return report.publish(args.out, result, title="A regularized CNN", report=body, figures=figures,
                          tensorboard=args.tensorboard,
                          columns=_COLUMNS)


EXPERIMENT = register(Experiment(
    "cnn",
    "A CNN plain vs batch norm + dropout vs the full recipe (AdamW, L2, clipping, plateau, early stop, augmentation).",
    add_arguments,
    run,
))
