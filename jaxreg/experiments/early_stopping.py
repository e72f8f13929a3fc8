"""``jaxreg experiment early_stopping``: early stopping with restore-best against a fixed-epoch run.

Three results of one MLP with no other regularizer (same initial parameters, batches and optimizer, so the
runs are identical up to the epoch at which early stopping ends them):

* ``fixed``: trains for all ``--epochs`` and keeps the last weights;
* ``early stop + restore``: :class:`jaxreg.EarlyStopping` on the validation loss (``--patience`` epochs
  without improvement by more than ``--min-delta``) stops training and restores the weights of the best
  epoch (Keras' ``restore_best_weights=True``);
* ``early stop, last weights``: the same stop, keeping the weights of the last epoch trained
  (Keras' default), which are ``patience`` epochs past the best (read from the previous run through
  :func:`jaxreg.fit`'s ``on_epoch_end`` hook: ``restore_best=False`` would train the very same epochs).

The validation split picks the epoch; the test split, never looked at during training, judges it. Records per
run: the usual accuracies and losses, ``epochs_run``, ``best_epoch`` (early stopping) and
``epochs_saved`` (fixed epochs minus epochs run). Figure ``early_stopping.png``: the fixed run's train and
validation loss and validation accuracy per epoch, with the stopping and the best epochs marked.
"""

from __future__ import annotations

import argparse

import jax

from jaxreg.early_stopping import EarlyStopping
from jaxreg.experiments import (
    Experiment,
    UsageError,
    arguments,
    keys,
    dashboard,
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
    ("run", "technique", ""), ("epochs run", "epochs_run", ""), ("best epoch", "best_epoch", ""),
    ("train acc", "train_accuracy", ".4f"), ("val loss", "val_loss", ".4f"), ("test loss", "test_loss", ".4f"),
    ("test acc", "test_accuracy", ".4f"), ("gap", "generalization_gap", "+.4f"),
)
# Tables and figures count epochs from 1 (results.json's best_epoch counts from 0, like fit's history).
_COLUMNS[2] = _COLUMNS[2]._replace(format=lambda epoch: str(epoch + 1))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``jaxreg experiment early_stopping``.

    Example:
      >>> import argparse

