"""``jaxreg experiment transformer``: a small transformer classifier with vs without regularization.

The model is :class:`jaxreg.experiments.models.TransformerClassifier`: token embeddings plus sinusoidal
positions, pre-LayerNorm encoder blocks (multi-head self-attention, then a GELU feed-forward network),
mean pooling over the non-padding tokens and a linear classifier. LayerNorm and GELU are part of the
architecture in both runs; what differs:

* ``plain``: no dropout, Adam;
* ``regularized``: dropout ``--rate`` (0.1, as in the original transformer) on the embeddings, the attention
  weights, after attention, inside and after the feed-forward network, plus AdamW's decoupled weight
  decay (:func:`jaxreg.weight_decay`, ``--weight-decay``) on the kernels and embeddings.

Default data: ``synthetic_sequences`` (offline; label: does the first token occur again later in the
sequence, which needs attention: counts of tokens cannot tell), generated here with a vocabulary of 8 and
sequences of 8 tokens (``--vocab-size``, ``--length``): with the dataset's own default (32 tokens, length
16) a small transformer memorizes the 2000 training sequences long before it finds the rule, and neither
run generalizes within a CPU-sized budget. ``--dataset ag_news_subset`` or ``imdb_reviews`` (byte-level
tokens) when prepared. Writes ``results.json``, ``report.md``, ``curves.png``
and prints a table.
"""

from __future__ import annotations

import argparse

import optax

from jaxreg.experiments import Experiment, UsageError, arguments, plots, programs, register, report, runner
from jaxreg.experiments.models import TransformerClassifier
from jaxreg.transforms import weight_decay

__all__ = ["VARIANTS", "add_arguments", "run", "EXPERIMENT"]

VARIANTS = ("plain", "regularized")

