"""The lab (floor 7): registered experiments ("stories") that the ``jaxreg`` command runs, and their runtime.

An experiment is a named, reproducible piece of work with its own command-line arguments: ``jaxreg
experiment NAME [ARGS]`` runs it, and ``jaxreg compare [ARGS]`` is the shortcut for the flagship one,
:mod:`jaxreg.experiments.compare`. To add a story, create a module in this package that registers it when
imported; every public module of ``jaxreg/experiments/`` is imported by :func:`load_all` (modules whose name
starts with ``_`` are skipped), so no other file needs editing::

    # jaxreg/experiments/my_story.py
    from jaxreg.experiments import Experiment, arguments, register, report, runner

    def add_arguments(parser):
        arguments.add_story_arguments(parser, epochs=20, out="runs/my_story")
        parser.add_argument("--strength", type=float, default=1e-3)

    def run(args) -> int:
        info = arguments.check_story_arguments(args)
        arguments.check_number("--strength", args.strength)       # UsageError: exit 2, one line
        splits = runner.load_splits(args.dataset, seed=args.seed, batch_size=args.batch_size)
        runs = [...]                                               # runner.train_run(...) per variant
        result = {"config": arguments.config_of(args), "runs": runs}
        return report.publish(args.out, result, title="My story", report="...")

    register(Experiment("my_story", "One line shown by `jaxreg experiment --help`.", add_arguments, run))

Contract of ``run(args) -> int`` (the CLI enforces the rest): raise :class:`UsageError` for a bad argument
(the CLI prints its one-line message and exits with status 2), let
:class:`jaxreg.experiments.data.DatasetUnavailableError` propagate (printed as its paragraph, exit 1), return
0 on success. A story is built on the lab's runtime: :mod:`~jaxreg.experiments.arguments` (options and
checks), :mod:`~jaxreg.experiments.keys` (every random stream), :mod:`~jaxreg.experiments.runner` (data on
the device, runs), :mod:`~jaxreg.experiments.records` (run records) and :mod:`~jaxreg.experiments.report`
(``results.json``, byte-identical for equal arguments; tables to stdout, progress to stderr unless
``args.quiet``; :func:`~jaxreg.experiments.report.publish` ends a story).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import pkgutil
from collections.abc import Callable
from pathlib import Path

# The registry needs nothing optional; each module of the lab names the extra it needs (jaxreg._optional):
# data (tensorflow-datasets, scikit-learn), plots (matplotlib); the stories need both (jaxreg[experiments]).
from jaxreg.experiments.arguments import (
    COMMON_RESULT_EXCLUDES,
    UsageError,
    add_common_arguments,
    check_common_arguments,
)

__all__ = [
    "Experiment",
    "UsageError",
    "register",
    "get",
    "names",
    "load_all",
    "describe",
    "add_common_arguments",
    "check_common_arguments",
    "COMMON_RESULT_EXCLUDES",
]

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


def _registered_in(source: str) -> list[tuple[str, str]]:
    """``(name, summary)`` of each ``Experiment("name", "summary", ...)`` call with literal strings in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Experiment" and len(node.args) >= 2
                and all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in node.args[:2])):
            found.append((node.args[0].value, node.args[1].value))
    return found


def describe() -> list[tuple[str, str]]:
    """``(name, summary)`` of every story, sorted by name, read from the modules' source without importing them.

    ``jaxreg --help`` and ``jaxreg experiment --help`` list the stories this way, so they answer without
    importing jax. A story registered with computed (non-literal) strings is imported to be described.

    Returns:
      A list of ``(name, summary)`` pairs.

    Example:
      >>> from jaxreg import experiments
      >>> dict(experiments.describe())["compare"][:5]
      'Train'
    """
    found: dict[str, str] = {}
    for module in pkgutil.iter_modules(__path__):
        if module.name.startswith("_"):
            continue
        path = Path(__path__[0]) / f"{module.name}.py"
        source = path.read_text(encoding="utf-8") if path.is_file() else ""
        listed = _registered_in(source)
        if not listed and "register(" in source:  # computed strings: import to know them
            importlib.import_module(f"{__name__}.{module.name}")
            listed = [(e.name, e.summary) for e in _REGISTRY.values() if e.run.__module__.endswith(module.name)]
        found.update(listed)
    for experiment in _REGISTRY.values():  # stories registered from elsewhere (tests, plugins)
        found.setdefault(experiment.name, experiment.summary)
    return sorted(found.items())


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