import jax
      >>> from jaxreg.experiments import early_stopping
      >>> parser = argparse.ArgumentParser()
      >>> early_stopping.add_arguments(parser)
      >>> args = parser.parse_args([])
      >>> args.epochs, args.patience, args.min_delta
      (100, 10, 0.0)
    """
    arguments.add_story_arguments(parser, epochs=100, out="runs/early_stopping")
    parser.add_argument("--hidden-sizes", default="512,512", help="MLP hidden widths (default: 512,512)")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate (default: 1e-3)")
    parser.add_argument("--patience", type=int, default=10,
                        help="epochs without validation-loss improvement before stopping (default: 10)")
    parser.add_argument("--min-delta", type=float, default=0.0,
                        help="an improvement must beat the best validation loss by more than this (default: 0)")


def run(args: argparse.Namespace) -> int:
    """Train the fixed-epoch and the two early-stopped runs, print the table, write results and figure."""
    info = arguments.check_story_arguments(args)
    hidden_sizes = arguments.parse_sizes("--hidden-sizes", args.hidden_sizes)
    if args.patience < 0:
        raise UsageError(f"--patience must be >= 0, got {args.patience}")
    arguments.check_number("--min-delta", args.min_delta)
    splits = runner.load_splits(args.dataset, seed=args.seed, data_dir=args.data_dir, train_size=args.train_size,
                                 eval_size=args.eval_size, batch_size=args.batch_size)
    program = programs.mlp_program(info.num_outputs, info.vocab_size, hidden_sizes, learning_rate=args.learning_rate)
    settings = {"patience": args.patience, "min_delta": args.min_delta, "restore_best": True}
    stoppers = {
        # A stopper that cannot trigger (its patience outlasts the run) does not change training; it gives the
        # fixed run the same state structure as the early-stopped one, so both share one compiled epoch.
        "fixed": EarlyStopping(args.epochs, restore_best=True),
        "early stop + restore": EarlyStopping(args.patience, min_delta=args.min_delta, restore_best=True),
    }
    run_of, last_weights = {}, {}
    for label, stopper in stoppers.items():
        last_epoch: dict = {}

        def keep_last_weights(epoch, state, history, last_epoch=last_epoch):
            # fit donates the state to the next epoch: copy this epoch's weights.
            last_epoch.update(jax.tree.map(lambda a: a.copy(), {"params": state.params,
                                                                 "model_state": state.model_state}))

        report.log(args, f"early_stopping: training {label!r} (up to {args.epochs} epochs)")
        run_of[label] = runner.train_run(label, program, splits, seed=args.seed, epochs=args.epochs,
                                           batch_size=args.batch_size, early_stopping=stopper,
                                           progress=not args.quiet, settings=settings if label != "fixed" else {},
                                           on_epoch_end=keep_last_weights)
        last_weights[label] = last_epoch

    def last_weights_record(label: str, source: str, **kwargs) -> dict:
        # The weights of the last epoch trained, evaluated (what a run without restore_best ends with).
        state = create_train_state(last_weights[source]["params"], program.optimizer, keys.train_key(args.seed),
                                   model_state=last_weights[source]["model_state"])
        state = state.replace(stopper=stoppers[source].init({"params": state.params,
                                                             "model_state": state.model_state}))
        run = run_of[source]
        return records.run_record(label, program.task, runner.final_metrics(program.eval_step, state, splits),
                                  state.params, run["history"], skipped=run["skipped_steps"], **kwargs)

    fixed = last_weights_record("fixed", "fixed")
    restored = run_of["early stop + restore"]
    # The same stop without restore_best keeps the weights of the last epoch trained (Keras' default).
    last = last_weights_record("early stop, last weights", "early stop + restore",
                               settings=dict(settings, restore_best=False), best_epoch=restored["best_epoch"])
    runs = [fixed, restored, last]
    for record in runs:
        record["epochs_saved"] = args.epochs - record["epochs_run"]
    val_losses = [v if v is not None else float("inf") for v in fixed["history"]["val_loss"]]
    hindsight = min(range(len(val_losses)), key=val_losses.__getitem__)
    config = arguments.config_of(args, hidden_sizes=list(hidden_sizes), num_train=int(splits.train[1].shape[0]))
    result = {"experiment": "early_stopping", "config": config, "runs": runs,
              "fixed_run_best_val_epoch": hindsight}
    stopped = restored["epochs_run"] < args.epochs
    summary = (
        f"Early stopping ended training after {restored['epochs_run']} of {args.epochs} epochs (best epoch "
        f"{restored['best_epoch'] + 1}), saving {restored['epochs_saved']} epochs of compute; restoring the best "
        f"weights gives test loss {restored['test_loss']:.4f} and accuracy {restored['test_accuracy']:.4f}, "
        f"against {fixed['test_loss']:.4f} and {fixed['test_accuracy']:.4f} after all {args.epochs} epochs."
        if stopped else
        f"Early stopping never triggered within {args.epochs} epochs (patience {args.patience}): the validation "
        "loss was still improving; all three runs are the same."
    )
    body = "\n\n".join([
        f"MLP {'-'.join(map(str, hidden_sizes))} on `{args.dataset}` ({config['num_train']} training examples), "
        f"Adam {args.learning_rate:g}, batch {args.batch_size}, up to {args.epochs} epochs, seed {args.seed}; "
        f"monitor: validation loss, patience {args.patience}, min delta {args.min_delta:g}.",
        report.format_table(runs, _COLUMNS),
        summary,
        f"In hindsight the fixed run's validation loss was lowest at epoch {hindsight + 1}. Epochs are counted from 1 "
        "here and in the figure (`best_epoch` in results.json counts from 0).",
        "![early stopping](early_stopping.png)\n\n![dashboard](dashboard.png)",
        f"Reproduce: `jaxreg experiment early_stopping --dataset {args.dataset} --epochs {args.epochs} "
        f"--patience {args.patience} --seed {args.seed}`",
    ])
    figures = {"early_stopping.png": _plot(fixed, restored), "dashboard.png": dashboard.dashboard(runs)}
    return report.publish(args.out, result, title="Early stopping", report=body, figures=figures,
                          tensorboard=args.tensorboard,
                          columns=_COLUMNS)


def _plot(fixed: dict, stopped: dict):
    figure, (ax_loss, ax_acc) = plots.new_figure(2, width=4.2, height=3.1)
    history = fixed["history"]
    epochs = [e + 1 for e in history["epoch"]]
    train_key = "train_eval_loss" if "train_eval_loss" in history else "train_loss"
    ax_loss.plot(epochs, plots.as_floats(history[train_key]), "--", color="C0", label="train loss")
    ax_loss.plot(epochs, plots.as_floats(history["val_loss"]), color="C1", label="validation loss")
    ax_loss.set_yscale("log")
    ax_acc.plot(epochs, plots.as_floats(history["val_accuracy"]), color="C1", label="validation accuracy")
    for ax in (ax_loss, ax_acc):
        ax.axvline(stopped["best_epoch"] + 1, color="C2", linestyle=":", label="best epoch (restored)")
        if stopped["epochs_run"] < len(epochs):
            ax.axvline(stopped["epochs_run"], color="C3", linestyle="-.", label="early stop")
        plots.epoch_axis(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    ax_loss.set_title("Loss of the fixed-epoch run", fontsize=10)
    ax_acc.set_title("Validation accuracy", fontsize=10)
    return figure


EXPERIMENT = register(Experiment(
    "early_stopping",
    "Early stopping on validation loss (restore best vs last weights) against a fixed-epoch run.",
    add_arguments,
    run,
))
