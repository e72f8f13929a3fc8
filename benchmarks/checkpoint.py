"""What checkpointing every epoch costs ``jaxreg compare`` (issue 15's target: <= 1.2x).

Workload: ``jaxreg compare --techniques none,dropout,l2 --epochs 20`` on the bundled digits (the issue's
case), with and without ``--checkpoint-dir`` (a fresh directory for every call, so each call trains and
saves; a directory that already holds the run would return at once).

* **command**: the whole command in a subprocess, as a user runs it (start-up, compilation, training,
  saves, outputs), with ``--checkpoint-dir`` against without, interleaved; the ratio is the cost of leaving
  checkpoints on (target <= 1.2; the issue measured 3x before background saves).
* **steady state** (context): ``run_compare`` in this process after a warm-up, so compilation is excluded
  and only the training loop remains: on digits an epoch takes ~10 ms, less than one orbax save, so here the
  per-run fixed costs (the checkpoint manager, the first and the always-synchronous last save, the
  per-epoch host sync of the hook) dominate. Shown with background saves (the default) and with
  ``asynchronous=False`` (every epoch saved, waiting for the disk).

Run: ``python -m benchmarks.checkpoint [--quick]``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from unittest import mock

from benchmarks._timing import Result, time_interleaved

BENCH = "checkpoint"
TECHNIQUES = ("none", "dropout", "l2")
EPOCHS = 20
TARGET = 1.2


def _compare(epochs: int, checkpoint_root: str | None, asynchronous: bool = True) -> Callable[[], object]:
    """A zero-argument ``run_compare`` call; with a root, each call checkpoints into a fresh directory there."""
    from jaxreg import checkpoint
    from jaxreg.experiments.compare import CompareConfig, run_compare

    config = CompareConfig(techniques=TECHNIQUES, epochs=epochs)
    counter = itertools.count()
    hook_init = checkpoint.CheckpointHook.__init__

    def run() -> object:
        if checkpoint_root is None:
            return run_compare(config)["runs"][-1]["test_accuracy"]
        directory = f"{checkpoint_root}/{next(counter)}"
        if asynchronous:
            result = run_compare(config, checkpoint_dir=directory)
        else:
            def sync_init(self, *args, **kwargs):
                hook_init(self, *args, **{**kwargs, "asynchronous": False})

            with mock.patch.object(checkpoint.CheckpointHook, "__init__", sync_init):
                result = run_compare(config, checkpoint_dir=directory)
        shutil.rmtree(directory)
        return result["runs"][-1]["test_accuracy"]

    return run


def _command(epochs: int, root: str, checkpoints: bool) -> Callable[[], int]:
    """The whole ``jaxreg compare`` in a subprocess; with checkpoints, into a fresh directory each call."""
    counter = itertools.count()
    env = {**os.environ}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # each call compiles, as a user's first run does

    def run() -> int:
        n = next(counter)
        args = [sys.executable, "-m", "jaxreg.cli", "compare", "--techniques", ",".join(TECHNIQUES),
                "--epochs", str(epochs), "--quiet", "--out", f"{root}/out-{checkpoints}-{n}"]
        if checkpoints:
            args += ["--checkpoint-dir", f"{root}/ckpt-{n}"]
        subprocess.run(args, env=env, check=True, capture_output=True)
        return 0

    return run


def run(quick: bool) -> list[Result]:
    """``quick``: 5 epochs, one repetition; else ``EPOCHS`` epochs, three interleaved repetitions."""
    epochs = 5 if quick else EPOCHS
    repeats = 1 if quick else 3
    case = f"compare {','.join(TECHNIQUES)}, digits, {epochs} epochs"
    with tempfile.TemporaryDirectory() as root:
        whole = time_interleaved({"with": _command(epochs, root, True), "without": _command(epochs, root, False)},
                                 repeats=repeats, warmup=0)
        steady = time_interleaved(
            {"plain": _compare(epochs, None), "async": _compare(epochs, root),
             "sync": _compare(epochs, root, asynchronous=False)},
            repeats=repeats, warmup=1,
        )
    return [
        Result(BENCH, f"{case}: the whole command", "jaxreg compare --checkpoint-dir", "jaxreg compare",
               whole["with"], whole["without"], whole["with"] / whole["without"], target=TARGET,
               note="ratio = with / without checkpoints; subprocess, start-up and compilation included"),
        Result(BENCH, f"{case}: steady state", "run_compare, background saves", "run_compare, no checkpoints",
               steady["async"], steady["plain"], steady["async"] / steady["plain"],
               note="context: compiled, in process; ~10 ms epochs, shorter than one save"),
        Result(BENCH, f"{case}: steady state", "run_compare, synchronous saves", "run_compare, no checkpoints",
               steady["sync"], steady["plain"], steady["sync"] / steady["plain"],
               note="context: asynchronous=False, every epoch saved"),
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    for row in run(parser.parse_args().quick):
        print(row)
