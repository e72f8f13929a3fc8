"""Registered experiments ("stories") that the ``jaxreg`` command runs (floor 7).

An experiment is a named, reproducible piece of work with its own command-line arguments: ``jaxreg
experiment NAME [ARGS]`` runs it, and ``jaxreg compare [ARGS]`` is the shortcut for the flagship one,
:mod:`jaxreg.experiments.compare`. To add a story, create a module in this package that registers it when
imported; every public module of ``jaxreg/experiments/`` is imported by :func:`load_all` (modules whose name
starts with ``_`` are skipped), so no other file needs editing::

    # jaxreg/experiments/my_story.py
    from jaxreg.experiments import Experiment, UsageError, add_common_arguments, register

    def add_arguments(parser):
        add_common_arguments(parser, epochs=20, out="runs/my_story")
        parser.add_argument("--strength", type=float, default=1e-3)

    def run(args) -> int:
        if args.strength < 0:
            raise UsageError(f"--strength must be >= 0, got {args.strength}")
        ...  # train, then report.write_results(args.out, config, runs)
        return 0

    register(Experiment("my_story", "One line shown by `jaxreg experiment --help`.", add_arguments, run))

Contract of ``run(args) -> int`` (the CLI enforces the rest): raise :class:`UsageError` for a bad argument
(the CLI prints its one-line message and exits with status 2), let :class:`jaxreg.experiments.data.DatasetUnavailableError`
propagate (printed as its paragraph, exit 1), return 0 on success. Results go to ``args.out`` through
:mod:`jaxreg.experiments.report`, whose ``results.json`` is byte-identical for equal arguments; tables go
to stdout, progress to stderr (``args.quiet`` silences it).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import pkgutil
from collections.abc import Callable

__all__ = [
    "Experiment",
    "UsageError",
    "register",
    "get",
    "names",
    "load_all",
    "add_common_arguments",
    "check_common_arguments",
    "COMMON_RESULT_EXCLUDES",
]

# Arguments that choose where and how loudly a run happens, not what it computes: they stay out of
# results.json so that the file is identical for two output directories.
COMMON_RESULT_EXCLUDES = ("out", "checkpoint_dir", "quiet", "experiment", "command")


class UsageError(ValueError):
    """A bad command-line argument; the CLI prints ``jaxreg: error: <message>`` and exits with status 2."""


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A registered story: its name, a one-line summary, its arguments and its entry point.

    Attributes:
      name: the ``NAME`` of ``jaxreg experiment NAME``; lowercase letters, digits, ``_`` and ``-``.
      summary: one line for ``--help``.
      add_arguments: ``add_arguments(parser)`` adds the story's options to an ``argparse`` parser.
      run: ``run(args) -> int`` with the parsed ``argparse.Namespace``; see the module docstring.

    Example:
      >>> from jaxreg.experiments import Experiment
      >>> story = Experiment("hello", "Say hello.", lambda parser: None, lambda args: 0)
      >>> story.name, story.run(None)
      ('hello', 0)
    """

    name: str
    summary: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


_REGISTRY: dict[str, Experiment] = {}


def register(experiment: Experiment) -> Experiment:
    """Add ``experiment`` to the registry (at import of its module) and return it.

    Args:
      experiment: the :class:`Experiment` to register.

    Returns:
      ``experiment``, so that a module can keep it: ``EXPERIMENT = register(Experiment(...))``.

    Raises:
      ValueError: if the name is malformed or another experiment already uses it (re-registering the same
        object, e.g. after ``importlib.reload``, is allowed).
      TypeError: if ``experiment`` is not an :class:`Experiment` or its functions are not callable.

    Example:
      >>> from jaxreg.experiments import Experiment, get, register
      >>> _ = register(Experiment("doc-demo", "A doctest story.", lambda parser: None, lambda args: 0))
      >>> get("doc-demo").summary
      'A doctest story.'
    """
    if not isinstance(experiment, Experiment):
        raise TypeError(f"experiment must be an Experiment, got experiment = {experiment!r}.")
    name = experiment.name
    if not name or not all(c.isalnum() or c in "_-" for c in name) or name.lower() != name:
        raise ValueError(f"experiment name must be lowercase letters, digits, '_' or '-', got name = {name!r}.")
    if not (callable(experiment.add_arguments) and callable(experiment.run)):
        raise TypeError(f"experiment {name!r} needs callable add_arguments and run.")
    existing = _REGISTRY.get(name)
    if existing is not None and (existing.run.__module__, existing.run.__qualname__) != (
        experiment.run.__module__,
        experiment.run.__qualname__,
    ):
        raise ValueError(f"experiment name = {name!r} is already registered by {existing.run.__module__}.")
    _REGISTRY[name] = experiment
    return experiment


