"""``jaxreg experiment bias_variance``: sweeps of L2 strength and dropout rate, from over- to underfitting.

One MLP is trained once per setting of two sweeps: L2 coefficients on a log grid (``--l2``, dropout 0) and
dropout rates (``--dropout-rates``, L2 0); the unregularized setting is shared. All members start from the
same parameters and see the same batches, and :func:`jaxreg.sweep_fit` trains them as one ``jax.vmap``-ped,
jit-compiled program (the hyperparameters are traced arrays, one compilation for the whole sweep).

After the last epoch each member's training accuracy (evaluation mode, no dropout) and validation accuracy
are recorded. Weak regularization leaves a large train - validation gap (variance: overfitting); strong
regularization pulls the training accuracy down towards the validation accuracy and then both down (bias:
underfitting); the best validation accuracy lies in between. Figure ``bias_variance.png`` plots both
accuracies against the strength; records: ``sweeps`` (``l2`` and ``dropout``, each a list of points with
``strength``, ``train_accuracy``, ``val_accuracy``, ``test_accuracy``, ``train_loss``, ``val_loss``, ``gap``)
and ``best`` (per sweep, by validation accuracy).
"""

from __future__ import annotations

import argparse

from jaxreg.cv import sweep_fit
from jaxreg.experiments import Experiment, arguments, keys, plots, programs, records, register, report, runner
from jaxreg.train import create_train_state

__all__ = ["add_arguments", "run", "EXPERIMENT"]

