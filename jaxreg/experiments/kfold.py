"""``jaxreg experiment kfold``: k-fold cross-validation of dropout rates x L2 strengths as ONE vmapped program.

The training and validation splits are pooled (digits: 898 images) and cut into ``--folds`` folds
(:func:`jaxreg.kfold_masks`, shuffled by a key from the seed). Every setting of the grid ``--dropout-rates``
x ``--l2`` is trained on every fold: ``G * k`` members that :func:`jaxreg.kfold_fit` trains as a single
``jax.vmap``-ped, jit-compiled epoch program. Hyperparameters are traced: the dropout rate enters a
:class:`jaxreg.experiments.models.SweepMLP` (whose rate is a call argument) and the L2 coefficient the
penalty list of a step built inside the vmapped function, so one compilation serves the whole grid. Each
fold keeps the whole pooled set and weights its loss by its training mask, its validation metric by the
complement, so all members have equal shapes.

The cross-validated score of a setting is the mean (and standard deviation) over its folds of the held-out
accuracy after the last epoch; the best setting is the highest mean. The test split, untouched by the
selection, then checks it: the test accuracy of each setting is the mean over its fold models.

Records: ``members`` (setting, fold, final validation accuracy and loss, test accuracy), ``settings`` (per
grid point: ``dropout_rate``, ``l2``, ``cv_accuracy``, ``cv_accuracy_std``, ``cv_loss``, ``test_accuracy``),
``best`` and ``folds``/``num_members``. Figure ``kfold.png``: heat maps of CV accuracy and of test accuracy
over the grid.
"""

from __future__ import annotations

import argparse
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from jaxreg.cv import kfold_fit
from jaxreg.experiments import (
    Experiment,
    UsageError,
    arguments,
    keys,
    plots,
    programs,
    records,
    register,
    report,
    runner,
)
from jaxreg.train import create_train_state

__all__ = ["add_arguments", "run", "EXPERIMENT"]

