"""The ``jaxreg`` command (floor 8): ``jaxreg compare``, ``jaxreg experiment NAME``, ``jaxreg datasets``.

::

    jaxreg compare [--dataset digits] [--model mlp|cnn|transformer] [--techniques LIST] [--epochs N]
                   [--batch-size B] [--seed S] [--out DIR] [--checkpoint-dir DIR] [--quiet] ...
    jaxreg experiment NAME [ARGS]     run a registered story (jaxreg experiment --help lists them)
    jaxreg datasets [--data-dir DIR]  list the datasets and whether each loads offline

Exit status: 0 on success; 2 for a bad argument (one line ``jaxreg: error: ...`` on stderr, no
traceback); 1 when a dataset is not available offline (the data module's one-paragraph explanation on
stderr), the lab's extras are not installed (one line naming the extra) or a run diverged (one line, after
the results were written; ``--keep-going`` exits 0); 130 when interrupted. Results are
written by the experiment (``--out``), the table goes to stdout, progress bars to stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn

__all__ = ["main"]

_PROG = "jaxreg"


class _ArgumentError(Exception):
    """An argparse usage error, raised instead of argparse's print-usage-and-exit."""

    def __init__(self, prog: str, message: str):
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _ArgumentError(self.prog, message)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _datasets(args: argparse.Namespace) -> int:
    from jaxreg.experiments import data
    from jaxreg.experiments.report import Column, format_table

    rows = [
        {
            "name": i.name,
            "source": i.source,
            "task": i.task,
            "input": "x".join(str(d) for d in i.input_shape) + (" tokens" if i.input_dtype == "int32" else ""),
            "outputs": i.num_outputs,
            "offline": "yes" if i.offline else "no",
        }
        for i in data.list_datasets(data_dir=args.data_dir)
    ]
    columns = [Column(h, k, str, "<") for h, k in
               (("name", "name"), ("source", "source"), ("task", "task"), ("input", "input"),
                ("outputs", "outputs"), ("offline", "offline"))]
    print(format_table(rows, columns))
    return 0


def _build_parser(*, list_experiments: bool) -> _Parser:
    # Only `jaxreg experiment` imports every story module (to list them); compare and datasets stay light.
    from jaxreg import experiments

    parser = _Parser(prog=_PROG, description="Functional regularization for JAX: experiments and reports.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    compare = experiments.get("compare")
    compare_parser = commands.add_parser("compare", help=compare.summary, description=compare.summary)
    compare.add_arguments(compare_parser)
    listing = ""
    if list_experiments:
        listing = " Experiments: " + "; ".join(f"{n}: {experiments.get(n).summary}" for n in experiments.names())
    story = commands.add_parser("experiment", help="run a registered experiment (jaxreg experiment --help)",
                                description="Run a registered experiment with its own arguments." + listing)
    story.add_argument("experiment", metavar="NAME", help="the experiment's name")
    story.add_argument("args", nargs=argparse.REMAINDER, help="the experiment's own arguments")
    datasets = commands.add_parser("datasets", help="list datasets and whether each is available offline")
    datasets.add_argument("--data-dir", default=None, help="TFDS data directory (default: $TFDS_DATA_DIR)")
    return parser


def _run(argv: Sequence[str]) -> int:
    from jaxreg import experiments

    parser = _build_parser(list_experiments=bool(argv) and argv[0] == "experiment")
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    if args.command == "datasets":
        return _datasets(args)
    if args.command == "compare":
        return _quietly(experiments.get("compare").run, args)
    story = experiments.get(args.experiment)
    story_parser = _Parser(prog=f"{_PROG} experiment {story.name}", description=story.summary)
    story.add_arguments(story_parser)
    story_args = story_parser.parse_args(args.args)
    story_args.experiment = story.name
    return _quietly(story.run, story_args)


def _quietly(run: Any, args: argparse.Namespace) -> int:
    # The loop's "skipped N steps" warning is said by the command itself: in the table and, for a diverged run,
    # in its one-line error. Other warnings still show.
    # Warnings that do show (an unreadable checkpoint skipped, ...) are one line each, like the errors; orbax's
    # own log lines (absl) are not for the command's user.
    logging.getLogger("absl").setLevel(logging.CRITICAL)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(fit|fit_members) skipped", category=RuntimeWarning)
        warnings.filterwarnings("default", message="skipped unreadable checkpoint")  # said, whatever the filters
        warnings.showwarning = _show_warning
        return run(args)


def _show_warning(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    print(f"{_PROG}: warning: {_one_line(message)}", file=sys.stderr if file is None else file)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``jaxreg`` command with ``argv`` (default ``sys.argv[1:]``) and return its exit status.

    Args:
      argv: the arguments after the program name.

    Returns:
      0 on success, 2 for a usage error, 1 for a dataset that is not available offline, a missing extra, a
      diverged run or unreadable checkpoints,
      130 on Ctrl-C.

    Example:
      >>> from jaxreg.cli import main
      >>> main(["compare", "--epochs", "0"])
      2
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        from jaxreg.experiments import UsageError
        from jaxreg.experiments.data import DatasetUnavailableError
        from jaxreg.experiments.records import RunError
    except ImportError as err:  # the lab's extras are missing: say which to install
        print(f"{_PROG}: {_one_line(err)}", file=sys.stderr)
        return 1
    try:
        return _run(argv)
    except _ArgumentError as err:
        print(f"{err.prog}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except UsageError as err:
        print(f"{_PROG}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except (DatasetUnavailableError, RunError) as err:
        print(f"{_PROG}: {_one_line(err)}", file=sys.stderr)
        return 1
    except ImportError as err:
        if "jaxreg[" not in str(err):  # not a missing extra (jaxreg._optional.require): a bug, show it
            raise
        print(f"{_PROG}: {_one_line(err)}", file=sys.stderr)
        return 1
    except SystemExit as exit_:  # --help
        return exit_.code if isinstance(exit_.code, int) else 0
    except KeyboardInterrupt:
        print(f"{_PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