_COLUMNS = report.CLASSIFICATION_COLUMNS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``jaxreg experiment transformer``.

    Example:
      >>> import argparse
      >>> from jaxreg.experiments import transformer
      >>> parser = argparse.ArgumentParser()
      >>> transformer.add_arguments(parser)
      >>> args = parser.parse_args([])
      >>> args.dataset, args.rate, args.model_dim
      ('synthetic_sequences', 0.1, 32)
    """
    arguments.add_story_arguments(parser, dataset="synthetic_sequences", epochs=60, out="runs/transformer")
    parser.add_argument("--model-dim", type=int, default=32, help="embedding width (default: 32)")
    parser.add_argument("--num-heads", type=int, default=2, help="attention heads (default: 2)")
    parser.add_argument("--num-layers", type=int, default=2, help="encoder blocks (default: 2)")
    parser.add_argument("--mlp-dim", type=int, default=64, help="feed-forward width (default: 64)")
    parser.add_argument("--rate", type=float, default=0.1, help="dropout rate of the regularized run (default: 0.1)")
    parser.add_argument("--weight-decay", type=float, default=0.01,
                        help="decoupled weight decay of the regularized run (default: 0.01)")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate (default: 1e-3)")
    parser.add_argument("--n-train", type=int, default=None,
                        help="synthetic_sequences only: training sequences to generate (default: 2000)")
    parser.add_argument("--vocab-size", type=int, default=8,
                        help="synthetic_sequences only: token vocabulary, padding included (default: 8)")
    parser.add_argument("--length", type=int, default=8, help="synthetic_sequences only: sequence length (default: 8)")


@programs.cached
def _program(variant: str, num_outputs: int, vocab_size: int | None, model_dim: int, num_heads: int,
             num_layers: int, mlp_dim: int, rate: float, decay: float, learning_rate: float,
             max_length: int) -> programs.Program:
    regularized = variant == "regularized"
    shape = {"num_outputs": num_outputs, "vocab_size": vocab_size, "model_dim": model_dim, "num_heads": num_heads,
             "num_layers": num_layers, "mlp_dim": mlp_dim, "max_length": max_length}
    module = TransformerClassifier(**shape, dropout_rate=rate if regularized else 0.0)
    if regularized and decay > 0:
        optimizer = optax.chain(optax.scale_by_adam(), weight_decay(decay), optax.scale_by_learning_rate(learning_rate))
    else:
        optimizer = optax.adam(learning_rate)
    # Both variants start from the same parameters (dropout does not change the variables).
    return programs.build_program(module, optimizer, init_module=TransformerClassifier(**shape, dropout_rate=0.0))


def run(args: argparse.Namespace) -> int:
    """Train the plain and the regularized transformer, print the table, write results, report and figure."""
    info = arguments.check_story_arguments(args)
    for option in ("model_dim", "num_heads", "num_layers", "mlp_dim"):
        if getattr(args, option) < 1:
            raise UsageError(f"--{option.replace('_', '-')} must be >= 1, got {getattr(args, option)}")
    if args.model_dim % args.num_heads:
        raise UsageError(f"--num-heads must divide --model-dim, got {args.num_heads} and {args.model_dim}")
    arguments.check_number("--rate", args.rate, high=1.0, high_inclusive=False)
    arguments.check_number("--weight-decay", args.weight_decay)
    options = {}
    if args.dataset == "synthetic_sequences":
        options = {"vocab_size": args.vocab_size, "length": args.length}
        if args.n_train is not None:
            options["n_train"] = args.n_train
        for option, value, low in (("--n-train", args.n_train, 1), ("--vocab-size", args.vocab_size, 3),
                                   ("--length", args.length, 2)):
            if value is not None and value < low:
                raise UsageError(f"{option} must be >= {low}, got {value}")
    elif args.n_train is not None:
        raise UsageError("--n-train only applies to --dataset synthetic_sequences; use --train-size to subsample")
    vocab_size = options.get("vocab_size", info.vocab_size)
    splits = runner.load_splits(args.dataset, seed=args.seed, data_dir=args.data_dir, train_size=args.train_size,
                                 eval_size=args.eval_size, batch_size=args.batch_size, **options)
    max_length = max(int(splits.train[0].shape[1]), 1)
    runs = []
    for variant in VARIANTS:
        report.log(args, f"transformer: training {variant!r} ({args.epochs} epochs)")
        program = _program(variant, info.num_outputs, vocab_size, args.model_dim, args.num_heads,
                           args.num_layers, args.mlp_dim, args.rate, args.weight_decay, args.learning_rate,
                           max_length)
        settings = ({"dropout_rate": args.rate, "weight_decay": args.weight_decay} if variant == "regularized"
                    else {"dropout_rate": 0.0, "weight_decay": 0.0})
        runs.append(runner.train_run(variant, program, splits, seed=args.seed, epochs=args.epochs,
                                      batch_size=args.batch_size, progress=not args.quiet, settings=settings))
    num_train = int(splits.train[1].shape[0])
    config = arguments.config_of(args, num_train=num_train, sequence_length=max_length)
    result = {"experiment": "transformer", "config": config, "runs": runs}
    plain, regularized = runs
    best_val = {r["technique"]: max(v for v in r["history"]["val_accuracy"]) for r in runs}
    body = "\n\n".join([
        f"TransformerClassifier (dim {args.model_dim}, {args.num_heads} heads, {args.num_layers} pre-LN blocks, GELU "
        f"FFN {args.mlp_dim}, mean pooling) on `{args.dataset}` ({num_train} training sequences of length "
        f"{max_length}), Adam {args.learning_rate:g}, batch {args.batch_size}, {args.epochs} epochs, seed {args.seed}. "
        f"Regularized: dropout {args.rate:g} everywhere + decoupled weight decay {args.weight_decay:g}.",
        report.format_table(runs, _COLUMNS),
        f"Regularization changes test accuracy by {regularized['test_accuracy'] - plain['test_accuracy']:+.4f} and "
        f"the gap by {regularized['generalization_gap'] - plain['generalization_gap']:+.4f}. Best validation "
        f"accuracy over the epochs: plain {best_val['plain']:.4f}, regularized {best_val['regularized']:.4f}.",
        "![curves](curves.png)",
        f"Reproduce: `jaxreg experiment transformer --dataset {args.dataset} --epochs {args.epochs} "
        f"--seed {args.seed}`",
    ])
    figures = {"curves.png": plots.plot_curves(runs, metrics=("accuracy", "loss"),
                                                 title=f"Transformer on {args.dataset}")}
    return report.publish(args.out, result, title="A regularized transformer", report=body, figures=figures,
                          columns=_COLUMNS)


EXPERIMENT = register(Experiment(
    "transformer",
    "A small transformer classifier (LayerNorm, GELU) with vs without dropout 0.1 + weight decay.",
    add_arguments,
    run,
))
