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
import contextlib
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

    if getattr(args, "datasets_command", None) == "prepare":
        from jaxreg.experiments import tfds_data

        if args.out is not None and args.format != "npz":
            raise _ArgumentError(f"{_PROG} datasets prepare", "--out applies only to --format npz")
        where = tfds_data.prepare(args.name, data_dir=args.data_dir, file_format=args.format, out=args.out)
        use = f"--dataset {where}"
        if args.format == "array_record":
            use = f"--dataset {args.name} --data-dir {args.data_dir or '$TFDS_DATA_DIR'}"
        print(f"{_PROG}: {args.name} is prepared in {where}; use it with `{use}`")
        return 0

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
    # stderr, so that stdout stays one table for scripts
    print(f"{_PROG}: offline = no? on a connected machine run `{_PROG} datasets prepare NAME` (mnist, fashion_mnist, "
          "cifar10; --format npz for a keras-made .npz), or pass your own arrays: --dataset PATH.npz", file=sys.stderr)
    return 0


def _story_listing() -> str:
    from jaxreg import experiments  # the registry: reads the stories' sources, imports no jax

    stories = experiments.describe()
    width = max(len(name) for name, _ in stories)
    return "experiments (jaxreg experiment NAME --help for each one's options):\n" + "\n".join(
        f"  {name:<{width}}  {summary}" for name, summary in stories)