_COLUMNS = report.columns(
    ("sweep", "sweep", ""), ("strength", "strength", ".0e"), ("train acc", "train_accuracy", ".4f"),
    ("val acc", "val_accuracy", ".4f"), ("gap", "gap", "+.4f"), ("test acc", "test_accuracy", ".4f"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``jaxreg experiment bias_variance``.

    Example:
      >>> import argparse
      >>> from jaxreg.experiments import bias_variance
      >>> parser = argparse.ArgumentParser()
      >>> bias_variance.add_arguments(parser)
      >>> args = parser.parse_args([])
      >>> args.l2
      '0,1e-5,1e-4,1e-3,1e-2,3e-2,1e-1'
    """
    arguments.add_story_arguments(parser, epochs=40, out="runs/bias_variance")
    parser.add_argument("--l2", default="0,1e-5,1e-4,1e-3,1e-2,3e-2,1e-1",
                        help="L2 coefficients of the sweep (log grid; 0 is the unregularized baseline)")
    parser.add_argument("--dropout-rates", default="0,0.1,0.3,0.5,0.7,0.8,0.9",
                        help="dropout rates of the sweep")
    parser.add_argument("--hidden-sizes", default="256,256", help="MLP hidden widths (default: 256,256)")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate (default: 1e-3)")


def run(args: argparse.Namespace) -> int:
    """Run both sweeps as one vmapped program, print the table, write results, report and figure."""
    info = arguments.check_story_arguments(args, float_inputs=True)
    strengths = arguments.parse_floats("--l2", args.l2)
    rates = arguments.parse_floats("--dropout-rates", args.dropout_rates, high=1.0, high_inclusive=False)
    hidden_sizes = arguments.parse_sizes("--hidden-sizes", args.hidden_sizes)
    splits = runner.load_splits(args.dataset, seed=args.seed, data_dir=args.data_dir, train_size=args.train_size,
                                 eval_size=args.eval_size, batch_size=args.batch_size)
    # Members: (l2, dropout) pairs, the unregularized one shared by the two sweeps.
    members = sorted({(s, 0.0) for s in strengths} | {(0.0, r) for r in rates}, key=lambda m: (m[1], m[0]))
    program = programs.sweep_program(info.num_outputs, hidden_sizes, learning_rate=args.learning_rate)
    variables = program.init(keys.init_key(args.seed), splits.train[0][:1])
    state = create_train_state(variables["params"], program.optimizer, keys.train_key(args.seed))
    hparams = programs.sweep_hparams([{"l2": strength, "dropout": rate} for strength, rate in members])
    report.log(args, f"bias_variance: {len(members)} members in one vmapped program ({args.epochs} epochs)")
    states, histories = sweep_fit(state, program.make_step, splits.train, hparams=hparams, epochs=args.epochs,
                                  batch_size=args.batch_size, val_data=splits.validation,
                                  eval_step=program.eval_step, eval_train=True, progress=not args.quiet)
    test = runner.evaluate(program.member_eval, states, *splits.test)

    def point(index: int, sweep: str, strength: float) -> dict:
        h = histories[index]
        return {"sweep": sweep, "strength": strength, "train_accuracy": h["train_eval_accuracy"][-1],
                "val_accuracy": h["val_accuracy"][-1], "test_accuracy": float(test["accuracy"][index]),
                "train_loss": records.finite(h["train_eval_loss"][-1]), "val_loss": records.finite(h["val_loss"][-1]),
                "gap": h["train_eval_accuracy"][-1] - h["val_accuracy"][-1],
                "val_accuracy_curve": h["val_accuracy"], "train_accuracy_curve": h["train_eval_accuracy"]}

    sweeps = {
        "l2": [point(members.index((s, 0.0)), "l2", s) for s in strengths],
        "dropout": [point(members.index((0.0, r)), "dropout", r) for r in rates],
    }
    best = {name: max(points, key=lambda p: p["val_accuracy"])["strength"] for name, points in sweeps.items()}
    config = arguments.config_of(args, hidden_sizes=list(hidden_sizes), num_train=int(splits.train[1].shape[0]))
    result = {"experiment": "bias_variance", "config": config, "num_members": len(members), "sweeps": sweeps,
              "best": best}
    rows = [*sweeps["l2"], *sweeps["dropout"]]
    lines = []
    for name, points in sweeps.items():
        top = max(points, key=lambda p: p["val_accuracy"])
        weakest, strongest = points[0], points[-1]
        lines.append(
            f"- {name}: from {weakest['strength']:g} to {strongest['strength']:g} the train accuracy goes "
            f"{weakest['train_accuracy']:.4f} -> {strongest['train_accuracy']:.4f} and the gap "
            f"{weakest['gap']:+.4f} -> {strongest['gap']:+.4f}; best validation accuracy {top['val_accuracy']:.4f} "
            f"at {top['strength']:g}.")
    body = "\n\n".join([
        f"MLP {'-'.join(map(str, hidden_sizes))} on `{args.dataset}` ({config['num_train']} training examples), Adam "
        f"{args.learning_rate:g}, batch {args.batch_size}, {args.epochs} epochs, seed {args.seed}: {len(members)} "
        "members trained as one `jax.vmap`-ped program (`jr.sweep_fit`). Train accuracy is measured in evaluation "
        "mode (no dropout) after the last epoch.",
        report.format_table(rows, _COLUMNS),
        "\n".join(lines),
        "![bias and variance](bias_variance.png)",
        f"Reproduce: `jaxreg experiment bias_variance --dataset {args.dataset} --epochs {args.epochs} "
        f"--seed {args.seed}`",
    ])
    figures = {"bias_variance.png": _plot(sweeps)}
    logged = [{"technique": f"l2 {strength:g}, dropout {rate:g}", "member": i, "history": histories[i]}
              for i, (strength, rate) in enumerate(members)]
    report.write_outputs(args.out, result, title="Bias and variance: sweeping L2 and dropout", report=body,
                          figures=figures, histories=logged, tensorboard=args.tensorboard)
    print(report.format_table(rows, _COLUMNS))
    return 0


def _plot(sweeps: dict):
    figure, axes = plots.new_figure(2, width=4.2, height=3.1)
    for ax, (name, points) in zip(axes, sweeps.items()):
        xs = [p["strength"] for p in points]
        labels = [f"{x:g}" for x in xs]
        if name == "l2":
            positive = [x for x in xs if x > 0]
            zero_at = min(positive) / 10 if positive else 1e-6
            xs = [zero_at if x == 0 else x for x in xs]
            ax.set_xscale("log")
        ax.plot(xs, [p["train_accuracy"] for p in points], "o--", color="C0", markersize=4, label="train")
        ax.plot(xs, [p["val_accuracy"] for p in points], "o-", color="C1", markersize=4, label="validation")
        top = max(range(len(points)), key=lambda i: points[i]["val_accuracy"])
        ax.axvline(xs[top], color="gray", linestyle=":", linewidth=1)
        ax.text(0.02, 0.04, "overfitting", transform=ax.transAxes, fontsize=8, color="gray")
        ax.text(0.98, 0.04, "underfitting", transform=ax.transAxes, fontsize=8, color="gray", ha="right")
        ax.set_xticks(xs, labels, fontsize=7, rotation=30)
        ax.minorticks_off()
        ax.set_xlabel("L2 coefficient" if name == "l2" else "dropout rate", fontsize=9)
        ax.set_ylabel("accuracy", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="center left")
    return figure


EXPERIMENT = register(Experiment(
    "bias_variance",
    "Sweeps of L2 strength and dropout rate (one vmapped program): train vs validation accuracy, under/overfitting.",
    add_arguments,
    run,
))
