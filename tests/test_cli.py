"""Tests of the ``jaxreg`` command (jaxreg/cli.py): exit codes, one-line errors, ``datasets``.

The contract (README): bad arguments exit with status 2 and one line on stderr, a dataset that is not
prepared offline exits with status 1 and the data module's paragraph, never a traceback. Reference for the
dataset listing: ``jaxreg.experiments.data.list_datasets``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import pytest

from jaxreg.experiments import data
from jaxreg import experiments
from jaxreg.cli import main


def _stderr_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    assert captured.out == ""
    return lines[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["compare", "--dataset", "nope"], "unknown dataset 'nope'; available datasets: digits"),
        (["compare", "--techniques", "none,l3"], "unknown technique 'l3'"),
        (["compare", "--epochs", "0"], "argument --epochs: must be an integer >= 1, got 0"),
        (["compare", "--epochs", "many"], "argument --epochs: expected an integer"),
        (["compare", "--batch-size", "0"], "argument --batch-size: must be an integer >= 1, got 0"),
        (["compare", "--batch-size", "-4"], "argument --batch-size: must be an integer >= 1, got -4"),
        (["compare", "--seed", "-1"], "argument --seed: must be an integer >= 0"),
        (["compare", "--model", "rnn"], "unknown model 'rnn'"),
        (["compare", "--optimizer", "lbfgs"], "unknown optimizer 'lbfgs'"),
        (["compare", "--label-noise", "1.5"], "argument --label-noise: must be in [0, 1)"),
        (["compare", "--learning-rate", "-1"], "--learning-rate must be a finite number > 0"),
        (["compare", "--techniques", "spatial_dropout"], "spatial_dropout needs feature maps"),
        (["compare", "--dataset", "synthetic_regression"], "compare needs a classification dataset"),
        (["compare", "--batch-size", "10000"], "--batch-size must be <= the 449 training examples"),
        (["compare", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["experiment", "nope"], "unknown experiment 'nope'; available experiments: "),
        (["experiment", "compare", "--epochs", "0"], "argument --epochs: must be an integer >= 1"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(capsys, args, message):
    assert main(args) == 2
    line = _stderr_line(capsys)
    assert "error:" in line and message in line


def test_batch_size_must_divide_over_devices(capsys, monkeypatch):
    """With 3 devices (simulated), a batch of 32 cannot be split evenly: usage error, exit 2."""
    monkeypatch.setattr(jax, "device_count", lambda *a, **k: 3)
    assert main(["compare", "--batch-size", "32"]) == 2
    assert "multiple of the 3 devices" in _stderr_line(capsys)


def test_unavailable_dataset_exits_1_with_the_data_paragraph(capsys, tmp_path):
    assert main(["compare", "--dataset", "mnist", "--data-dir", str(tmp_path), "--epochs", "1"]) == 1
    line = _stderr_line(capsys)
    assert "Dataset 'mnist' is not available offline" in line
    assert "--dataset digits" in line


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err


def test_help_exits_0(capsys):
    assert main(["compare", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--techniques" in out and "--checkpoint-dir" in out
    assert main(["experiment", "--help"]) == 0
    out = capsys.readouterr().out
    stories = [line.split() for line in out.split("experiments (")[1].splitlines()[1:]]
    assert {words[0] for words in stories} == set(experiments.names())  # one line per story, each named
    assert any(words[:3] == ["compare", "Train", "one"] for words in stories)


def test_help_answers_without_importing_jax():
    """`jaxreg --help` and `jaxreg experiment --help` build no story and import no jax (they answer at once)."""
    code = ("import sys; from jaxreg.cli import main; codes = [main(['--help']), main(['experiment', '--help'])]; "
            "assert codes == [0, 0], codes; assert 'jax' not in sys.modules, 'jax was imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("early_stopping ") == 2 and "kfold " in done.stdout


def test_datasets_lists_digits_as_offline(capsys, tmp_path):
    assert main(["datasets", "--data-dir", str(tmp_path)]) == 0
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in capsys.readouterr().out.splitlines()]
    header, table = rows[0], rows[2:]
    offline = {row[0]: row[header.index("offline")] for row in table}
    expected = {i.name: ("yes" if i.offline else "no") for i in data.list_datasets(data_dir=tmp_path)}
    assert offline == expected
    assert offline["digits"] == "yes" and offline["mnist"] == "no"


@pytest.mark.slow  # a fresh interpreter: make test-slow / CI
def test_console_module_runs_in_a_subprocess(tmp_path):
    """``python -m jaxreg.cli`` is the console script's entry point: real exit codes, real streams."""
    env = {**os.environ, "TFDS_DATA_DIR": str(tmp_path)}
    ok = subprocess.run([sys.executable, "-m", "jaxreg.cli", "datasets"], capture_output=True, text=True,
                        env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert any(line.startswith("| digits ") and "| yes " in line for line in ok.stdout.splitlines())
    bad = subprocess.run([sys.executable, "-m", "jaxreg.cli", "compare", "--epochs", "0"], capture_output=True,
                         text=True, env=env, timeout=300)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "Traceback" not in bad.stderr


@pytest.mark.parametrize("option, make_value, message", [
    ("--out", lambda tmp: str(tmp / "file.txt"), "an existing file, not a directory"),
    ("--out", lambda tmp: "", "--out must name a directory, got an empty path"),
    ("--out", lambda tmp: "/proc/jaxreg-out", "--out /proc/jaxreg-out: cannot create it"),
    ("--checkpoint-dir", lambda tmp: str(tmp / "file.txt"), "an existing file, not a directory"),
    ("--out", lambda tmp: str(tmp / "file.txt" / "below"), "cannot create it"),
])
def test_bad_output_locations_exit_2_before_any_data_is_loaded(capsys, monkeypatch, tmp_path, option, make_value,
                                                                message):
    """Issue 15, item 2: output locations are checked (and created) before loading data or training."""
    from jaxreg.experiments import runner

    def no_training(*args, **kwargs):
        raise AssertionError("data loaded before the output locations were checked")

    monkeypatch.setattr(runner, "load_splits", no_training)
    (tmp_path / "file.txt").write_text("not a directory")
    assert main(["compare", "--techniques", "none", option, make_value(tmp_path)]) == 2
    line = _stderr_line(capsys)
    assert "error:" in line and message in line
    assert main(["experiment", "dropout_mlp", "--out", str(tmp_path / "file.txt")]) == 2
    assert "an existing file, not a directory" in _stderr_line(capsys)


@pytest.mark.slow  # three checkpointed command runs (about 17 s): make test-slow / CI
def test_fewer_epochs_than_the_checkpoints_hold_give_that_run_or_a_usage_error(capsys, tmp_path, monkeypatch):
    """Issue 15, item 1. Reference: a fresh 2-epoch run without checkpoints; results.json must be identical.
    Synchronous saves here (every epoch saved), so which checkpoints are kept does not depend on timing."""
    import jaxreg.checkpoint

    monkeypatch.setitem(jaxreg.checkpoint.resumable_fit.__kwdefaults__, "asynchronous", False)
    common = ["compare", "--techniques", "none", "--quiet"]
    assert main([*common, "--epochs", "3", "--checkpoint-dir", str(tmp_path / "c3"), "--out", str(tmp_path / "a")]) == 0
    assert main([*common, "--epochs", "2", "--checkpoint-dir", str(tmp_path / "c3"), "--out", str(tmp_path / "b")]) == 0
    assert main([*common, "--epochs", "2", "--out", str(tmp_path / "fresh")]) == 0
    assert (tmp_path / "b" / "results.json").read_bytes() == (tmp_path / "fresh" / "results.json").read_bytes()
    capsys.readouterr()
    # compare keeps the last 3 checkpoints: after 5 epochs, the one after epoch 1 is gone.
    assert main([*common, "--epochs", "5", "--checkpoint-dir", str(tmp_path / "c5"), "--out", str(tmp_path / "d")]) == 0
    capsys.readouterr()
    assert main([*common, "--epochs", "2", "--checkpoint-dir", str(tmp_path / "c5"), "--out", str(tmp_path / "e")]) == 2
    line = _stderr_line(capsys)
    assert "trained for 5 epochs, more than epochs = 2" in line and "no longer kept" in line


@pytest.mark.slow  # a diverging compare run end to end (~15 s): make test-slow / CI
def test_a_diverged_run_exits_1_with_one_line_after_writing_its_results(capsys, tmp_path):
    """Issue 15, item 3: --learning-rate 1e30 skips every step after the first; the table shows the skipped
    steps, results.json is written, the command exits 1 with one line (0 with --keep-going)."""
    args = ["compare", "--techniques", "none", "--epochs", "2", "--learning-rate", "1e30", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 1
    captured = capsys.readouterr()
    assert "skipped steps" in captured.out.splitlines()[0]
    assert captured.err.count("\n") == 1 and "run 'none' diverged" in captured.err and "Traceback" not in captured.err
    assert (tmp_path / "a" / "results.json").exists()
    assert main([*args, "--keep-going", "--out", str(tmp_path / "b")]) == 0


@pytest.mark.slow  # fresh interpreters compile from scratch: make test-slow / CI
def test_the_command_keeps_a_persistent_compilation_cache_without_changing_results(tmp_path):
    """With $JAXREG_CACHE_DIR the second run loads XLA's compiled programs (JAX's persistent cache) and writes a
    byte-identical results.json; `off` writes no cache."""
    args = [sys.executable, "-m", "jaxreg.cli", "compare", "--techniques", "none", "--epochs", "2", "--quiet"]
    cache = tmp_path / "cache"
    for name in ("a", "b"):
        done = subprocess.run([*args, "--out", str(tmp_path / name)], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "JAXREG_CACHE_DIR": str(cache)})
        assert done.returncode == 0, done.stderr
    assert any(cache.iterdir())
    assert (tmp_path / "a" / "results.json").read_bytes() == (tmp_path / "b" / "results.json").read_bytes()
