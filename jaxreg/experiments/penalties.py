"""``jaxreg experiment penalties``: L1 vs L2 vs elastic net vs proximal L1 on the same MLP.

Five runs from the same initial parameters, batches and optimizer (Adam), differing only in the penalty on
the kernels (:func:`jaxreg.kernel_mask`; biases are not penalized), trained as one ``jax.vmap``-ped program
(:func:`jaxreg.fit_members`; every coefficient is a traced hyperparameter, 0 for the members that do not
use it, which changes nothing: a zero coefficient adds an exactly zero gradient and a zero threshold leaves
the weights alone, up to float rounding):

* ``none``: no penalty;
* ``l1``: ``loss + c * jr.l1(params)``, minimized by (sub)gradient steps through Adam;
* ``l2``: ``loss + c * jr.l2(params)``;
* ``elastic_net``: ``loss + jr.elastic_net(params, alpha=c, l1_ratio=0.5)``;
* ``proximal_l1``: no loss term; :func:`jaxreg.proximal_l1` soft-thresholds the weights after each Adam
  step (``learning_rate * strength`` per step).

What it shows: an L1 penalty minimized by subgradient steps pulls many weights *near* zero but leaves
**no exact zeros** (a weight oscillates around 0, the subgradient ``sign(w)`` never lands on it), while the
proximal step sets weights to **exactly 0.0**: real sparsity, which a sparse storage format or pruning can
use. L2 shrinks every weight (smallest kernel norm per unit of accuracy lost) and zeros none.

Records per run, besides the usual accuracies: ``sparsity`` (fraction of exact zeros among kernel
weights), ``exact_zeros``, ``near_zero_fraction`` (``|w| < 1e-3``), ``kernel_l1_norm``, ``kernel_l2_norm``
and ``abs_weight_fractions`` (fraction of kernel weights with ``|w| <= t`` for ``t`` in ``thresholds``;
``t = 0`` counts exact zeros). Figures: ``sparsity.png`` (those fractions against ``t``) and
``weights.png`` (histograms of the kernel weights).
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

from jaxreg.experiments import Experiment, arguments, dashboard, plots, programs, records, register, report, runner

__all__ = ["TECHNIQUES", "THRESHOLDS", "add_arguments", "run", "EXPERIMENT"]

TECHNIQUES = ("none", "l1", "l2", "elastic_net", "proximal_l1")
THRESHOLDS = (0.0, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)

_COLUMNS = report.columns(
    ("penalty", "technique", ""), ("strength", "strength", ".0e"), ("test acc", "test_accuracy", ".4f"),
    ("gap", "generalization_gap", "+.4f"), ("|W|_1", "kernel_l1_norm", ".1f"), ("|W|_2", "kernel_l2_norm", ".2f"),
    ("exact zeros", "sparsity", ".4f"), ("|w|<1e-3", "near_zero_fraction", ".4f"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``jaxreg experiment penalties``.

    Example:
      >>> import argparse
      >>> from jaxreg.experiments import penalties
      >>> parser = argparse.ArgumentParser()
      >>> penalties.add_arguments(parser)
      >>> args = parser.parse_args(["--l1", "1e-4"])
      >>> args.l1, args.proximal_l1, args.epochs
      (0.0001, 0.1, 40)
    """
    arguments.add_story_arguments(parser, epochs=40, out="runs/penalties")
    parser.add_argument("--hidden-sizes", default="256,256", help="MLP hidden widths (default: 256,256)")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate (default: 1e-3)")
    parser.add_argument("--l1", type=float, default=3e-5, help="L1 coefficient (default: 3e-5)")
    parser.add_argument("--l2", type=float, default=3e-4, help="L2 coefficient (default: 3e-4)")
    parser.add_argument("--elastic-net", type=float, default=3e-4,
                        help="elastic-net alpha, l1_ratio 0.5 (default: 3e-4)")
    parser.add_argument("--proximal-l1", type=float, default=0.1,
                        help="proximal L1 strength; the threshold per step is learning rate x strength (default: 0.1)")


def _weight_statistics(params) -> dict:
    flat = np.abs(records.kernel_values(params)).astype(np.float64)
    return {
        "exact_zeros": int(np.sum(flat == 0.0)),
        "num_kernel_weights": int(flat.size),
        "kernel_l1_norm": float(np.sum(flat)),
        "thresholds": list(THRESHOLDS),
        "abs_weight_fractions": [float(np.mean(flat <= t)) for t in THRESHOLDS],
    }


