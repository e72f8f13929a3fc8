"""Per-epoch progress of :func:`jaxreg.fit` and :func:`jaxreg.fit_members`: a tqdm bar or one log line per epoch.

``progress=True`` (the loop's argument) reports every epoch in one of two ways, chosen once per loop call:

* stderr is a terminal and tqdm is installed (the ``progress`` extra): a tqdm bar with the latest losses;
* otherwise (output piped to a file or CI, or no tqdm): one ``INFO`` record per epoch on the ``jaxreg`` logger,
  like Keras' ``verbose=2``, e.g. ``fit: epoch 3/60 loss 0.4123 val_loss 0.5012 val_accuracy 0.871 (0.21s)``;
  for ``K`` members the means over the members still training (``fit_members: epoch 3/60 members 12 (mean):
  loss ...``).

``progress=False`` reports nothing. The library never configures logging: a program that wants the lines
configures the ``jaxreg`` logger (``logging.basicConfig(level=logging.INFO)``, or ``with`` :func:`log_to_stderr`,
as the ``jaxreg`` command does); without that, Python drops ``INFO`` records and nothing is printed.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TextIO

import numpy as np

__all__ = ["LOGGER_NAME", "epoch_line", "EpochProgress", "log_to_stderr"]

LOGGER_NAME = "jaxreg"
logger = logging.getLogger(LOGGER_NAME)

# Keras' verbose=2 names, in its order: history key -> name shown.
_SHOWN = (("train_loss", "loss"), ("train_accuracy", "accuracy"), ("val_loss", "val_loss"),
          ("val_accuracy", "val_accuracy"))


def epoch_line(epoch: int, epochs: int, metrics: Mapping[str, float], *, members: int | None = None,
               seconds: float | None = None) -> str:
    """The log line of one epoch: ``epoch E/N``, then loss, accuracy, val_loss and val_accuracy when recorded.

    Args:
      epoch: the epoch just finished, counted from 1.
      epochs: the last epoch of the run (the loop's ``epochs``).
      metrics: history values of this epoch (``train_loss``, ``val_accuracy``...); others are ignored. For
        members, pass the means.
      members: the number of members averaged, for :func:`jaxreg.fit_members` (None for :func:`jaxreg.fit`).
      seconds: the epoch's wall-clock time, shown at the end when given.

    Returns:
      The line, without a trailing newline.

    Example:
      >>> from jaxreg.progress import epoch_line
      >>> epoch_line(3, 60, {"train_loss": 0.41234, "val_loss": 0.50118, "val_accuracy": 0.8711})
      'epoch 3/60 loss 0.4123 val_loss 0.5012 val_accuracy 0.8711'
      >>> epoch_line(1, 2, {"train_loss": float("nan")}, members=12, seconds=0.25)
      'epoch 1/2 members 12 (mean): loss nan (0.25s)'
    """
    parts = [f"epoch {epoch}/{epochs}"]
    if members is not None:
        parts.append(f"members {members} (mean):")
    for key, name in _SHOWN:
        if key in metrics:
            value = float(metrics[key])
            parts.append(f"{name} {value:.4f}" if math.isfinite(value) else f"{name} {value}")
    if seconds is not None:
        parts.append(f"({seconds:.2f}s)")
    return " ".join(parts)


class EpochProgress:
    """The loop's per-epoch report (see the module docstring): a tqdm bar on a terminal, else log lines.

    Args:
      enabled: the loop's ``progress`` argument; False reports nothing.
      epochs: the epoch numbers the loop will run (``range(initial_epoch, epochs)``).
      desc: the bar's label and the log lines' prefix (``"fit"`` or ``"fit_members"``).
      members: the number of members (None for :func:`jaxreg.fit`).
      stream: where the bar goes (default ``sys.stderr``); log lines go wherever logging sends them.

    Example:
      >>> import io, logging
      >>> from jaxreg.progress import EpochProgress
      >>> stream = io.StringIO()
      >>> handler = logging.StreamHandler(stream)
      >>> logging.getLogger("jaxreg").addHandler(handler); logging.getLogger("jaxreg").setLevel(logging.INFO)
      >>> report = EpochProgress(True, range(0, 2), "fit", stream=io.StringIO())  # not a terminal: log lines
      >>> report.update(0, {"train_loss": [0.5]}, active=[0])
      >>> report.close()
      >>> logging.getLogger("jaxreg").removeHandler(handler); logging.getLogger("jaxreg").setLevel(logging.NOTSET)
      >>> stream.getvalue().split(" (")[0]
      'fit: epoch 1/2 loss 0.5000'
    """

    def __init__(self, enabled: bool, epochs: range, desc: str, *, members: int | None = None,
                 stream: TextIO | None = None):
        self.desc = desc
        self.members = members
        self.total = epochs.stop
        self.bar: Any = None
        self.lines = False
        self._start = time.perf_counter()
        if not enabled:
            return
        stream = sys.stderr if stream is None else stream
        if _is_terminal(stream):
            try:
                from tqdm.auto import tqdm
            except ImportError:  # tqdm is optional (the `progress` extra): fall back to log lines
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=len(epochs), desc=desc, unit="epoch", file=stream)
                return
        self.lines = logger.isEnabledFor(logging.INFO)

    def update(self, epoch: int, columns: Mapping[str, Any], active: Sequence[int]) -> None:
        """Report epoch ``epoch`` (from 0) from its history ``columns`` (one value per member) for the ``active``
        members (those that trained this epoch)."""
        active = np.asarray(active, dtype=np.int64)
        if self.bar is not None:
            self.bar.update(1)
            shown = int(active[0]) if active.size else 0
            self.bar.set_postfix({k: f"{np.asarray(columns[k])[shown]:.4g}" for k in ("train_loss", "val_loss")
                                  if k in columns})
        elif self.lines and active.size:
            now = time.perf_counter()
            means = {key: float(np.mean(np.asarray(columns[key], np.float64)[active]))
                     for key, _ in _SHOWN if key in columns}
            members = None if self.members is None else int(active.size)
            line = epoch_line(epoch + 1, self.total, means, members=members, seconds=now - self._start)
            logger.info("%s: %s", self.desc, line)
            self._start = now

    def close(self) -> None:
        """Close the bar, if any."""
        if self.bar is not None:
            self.bar.close()


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


@contextlib.contextmanager
def log_to_stderr(level: int = logging.INFO) -> Iterator[logging.Handler]:
    """While active, send the ``jaxreg`` logger's records (the loop's epoch lines) to stderr as plain lines.

    For programs: the ``jaxreg`` command runs every experiment inside it (a library leaves logging to its
    user). The records do not also propagate to the root logger meanwhile, so no other handler (absl's)
    prints them twice; on exit the logger is as before.

    Args:
      level: the lowest level shown (``logging.INFO`` shows the epoch lines).

    Yields:
      The handler, bound to the ``sys.stderr`` of the moment of entry.

    Example:
      >>> import logging
      >>> from jaxreg.progress import log_to_stderr
      >>> with log_to_stderr() as handler:
      ...     handler in logging.getLogger("jaxreg").handlers
      True
      >>> handler in logging.getLogger("jaxreg").handlers
      False
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    saved = logger.level, logger.propagate
    logger.setLevel(level)
    logger.propagate = False
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
