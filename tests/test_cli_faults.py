"""Fault tests of ``jaxreg compare --checkpoint-dir`` (issue 15): kill -9, damaged checkpoints, epochs changed.

Reference: one uninterrupted ``jaxreg compare`` run without checkpoints, in a subprocess like the others;
every faulted run must end, once started again with the same arguments, with a ``results.json`` byte-identical
to it (``results.json`` leaves out ``--out`` and ``--checkpoint-dir``), or stop with ONE line on stderr and a
non-zero status; never a traceback, never a result labelled as another run's.

The kill points are fixed: one at a seeded random time of the reference's wall time, one the moment a save's
temporary directory appears (mid-save), one the moment ``results.json`` appears (while report.md and the
figures are written). The runs share a persistent XLA compilation cache, so only the first compiles.
"""

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jaxreg.cli import main

pytestmark = pytest.mark.slow  # subprocesses killed and restarted: make test-slow (and CI) run these

ARGS = ["compare", "--techniques", "dropout", "--epochs", "8", "--quiet"]
SEED = 1503  # the seed of the random kill time
TMP_MARK = ".orbax-checkpoint-tmp"


def _env(cache: Path) -> dict:
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(cache), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
           "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
    env.pop("XLA_FLAGS", None)
    return env


def _start(cache: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "jaxreg.cli", *ARGS, *extra], env=_env(cache),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_when(run: subprocess.Popen, condition, timeout: float = 120.0) -> bool:
    """SIGKILL ``run`` as soon as ``condition()`` holds; False if it finished (or timed out) first."""
    deadline = time.monotonic() + timeout
    while run.poll() is None and time.monotonic() < deadline:
        if condition():
            run.send_signal(signal.SIGKILL)
            run.communicate(timeout=60)
            return True
        time.sleep(0.001)
    run.communicate(timeout=60)
    return False


def _step_dirs(checkpoints: Path) -> dict[str, list[str]]:
    return {run.name: sorted(os.listdir(run)) for run in checkpoints.iterdir() if run.is_dir()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run: (cache dir, results.json bytes, wall seconds)."""
    root = tmp_path_factory.mktemp("faults")
    cache = root / "xla_cache"
    start = time.monotonic()
    run = _start(cache, "--out", str(root / "reference"))
    _, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stderr[-3000:]
    return cache, (root / "reference" / "results.json").read_bytes(), time.monotonic() - start


def test_kill_9_at_fixed_points_then_resume_gives_the_uninterrupted_results(reference, tmp_path):
    cache, expected, wall = reference
    checkpoints, out = tmp_path / "ckpt", tmp_path / "out"
    paths = ("--out", str(out), "--checkpoint-dir", str(checkpoints))

    # 1. At a seeded random moment of the run (startup, compilation, training or a save).
    delay = random.Random(SEED).uniform(0.2, 0.9) * wall
    at = time.monotonic() + delay
    _kill_when(_start(cache, *paths), lambda: time.monotonic() >= at)

    # 2. In the middle of a save: the moment orbax's temporary step directory exists.
    def saving():
        return checkpoints.is_dir() and any(TMP_MARK in name for names in _step_dirs(checkpoints).values()
                                            for name in names)

    _kill_when(_start(cache, *paths), saving)

    # 3. While the outputs are written: results.json is there, the report and figures may not be.
    (out / "results.json").unlink(missing_ok=True)
    _kill_when(_start(cache, *paths), lambda: (out / "results.json").exists())

    # 4. Started again with the same arguments: the uninterrupted run's results, byte for byte.
    run = _start(cache, *paths)
    _, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    assert (out / "results.json").read_bytes() == expected
    assert (out / "report.md").exists()
    for technique, names in _step_dirs(checkpoints).items():
        assert not [n for n in names if TMP_MARK in n], (technique, names)
        assert 1 <= len([n for n in names if n.isdigit()]) <= 3, (technique, names)  # max_to_keep 3
        assert "7" in names, (technique, names)  # the last epoch is always saved


@pytest.fixture(scope="module")
def finished(reference, tmp_path_factory):
    """A finished checkpointed run (in this process): its checkpoint directory, to damage copies of."""
    root = tmp_path_factory.mktemp("finished")
    assert main([*ARGS, "--out", str(root / "out"), "--checkpoint-dir", str(root / "ckpt")]) == 0
    assert (root / "out" / "results.json").read_bytes() == reference[1]
    return root / "ckpt"


def _truncate(step: Path) -> None:
    for path in step.rglob("*"):
        if path.is_file() and path.parent.name == "d":
            with open(path, "r+b") as f:
                f.truncate(7)


def _lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_damaged_checkpoints_resume_with_one_warning_or_stop_with_one_paragraph(reference, finished, tmp_path,
                                                                             capsys):
    expected = reference[1]
    capsys.readouterr()
    # The latest checkpoint of one technique truncated: one warning line, then the run's own results.
    latest = shutil.copytree(finished, tmp_path / "latest")
    newest = max((p for p in (latest / "00-dropout").iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    _truncate(newest)
    assert main([*ARGS, "--out", str(tmp_path / "a"), "--checkpoint-dir", str(latest)]) == 0
    lines = _lines(capsys)
    assert len(lines) == 1 and lines[0].startswith("jaxreg: warning: skipped unreadable checkpoint"), lines
    assert f"epoch {newest.name}" in lines[0] and "truncated" in lines[0]
    assert (tmp_path / "a" / "results.json").read_bytes() == expected

    # Every checkpoint of a technique truncated: exit 1, one paragraph naming the directory and what to do.
    broken = shutil.copytree(finished, tmp_path / "all")
    for step in (broken / "00-dropout").iterdir():
        if step.name.isdigit():
            _truncate(step)
    assert main([*ARGS, "--out", str(tmp_path / "b"), "--checkpoint-dir", str(broken)]) == 1
    lines = _lines(capsys)
    assert len(lines) == 1 and "no checkpoint in" in lines[0] and str(broken / "00-dropout") in lines[0], lines
    assert "delete" in lines[0] and "Traceback" not in lines[0]

    # An emptied compare_config.json says corrupt, not "other arguments"; other arguments are named.
    corrupt = shutil.copytree(finished, tmp_path / "config")
    (corrupt / "compare_config.json").write_text("")
    assert main([*ARGS, "--out", str(tmp_path / "c"), "--checkpoint-dir", str(corrupt)]) == 2
    lines = _lines(capsys)
    assert len(lines) == 1 and "compare_config.json is corrupt" in lines[0], lines
    assert main([*ARGS, "--seed", "1", "--out", str(tmp_path / "d"), "--checkpoint-dir", str(finished)]) == 2
    lines = _lines(capsys)
    assert len(lines) == 1 and "other arguments: seed (0 there, 1 now)" in lines[0], lines


def test_more_epochs_continue_to_the_longer_run(reference, tmp_path, capsys):
    """--epochs extended: 4 epochs, then 8 in the same directory, equals the uninterrupted 8-epoch run."""
    short = [arg if arg != "8" else "4" for arg in ARGS]
    assert main([*short, "--out", str(tmp_path / "a"), "--checkpoint-dir", str(tmp_path / "ckpt")]) == 0
    assert main([*ARGS, "--out", str(tmp_path / "b"), "--checkpoint-dir", str(tmp_path / "ckpt")]) == 0
    assert (tmp_path / "b" / "results.json").read_bytes() == reference[1]
    assert not _lines(capsys)