_COLUMNS = report.columns(
    ("dropout", "dropout_rate", ".2f"), ("L2", "l2", ".0e"), ("CV acc", "cv_accuracy", ".4f"),
    ("± std", "cv_accuracy_std", ".4f"), ("CV loss", "cv_loss", ".4f"), ("test acc", "test_accuracy", ".4f"),
)
# fold_in data of the fold-shuffling key ("fold"), a stream of jax.random.key(seed) apart from the training
# stream (1) of jaxreg.experiments.keys.
_FOLD_STREAM = 0x666F6C64


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``jaxreg experiment kfold``.

    Example:
      >>> import argparse
      >>> from jaxreg.experiments import kfold
      >>> parser = argparse.ArgumentParser()
      >>> kfold.add_arguments(parser)
      >>> args = parser.parse_args([])
      >>> args.folds, args.dropout_rates, args.l2
      (5, '0,0.25,0.5', '0,1e-4,1e-3')
    """
    arguments.add_story_arguments(parser, epochs=30, out="runs/kfold")
    parser.add_argument("--folds", type=int, default=5, help="number of folds (default: 5)")
    parser.add_argument("--dropout-rates", default="0,0.25,0.5", help="dropout rates to cross-validate")
    parser.add_argument("--l2", default="0,1e-4,1e-3", help="L2 coefficients to cross-validate")
    parser.add_argument("--hidden-sizes", default="256,256", help="MLP hidden widths (default: 256,256)")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate (default: 1e-3)")


def run(args: argparse.Namespace) -> int:
    """Cross-validate the grid in one vmapped program, print the table, write results, report and figure."""
    info = arguments.check_story_arguments(args, float_inputs=True)
    rates = arguments.parse_floats("--dropout-rates", args.dropout_rates, high=1.0, high_inclusive=False)
    strengths = arguments.parse_floats("--l2", args.l2)
    hidden_sizes = arguments.parse_sizes("--hidden-sizes", args.hidden_sizes)
    splits = runner.load_splits(args.dataset, seed=args.seed, data_dir=args.data_dir, train_size=args.train_size,
                                 eval_size=args.eval_size)
    x = jnp.concatenate([splits.train[0], splits.validation[0]])
    y = jnp.concatenate([splits.train[1], splits.validation[1]])
    n = int(y.shape[0])
    if not 2 <= args.folds <= n:
        raise UsageError(f"--folds must be in [2, {n}], got {args.folds}")
    if args.batch_size > n:
        raise UsageError(f"--batch-size must be <= the {n} pooled examples, got {args.batch_size}")
    grid = list(itertools.product(rates, strengths))
    program = programs.sweep_program(info.num_outputs, hidden_sizes, learning_rate=args.learning_rate)
    variables = program.init(keys.init_key(args.seed), x[:1])
    state = create_train_state(variables["params"], program.optimizer, keys.train_key(args.seed))
    hparams = programs.sweep_hparams([{"dropout": rate, "l2": strength} for rate, strength in grid])
    report.log(args, f"kfold: {len(grid)} settings x {args.folds} folds = {len(grid) * args.folds} members, "
                      f"one vmapped program ({args.epochs} epochs)")
    states, histories = kfold_fit(state, program.make_step, (x, y), k=args.folds, epochs=args.epochs,
                                  batch_size=args.batch_size, eval_step=program.eval_step, hparams=hparams,
                                  key=jax.random.fold_in(jax.random.key(args.seed), _FOLD_STREAM),
                                  progress=not args.quiet)
    test = runner.evaluate(program.member_eval, states, *splits.test)
    members, settings = [], []
    for g, (rate, strength) in enumerate(grid):
        fold_rows = []
        for f in range(args.folds):
            i = g * args.folds + f
            fold_rows.append({"setting": g, "fold": f, "dropout_rate": rate, "l2": strength,
                              "val_accuracy": histories[i]["val_accuracy"][-1],
                              "val_loss": records.finite(histories[i]["val_loss"][-1]),
                              "train_loss": records.finite(histories[i]["train_loss"][-1]),
                              "test_accuracy": float(test["accuracy"][i])})
        members.extend(fold_rows)
        accs = np.array([r["val_accuracy"] for r in fold_rows])
        losses = np.array([np.nan if r["val_loss"] is None else r["val_loss"] for r in fold_rows])
        settings.append({"dropout_rate": rate, "l2": strength, "cv_accuracy": float(np.mean(accs)),
                         "cv_accuracy_std": float(np.std(accs)), "cv_loss": records.finite(np.mean(losses)),
                         "test_accuracy": float(np.mean([r["test_accuracy"] for r in fold_rows]))})
    best_index = int(np.argmax([s["cv_accuracy"] for s in settings]))
    best = dict(settings[best_index], setting=best_index)
    best_test_index = int(np.argmax([s["test_accuracy"] for s in settings]))
    config = arguments.config_of(args, hidden_sizes=list(hidden_sizes), num_examples=n,
                               dropout_rates=list(rates), l2=list(strengths))
    result = {"experiment": "kfold", "config": config, "folds": args.folds, "num_members": len(members),
              "settings": settings, "best": best, "members": members,
              "fold_curves": [{"val_accuracy": h["val_accuracy"],
                               "val_loss": [records.finite(v) for v in h["val_loss"]]}
                              for h in histories]}
    body = "\n\n".join([
        f"MLP {'-'.join(map(str, hidden_sizes))} (Adam {args.learning_rate:g}, batch {args.batch_size}, {args.epochs} "
        f"epochs) on `{args.dataset}`: {n} pooled train+validation examples, {args.folds} folds, {len(grid)} settings "
        f"= {len(members)} members trained as one `jax.vmap`-ped program (`jr.kfold_fit`).",
        report.format_table(settings, _COLUMNS),
        f"Best by cross-validation: dropout {best['dropout_rate']:g}, L2 {best['l2']:g} (CV accuracy "
        f"{best['cv_accuracy']:.4f} ± {best['cv_accuracy_std']:.4f}, test accuracy {best['test_accuracy']:.4f}). "
        f"Best on the test set in hindsight: dropout {settings[best_test_index]['dropout_rate']:g}, L2 "
        f"{settings[best_test_index]['l2']:g} ({settings[best_test_index]['test_accuracy']:.4f}). Differences "
        "smaller than the fold standard deviation are not evidence for one setting over another.",
        "![k-fold grid](kfold.png)",
        f"Reproduce: `jaxreg experiment kfold --dataset {args.dataset} --epochs {args.epochs} --seed {args.seed}`",
    ])
    figures = {"kfold.png": _plot(settings, rates, strengths)}
    logged = [{"technique": f"dropout {rate:g}, l2 {strength:g}", "member": g * args.folds + f, "fold": f,
               "history": histories[g * args.folds + f]}
              for g, (rate, strength) in enumerate(grid) for f in range(args.folds)]
    report.write_outputs(args.out, result, title="k-fold cross-validation of dropout and L2", report=body,
                          figures=figures, histories=logged, tensorboard=args.tensorboard)
    print(report.format_table(settings, _COLUMNS))
    print(f"best (CV): dropout {best['dropout_rate']:g}, L2 {best['l2']:g}, CV accuracy {best['cv_accuracy']:.4f}, "
          f"test accuracy {best['test_accuracy']:.4f}")
    return 0


def _plot(settings: list[dict], rates: tuple[float, ...], strengths: tuple[float, ...]):
    figure, axes = plots.new_figure(2, width=3.6, height=3.0)
    for ax, key, title in ((axes[0], "cv_accuracy", "CV accuracy (mean over folds)"),
                           (axes[1], "test_accuracy", "test accuracy")):
        grid = np.array([s[key] for s in settings]).reshape(len(rates), len(strengths))
        image = ax.imshow(grid, cmap="viridis", aspect="auto")
        for i, j in itertools.product(range(len(rates)), range(len(strengths))):
            ax.text(j, i, f"{grid[i, j]:.3f}", ha="center", va="center", fontsize=7,
                    color="white" if grid[i, j] < grid.mean() else "black")
        ax.set_xticks(range(len(strengths)), [f"{s:g}" for s in strengths], fontsize=7)
        ax.set_yticks(range(len(rates)), [f"{r:g}" for r in rates], fontsize=7)
        ax.set_xlabel("L2 coefficient", fontsize=8)
        ax.set_ylabel("dropout rate", fontsize=8)
        ax.set_title(title, fontsize=9)
        figure.colorbar(image, ax=ax, shrink=0.8)
    return figure


EXPERIMENT = register(Experiment(
    "kfold",
    "5-fold cross-validation of dropout rates x L2 strengths, every fold and setting in one vmapped program.",
    add_arguments,
    run,
))