def run(args: argparse.Namespace) -> int:
    """Train one MLP per penalty (one vmapped program), print the table, write results, report and figures."""
    info = arguments.check_story_arguments(args, float_inputs=True)
    hidden_sizes = arguments.parse_sizes("--hidden-sizes", args.hidden_sizes)
    strengths = {"none": 0.0}
    for technique, option in (("l1", "--l1"), ("l2", "--l2"), ("elastic_net", "--elastic-net"),
                              ("proximal_l1", "--proximal-l1")):
        strengths[technique] = arguments.check_number(option, getattr(args, technique), low_inclusive=False)
    splits = runner.load_splits(args.dataset, seed=args.seed, data_dir=args.data_dir, train_size=args.train_size,
                                 eval_size=args.eval_size, batch_size=args.batch_size)
    members = [{} if t == "none" else {t: strengths[t]} for t in TECHNIQUES]
    program = programs.sweep_program(info.num_outputs, hidden_sizes, learning_rate=args.learning_rate)
    report.log(args, f"penalties: training {', '.join(TECHNIQUES)} as one vmapped program ({args.epochs} epochs)")
    states, histories = runner.train_members(program, splits, members, seeds=[args.seed] * len(TECHNIQUES),
                                              epochs=args.epochs, batch_size=args.batch_size,
                                              progress=not args.quiet)
    runs = runner.member_records(program, states, histories, splits, TECHNIQUES, members)
    params = jax.device_get(states.params)
    for i, record in enumerate(runs):
        record.update(_weight_statistics(jax.tree.map(lambda a, i=i: a[i], params)))
        record["strength"] = strengths[record["technique"]]
    config = arguments.config_of(args, hidden_sizes=list(hidden_sizes), num_train=int(splits.train[1].shape[0]))
    result = {"experiment": "penalties", "config": config, "runs": runs}
    by_name = {r["technique"]: r for r in runs}
    l1_run, prox = by_name["l1"], by_name["proximal_l1"]
    body = "\n\n".join([
        f"MLP {'-'.join(map(str, hidden_sizes))} on `{args.dataset}` ({config['num_train']} training examples), "
        f"Adam {args.learning_rate:g}, batch {args.batch_size}, {args.epochs} epochs, seed {args.seed}; penalties on "
        "the kernels only.",
        report.format_table(runs, _COLUMNS),
        f"Exact zeros: L1 by subgradient {l1_run['exact_zeros']} of {l1_run['num_kernel_weights']} kernel weights "
        f"({l1_run['near_zero_fraction']:.1%} are below 1e-3 in magnitude, none exactly 0); proximal L1 "
        f"{prox['exact_zeros']} ({prox['sparsity']:.1%}). A subgradient step moves a weight by "
        "`lr * sign(w)`-like amounts and jumps over 0; the proximal step (soft-thresholding) sets every weight "
        "within the threshold to exactly 0.0.",
        "![fraction of small weights](sparsity.png)\n\n![weight histograms](weights.png)\n\n"
        "![dashboard](dashboard.png)",
        f"Reproduce: `jaxreg experiment penalties --dataset {args.dataset} --epochs {args.epochs} --seed {args.seed}`",
    ])
    figures = {"sparsity.png": _plot_fractions(runs), "dashboard.png": dashboard.dashboard(runs),
               "weights.png": plots.weight_distributions(runs, columns=len(runs))}
    return report.publish(args.out, result, title="L1, L2, elastic net and proximal L1", report=body, figures=figures,
                          tensorboard=args.tensorboard,
                          columns=_COLUMNS)


def _plot_fractions(runs: list[dict]):
    figure, (ax,) = plots.new_figure(width=5.0, height=3.4)
    positive = [t for t in THRESHOLDS if t > 0]
    zero_at = positive[0] / 10  # where t = 0 (exact zeros) is drawn on the log axis
    xs = [zero_at if t == 0 else t for t in THRESHOLDS]
    for i, run in enumerate(runs):
        ax.plot(xs, run["abs_weight_fractions"], marker="o", markersize=3, color=f"C{i}", label=run["technique"])
    ax.set_xscale("log")
    ax.set_xticks(xs[::2], ["0 (exact)"] + [f"{t:.0e}" for t in THRESHOLDS[2::2]], fontsize=8)
    ax.set_xlabel("threshold t")
    ax.set_ylabel("fraction of kernel weights with |w| <= t", fontsize=9)
    ax.set_title("Only the proximal step makes exact zeros", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return figure


EXPERIMENT = register(Experiment(
    "penalties",
    "L1 vs L2 vs elastic net vs proximal L1: accuracy, weight norms and exact sparsity.",
    add_arguments,
    run,
))
