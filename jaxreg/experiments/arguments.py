"""Command-line arguments of the experiments: the shared options, their checks, and list parsers.

Every story adds :func:`add_common_arguments` (or :func:`add_story_arguments`, which adds the data-size
options) to its ``argparse`` parser, checks them with :func:`check_common_arguments` /
:func:`check_story_arguments`, and raises :class:`UsageError` for anything else that is wrong: the CLI prints
its one-line message and exits with status 2, before any data is loaded or any model trained.
:func:`config_of` turns the parsed options into the JSON-ready ``config`` of ``results.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any

__all__ = [
    "UsageError",
    "COMMON_RESULT_EXCLUDES",
    "positive_int",
    "non_negative_int",
    "fraction",
    "add_common_arguments",
    "check_common_arguments",
    "prepare_directory",
    "add_story_arguments",
    "check_story_arguments",
    "check_number",
    "parse_floats",
    "parse_sizes",
    "config_of",
]


class UsageError(ValueError):
    """A bad command-line argument; the CLI prints ``jaxreg: error: <message>`` and exits with status 2."""

# Arguments that choose where and how loudly a run happens, not what it computes: they stay out of
# results.json so that the file is identical for two output directories.
COMMON_RESULT_EXCLUDES = ("out", "checkpoint_dir", "quiet", "tensorboard", "experiment", "command",
                          "coordinator_address", "num_processes", "process_id")


def _integer(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    """An ``argparse`` type: an integer >= 1 (argparse's ``type=int`` would accept 0 and -3)."""
    return _integer(text, 1)


def non_negative_int(text: str) -> int:
    """An ``argparse`` type: an integer >= 0."""
    return _integer(text, 0)


def fraction(text: str) -> float:
    """An ``argparse`` type: a number in ``[0, 1)`` (e.g. ``--label-noise``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value:g}")
    return value


class _TensorBoardFlag(argparse.Action):
    """``--tensorboard``: a flag that checks at parse time, before any training, that its writer is installed."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any):
        super().__init__(option_strings, dest, nargs=0, default=False, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        import importlib.util

        from jaxreg._optional import require

        try:  # find it without importing it (the writer is imported after training)
            missing = importlib.util.find_spec("tensorboardX") is None
        except ValueError:  # in sys.modules without a spec
            missing = True
        if missing:  # an ImportError naming the extra: the CLI prints it on one line and exits 1
            require("tensorboardX", extra="tensorboard", user="--tensorboard")
        setattr(namespace, self.dest, True)


def add_common_arguments(
    parser: argparse.ArgumentParser,
    *,
    dataset: str = "digits",
    epochs: int = 10,
    batch_size: int = 32,
    seed: int = 0,
    out: str = "runs/experiment",
) -> None:
    """Add the options every story shares, with the story's own defaults.

    ``--dataset NAME`` (or ``PATH.npz``, a user's arrays), ``--task classification|regression`` (the task of an
    ``.npz`` file, when its labels' dtype should not decide), ``--epochs N`` (>= 1), ``--batch-size B`` (>= 1),
    ``--seed S`` (>= 0), ``--out DIR``,
    ``--checkpoint-dir DIR`` (default none), ``--data-dir DIR`` (TFDS data, default ``$TFDS_DATA_DIR``) and
    ``--quiet``, ``--tensorboard``. Integer ranges are checked by argparse itself (a usage error, exit status 2).

    Args:
      parser: the story's ``argparse`` parser.
      dataset, epochs, batch_size, seed, out: defaults of the corresponding options.

    Example:
      >>> import argparse
      >>> from jaxreg.experiments.arguments import add_common_arguments
      >>> parser = argparse.ArgumentParser()
      >>> add_common_arguments(parser, epochs=5)
      >>> args = parser.parse_args(["--batch-size", "16"])
      >>> args.epochs, args.batch_size, args.dataset, args.quiet
      (5, 16, 'digits', False)
    """
    parser.add_argument("--dataset", default=dataset,
                        help=f"dataset name (default: {dataset}; see `jaxreg datasets`) or PATH.npz holding x_train, "
                             "y_train, x_test, y_test (optionally x_val, y_val; else 20%% of train, seeded)")
    parser.add_argument("--task", choices=("classification", "regression"), default=None,
                        help="task of a PATH.npz dataset (default: from y's dtype: integers classify, floats regress)")
    parser.add_argument("--epochs", type=positive_int, default=epochs, help=f"training epochs (default: {epochs})")
    parser.add_argument("--batch-size", type=positive_int, default=batch_size,
                        help=f"global batch size, split over the devices (default: {batch_size})")
    parser.add_argument("--seed", type=non_negative_int, default=seed,
                        help=f"seed of the data split, the initialization and the noise (default: {seed})")
    parser.add_argument("--out", default=out, help=f"output directory (default: {out})")
    parser.add_argument("--checkpoint-dir", default=None,
                        help="save a checkpoint every epoch here and resume from it (default: none)")
    parser.add_argument("--data-dir", default=None, help="TFDS data directory (default: $TFDS_DATA_DIR)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress: neither the bar (on a terminal) nor the per-epoch lines on stderr")
    parser.add_argument("--tensorboard", action=_TensorBoardFlag,
                        help="also write TensorBoard event files to OUT/tensorboard/ (needs jaxreg[tensorboard])")
    group = parser.add_argument_group(
        "several processes (jax.distributed; docs/multihost.md)",
        "Start the same command once per process with these three (the names of jax.distributed.initialize's "
        "arguments): every process trains its share of each batch, process 0 alone writes --out and prints.")
    group.add_argument("--coordinator-address", default=None, metavar="HOST:PORT",
                       help="address of process 0's coordination service, the same for every process")
    group.add_argument("--num-processes", type=positive_int, default=None, metavar="N", help="number of processes")
    group.add_argument("--process-id", type=non_negative_int, default=None, metavar="I",
                       help="this process's index, 0 .. N-1")


def prepare_directory(option: str, path: str | os.PathLike) -> Path:
    """Create the output directory of ``option`` now, before any training, or raise a :class:`UsageError`.

    Args:
      option: the command-line option, for messages (``"--out"``).
      path: the directory; created with its parents if missing.

    Returns:
      The directory, as a ``Path``.

    Raises:
      UsageError: for an empty path, an existing file, a directory that cannot be created or is not writable.

    Example:
      >>> import tempfile
      >>> from jaxreg.experiments.arguments import UsageError, prepare_directory
      >>> with tempfile.NamedTemporaryFile() as f:
      ...     try:
      ...         prepare_directory("--out", f.name)
      ...     except UsageError as err:
      ...         print(str(err).split(": ")[-1])
      an existing file, not a directory
    """
    text = os.fspath(path)
    if not text.strip():
        raise UsageError(f"{option} must name a directory, got an empty path")
    directory = Path(text).expanduser()
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{option} {text}: an existing file, not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"{option} {text}: cannot create it ({err.strerror or err})") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {text}: not writable")
    return directory


def check_common_arguments(args: argparse.Namespace) -> None:
    """Check the shared options that argparse cannot, and create the output directories before any training.

    Args:
      args: the parsed namespace (from a parser that :func:`add_common_arguments` set up).

    Raises:
      UsageError: for an unknown dataset (the message lists the known ones), an ``.npz`` file that is missing
        or malformed (one line naming the file and the array), ``--task`` with a registered dataset, a batch size
        that is not a multiple of the number of devices used for data parallelism, or an output location (``--out``,
        ``--checkpoint-dir``) that is not a directory that can be created and written
        (:func:`prepare_directory`).

    Example:
      >>> import argparse
      >>> from jaxreg.experiments.arguments import UsageError, check_common_arguments
      >>> try:
      ...     check_common_arguments(argparse.Namespace(dataset="nope", batch_size=8))
      ... except UsageError as e:
      ...     print(str(e)[:30])
      unknown dataset 'nope'; availa
    """
    import jax

    from jaxreg.experiments import data, user_data

    task = getattr(args, "task", None)
    if user_data.is_npz_path(args.dataset):
        user_data.set_task(args.dataset, task)  # every later data.info / data.load of the file agrees with --task
        try:
            data.info(args.dataset, task=task)
        except ValueError as err:
            raise UsageError(str(err)) from None
    else:
        known = [i.name for i in data.list_datasets(data_dir=getattr(args, "data_dir", None))]
        if args.dataset not in known:
            raise UsageError(f"unknown dataset {args.dataset!r}; available datasets: {', '.join(known)}, "
                             "or a path to an .npz file")
        if task is not None:
            raise UsageError(f"--task applies only to --dataset PATH.npz; {args.dataset!r} has its own task")
    count = jax.device_count()
    if args.batch_size % count:
        raise UsageError(
            f"--batch-size must be a multiple of the {count} devices used for data parallelism, "
            f"got {args.batch_size}"
        )
    for option, name in (("--out", "out"), ("--checkpoint-dir", "checkpoint_dir")):
        if getattr(args, name, None) is not None:
            prepare_directory(option, getattr(args, name))


def add_story_arguments(parser: argparse.ArgumentParser, *, dataset: str = "digits", epochs: int = 10,
                        batch_size: int = 32, out: str = "runs/experiment", eval_size: int = 5000) -> None:
    """The common options (:func:`add_common_arguments`) plus ``--train-size``/``--eval-size``.

    ``--train-size N`` keeps a seeded random subset of N training examples (default: all); ``--eval-size N``
    caps the validation and test sets (default 5000: the validation set is evaluated in one batch after
    every epoch, which a full CIFAR-10 split would make slow and memory-hungry; the bundled and synthetic
    sets are smaller than that).

    Args:
      parser: the story's ``argparse`` parser.
      dataset, epochs, batch_size, out: defaults of the common options.
      eval_size: default of ``--eval-size``.
    """
    add_common_arguments(parser, dataset=dataset, epochs=epochs, batch_size=batch_size, out=out)
    parser.add_argument("--train-size", type=positive_int, default=None,
                        help="use a seeded random subset of this many training examples (default: all)")
    parser.add_argument("--eval-size", type=positive_int, default=eval_size,
                        help=f"cap the validation and test sets at this many examples (default: {eval_size})")


def check_story_arguments(args: argparse.Namespace, *, task: str = "classification", image: bool = False,
                          float_inputs: bool = False) -> Any:
    """Check the common options and that the dataset suits the story; return its ``DatasetInfo``.

    Args:
      args: parsed options (from :func:`add_story_arguments`).
      task: the task the story needs (``"classification"`` or ``"regression"``).
      image: whether the story needs NHWC image inputs.
      float_inputs: whether the story needs float inputs (its MLP has no token embedding).

    Returns:
      The dataset's :class:`jaxreg.experiments.data.DatasetInfo`.

    Raises:
      UsageError: unknown dataset, a batch size the devices do not divide, a dataset of the wrong task or
        without images, a non-finite learning rate, or ``--checkpoint-dir`` (not supported by the stories).
    """
    from jaxreg.experiments import data as _data

    if getattr(args, "checkpoint_dir", None) is not None:
        raise UsageError("--checkpoint-dir is not supported by this experiment (its runs take seconds to minutes)")
    check_common_arguments(args)
    info = _data.info(args.dataset, data_dir=args.data_dir)
    if info.task != task:
        hint = ""
        if info.source == "file":
            hint = "; integer labels mean classification, float targets regression, --task overrides"
        raise UsageError(f"this experiment needs a {task} dataset, got {args.dataset!r} ({info.task}{hint})")
    if image and len(info.input_shape) != 3:
        raise UsageError(f"this experiment needs image inputs, {args.dataset!r} has shape {info.input_shape}")
    if float_inputs and info.input_dtype != "float32":
        raise UsageError(f"this experiment's MLP needs float inputs, {args.dataset!r} has token inputs")
    learning_rate = getattr(args, "learning_rate", None)
    if learning_rate is not None and not (learning_rate > 0 and math.isfinite(learning_rate)):
        raise UsageError(f"--learning-rate must be a finite number > 0, got {learning_rate:g}")
    return info


def check_number(name: str, value: float, *, low: float = 0.0, high: float | None = None,
                 high_inclusive: bool = True, low_inclusive: bool = True) -> float:
    """Check that option ``name`` is a finite number in the range; return it as a float.

    Raises:
      UsageError: naming the option and the value.

    Example:
      >>> from jaxreg.experiments.arguments import check_number
      >>> check_number("--rate", 0.5, high=1.0, high_inclusive=False)
      0.5
    """
    value = float(value)
    too_low = value < low or (value == low and not low_inclusive)
    too_high = high is not None and (value > high or (value == high and not high_inclusive))
    if not math.isfinite(value) or too_low or too_high:
        bound = f"{'>=' if low_inclusive else '>'} {low:g}"
        if high is not None:
            bound += f" and {'<=' if high_inclusive else '<'} {high:g}"
        raise UsageError(f"{name} must be {bound}, got {value:g}")
    return value


def parse_floats(name: str, text: str, *, low: float = 0.0, high: float | None = None,
                 high_inclusive: bool = True) -> tuple[float, ...]:
    """Parse a comma-separated list of numbers for option ``name``, each in ``[low, high]``.

    Args:
      name: the option, for messages (``"--l2"``).
      text: e.g. ``"0,1e-4,1e-3"``.
      low, high: the allowed range (``high`` None: unbounded); ``high_inclusive`` whether ``high`` is allowed.

    Returns:
      The numbers, in order.

    Raises:
      UsageError: an empty list, a non-number, a value out of range or a repeated value.

    Example:
      >>> from jaxreg.experiments.arguments import parse_floats
      >>> parse_floats("--l2", "0, 1e-4,1e-3")
      (0.0, 0.0001, 0.001)
    """
    values = []
    for item in text.split(","):
        item = item.strip()
        try:
            value = float(item)
        except ValueError:
            raise UsageError(f"{name} must be a comma-separated list of numbers, got {text!r}") from None
        too_high = high is not None and (value > high or (value == high and not high_inclusive))
        if not math.isfinite(value) or value < low or too_high:
            bound = "" if high is None else f" and {'<=' if high_inclusive else '<'} {high:g}"
            raise UsageError(f"{name} values must be >= {low:g}{bound}, got {item}")
        if value in values:
            raise UsageError(f"{name} lists {item} twice")
        values.append(value)
    return tuple(values)


def parse_sizes(name: str, text: str) -> tuple[int, ...]:
    """Parse a comma-separated list of layer widths (ints >= 1) for option ``name``.

    Example:
      >>> from jaxreg.experiments.arguments import parse_sizes
      >>> parse_sizes("--hidden-sizes", "512,512")
      (512, 512)
    """
    try:
        sizes = tuple(int(item) for item in text.split(","))
    except ValueError:
        raise UsageError(f"{name} must be comma-separated integers such as 512,512, got {text!r}") from None
    if not sizes or any(size < 1 for size in sizes):
        raise UsageError(f"{name} must hold integers >= 1, got {text!r}")
    return sizes


def config_of(args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    """The JSON-ready config of a story: its parsed options without those that only say where or how loudly."""
    config = {k: v for k, v in sorted(vars(args).items())
              if k not in COMMON_RESULT_EXCLUDES and k != "data_dir" and not callable(v)}
    config.update(extra)
    return json.loads(json.dumps(config))