def _build_parser() -> _Parser:
    """The top-level parser. Light: no story module and no jax is imported to build it (``--help`` is fast)."""
    from jaxreg import experiments

    summaries = dict(experiments.describe())
    listing = _story_listing()
    parser = _Parser(prog=_PROG, description="Functional regularization for JAX: experiments and reports.",
                     epilog=listing, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    # `jaxreg compare ARGS` is parsed by compare's own parser (see _run); this entry lists it in --help.
    commands.add_parser("compare", help=summaries["compare"], add_help=False)
    story = commands.add_parser("experiment", help="run a registered experiment (jaxreg experiment --help)",
                                description="Run a registered experiment with its own arguments.", epilog=listing,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    story.add_argument("experiment", metavar="NAME", help="the experiment's name")
    story.add_argument("args", nargs=argparse.REMAINDER, help="the experiment's own arguments")
    datasets = commands.add_parser("datasets", help="list datasets and whether each is available offline; "
                                   "`datasets prepare NAME` downloads one")
    datasets.add_argument("--data-dir", default=None, help="TFDS data directory (default: $TFDS_DATA_DIR)")
    datasets_commands = datasets.add_subparsers(dest="datasets_command", metavar="prepare")
    prepare = datasets_commands.add_parser(
        "prepare", help="download and prepare mnist, fashion_mnist or cifar10 (needs internet)",
        description="Download and prepare a dataset for offline use: TFDS ArrayRecord in --data-dir (needs "
                    "tensorflow), or an .npz file made with keras.datasets (--format npz) for --dataset PATH.npz.")
    prepare.add_argument("name", choices=("mnist", "fashion_mnist", "cifar10"), help="the dataset")
    prepare.add_argument("--data-dir", default=argparse.SUPPRESS,
                         help="TFDS data directory (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    prepare.add_argument("--format", choices=("array_record", "npz"), default="array_record",
                         help="array_record (TFDS, default) or npz (keras.datasets)")
    prepare.add_argument("--out", default=None, help="the .npz file for --format npz (default: NAME.npz)")
    return parser


def _story_parser(name: str) -> tuple[Any, _Parser]:
    """The story ``name`` (imported now) and its parser (``jaxreg compare`` or ``jaxreg experiment NAME``)."""
    from jaxreg import experiments

    story = experiments.get(name)
    prog = f"{_PROG} compare" if name == "compare" else f"{_PROG} experiment {story.name}"
    story_parser = _Parser(prog=prog, description=story.summary)
    story.add_arguments(story_parser)
    return story, story_parser


def _run(argv: Sequence[str]) -> int:
    if argv and argv[0] == "compare":
        story, story_parser = _story_parser("compare")
        return _quietly(story.run, story_parser.parse_args(argv[1:]))
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    if args.command == "datasets":
        return _datasets(args)
    story, story_parser = _story_parser(args.experiment)
    story_args = story_parser.parse_args(args.args)
    story_args.experiment = story.name
    return _quietly(story.run, story_args)


def _quietly(run: Any, args: argparse.Namespace) -> int:
    # The loop's "skipped N steps" warning is said by the command itself: in the table and, for a diverged run,
    # in its one-line error. Other warnings still show.
    # Warnings that do show (an unreadable checkpoint skipped, ...) are one line each, like the errors; orbax's
    # own log lines (absl) are not for the command's user.
    logging.getLogger("absl").setLevel(logging.CRITICAL)
    # Progress: a bar on a terminal, one `jaxreg` log line per epoch on a piped stderr, nothing with --quiet.
    from jaxreg.progress import log_to_stderr

    with contextlib.ExitStack() as stack:
        _join_processes(args, stack)
        _use_compilation_cache()
        stack.enter_context(contextlib.nullcontext() if getattr(args, "quiet", False) else log_to_stderr())
        stack.enter_context(warnings.catch_warnings())
        warnings.filterwarnings("ignore", message=r"(fit|fit_members) skipped", category=RuntimeWarning)
        warnings.filterwarnings("default", message="skipped unreadable checkpoint")  # said, whatever the filters
        warnings.showwarning = _show_warning
        return run(args)


def _use_compilation_cache() -> None:
    """JAX's persistent compilation cache for the command: a story run again skips XLA's compilations.

    The directory is ``$JAXREG_CACHE_DIR`` (``off`` disables it), else ``~/.cache/jaxreg/xla``; a cache the user
    configured for JAX itself (``JAX_COMPILATION_CACHE_DIR``) is left as it is. Compiled programs are the same
    with or without it, so results are too (byte-identical ``results.json``).
    """
    import os

    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return
    directory = os.environ.get("JAXREG_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "jaxreg", "xla"))
    if directory.lower() in ("", "0", "off", "none"):
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


# Options that may differ between the processes of one run; every other option must be the same everywhere.
_PER_PROCESS_OPTIONS = ("process_id", "out", "checkpoint_dir", "data_dir", "quiet", "experiment")


@contextlib.contextmanager
def _c_stdout_to_stderr() -> Any:
    """Send what C/C++ code writes to file descriptor 1 to the stderr descriptor meanwhile."""
    import os

    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no file descriptor 1 (an embedding host): nothing to redirect
        yield
        return
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _join_processes(args: argparse.Namespace, stack: contextlib.ExitStack) -> None:
    """With --coordinator-address/--num-processes/--process-id: join the run, check it, quiet the others.

    ``jax.distributed`` is initialized before anything touches JAX's backend; the options of every process are
    compared (a differing one is named, on every process, exit 2); a process other than 0 trains as usual but
    writes its outputs to a temporary directory (deleted at the end), prints no table and no progress.
    """
    from jaxreg.experiments import UsageError

    joined = {name: getattr(args, name, None) for name in ("coordinator_address", "num_processes", "process_id")}
    if all(value is None for value in joined.values()):
        return
    missing = [name for name, value in joined.items() if value is None]
    if missing:
        raise UsageError("--coordinator-address, --num-processes and --process-id go together; missing "
                         + ", ".join("--" + name.replace("_", "-") for name in missing))
    from jaxreg import parallel

    try:
        with _c_stdout_to_stderr():  # gloo says "[Gloo] Rank 0 is connected..." on stdout, where tables go
            parallel.initialize(joined["coordinator_address"], joined["num_processes"], joined["process_id"])
            shared = {"--" + name.replace("_", "-"): value for name, value in sorted(vars(args).items())
                      if name not in _PER_PROCESS_OPTIONS}
            parallel.check_same(shared, what="option")  # the first collective: gloo connects here
    except (ValueError, TypeError, RuntimeError) as err:
        raise UsageError(str(err)) from None
    if not parallel.is_main_process():
        import os
        import shutil
        import tempfile

        args.out = tempfile.mkdtemp(prefix=f"jaxreg-process{joined['process_id']}-")
        stack.callback(shutil.rmtree, args.out, ignore_errors=True)
        args.quiet = True
        stack.enter_context(contextlib.redirect_stdout(open(os.devnull, "w")))


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
    from jaxreg.experiments import UsageError  # light (no jax): --help stays fast

    try:
        return _run(argv)
    except _ArgumentError as err:
        print(f"{err.prog}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except UsageError as err:
        print(f"{_PROG}: error: {_one_line(err)}", file=sys.stderr)
        return 2
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
    except Exception as err:
        if _peer_failed(err):
            print(f"{_PROG}: another process of this run failed or was stopped, so this one stops too "
                  f"({_one_line(err)[:300]})", file=sys.stderr)
            return 1
        if not _said_in_one_paragraph(err):
            raise
        print(f"{_PROG}: {_one_line(err)}", file=sys.stderr)
        return 1


def _peer_failed(err: Exception) -> bool:
    """A collective of a multi-process run whose peer died (jax raises JaxRuntimeError: connection closed)."""
    jax = sys.modules.get("jax")
    if jax is None or not isinstance(err, jax.errors.JaxRuntimeError):
        return False
    try:
        return jax.process_count() > 1
    except Exception:  # noqa: BLE001 - the backend itself may be gone
        return False


def _said_in_one_paragraph(err: Exception) -> bool:
    """A dataset that is not available offline or a failed run: errors whose message is meant for the user.

    Their modules are looked up, not imported: an error of theirs means they are loaded already.
    """
    data, records = sys.modules.get("jaxreg.experiments.data"), sys.modules.get("jaxreg.experiments.records")
    kinds = tuple(k for k in (getattr(data, "DatasetUnavailableError", None), getattr(records, "RunError", None)) if k)
    return isinstance(err, kinds)


if __name__ == "__main__":
    sys.exit(main())
