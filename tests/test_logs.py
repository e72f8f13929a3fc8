"""Tests of the lab's logs (jaxreg/experiments/logs.py, report.write_outputs) and of the per-epoch progress lines.

References: ``results.json`` read back with the json module (history.csv must hold the same histories, epochs
counted from 1); the TFRecord framing of TensorBoard event files (uint64 length, uint32 CRC, payload, uint32
CRC) parsed by hand, with the Event protobuf of tensorboardX, against the histories written; Keras'
``verbose=2`` (one line per epoch) for the command's stderr when it is not a terminal.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import json
import math
import os
import struct
import sys

import pytest

from jaxreg.experiments import arguments, dropout_mlp, logs, report, runner


def _runs():
    return [
        {"technique": "none", "member": 0, "history": {"epoch": [0, 1, 2], "train_loss": [1.5, 0.75, 0.5],
                                                       "val_loss": [1.25, None, 0.875], "skipped": [0, 0, 1]}},
        {"technique": "l2, 1e-4", "member": 1,
         "history": {"epoch": [0, 1], "train_loss": [1.0, 0.1 + 0.2], "weight_l2/Dense_0/kernel": [3.0, 2.5]}},
    ]


def test_history_csv_holds_the_histories_of_results_json_byte_identically(tmp_path):
    result = {"config": {"seed": 0}, "runs": _runs()}
    first = report.write_outputs(tmp_path / "a", result, title="t", report="r")
    report.write_outputs(tmp_path / "b", result, title="t", report="r")
    assert [p.name for p in first] == ["results.json", "report.md", "history.csv"]
    text = (tmp_path / "a" / "history.csv").read_text()
    assert text == (tmp_path / "b" / "history.csv").read_text()  # byte-identical for equal inputs
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == ["run", "member", "epoch", "skipped", "train_loss", "val_loss",
                             "weight_l2/Dense_0/kernel"]
    saved = json.loads((tmp_path / "a" / "results.json").read_text())["runs"]
    expected = [(run, e) for run in saved for e in range(len(run["history"]["epoch"]))]
    assert len(rows) == len(expected) == 5
    for row, (run, e) in zip(rows, expected):
        history = run["history"]
        assert (row["run"], row["member"], int(row["epoch"])) == (run["technique"], str(run["member"]),
                                                                  history["epoch"][e] + 1)
        for name in ("skipped", "train_loss", "val_loss", "weight_l2/Dense_0/kernel"):
            if name not in history:
                assert row[name] == ""
            elif history[name][e] is None:  # JSON null: a non-finite value
                assert row[name] == "nan"
            else:
                assert float(row[name]) == history[name][e]  # shortest repr: exact round trip
    assert rows[4]["train_loss"] == repr(0.1 + 0.2)


def _events(directory):
    """(tag, step, value) of every scalar in the event files of ``directory``, read by the TFRecord framing."""
    from tensorboardX.proto import event_pb2

    scalars = []
    for name in sorted(os.listdir(directory)):
        data = (directory / name).read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            payload = data[offset + 12:offset + 12 + length]
            offset += 12 + length + 4
            event = event_pb2.Event.FromString(payload)
            scalars += [(v.tag, event.step, v.simple_value) for v in event.summary.value]
    return scalars


def test_tensorboard_event_files_hold_the_history_per_run(tmp_path):
    if importlib.util.find_spec("tensorboardX") is None:  # importorskip would import torch through it
        pytest.skip("tensorboardX is not installed (the tensorboard extra)")
    runs = _runs()
    paths = logs.write_tensorboard(tmp_path, runs)
    paths = logs.write_tensorboard(tmp_path, runs)  # a second write replaces the first: each curve once
    assert [p.name for p in paths] == ["00-none", "01-l2__1e-4"]
    for path, run in zip(paths, runs):
        history = run["history"]
        expected = sorted((tag, e + 1, values[e]) for tag, values in history.items() if tag != "epoch"
                          for e in range(len(values)) if values[e] is not None)
        got = sorted(_events(path))
        assert [(t, s) for t, s, _ in got] == [(t, s) for t, s, _ in expected]
        for (_, _, value), (_, _, reference) in zip(got, expected):
            assert math.isclose(value, reference, rel_tol=1e-6)  # simple_value is a float32


def test_tensorboard_flag_names_the_extra_when_the_writer_is_missing(monkeypatch):
    parser = argparse.ArgumentParser()
    arguments.add_common_arguments(parser)
    assert parser.parse_args([]).tensorboard is False
    assert "tensorboard" not in arguments.config_of(parser.parse_args([]))  # where, not what: not in results
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import fails as if not installed
    with pytest.raises(ImportError, match=r"pip install 'jaxreg\[tensorboard\]'"):
        parser.parse_args(["--tensorboard"])


def test_the_vmapped_stories_pass_progress_unless_quiet(tmp_path, monkeypatch):
    seen = []

    def train_members(*args, progress, **kwargs):
        seen.append(progress)
        raise KeyboardInterrupt  # stop before training: only the wiring is under test

    monkeypatch.setattr(runner, "train_members", train_members)
    parser = argparse.ArgumentParser()
    dropout_mlp.add_arguments(parser)
    for extra in ([], ["--quiet"]):
        args = parser.parse_args(["--epochs", "1", "--train-size", "64", "--eval-size", "32", "--out",
                                  str(tmp_path), *extra])
        with pytest.raises(KeyboardInterrupt):
            dropout_mlp.run(args)
    assert seen == [True, False]


def test_cli_prints_one_line_per_epoch_on_a_piped_stderr(tmp_path, capsys):
    # The command in-process (a subprocess would spend ~8 s more importing JAX): its stderr is captured, not
    # a terminal, as when piped, so no bar but Keras verbose=2-style lines; --quiet (progress=False) prints
    # none (test_the_vmapped_stories_pass_progress_unless_quiet, test_loop's progress test).
    from jaxreg.cli import main

    assert main(["experiment", "dropout_mlp", "--epochs", "2", "--hidden-sizes", "8", "--train-size", "64",
                 "--eval-size", "32", "--batch-size", "32", "--out", str(tmp_path)]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "epoch " in line]
    assert [line.split(" members")[0] for line in lines] == ["fit_members: epoch 1/2", "fit_members: epoch 2/2"]
    assert all(" val_loss " in line and " val_accuracy " in line for line in lines)
    assert (tmp_path / "history.csv").exists() and (tmp_path / "dashboard.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow  # a fresh interpreter compiles from scratch (~10 s): make test-slow / CI
def test_piped_subprocess_prints_one_progress_line_per_epoch_and_none_with_quiet(tmp_path):
    """The command in a real subprocess with stderr piped (not a terminal): Keras ``verbose=2``-like lines."""
    import subprocess

    base = [sys.executable, "-m", "jaxreg.cli", "experiment", "dropout_mlp", "--epochs", "2", "--train-size", "64",
            "--eval-size", "64", "--batch-size", "16", "--hidden-sizes", "16"]
    loud = subprocess.run([*base, "--out", str(tmp_path / "a")], capture_output=True, text=True, timeout=300)
    assert loud.returncode == 0, loud.stderr
    lines = [line for line in loud.stderr.splitlines() if " epoch " in line]
    assert [line.split(" epoch ")[1].split()[0] for line in lines] == ["1/2", "2/2"], loud.stderr
    assert all("val_loss" in line for line in lines)
    quiet = subprocess.run([*base, "--quiet", "--out", str(tmp_path / "b")], capture_output=True, text=True,
                           timeout=300)
    assert quiet.returncode == 0 and " epoch " not in quiet.stderr, quiet.stderr
