"""``jaxreg experiment dropout_mlp``: the same MLP trained with and without dropout (Srivastava et al. 2014).

Both runs share the architecture, the initial parameters, the batches and the optimizer (Adam); the
dropout run adds :func:`jaxreg.dropout` after every hidden activation (and optionally on the inputs). The
two are trained as one ``jax.vmap``-ped program (:func:`jaxreg.fit_members`, the dropout rate a traced
hyperparameter of :class:`jaxreg.experiments.models.SweepMLP`); each member computes exactly what its own
:func:`jaxreg.fit` would.
Architectures by dataset (``--hidden-sizes`` overrides):

* ``mnist`` / ``fashion_mnist``: 784-512-512-10, dropout 0.5 (the classic MNIST MLP);
* ``cifar10``: 3072-200-10, dropout 0.5;
* ``digits`` (offline default): 64-256-256-10, the MNIST MLP scaled to 8x8 images, dropout 0.5.

Writes ``results.json`` (config and one run record per variant, see
:func:`jaxreg.experiments.runner.train_run`), ``report.md``, ``curves.png`` (train and validation accuracy
and loss per epoch) and prints a table.
"""

from __future__ import annotations

import argparse
import math

from jaxreg.experiments import Experiment, arguments, dashboard, plots, programs, register, report, runner

__all__ = ["DEFAULT_HIDDEN_SIZES", "add_arguments", "run", "EXPERIMENT"]

DEFAULT_HIDDEN_SIZES = {"mnist": (512, 512), "fashion_mnist": (512, 512), "cifar10": (200,), "digits": (256, 256)}
_FALLBACK_HIDDEN_SIZES = (256, 256)

_COLUMNS = report.CLASSIFICATION_COLUMNS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``jaxreg experiment dropout_mlp``.

    Example:
      >>> import argparse
      >>> from jaxreg.experiments import dropout_mlp
      >>> parser = argparse.ArgumentParser()
      >>> dropout_mlp.add_arguments(parser)
      >>> args = parser.parse_args([])
      >>> args.epochs, args.rate, args.hidden_sizes
      (60, 0.5, None)
    """
    arguments.add_story_arguments(parser, epochs=60, out="runs/dropout_mlp")
    parser.add_argument("--hidden-sizes", default=None,
                        help="hidden widths, e.g. 512,512 (default: by dataset, 256,256 on digits)")
    parser.add_argument("--rate", type=float, default=0.5, help="dropout rate after hidden layers (default: 0.5)")
    parser.add_argument("--input-rate", type=float, default=0.0,
                        help="dropout rate on the inputs (default: 0; Srivastava et al. use 0.2)")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate (default: 1e-3)")


def run(args: argparse.Namespace) -> int:
    """Train the MLP without and with dropout, print the table, write results, report and figure."""
    info = arguments.check_story_arguments(args, float_inputs=True)
    hidden_sizes = (arguments.parse_sizes("--hidden-sizes", args.hidden_sizes) if args.hidden_sizes
                    else DEFAULT_HIDDEN_SIZES.get(args.dataset, _FALLBACK_HIDDEN_SIZES))
    arguments.check_number("--rate", args.rate, high=1.0, high_inclusive=False)
    arguments.check_number("--input-rate", args.input_rate, high=1.0, high_inclusive=False)
    splits = runner.load_splits(args.dataset, seed=args.seed, data_dir=args.data_dir, train_size=args.train_size,
                                 eval_size=args.eval_size, batch_size=args.batch_size)
    labels = ["no dropout", f"dropout {args.rate:g}"]
    members = [{}, {"dropout": args.rate, "input_dropout": args.input_rate}]
    settings = [{"dropout_rate": 0.0, "input_dropout_rate": 0.0},
                {"dropout_rate": args.rate, "input_dropout_rate": args.input_rate}]
    program = programs.sweep_program(info.num_outputs, hidden_sizes, learning_rate=args.learning_rate)
    report.log(args, f"dropout_mlp: training {labels} as one vmapped program ({args.epochs} epochs)")
    states, histories = runner.train_members(program, splits, members, seeds=[args.seed, args.seed],
                                              epochs=args.epochs, batch_size=args.batch_size,
                                              progress=not args.quiet)
    runs = runner.member_records(program, states, histories, splits, labels, settings)
    config = arguments.config_of(args, hidden_sizes=list(hidden_sizes),
                               num_train=int(splits.train[1].shape[0]))
    result = {"experiment": "dropout_mlp", "config": config, "runs": runs}
    base, drop = runs
    architecture = "-".join(str(s) for s in (math.prod(info.input_shape), *hidden_sizes, info.num_outputs))
    body = "\n\n".join([
        f"MLP {architecture} on `{args.dataset}` ({config['num_train']} training examples), Adam "
        f"{args.learning_rate:g}, batch {args.batch_size}, {args.epochs} epochs, seed {args.seed}. Both runs start "
        "from the same parameters and see the same batches; the second adds dropout after every hidden "
        "activation.",
        report.format_table(runs, _COLUMNS),
        f"Dropout changes test accuracy by {drop['test_accuracy'] - base['test_accuracy']:+.4f} and the "
        "generalization gap (train - test accuracy) by "
        f"{drop['generalization_gap'] - base['generalization_gap']:+.4f}.",
        "![curves](curves.png)\n\n![dashboard](dashboard.png)",
        f"Reproduce: `jaxreg experiment dropout_mlp --dataset {args.dataset} --epochs {args.epochs} "
        f"--seed {args.seed}`",
    ])
    figures = {"dashboard.png": dashboard.dashboard(runs, title=f"MLP {architecture} on {args.dataset}"),
               "curves.png": plots.plot_curves(runs, metrics=("accuracy", "loss"),
                                                 title=f"MLP {architecture} on {args.dataset}")}
    return report.publish(args.out, result, title="Dropout in an MLP", report=body, figures=figures,
                          tensorboard=args.tensorboard,
                          columns=_COLUMNS)


EXPERIMENT = register(Experiment(
    "dropout_mlp",
    "An MLP with vs without dropout (MNIST 512-512, CIFAR-10 200, digits 256-256): accuracy, gap, curves.",
    add_arguments,
    run,
))