def load_all() -> None:
    """Import every public module of this package, so that each registers its experiments (idempotent)."""
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


def names() -> list[str]:
    """Sorted names of the registered experiments (after :func:`load_all`).

    Returns:
      A list of experiment names.

    Example:
      >>> from jaxreg import experiments
      >>> "compare" in experiments.names()
      True
    """
    load_all()
    return sorted(_REGISTRY)


def get(name: str) -> Experiment:
    """The registered experiment called ``name``.

    ``"compare"`` is imported directly; any other name imports every story module first (:func:`load_all`).

    Args:
      name: an experiment name (see :func:`names`).

    Returns:
      The :class:`Experiment`.

    Raises:
      UsageError: (a ``ValueError``) for an unknown name; the message lists the known ones.

    Example:
      >>> from jaxreg import experiments
      >>> experiments.get("compare").name
      'compare'
    """
    if name == "compare" and name not in _REGISTRY:
        importlib.import_module(f"{__name__}.compare")
    if name not in _REGISTRY:
        load_all()
    if name not in _REGISTRY:
        raise UsageError(f"unknown experiment {name!r}; available experiments: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def _positive_int(text: str) -> int:
    # argparse's `type=int` would accept 0 and -3; reject them here, naming the range, as a usage error.
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {value}")
    return value


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

    ``--dataset NAME``, ``--epochs N`` (>= 1), ``--batch-size B`` (>= 1), ``--seed S`` (>= 0), ``--out DIR``,
    ``--checkpoint-dir DIR`` (default none), ``--data-dir DIR`` (TFDS data, default ``$TFDS_DATA_DIR``) and
    ``--quiet``. Integer ranges are checked by argparse itself (a usage error, exit status 2).

    Args:
      parser: the story's ``argparse`` parser.
      dataset, epochs, batch_size, seed, out: defaults of the corresponding options.

    Example:
      >>> import argparse
      >>> from jaxreg.experiments import add_common_arguments
      >>> parser = argparse.ArgumentParser()
      >>> add_common_arguments(parser, epochs=5)
      >>> args = parser.parse_args(["--batch-size", "16"])
      >>> args.epochs, args.batch_size, args.dataset, args.quiet
      (5, 16, 'digits', False)
    """
    parser.add_argument("--dataset", default=dataset, help=f"dataset name (default: {dataset}; see `jaxreg datasets`)")
    parser.add_argument("--epochs", type=_positive_int, default=epochs, help=f"training epochs (default: {epochs})")
    parser.add_argument("--batch-size", type=_positive_int, default=batch_size,
                        help=f"global batch size, split over the devices (default: {batch_size})")
    parser.add_argument("--seed", type=_non_negative_int, default=seed,
                        help=f"seed of the data split, the initialization and the noise (default: {seed})")
    parser.add_argument("--out", default=out, help=f"output directory (default: {out})")
    parser.add_argument("--checkpoint-dir", default=None,
                        help="save a checkpoint every epoch here and resume from it (default: none)")
    parser.add_argument("--data-dir", default=None, help="TFDS data directory (default: $TFDS_DATA_DIR)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def check_common_arguments(args: argparse.Namespace) -> None:
    """Check the shared options that argparse cannot: a known dataset and a batch size the devices divide.

    Args:
      args: the parsed namespace (from a parser that :func:`add_common_arguments` set up).

    Raises:
      UsageError: for an unknown dataset (the message lists the known ones) or a batch size that is not a
        multiple of the number of devices used for data parallelism.

    Example:
      >>> import argparse
      >>> from jaxreg.experiments import UsageError, check_common_arguments
      >>> try:
      ...     check_common_arguments(argparse.Namespace(dataset="nope", batch_size=8))
      ... except UsageError as e:
      ...     print(str(e)[:30])
      unknown dataset 'nope'; availa
    """
    import jax

    from jaxreg.experiments import data

    known = [i.name for i in data.list_datasets(data_dir=getattr(args, "data_dir", None))]
    if args.dataset not in known:
        raise UsageError(f"unknown dataset {args.dataset!r}; available datasets: {', '.join(known)}")
    count = jax.device_count()
    if args.batch_size % count:
        raise UsageError(
            f"--batch-size must be a multiple of the {count} devices used for data parallelism, "
            f"got {args.batch_size}"
        )
